// bench_peers: shmkv side by side with what a user would pick instead, in one
// run, on the same data, so that the ratios hold on a noisy shared machine
// where absolute numbers drift 2-4x between runs (issue 6, DESIGN.md §9).
//
// Peers (each with its real client; see backend_*.cc):
//   shmkv          C API, 1 and 2 processes; shmkv-mget16: gets in batches
//                  of 16 through shmkv_mget (read-only workloads)
//   shmkv-huge     the same with its segments in --huge-dir, a tmpfs mounted
//                  with huge=within_size (2-MiB pages; README "Huge pages")
//   redis          Redis 7, unix socket, hiredis: 1 client; redis-p16: 1 client
//                  pipelining 16 commands; 2 processes = 2 clients
//   memcached      memcached 1.6, unix socket, libmemcached: the same shapes
//                  (p16: noreply sets and deletes, then one multi-key get)
//   boost-ipc      boost::unordered_map in managed_shared_memory under an
//                  interprocess_sharable_mutex, 1 and 2 processes
//   std-umap       in-process std::unordered_map, 1 process (the ceiling)
//   absl-flat      in-process absl::flat_hash_map, 1 process (the ceiling)
//
// Workloads (keys of 16 B; value size per scenario):
//   get_hit get_miss set_update set_new_evict delete incr_hot incr_many
//   ycsb_{a,b,c}_{uniform,zipf}   (A 50/50, B 95/5, C 100/0 get/set; Zipf 0.99)
// Scenarios: 100k keys with 64-B values (every workload, plus the stall
// test); 100k keys with 16-B, 1-KiB and 16-KiB values (get_hit,
// set_update); 10M keys with 64-B values (get_hit, for each store whose
// estimated size fits in MemAvailable less a reserve, with a pointer-chase
// probe of the memory-latency floor). Before them: memory per item of each
// store, and callgrind instruction counts per shmkv op (extras.cc).
//
// Stall test: one process writes Zipf-hot keys, the driver SIGSTOPs it again
// and again for stall_stop_ms while the other process runs YCSB A on the same
// keys with every op timed (shmkv and boost-ipc). The victim also reads its
// own scheduling counters (runqueue wait, context switches) every
// --stall-sample-every ops and after every op slower than 100 µs, so that
// each slow op can be told apart from the victim being preempted by the OS
// (SchedProbe below); the report gives each slow op as timed and less the
// runqueue wait that fell inside it.
//
// Method. Each run forks its worker processes (pinned to distinct cores with
// sched_setaffinity; each attaches or connects on its own), warms up, waits
// for a common start and runs for a fixed time. In-process maps run in the
// driver. Ops are timed with rdtsc in batches: 16 ops for the in-process and
// shared-memory stores (an op can take < 50 ns, about the cost of reading the
// clock twice), one op for an unpipelined server round trip, and one
// pipeline of 16 for p16; the histogram gets the per-op time (batch / ops).
// ops/s counts the time inside the timed batches only. Every repetition runs
// every (workload, peer) once before the next repetition starts, and the
// table gives the median of the repetitions. Every run also checks its
// outcomes: a get_hit that misses, a get_miss that hits, a delete that finds
// nothing, an incr_hot count that is not exact are reported.
//
//   bench_peers --redis=SOCK --redis-evict=SOCK --memcached=SOCK
//               --memcached-evict=SOCK [--smoke] [--out=DIR] [--commit=ID]
//               [--peers=shmkv,redis,...] [--huge-dir=DIR] [--reps=N] [--run-ms=N]
//               [--warm-ms=N] [--keys=N] [--big-keys=N] [--callgrind-ops=N]
//               [--only=stall|memory|main:W,...] [--stall-sample-every=N]
// --only=main:get_hit,set_update runs those workloads of the main scenario
// alone (no stall test, memory, callgrind or other scenario).
// --only=stall runs the stall test alone (no memory, callgrind or throughput
// runs); --stall-sample-every=0 turns the victim's scheduling counters off.
// --only=memory measures the memory per item alone.
// scripts/bench.sh starts the servers and runs this. Results: OUT/latest.md
// (printed too), OUT/latest.csv, and OUT/*.dat for bench/peers/charts.gp.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "backend.h"
#include "flags.h"
#include "flat_data.h"
#include "measure.h"
#include "process.h"
#include "results.h"
#include "suite.h"

namespace peers {
namespace {

constexpr size_t kBatch = 16;                // ops per timed batch (and per pipeline)
constexpr size_t kSeqLen = size_t{1} << 22;  // key index sequences, cycled
constexpr size_t kPool = 64;                 // distinct values per value size
constexpr uint32_t kKeyLen = 16;
constexpr uint64_t kEvictItems = 65'536;  // what an evicting store holds, roughly

double g_ns_per_tick = 1;
double g_ticks_per_s = 1e9;
std::vector<int> g_cpus;  // cores this process may use; worker i gets g_cpus[i]

// ---------------------------------------------------------------- workloads

enum class Kind { kGetHit, kGetMiss, kSetUpdate, kSetNew, kDelete, kIncrHot, kIncrMany, kYcsb };

struct Workload {
  std::string name;
  Kind kind;
  int read_pct = 0;  // kYcsb: percentage of gets
  bool zipf = false;
};

const std::vector<Workload>& AllWorkloads() {
  static const std::vector<Workload> w = {
      {"get_hit", Kind::kGetHit},
      {"get_miss", Kind::kGetMiss},
      {"set_update", Kind::kSetUpdate},
      {"set_new_evict", Kind::kSetNew},
      {"delete", Kind::kDelete},
      {"incr_hot", Kind::kIncrHot},
      {"incr_many", Kind::kIncrMany},
      {"ycsb_a_uniform", Kind::kYcsb, 50, false},
      {"ycsb_a_zipf", Kind::kYcsb, 50, true},
      {"ycsb_b_uniform", Kind::kYcsb, 95, false},
      {"ycsb_b_zipf", Kind::kYcsb, 95, true},
      {"ycsb_c_uniform", Kind::kYcsb, 100, false},
      {"ycsb_c_zipf", Kind::kYcsb, 100, true},
  };
  return w;
}

// YCSB's Zipfian generator (Gray et al., "Quickly generating billion-record
// synthetic databases"): rank 0 is the hottest. Ranks are then scattered over
// the keys by a fixed permutation, as YCSB's scrambled Zipfian does, so that
// hot keys do not sit next to each other.
class Zipf {
 public:
  Zipf(uint64_t n, double theta) : n_(n), theta_(theta) {
    double zetan = 0;
    for (uint64_t i = 1; i <= n; ++i) zetan += 1.0 / std::pow(static_cast<double>(i), theta);
    zetan_ = zetan;
    const double zeta2 = 1.0 + 1.0 / std::pow(2.0, theta);
    alpha_ = 1.0 / (1.0 - theta);
    eta_ = (1.0 - std::pow(2.0 / static_cast<double>(n), 1.0 - theta)) / (1.0 - zeta2 / zetan);
    half_pow_theta_ = 1.0 + std::pow(0.5, theta);
  }
  uint64_t Next(double u) const {
    const double uz = u * zetan_;
    if (uz < 1.0) return 0;
    if (uz < half_pow_theta_) return 1;
    const auto r =
        static_cast<uint64_t>(static_cast<double>(n_) * std::pow(eta_ * u - eta_ + 1.0, alpha_));
    return std::min(r, n_ - 1);
  }

 private:
  uint64_t n_;
  double theta_, zetan_, alpha_, eta_, half_pow_theta_;
};

// Everything a worker reads, built before any fork (children share it
// copy-on-write and only read it).
struct Dataset {
  uint64_t n = 0;
  uint32_t vlen = 64;
  std::vector<char> keys, miss_keys, counter_keys;
  uint64_t n_miss = 0, n_counters = 0;
  std::vector<char> values[2];      // two pools, so that an update changes the value
  std::vector<uint32_t> del_order;  // a permutation of the keys, for delete
  std::string hot_key = "hot:000000000000";
  struct Seq {
    std::vector<uint32_t> uniform, zipf;
    std::vector<uint8_t> coin;  // 0..99, for the YCSB mix
  } seq[2];                     // one per worker process

  std::string_view key(uint64_t i) const { return {&keys[i * kKeyLen], kKeyLen}; }
  std::string_view miss_key(uint64_t i) const { return {&miss_keys[i * kKeyLen], kKeyLen}; }
  std::string_view counter_key(uint64_t i) const { return {&counter_keys[i * kKeyLen], kKeyLen}; }
  std::string_view value(uint64_t i, int pool) const {
    return {&values[pool][(i % kPool) * vlen], vlen};
  }
};

void BuildDataset(Dataset* d, uint64_t n, uint32_t vlen, bool counters, bool zipf) {
  d->n = n;
  d->vlen = vlen;
  d->keys = bench::FlatKeys("key:%012zu", kKeyLen, n);
  d->n_miss = std::min<uint64_t>(n, 1 << 20);
  d->miss_keys = bench::FlatKeys("miss:%011zu", kKeyLen, d->n_miss);
  d->n_counters = counters ? n : 0;
  if (counters) d->counter_keys = bench::FlatKeys("ctr:%012zu", kKeyLen, n);
  for (int p = 0; p < 2; ++p) {
    d->values[p].assign(kPool * vlen, 0);
    for (size_t i = 0; i < kPool; ++i) {
      char* v = &d->values[p][i * vlen];
      std::memset(v, (p ? 'A' : 'a') + static_cast<int>(i % 26), vlen);
      char tag[24];
      const int len = std::snprintf(tag, sizeof(tag), "v%d:%zu|", p, i);
      std::memcpy(v, tag, std::min<size_t>(static_cast<size_t>(len), vlen));
    }
  }
  std::mt19937_64 rng(42);
  d->del_order.resize(n);
  for (uint64_t i = 0; i < n; ++i) d->del_order[i] = static_cast<uint32_t>(i);
  std::shuffle(d->del_order.begin(), d->del_order.end(), rng);
  std::unique_ptr<Zipf> z;
  std::vector<uint32_t> scatter;
  if (zipf) {
    z = std::make_unique<Zipf>(n, 0.99);
    scatter = d->del_order;  // any fixed permutation will do
  }
  for (int p = 0; p < 2; ++p) {
    Dataset::Seq& s = d->seq[p];
    std::mt19937_64 r(1000 + p);
    std::uniform_int_distribution<uint32_t> pick(0, static_cast<uint32_t>(n - 1));
    s.uniform.resize(kSeqLen);
    for (auto& x : s.uniform) x = pick(r);
    s.coin.resize(1 << 16);
    std::uniform_int_distribution<int> pct(0, 99);
    for (auto& c : s.coin) c = static_cast<uint8_t>(pct(r));
    if (zipf) {
      std::uniform_real_distribution<double> u(0.0, 1.0);
      s.zipf.resize(kSeqLen);
      for (auto& x : s.zipf) x = scatter[z->Next(u(r))];
    } else {
      s.zipf.clear();
    }
  }
}

// 16-byte keys never used before: 'n' + 15 hex digits of (run, process,
// counter), so that no run re-inserts a key an earlier run left behind.
void FormatFreshKey(uint64_t run_id, int proc, uint64_t counter, char* out) {
  static const char kHex[] = "0123456789abcdef";
  uint64_t v =
      (run_id << 38) | (static_cast<uint64_t>(proc) << 36) | (counter & ((1ull << 36) - 1));
  out[0] = 'n';
  for (int i = 15; i >= 1; --i) {
    out[i] = kHex[v & 15];
    v >>= 4;
  }
}

// ---------------------------------------------------------------- scheduling

// How many times this thread has called sched_yield(): the library's
// backoff (std::this_thread::yield()) and Boost's spin waits included, since
// the definition at the end of this file takes the place of libc's.
thread_local uint64_t t_yields = 0;

// The calling thread's scheduling counters, which the stall test's victim
// reads between its timed ops (never inside one), so that every slow op lies
// between two readings: its bracket.
//
// What to subtract from a slow op is the time the victim was runnable but
// not on a CPU. /proc/thread-self/schedstat gives it: its second field,
// run_delay, is the time the thread has waited on a runqueue, in ns, which
// the kernel adds when the thread gets a CPU back, so a reading taken while
// running holds every wait that has ended, to the ns (checked here: a
// spinning thread's 4-8 ms gaps match its run_delay increments within
// ~40 µs). getrusage(RUSAGE_THREAD)'s ru_nivcsw only says that the thread
// was switched out against its will, not for how long, and schedstat's
// first field (time on a CPU) is brought up to date only at a tick or a
// switch: it does not move across a bracket of microseconds. So run_delay is
// the more precise of them and is what the report subtracts; ru_nivcsw and
// ru_nvcsw are read too, as a cross-check and to show voluntary blocking
// (boost-ipc's futex waits while the writer holds its lock): a thread asleep
// is not runnable, so such waits are not in run_delay and stay in the op's
// time, as they must. Only the wait that certainly fell inside the op is
// subtracted: run_delay over the bracket less the part of the bracket
// outside the op (the ops since the previous reading and the readings
// themselves), which can hold at most that much of it.
//
// A sched_yield() that hands the CPU to another thread is voluntary but
// counts as runqueue wait (and as an involuntary switch): a bracket in which
// the victim yielded subtracts nothing, hence the yield counter.
//
// What none of them sees: time the hypervisor takes the virtual CPU away
// (steal): the thread is "running" then, and the op's time stays as timed.
//
// Cost, measured here: a reading takes ~0.45 µs in a tight loop (pread of
// schedstat 0.3, getrusage 0.15) and 0.8 µs (shmkv) to 1.6 µs (boost-ipc)
// between the victim's ops; every 512 ops that is ~0.5 % of the shmkv
// victim's run and ~0.15 % of boost-ipc's (every 256: ~0.9-1 %, too close to
// the 1 % budget). The op right after a reading is ~15 ns slower at the
// median (cold caches), 1 op in 512: no percentile the report gives moves.
// The price of reading this seldom: a bracket holds up to ~512 ops (~150 µs)
// besides the slow op, so a preempted op's time less its certain wait can
// overstate its time on a CPU by that much; never understate it.
struct SchedSample {
  uint64_t tick_before, tick_after;  // TSC around the reading
  uint64_t run_delay_ns, nivcsw, nvcsw, yields;
};

class SchedProbe {
 public:
  enum Source { kNone = 0, kRusage = 1, kSchedstat = 2 };

  SchedProbe() = default;
  SchedProbe(const SchedProbe&) = delete;
  SchedProbe& operator=(const SchedProbe&) = delete;
  ~SchedProbe() {
    if (fd_ >= 0) close(fd_);
  }

  // Opens the calling thread's counters (after fork: /proc/thread-self is
  // the thread that opens it). kNone if none can be read.
  Source Open() {
    rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) != 0) return kNone;
    fd_ = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    SchedSample s;
    if (fd_ >= 0 && !ReadRunDelay(&s.run_delay_ns)) {
      close(fd_);
      fd_ = -1;
    }
    return fd_ >= 0 ? kSchedstat : kRusage;
  }

  void Read(SchedSample* s) const {
    s->tick_before = TicksBegin();
    s->run_delay_ns = 0;
    if (fd_ >= 0) ReadRunDelay(&s->run_delay_ns);
    rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    s->nivcsw = static_cast<uint64_t>(ru.ru_nivcsw);
    s->nvcsw = static_cast<uint64_t>(ru.ru_nvcsw);
    s->yields = t_yields;
    s->tick_after = TicksEnd();
  }

 private:
  // "<ns on a CPU> <ns waiting on a runqueue> <times run>\n"
  bool ReadRunDelay(uint64_t* out) const {
    char buf[96];
    const ssize_t n = pread(fd_, buf, sizeof(buf) - 1, 0);
    if (n <= 0) return false;
    buf[n] = 0;
    const char* c = buf;
    while (*c >= '0' && *c <= '9') ++c;
    if (*c != ' ') return false;
    ++c;
    if (*c < '0' || *c > '9') return false;
    uint64_t v = 0;
    while (*c >= '0' && *c <= '9') v = v * 10 + static_cast<uint64_t>(*c++ - '0');
    *out = v;
    return true;
  }

  int fd_ = -1;
};

// ---------------------------------------------------------------- workers

// A reading of the scheduling counters takes ~0.5 µs; one that takes longer
// than this was interrupted (its time is not the reading's cost).
constexpr double kLongReadingNs = 20'000;

// An op timed on its own that took more than kSlowNs (the stall test
// matches them against the times the other process was stopped).
constexpr double kSlowNs = 100'000;
struct SlowOp {
  uint64_t start, ticks;
  OpType type;
  // The bracket (when the plan samples the scheduling counters): TSC ticks
  // from the reading before the op to the one right after it, and how much
  // each counter moved over it.
  uint64_t bracket_ticks;  // 0: not bracketed
  uint64_t run_delay_ns;
  uint32_t nivcsw, nvcsw, yields;
};

struct WorkerResult {
  Histogram hist;
  uint32_t n_slow;
  SlowOp slow[1024];
  uint64_t ops, ticks, max_batch_ticks, issued;
  // The scheduling counters (WorkerPlan::sample_every): where they came
  // from, how often they were read, how long the readings took (those that
  // took less than kLongReadingNs: the others were interrupted, by the OS
  // or the hypervisor), the readings at the start and the end of the
  // measured time, and its length in ticks.
  int sched_source;
  uint64_t samples, samples_long, sample_ticks, run_ticks;
  SchedSample sched_first, sched_last;
  Outcome outcome;
  uint64_t reinsert_errors;
  int failed;
  char error[256];

  void Clear() { std::memset(static_cast<void*>(this), 0, sizeof(*this)); }
};

// Shared with the forked workers (an anonymous MAP_SHARED page).
struct Control {
  std::atomic<int> ready;
  std::atomic<int> go;
  std::atomic<uint64_t> go_tick;
  WorkerResult res[2];
  // The stall test: when the driver stopped a worker (SIGSTOP) and resumed it.
  int n_stops;
  uint64_t stop_begin[256], stop_end[256];
  uint64_t victim_ops_begin[256], victim_ops_end[256];  // worker 1's ops then
};

struct WorkerPlan {
  const Workload* wl = nullptr;
  const Dataset* d = nullptr;
  Backend* b = nullptr;
  int proc = 0, procs = 1;
  bool pipelined = false;
  size_t batch = kBatch;
  double warm_s = 0.1, run_s = 0.3;
  uint64_t run_id = 1;
  // With batch 1: read the scheduling counters after every op slower than
  // kSlowNs and after every sample_every-th op; 0: never.
  int sample_every = 0;
};

// Produces the ops of the next batch (outside the timed region).
class Filler {
 public:
  explicit Filler(const WorkerPlan& p) : p_(p), d_(*p.d), seq_(d_.seq[p.proc]) {
    // Each process starts at its own place in its own sequences.
    pos_ = static_cast<size_t>(p.proc) * 7919;
  }

  void Fill(Op* ops, size_t n) {
    const Workload& wl = *p_.wl;
    const std::vector<uint32_t>& keys = wl.zipf ? seq_.zipf : seq_.uniform;
    for (size_t i = 0; i < n; ++i) {
      Op& op = ops[i];
      const size_t at = pos_++;
      const uint64_t k = keys[at & (kSeqLen - 1)];
      switch (wl.kind) {
        case Kind::kGetHit:
          op = {OpType::kGet, d_.key(k), {}};
          break;
        case Kind::kGetMiss:
          op = {OpType::kGet, d_.miss_key(k % d_.n_miss), {}};
          break;
        case Kind::kSetUpdate:
          op = {OpType::kSet, d_.key(k), d_.value(k, static_cast<int>(at & 1))};
          break;
        case Kind::kSetNew:
          FormatFreshKey(p_.run_id, p_.proc, fresh_++, &fresh_keys_[i * kKeyLen]);
          op = {OpType::kSet, {&fresh_keys_[i * kKeyLen], kKeyLen}, d_.value(at, 0)};
          break;
        case Kind::kDelete: {
          // Process p deletes keys p, p + procs, ... of a fixed permutation,
          // so that two processes never delete the same key.
          const uint64_t j =
              (del_pos_++ * static_cast<uint64_t>(p_.procs) + static_cast<uint64_t>(p_.proc)) %
              d_.n;
          op = {OpType::kDel, d_.key(d_.del_order[j]), {}};
          break;
        }
        case Kind::kIncrHot:
          op = {OpType::kIncr, d_.hot_key, {}};
          break;
        case Kind::kIncrMany:
          op = {OpType::kIncr, d_.counter_key(k % d_.n_counters), {}};
          break;
        case Kind::kYcsb:
          if (seq_.coin[at & 0xffff] < wl.read_pct) {
            op = {OpType::kGet, d_.key(k), {}};
          } else {
            op = {OpType::kSet, d_.key(k), d_.value(k, static_cast<int>(at & 1))};
          }
          break;
      }
    }
  }

 private:
  const WorkerPlan& p_;
  const Dataset& d_;
  const Dataset::Seq& seq_;
  size_t pos_ = 0;
  uint64_t fresh_ = 0, del_pos_ = 0;
  char fresh_keys_[kBatch * kKeyLen];
};

// After a timed batch of deletes, puts the keys back (not timed), so that
// every delete finds its key and the store keeps its size.
void Reinsert(const WorkerPlan& p, Op* ops, size_t n, char* buf, size_t cap, WorkerResult* r) {
  for (size_t i = 0; i < n; ++i) ops[i] = {OpType::kSet, ops[i].key, p.d->value(0, 0)};
  Outcome o;
  p.b->Run(ops, n, p.b->CanPipeline(OpType::kSet), buf, cap, &o);
  r->reinsert_errors += o.errors + o.not_found;
}

void WorkerLoop(const WorkerPlan& p, Control* ctl, WorkerResult* r, bool wait_go) {
  std::vector<char> buf(kBatch * (p.d->vlen + 64));  // a slice per op for batched gets
  const size_t cap = buf.size();
  Filler filler(p);
  Op ops[kBatch];
  const size_t n = p.batch;
  const bool del = p.wl->kind == Kind::kDelete;
  uint64_t issued = 0;

  Outcome warm;
  const uint64_t warm_end = TicksBegin() + static_cast<uint64_t>(p.warm_s * g_ticks_per_s);
  do {
    filler.Fill(ops, n);
    p.b->Run(ops, n, p.pipelined, buf.data(), cap, &warm);
    issued += n;
    if (del) Reinsert(p, ops, n, buf.data(), cap, r);
  } while (TicksBegin() < warm_end);

  uint64_t start;
  if (wait_go) {
    ctl->ready.fetch_add(1, std::memory_order_acq_rel);
    unsigned spins = 0;
    // acquire: pairs with the release store of go in Launch(); go_tick is
    // written before it.
    while (ctl->go.load(std::memory_order_acquire) == 0) {
      if (++spins % 64 == 0) sched_yield();  // the driver may need this core
      _mm_pause();
    }
    start = ctl->go_tick.load(std::memory_order_relaxed);
  } else {
    start = TicksBegin();
  }
  const uint64_t end = start + static_cast<uint64_t>(p.run_s * g_ticks_per_s);
  r->hist.Clear();
  r->n_slow = 0;
  r->reinsert_errors = 0;
  const double tenths_per_tick = g_ns_per_tick * 10.0 / static_cast<double>(n);
  const double slow_ticks = kSlowNs / g_ns_per_tick;
  // The scheduling counters, read outside the timed region only: after a
  // slow op (closing its bracket) and every `every` ops (so that the
  // bracket's opening reading is never far before the op).
  SchedProbe probe;
  const uint32_t every =
      n == 1 && p.sample_every > 0 && (r->sched_source = probe.Open()) != SchedProbe::kNone
          ? static_cast<uint32_t>(p.sample_every)
          : 0;
  r->samples = r->samples_long = r->sample_ticks = 0;
  const auto long_reading = static_cast<uint64_t>(kLongReadingNs / g_ns_per_tick);
  auto account = [r, long_reading](const SchedSample& s) {
    const uint64_t t = s.tick_after - s.tick_before;
    ++r->samples;
    if (t < long_reading) {
      r->sample_ticks += t;
    } else {
      ++r->samples_long;
    }
  };
  SchedSample last{};
  uint32_t since = 0;
  if (every != 0) {
    probe.Read(&last);
    r->sched_first = last;
  }
  uint64_t t1 = start;
  for (;;) {
    filler.Fill(ops, n);
    const uint64_t t0 = TicksBegin();
    p.b->Run(ops, n, p.pipelined, buf.data(), cap, &r->outcome);
    t1 = TicksEnd();
    const uint64_t dt = t1 - t0;
    // relaxed: the stall test's driver samples it as a progress counter.
    __atomic_store_n(&r->ops, r->ops + n, __ATOMIC_RELAXED);
    r->ticks += dt;
    if (dt > r->max_batch_ticks) r->max_batch_ticks = dt;
    r->hist.Record(static_cast<uint64_t>(static_cast<double>(dt) * tenths_per_tick));
    const bool slow = n == 1 && static_cast<double>(dt) > slow_ticks;
    if (every != 0 && (slow || ++since == every)) {
      since = 0;
      SchedSample now;
      probe.Read(&now);
      account(now);
      if (slow && r->n_slow < std::size(r->slow)) {
        r->slow[r->n_slow++] = {t0,
                                dt,
                                ops[0].type,
                                now.tick_after - last.tick_before,
                                now.run_delay_ns - last.run_delay_ns,
                                static_cast<uint32_t>(now.nivcsw - last.nivcsw),
                                static_cast<uint32_t>(now.nvcsw - last.nvcsw),
                                static_cast<uint32_t>(now.yields - last.yields)};
      }
      last = now;
    } else if (slow && r->n_slow < std::size(r->slow)) {
      r->slow[r->n_slow++] = {t0, dt, ops[0].type, 0, 0, 0, 0, 0};
    }
    issued += n;
    if (del) Reinsert(p, ops, n, buf.data(), cap, r);
    if (t1 >= end) break;
  }
  r->run_ticks = t1 - start;
  if (every != 0) {
    probe.Read(&r->sched_last);
    account(r->sched_last);
  }
  r->issued = issued;
}

void Pin(int worker) {
  if (g_cpus.empty()) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(g_cpus[static_cast<size_t>(worker) % g_cpus.size()], &set);
  sched_setaffinity(0, sizeof(set), &set);
}

void Unpin() {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : g_cpus) CPU_SET(c, &set);
  sched_setaffinity(0, sizeof(set), &set);
}

// One cache line handed back and forth between the first two cores: two
// pinned processes take turns on a shared counter (each waits for its turn,
// then adds 1), so every increment moves the line to the other core. The
// floor under anything two processes write in turn (a hot key). ns per
// handoff; 0 if fewer than 2 cores or it did not finish in 10 s.
double LineHandoffNs() {
  if (g_cpus.size() < 2) return 0;
  void* mem = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 0;
  auto* turn = static_cast<std::atomic<uint64_t>*>(mem);  // zero-filled: 0
  constexpr uint64_t kHandoffs = 2'000'000;
  auto play = [turn](uint64_t first) {
    for (uint64_t i = first; i < kHandoffs; i += 2) {
      while (turn->load(std::memory_order_acquire) != i) __builtin_ia32_pause();
      turn->store(i + 1, std::memory_order_release);
    }
  };
  const pid_t pid = fork();
  if (pid == 0) {
    Pin(1);
    play(1);
    _exit(0);
  }
  Pin(0);
  const double t0 = NowS();
  play(0);
  while (turn->load(std::memory_order_acquire) != kHandoffs && NowS() - t0 < 10) {
    __builtin_ia32_pause();
  }
  const double took = NowS() - t0;
  const bool done = turn->load(std::memory_order_acquire) == kHandoffs;
  if (!done) kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  Unpin();
  munmap(mem, 4096);
  return done ? took * 1e9 / static_cast<double>(kHandoffs) : 0;
}

// Runs plans[i] in forked worker i, pinned to core i, attached on its own.
// `during` runs in the driver once they have all started.
std::string Launch(const std::vector<WorkerPlan>& plans, Control* ctl,
                   const std::function<void(const std::vector<pid_t>&)>& during) {
  ctl->ready.store(0);
  ctl->go.store(0);
  for (auto& r : ctl->res) r.Clear();
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> pids;
  for (size_t i = 0; i < plans.size(); ++i) {
    const pid_t pid = fork();
    if (pid < 0) {
      bench::Reap(&pids, NowS() + 5);
      return std::string("fork: ") + std::strerror(errno);
    }
    if (pid == 0) {
      Pin(static_cast<int>(i));
      WorkerResult* r = &ctl->res[i];
      std::string err = plans[i].b->Attach();
      if (!err.empty()) {
        r->failed = 1;
        std::snprintf(r->error, sizeof(r->error), "%s", err.c_str());
        _exit(3);
      }
      WorkerLoop(plans[i], ctl, r, true);
      plans[i].b->Detach();
      _exit(0);
    }
    pids.push_back(pid);
  }
  bool dead = false;  // a worker failed before it was ready
  const bool ready = bench::WaitFor(
      [&] {
        for (pid_t p : pids) dead |= bench::Exited(p);
        return dead || ctl->ready.load(std::memory_order_acquire) >= static_cast<int>(plans.size());
      },
      plans[0].warm_s + 30, 200e-6);
  if (dead || !ready) {
    for (pid_t p : pids) kill(p, SIGKILL);
    bench::Reap(&pids, NowS() + 5);
    for (size_t i = 0; i < plans.size(); ++i) {
      if (ctl->res[i].failed) return ctl->res[i].error;
    }
    return dead ? "a worker died before it started" : "workers did not start in time";
  }
  ctl->go_tick.store(TicksBegin(), std::memory_order_relaxed);
  ctl->go.store(1, std::memory_order_release);  // pairs with the acquire in WorkerLoop()
  if (during) during(pids);
  double run_s = 0;
  for (const auto& p : plans) run_s = std::max(run_s, p.run_s);
  return bench::Reap(&pids, NowS() + run_s + 60);
}

// ---------------------------------------------------------------- peers

struct Shape {
  std::string label;  // column name: "redis", "redis-p16"
  int procs;
  bool pipelined;
};

struct Peer {
  std::string name;
  std::function<std::unique_ptr<Backend>(bool evicting)> make;
  std::vector<Shape> shapes;
  std::string unavailable;  // why it cannot run at all
  // Per scenario:
  std::unique_ptr<Backend> main, evict;
  std::string skipped;  // why it does not run in this scenario
};

struct RunStats : Stats {
  bool ok = false;
  double max_batch_ns = 0;
  uint64_t unexpected = 0;
  std::string note;
};

uint64_t Unexpected(Kind k, const Outcome& o) {
  switch (k) {
    case Kind::kGetMiss:
      return o.found + o.errors;
    default:
      return o.not_found + o.errors;
  }
}

struct ScenarioDef {
  std::string id, label;
  uint64_t keys;
  uint32_t vlen;
  std::vector<std::string> workloads;
  bool stall = false;
};

std::string CountLabel(uint64_t n) {
  char b[32];
  if (n >= 1'000'000 && n % 1'000'000 == 0) {
    std::snprintf(b, sizeof(b), "%lluM", static_cast<unsigned long long>(n / 1'000'000));
  } else if (n >= 1000 && n % 1000 == 0) {
    std::snprintf(b, sizeof(b), "%lluk", static_cast<unsigned long long>(n / 1000));
  } else {
    std::snprintf(b, sizeof(b), "%llu", static_cast<unsigned long long>(n));
  }
  return b;
}

class Driver {
 public:
  explicit Driver(Options opt) : opt_(std::move(opt)) {
    void* mem =
        mmap(nullptr, sizeof(Control), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw std::runtime_error("mmap of the control page failed");
    ctl_ = new (mem) Control();
  }

  void Run(Report* rep) {
    rep_ = rep;
    MakePeers();
    std::vector<ScenarioDef> scenarios;
    std::vector<std::string> all;
    for (const auto& w : AllWorkloads()) all.push_back(w.name);
    const std::string k = CountLabel(opt_.keys);
    if (opt_.only == "stall") {
      scenarios.push_back({"main", k + " × 64 B", opt_.keys, 64, {}, true});
      rep->main_scenario = scenarios.back().label;
      for (const auto& sc : scenarios) RunScenario(sc);
      return;
    }
    if (!opt_.only_workloads.empty()) {  // some workloads of the main scenario alone
      scenarios.push_back({"main", k + " × 64 B", opt_.keys, 64, opt_.only_workloads});
      rep->main_scenario = scenarios.back().label;
      for (const auto& sc : scenarios) RunScenario(sc);
      return;
    }
    scenarios.push_back({"main", k + " × 64 B", opt_.keys, 64, all, true});
    rep->main_scenario = scenarios.back().label;
    scenarios.push_back({"v16", k + " × 16 B", opt_.keys, 16, {"get_hit", "set_update"}});
    scenarios.push_back({"v1k", k + " × 1 KiB", opt_.keys, 1024, {"get_hit", "set_update"}});
    if (opt_.big_keys > 0) {
      scenarios.push_back(
          {"big", CountLabel(opt_.big_keys) + " × 64 B", opt_.big_keys, 64, {"get_hit"}});
      rep->big_scenario = scenarios.back().label;
    }
    scenarios.push_back({"v16k", k + " × 16 KiB", opt_.keys, 16384, {"get_hit", "set_update"}});
    for (const auto& sc : scenarios) RunScenario(sc);
  }

 private:
  void Message(const std::string& m) {
    std::cerr << "bench_peers: " << m << "\n";
    rep_->messages.push_back(m);
  }

  bool Wanted(const std::string& name) const { return PeerWanted(opt_, name); }

  void MakePeers() {
    auto add = [&](std::string name, std::function<std::unique_ptr<Backend>(bool)> make,
                   std::vector<Shape> shapes, std::string unavailable) {
      if (!Wanted(name)) return;
      Peer p;
      p.name = std::move(name);
      p.make = std::move(make);
      p.shapes = std::move(shapes);
      p.unavailable = std::move(unavailable);
      if (!p.unavailable.empty()) Message(p.name + " does not run: " + p.unavailable);
      peers_.push_back(std::move(p));
    };
    const Options& o = opt_;
    add(
        "shmkv", [](bool) { return MakeShmkv(""); },
        {{"shmkv", 1, false}, {"shmkv-mget16", 1, true}, {"shmkv", 2, false}}, "");
    add(
        "shmkv-huge", [o](bool) { return MakeShmkv(o.huge_dir); },
        {{"shmkv-huge", 1, false}, {"shmkv-huge", 2, false}},
        o.huge_dir.empty() ? "no --huge-dir (scripts/bench.sh mounts one when run as root)" : "");
    add(
        "redis", [o](bool ev) { return MakeRedis(ev ? o.redis_evict_sock : o.redis_sock); },
        {{"redis", 1, false}, {"redis-p16", 1, true}, {"redis", 2, false}},
        o.redis_sock.empty() || o.redis_evict_sock.empty() ? "no --redis/--redis-evict socket"
                                                           : "");
    add(
        "memcached",
        [o](bool ev) { return MakeMemcached(ev ? o.memcached_evict_sock : o.memcached_sock); },
        {{"memcached", 1, false}, {"memcached-p16", 1, true}, {"memcached", 2, false}},
        o.memcached_sock.empty() || o.memcached_evict_sock.empty()
            ? "no --memcached/--memcached-evict socket"
            : "");
    add(
        "boost-ipc", [](bool) { return MakeBoostMap(); },
        {{"boost-ipc", 1, false}, {"boost-ipc", 2, false}}, "");
    add(
        "std-umap", [](bool) { return MakeStdMap(); }, {{"std-umap", 1, false}}, "");
    add(
        "absl-flat", [](bool) { return MakeFlatMap(); }, {{"absl-flat", 1, false}},
        MakeFlatMap() ? "" : "built without Abseil (libabsl-dev)");
    for (const Peer& p : peers_) {
      for (const Shape& s : p.shapes) {
        if (std::find(rep_->peers.begin(), rep_->peers.end(), s.label) == rep_->peers.end()) {
          rep_->peers.push_back(s.label);
        }
      }
    }
  }

  // Fills a store with the scenario's keys (and counters), then checks it.
  std::string Populate(Backend* b, const Dataset& d, bool counters) {
    if (std::string err = b->Attach(); !err.empty()) return err;
    std::vector<char> buf(d.vlen + 64);
    constexpr size_t kChunk = 128;
    Op ops[kChunk];
    Outcome o;
    auto flush = [&](size_t n) {
      b->Run(ops, n, b->CanPipeline(ops[0].type), buf.data(), buf.size(), &o);
    };
    size_t n = 0;
    for (uint64_t i = 0; i < d.n; ++i) {
      ops[n++] = {OpType::kSet, d.key(i), d.value(i, 0)};
      if (n == kChunk) flush(std::exchange(n, 0));
    }
    for (uint64_t i = 0; i < d.n_counters; ++i) {
      ops[n++] = {OpType::kSet, d.counter_key(i), "0"};
      if (n == kChunk) flush(std::exchange(n, 0));
    }
    if (counters) ops[n++] = {OpType::kSet, d.hot_key, "0"};
    if (n > 0) flush(n);
    std::string err;
    if (o.errors + o.not_found > 0) {
      err = "filling it failed for " + std::to_string(o.errors + o.not_found) + " keys";
    }
    // Every key must be there: a sample from both ends and the middle.
    Outcome check;
    const uint64_t sample = std::min<uint64_t>(d.n, 3000);
    for (uint64_t i = 0; i < sample && err.empty(); ++i) {
      const uint64_t k = i < sample / 3 ? i : i < 2 * sample / 3 ? d.n / 2 + i : d.n - 1 - i;
      Op op{OpType::kGet, d.key(k % d.n), {}};
      b->Run(&op, 1, false, buf.data(), buf.size(), &check);
    }
    if (err.empty() && check.found != sample) {
      err = "after filling, " + std::to_string(sample - check.found) + " of " +
            std::to_string(sample) + " sampled keys are missing";
    }
    b->Detach();
    return err;
  }

  // Fills an evicting store past its capacity with keys never used again.
  std::string Prefill(Backend* b, const Dataset& d) {
    if (std::string err = b->Attach(); !err.empty()) return err;
    std::vector<char> buf(d.vlen + 64);
    std::vector<char> keys(kBatch * kKeyLen);
    Op ops[kBatch];
    Outcome o;
    for (uint64_t i = 0; i < 2 * kEvictItems; i += kBatch) {
      for (size_t j = 0; j < kBatch; ++j) {
        FormatFreshKey(0, 0, i + j, &keys[j * kKeyLen]);
        ops[j] = {OpType::kSet, {&keys[j * kKeyLen], kKeyLen}, d.value(i + j, 0)};
      }
      b->Run(ops, kBatch, b->CanPipeline(OpType::kSet), buf.data(), buf.size(), &o);
    }
    b->Detach();
    if (o.errors + o.not_found > 0) {
      return "prefill: " + std::to_string(o.errors + o.not_found) + " sets failed";
    }
    return "";
  }

  bool Applicable(const Peer& p, const Shape& s, const Workload& w) const {
    if (!p.unavailable.empty() || !p.skipped.empty() || !p.main) return false;
    if (w.kind == Kind::kSetNew && !p.evict) return false;
    // A store that batches only gets (shmkv's mget) runs only read-only
    // workloads in its batched shape.
    const bool reads_only = w.kind == Kind::kGetHit || w.kind == Kind::kGetMiss ||
                            (w.kind == Kind::kYcsb && w.read_pct == 100);
    if (s.pipelined && !p.main->CanPipeline(OpType::kSet) && !reads_only) return false;
    // libmemcached waits for every incr reply: there is no pipelined incr.
    if (s.pipelined && w.kind == Kind::kIncrHot && !p.main->CanPipeline(OpType::kIncr)) {
      return false;
    }
    if (s.pipelined && w.kind == Kind::kIncrMany && !p.main->CanPipeline(OpType::kIncr)) {
      return false;
    }
    return true;
  }

  void OpenStores(const ScenarioDef& sc, const Dataset& d, bool counters, bool evict) {
    for (Peer& p : peers_) {
      p.main.reset();
      p.evict.reset();
      p.skipped.clear();
      if (!p.unavailable.empty()) continue;
      StoreSpec spec;
      spec.name = std::to_string(getpid()) + "-" + sc.id + "-" + p.name;
      spec.items = d.n + d.n_counters + 16;
      spec.key_len = kKeyLen;
      spec.value_len = d.vlen;
      auto main = p.make(false);
      const uint64_t need = main->EstimateBytes(spec);
      const uint64_t avail = MemAvailableBytes();
      const uint64_t reserve = (1ull << 30) + avail / 10;
      if (avail < need + reserve) {
        p.skipped = "needs ~" + std::to_string(need >> 20) + " MiB, " +
                    std::to_string(avail >> 20) + " MiB available";
        Message(p.name + " skipped in " + sc.label + ": " + p.skipped);
        continue;
      }
      const double t0 = NowS();
      std::string err = main->Open(spec);
      if (err.empty()) err = Populate(main.get(), d, counters);
      if (!err.empty()) {
        p.skipped = err;
        Message(p.name + " skipped in " + sc.label + ": " + err);
        main->Close();
        continue;
      }
      std::cerr << "bench_peers: " << sc.label << ": " << p.name << " filled in "
                << static_cast<int>((NowS() - t0) * 1000) << " ms\n";
      p.main = std::move(main);
      if (evict) {
        StoreSpec es = spec;
        es.name += "-evict";
        es.items = kEvictItems;
        es.evicting = true;
        es.evict_items = kEvictItems;
        auto ev = p.make(true);
        err = ev->Open(es);
        if (err.empty()) err = Prefill(ev.get(), d);
        if (!err.empty()) {
          Message(p.name + ": no set_new_evict in " + sc.label + ": " + err);
          ev->Close();
        } else {
          p.evict = std::move(ev);
        }
      }
    }
  }

  void CloseStores() {
    for (Peer& p : peers_) {
      if (p.main) p.main->Close();
      if (p.evict) p.evict->Close();
      p.main.reset();
      p.evict.reset();
    }
  }

  // Sets the hot counter to 0 before incr_hot, or reads it after.
  bool HotCounter(Backend* b, const Dataset& d, bool reset, int64_t* value) {
    const bool attach = !b->InProcess();
    if (attach && !b->Attach().empty()) return false;
    std::vector<char> buf(64, 0);
    Outcome o;
    bool ok;
    if (reset) {
      Op op{OpType::kSet, d.hot_key, "0"};
      b->Run(&op, 1, false, buf.data(), buf.size(), &o);
      ok = o.found == 1;
    } else {
      Op op{OpType::kGet, d.hot_key, {}};
      b->Run(&op, 1, false, buf.data(), buf.size(), &o);
      size_t len = 0;
      while (len < 24 && ((buf[len] >= '0' && buf[len] <= '9') || buf[len] == '-')) ++len;
      ok = o.found == 1 && ParseInt(std::string_view(buf.data(), len), value);
    }
    if (attach) b->Detach();
    return ok;
  }

  RunStats RunOne(const Dataset& d, Peer& p, const Shape& s, const Workload& w) {
    RunStats st;
    Backend* b = w.kind == Kind::kSetNew ? p.evict.get() : p.main.get();
    // Not CanPipeline: shmkv can batch gets too (shmkv_mget), and is still
    // timed 16 ops at a time like the other shared-memory stores.
    const bool server = b->RoundTrip();
    std::vector<WorkerPlan> plans(static_cast<size_t>(s.procs));
    for (int i = 0; i < s.procs; ++i) {
      WorkerPlan& pl = plans[static_cast<size_t>(i)];
      pl.wl = &w;
      pl.d = &d;
      pl.b = b;
      pl.proc = i;
      pl.procs = s.procs;
      pl.pipelined = s.pipelined;
      // A server round trip takes microseconds: time each one, unless pipelined.
      pl.batch = server && !s.pipelined ? 1 : kBatch;
      pl.warm_s = opt_.warm_s;
      pl.run_s = opt_.run_s;
      pl.run_id = ++run_id_;
    }
    if (w.kind == Kind::kIncrHot && !HotCounter(b, d, true, nullptr)) {
      st.note = "could not reset the hot counter";
      return st;
    }
    std::string err;
    if (b->InProcess()) {
      ctl_->res[0].Clear();
      Pin(0);
      WorkerLoop(plans[0], ctl_, &ctl_->res[0], false);
      Unpin();
    } else {
      err = Launch(plans, ctl_, nullptr);
    }
    if (!err.empty()) {
      st.note = err;
      return st;
    }
    Histogram h;
    h.Clear();
    Outcome o;
    uint64_t issued = 0, max_batch = 0, reinsert_errors = 0;
    for (int i = 0; i < s.procs; ++i) {
      const WorkerResult& r = ctl_->res[i];
      if (r.ticks == 0) {
        st.note = "a worker measured nothing";
        return st;
      }
      st.ops_per_s += OpsPerS(r.ops, r.ticks, g_ns_per_tick);
      h.Add(r.hist);
      o.Add(r.outcome);
      issued += r.issued;
      max_batch = std::max(max_batch, r.max_batch_ticks);
      reinsert_errors += r.reinsert_errors;
    }
    st.SetLatencies(h);
    st.max_batch_ns = static_cast<double>(max_batch) * g_ns_per_tick;
    st.unexpected = Unexpected(w.kind, o) + reinsert_errors;
    if (w.kind == Kind::kIncrHot) {
      int64_t v = -1;
      if (!HotCounter(b, d, false, &v)) {
        st.note = "could not read the hot counter";
        ++st.unexpected;
      } else if (static_cast<uint64_t>(v) != issued) {
        st.note =
            "hot counter " + std::to_string(v) + " after " + std::to_string(issued) + " increments";
        ++st.unexpected;
      }
    }
    st.ok = true;
    return st;
  }

  // One process writes hot keys without pause; the driver SIGSTOPs it again
  // and again, each time for stop_ms, wherever it is (almost always inside a
  // write, since it does nothing else); the other process runs YCSB A on the
  // same hot keys with every op timed on its own.
  void RunStall(const Dataset& d) {
    static const Workload writer{"stall_writer", Kind::kSetUpdate, 0, true};
    static const Workload victim{"stall_victim", Kind::kYcsb, 50, true};
    for (Peer& p : peers_) {
      if (p.name != "shmkv" && p.name != "boost-ipc") continue;
      StallResult res;
      res.peer = p.name;
      res.stops = opt_.stall_stops;
      res.stop_ms = opt_.stall_stop_ms;
      if (!p.main) {
        res.note = "not run: " + (p.unavailable.empty() ? p.skipped : p.unavailable);
        rep_->stalls.push_back(res);
        continue;
      }
      const double gap_ms = 20;
      const double run_s = opt_.stall_stops * (opt_.stall_stop_ms + gap_ms) / 1000.0 + 0.2;
      std::vector<WorkerPlan> plans(2);
      for (int i = 0; i < 2; ++i) {
        WorkerPlan& pl = plans[static_cast<size_t>(i)];
        pl.wl = i == 0 ? &writer : &victim;
        pl.d = &d;
        pl.b = p.main.get();
        pl.proc = i;
        pl.procs = 2;
        pl.batch = i == 0 ? kBatch : 1;
        pl.warm_s = opt_.warm_s;
        pl.run_s = run_s;
        pl.run_id = ++run_id_;
        pl.sample_every = i == 1 ? opt_.stall_sample_every : 0;
      }
      const Options& o = opt_;
      Control* ctl = ctl_;
      ctl->n_stops = 0;
      std::string err = Launch(plans, ctl, [&o, ctl, gap_ms](const std::vector<pid_t>& pids) {
        std::mt19937 rng(7);
        std::uniform_real_distribution<double> gap(0.5 * gap_ms, 1.5 * gap_ms);
        SleepS(0.05);
        for (int k = 0; k < o.stall_stops && k < 256; ++k) {
          SleepS(gap(rng) / 1000.0);
          ctl->stop_begin[k] = TicksBegin();
          kill(pids[0], SIGSTOP);
          ctl->victim_ops_begin[k] = __atomic_load_n(&ctl->res[1].ops, __ATOMIC_RELAXED);
          SleepS(o.stall_stop_ms / 1000.0);
          ctl->victim_ops_end[k] = __atomic_load_n(&ctl->res[1].ops, __ATOMIC_RELAXED);
          kill(pids[0], SIGCONT);
          ctl->stop_end[k] = TicksEnd();
          ctl->n_stops = k + 1;
        }
      });
      if (!err.empty()) {
        res.note = err;
      } else {
        const WorkerResult& r = ctl_->res[1];
        res.victim_ops = r.ops;
        res.p50 = r.hist.PercentileNs(50);
        res.p999 = r.hist.PercentileNs(99.9);
        res.max_ns = r.hist.MaxNs();
        // Slow ops that overlap a stop, and the others: machine noise (this
        // machine is shared; a pinned process can still be preempted). Each
        // as timed and less the runqueue wait that fell inside it.
        std::vector<double> worst_in_stop(static_cast<size_t>(ctl->n_stops), 0.0);
        std::vector<double> worst_on_cpu_in_stop(worst_in_stop.size(), 0.0);
        for (uint32_t i = 0; i < r.n_slow; ++i) {
          const SlowOp& s = r.slow[i];
          SlowOpInfo a = Attribute(s);
          for (int k = 0; k < ctl->n_stops; ++k) {
            if (s.start < ctl->stop_end[k] && s.start + s.ticks > ctl->stop_begin[k]) {
              a.during_stop = true;
              double& w = worst_in_stop[static_cast<size_t>(k)];
              w = std::max(w, a.ns);
              double& c = worst_on_cpu_in_stop[static_cast<size_t>(k)];
              c = std::max(c, a.on_cpu_ns);
            }
          }
          if (a.during_stop) {
            double& m = a.get ? res.during_get_max : res.during_set_max;
            m = std::max(m, a.ns);
            if (a.ns > res.during_worst.ns) res.during_worst = a;
            if (a.on_cpu_ns > res.during_on_cpu_max) {
              res.during_on_cpu_max = a.on_cpu_ns;
              res.during_worst_on_cpu = a;
            }
            res.during_over_1ms += a.ns > 1e6;
            res.during_over_1ms_on_cpu += a.on_cpu_ns > 1e6;
            ++res.during_slow;
            res.during_slow_preempted += a.preempted;
          } else {
            res.outside_max = std::max(res.outside_max, a.ns);
            res.outside_on_cpu_max = std::max(res.outside_on_cpu_max, a.on_cpu_ns);
            res.outside_over_1ms += a.ns > 1e6;
            res.outside_over_1ms_on_cpu += a.on_cpu_ns > 1e6;
            ++res.outside_slow;
            res.outside_slow_preempted += a.preempted;
          }
          // Listed: the ops during a stop > 1 ms, and those > 100 µs that
          // preemption does not explain.
          if (a.during_stop && (a.ns > 1e6 || !a.preempted) && res.listed.size() < 32) {
            res.listed.push_back(a);
          }
        }
        for (double w : worst_in_stop) res.stops_over_1ms += w > 1e6;
        for (double w : worst_on_cpu_in_stop) res.stops_over_1ms_on_cpu += w > 1e6;
        res.slow_truncated = r.n_slow == std::size(r.slow);
        res.sample_every = plans[1].sample_every;
        if (r.sched_source != SchedProbe::kNone) {
          res.sched_source = r.sched_source == SchedProbe::kSchedstat
                                 ? "schedstat run_delay, getrusage"
                                 : "getrusage only (no /proc/thread-self/schedstat)";
          // The cost: the readings' time over the victim's run, an
          // interrupted reading counted as a typical one.
          res.samples = r.samples;
          res.samples_long = r.samples_long;
          const uint64_t typical = r.samples - r.samples_long;
          if (typical > 0 && r.run_ticks > 0) {
            res.sample_ns =
                static_cast<double>(r.sample_ticks) * g_ns_per_tick / static_cast<double>(typical);
            res.sample_cost = res.sample_ns * static_cast<double>(r.samples) /
                              (static_cast<double>(r.run_ticks) * g_ns_per_tick);
          }
          res.run_delay_ns =
              static_cast<double>(r.sched_last.run_delay_ns - r.sched_first.run_delay_ns);
          res.nivcsw = r.sched_last.nivcsw - r.sched_first.nivcsw;
          res.nvcsw = r.sched_last.nvcsw - r.sched_first.nvcsw;
          res.yields = r.sched_last.yields - r.sched_first.yields;
        }
        // Progress: the victim's ops/s while the writer was stopped, and
        // while it was not (the rest of the measured time).
        uint64_t ops_during = 0;
        double s_during = 0;
        for (int k = 0; k < ctl->n_stops; ++k) {
          ops_during += ctl->victim_ops_end[k] - ctl->victim_ops_begin[k];
          s_during +=
              static_cast<double>(ctl->stop_end[k] - ctl->stop_begin[k]) * g_ns_per_tick * 1e-9;
        }
        if (s_during > 0 && run_s > s_during) {
          res.rate_during = static_cast<double>(ops_during) / s_during;
          res.rate_outside = static_cast<double>(r.ops - ops_during) / (run_s - s_during);
        }
        const uint64_t bad = Unexpected(Kind::kYcsb, r.outcome);
        if (bad > 0) res.note = std::to_string(bad) + " victim ops failed";
      }
      rep_->stalls.push_back(res);
      const SlowOpInfo& w = res.during_worst;
      std::fprintf(stderr,
                   "bench_peers: stall test %s: victim max %.0f ns; worst op during a stop "
                   "%.0f ns (runqueue wait in its bracket %.0f ns, %llu involuntary switches, "
                   "%s), less runqueue wait %.0f ns; sampling %.2f %% of the run %s\n",
                   p.name.c_str(), res.max_ns, w.ns, w.run_delay_ns,
                   static_cast<unsigned long long>(w.nivcsw),
                   !w.bracketed  ? "not bracketed"
                   : w.preempted ? "preempted"
                                 : "not preempted",
                   res.during_on_cpu_max, res.sample_cost * 100, res.note.c_str());
    }
  }

  // What the scheduling counters say about a slow op: see SchedProbe.
  static SlowOpInfo Attribute(const SlowOp& s) {
    SlowOpInfo a;
    a.get = s.type == OpType::kGet;
    a.ns = static_cast<double>(s.ticks) * g_ns_per_tick;
    a.on_cpu_ns = a.ns;
    if (s.bracket_ticks == 0) return a;
    a.bracketed = true;
    a.bracket_ns = static_cast<double>(s.bracket_ticks) * g_ns_per_tick;
    a.run_delay_ns = static_cast<double>(s.run_delay_ns);
    a.nivcsw = s.nivcsw;
    a.nvcsw = s.nvcsw;
    a.yields = s.yields;
    if (s.yields > 0) return a;  // its runqueue wait may be a yield's: subtract nothing
    // Switched out against its will. Runqueue wait without that is the wait
    // to get a CPU back after sleeping (boost-ipc's lock): subtracted too.
    a.preempted = s.nivcsw > 0;
    // At most bracket - op of the bracket's wait lies outside the op.
    const double outside = std::max(0.0, a.bracket_ns - a.ns);
    a.waited_ns = std::clamp(a.run_delay_ns - outside, 0.0, a.ns);
    a.on_cpu_ns = a.ns - a.waited_ns;
    return a;
  }

  void RunScenario(const ScenarioDef& sc) {
    const double t0 = NowS();
    std::vector<const Workload*> wls;
    bool zipf = false, counters = false, evict = false;
    for (const auto& name : sc.workloads) {
      for (const auto& w : AllWorkloads()) {
        if (w.name != name) continue;
        wls.push_back(&w);
        zipf |= w.zipf;
        counters |= w.kind == Kind::kIncrHot || w.kind == Kind::kIncrMany;
        evict |= w.kind == Kind::kSetNew;
      }
    }
    zipf |= sc.stall;
    Dataset d;
    BuildDataset(&d, sc.keys, sc.vlen, counters, zipf);
    std::cerr << "bench_peers: " << sc.label << ": data ready\n";
    OpenStores(sc, d, counters, evict);

    // results[workload][peer index][shape index] = one RunStats per rep
    std::map<std::tuple<size_t, size_t, size_t>, std::vector<RunStats>> results;
    for (int rep = 0; rep < opt_.reps && !wls.empty(); ++rep) {
      for (size_t wi = 0; wi < wls.size(); ++wi) {
        for (int procs = 1; procs <= 2; ++procs) {
          for (size_t pi = 0; pi < peers_.size(); ++pi) {
            Peer& p = peers_[pi];
            for (size_t si = 0; si < p.shapes.size(); ++si) {
              const Shape& s = p.shapes[si];
              if (s.procs != procs || !Applicable(p, s, *wls[wi])) continue;
              RunStats st = RunOne(d, p, s, *wls[wi]);
              if (!st.ok) {
                Message(sc.label + " " + wls[wi]->name + " " + s.label + " x" +
                        std::to_string(procs) + ": " + st.note);
              }
              results[{wi, pi, si}].push_back(std::move(st));
            }
          }
        }
      }
      std::cerr << "bench_peers: " << sc.label << ": repetition " << rep + 1 << " of " << opt_.reps
                << " done at " << static_cast<int>(NowS() - t0) << " s\n";
    }
    if (sc.stall) RunStall(d);
    if (sc.id == "main" && !opt_.smoke) {
      // What the main scenario's GETs pay per dependent load: the probe
      // over buffers around the size of the shmkv store's working set
      // (the index sized as its backend sizes it, the blocks of the items).
      const uint64_t block = (48 + 16 + sc.vlen + 63) / 64 * 64;
      rep_->shmkv_index_bytes = ShmkvIndexBytes(sc.keys);
      rep_->shmkv_block_bytes = sc.keys * block;
      for (uint64_t mib : {1, 2, 4, 8, 16, 32, 64}) {
        rep_->chase_by_size.push_back({mib << 20, PointerChaseNs(mib << 20)});
      }
      rep_->handoff_ns = LineHandoffNs();
    }
    if (sc.id == "big") {
      rep_->chase_bytes = std::min<uint64_t>(1ull << 30, MemAvailableBytes() / 4);
      rep_->chase_ns = PointerChaseNs(rep_->chase_bytes);
    }
    CloseStores();

    for (size_t wi = 0; wi < wls.size(); ++wi) {
      for (int procs = 1; procs <= 2; ++procs) {
        for (size_t pi = 0; pi < peers_.size(); ++pi) {
          const Peer& p = peers_[pi];
          for (size_t si = 0; si < p.shapes.size(); ++si) {
            const Shape& s = p.shapes[si];
            if (s.procs != procs) continue;
            Row row;
            row.scenario = sc.label;
            row.keys = sc.keys;
            row.value_len = sc.vlen;
            row.workload = wls[wi]->name;
            row.procs = procs;
            row.peer = s.label;
            auto it = results.find({wi, pi, si});
            if (it == results.end()) {
              if (!p.unavailable.empty() || !p.skipped.empty()) continue;
              row.note = "n/a";
              rep_->rows.push_back(row);
              continue;
            }
            Summarize(it->second, &row);
            rep_->rows.push_back(row);
          }
        }
      }
    }
    std::cerr << "bench_peers: " << sc.label << ": done in " << static_cast<int>(NowS() - t0)
              << " s\n";
  }

  static void Summarize(const std::vector<RunStats>& runs, Row* row) {
    std::vector<Stats> ran;
    std::set<std::string> notes;
    for (const RunStats& r : runs) {
      if (!r.note.empty()) notes.insert(r.note);
      row->unexpected += r.unexpected;
      if (r.ok) ran.push_back(r);
    }
    row->reps = static_cast<int>(ran.size());
    static_cast<Stats&>(*row) = Medians(ran);
    for (const auto& n : notes) row->note += (row->note.empty() ? "" : "; ") + n;
  }

  Options opt_;
  Control* ctl_ = nullptr;
  Report* rep_ = nullptr;
  std::vector<Peer> peers_;
  uint64_t run_id_ = 0;
};

std::string MachineLine() {
  std::string model = "unknown CPU";
  std::ifstream cpu("/proc/cpuinfo");
  for (std::string line; std::getline(cpu, line);) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  uint64_t mem_kb = 0;
  std::ifstream mi("/proc/meminfo");
  for (std::string line; std::getline(mi, line);) {
    if (line.rfind("MemTotal:", 0) == 0) mem_kb = std::stoull(line.substr(9));
  }
  utsname u{};
  uname(&u);
  char b[512];
  std::snprintf(b, sizeof(b), "%s, %u cores, %.1f GiB RAM, Linux %s", model.c_str(),
                std::thread::hardware_concurrency(), static_cast<double>(mem_kb) / (1 << 20),
                u.release);
  return b;
}

bool ParseArgs(int argc, char** argv, Options* o) {
  if (bench::Flags::Has(argc, argv, "--smoke")) {
    o->smoke = true;
    o->keys = 10'000;
    o->big_keys = 0;
    o->reps = 1;
    o->run_s = 0.04;
    o->warm_s = 0.01;
    o->memory_items = {100'000};
    o->callgrind_ops = 10'000;
    o->stall_stops = 3;
    o->stall_stop_ms = 20;
  }
  const bool parsed = bench::Flags("bench_peers")
                          .Switch("--smoke", &o->smoke)
                          .Text("--redis", &o->redis_sock)
                          .Text("--redis-evict", &o->redis_evict_sock)
                          .Text("--memcached", &o->memcached_sock)
                          .Text("--memcached-evict", &o->memcached_evict_sock)
                          .Text("--out", &o->out_dir)
                          .Text("--commit", &o->commit)
                          .Text("--peers", &o->peers)
                          .Text("--huge-dir", &o->huge_dir)
                          .Int("--reps", &o->reps)
                          .Number("--run-ms", &o->run_s, 1000)
                          .Number("--warm-ms", &o->warm_s, 1000)
                          .Count("--keys", &o->keys)
                          .Count("--big-keys", &o->big_keys)
                          .Count("--callgrind-ops", &o->callgrind_ops)
                          .Text("--callgrind-op", &o->callgrind_op)
                          .Count("--callgrind-keys", &o->callgrind_keys)
                          .Text("--only", &o->only)
                          .Int("--stall-sample-every", &o->stall_sample_every)
                          .Parse(&argc, argv);
  if (!parsed) return false;
  if (o->only.rfind("main:", 0) == 0) {
    std::stringstream ss(o->only.substr(5));
    for (std::string w; std::getline(ss, w, ',');) {
      const auto& all = AllWorkloads();
      if (std::none_of(all.begin(), all.end(), [&](const Workload& x) { return x.name == w; })) {
        std::cerr << "bench_peers: --only=main: no workload named '" << w << "'\n";
        return false;
      }
      o->only_workloads.push_back(w);
    }
    if (o->only_workloads.empty()) {
      std::cerr << "bench_peers: --only=main: name at least one workload\n";
      return false;
    }
  } else if (!o->only.empty() && o->only != "stall" && o->only != "memory") {
    std::cerr << "bench_peers: --only is stall, memory or main:WORKLOAD[,WORKLOAD...]\n";
    return false;
  }
  if (o->stall_sample_every < 0) {
    std::cerr << "bench_peers: --stall-sample-every >= 0, please\n";
    return false;
  }
  if (o->reps < 1 || o->keys < 1000 || o->run_s <= 0) {
    std::cerr << "bench_peers: --reps >= 1, --keys >= 1000 and --run-ms > 0, please\n";
    return false;
  }
  return true;
}

int Main(int argc, char** argv) {
  Options opt;
  if (!ParseArgs(argc, argv, &opt)) return 2;
  if (!opt.callgrind_op.empty()) return CallgrindChild(opt);
  const double t0 = NowS();
  signal(SIGPIPE, SIG_IGN);
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) g_cpus.push_back(c);
    }
  }
  if (g_cpus.size() < 2) {
    std::cerr << "bench_peers: warning: fewer than 2 cores; 2-process runs share one\n";
  }
  g_ns_per_tick = CalibrateNsPerTick(opt.smoke ? 20 : 100);
  g_ticks_per_s = 1e9 / g_ns_per_tick;

  Report rep;
  rep.opt = opt;
  rep.mode = opt.smoke ? "smoke" : "full";
  rep.date = bench::LocalDate();
  rep.machine = MachineLine();
  std::cerr << "bench_peers: " << rep.mode << " run on " << rep.machine << "; TSC "
            << 1.0 / g_ns_per_tick << " GHz\n";

  if (opt.only.empty() || opt.only == "memory") rep.memory = MeasureMemory(opt, &rep.messages);
  if (opt.only.empty()) rep.callgrind = MeasureCallgrind(opt, &rep.messages);
  if (opt.only != "memory") {
    Driver driver(opt);
    driver.Run(&rep);
  }
  rep.total_s = NowS() - t0;

  std::string md;
  WriteReport(rep, &md);
  std::cout << md;
  return 0;
}

}  // namespace
}  // namespace peers

int main(int argc, char** argv) { return bench::RunMain("bench_peers", peers::Main, argc, argv); }

// Takes the place of libc's sched_yield() for the whole program, libshmkv.so
// included (the executable's definition comes first in the lookup), to count
// the yields: see SchedProbe. The same system call.
extern "C" int sched_yield() noexcept {
  ++peers::t_yields;
  return static_cast<int>(syscall(SYS_sched_yield));
}
