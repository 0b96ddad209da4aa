// The near-cache tier end to end: two segments stand for two hosts, each
// with its own real shmkvd --upstream (--prefix k:, --upstream-max-lag 1s,
// --upstream-ping 50ms) and NearCache clients, in front of one real
// redis-server. Checks the GUARANTEES of near_cache.h:
//   - a write on host A is seen on host B once the invalidation has
//     travelled: the delay from A's Set returning to B's Get returning the
//     new value is measured over 300 writes and printed, each below
//     max-lag;
//   - a key deleted, or expired, in Redis by a plain client leaves both
//     segments;
//   - host B's stream lost (its subscriber or its tracking connection
//     killed in Redis): B bypasses its segment, flushes it and comes back
//     UP, with no stale read meanwhile; host A keeps its stream;
//   - Redis restarted without its data: both hosts flush and serve what
//     Redis has now, never their old copies;
//   - a randomized workload of 2 hosts x 2 forked processes, whose history
//     is checked (stale_reads.h): no value from the future, no stale read
//     on the host of a newer write, none older than max-lag anywhere. The
//     same check catches the stale copies that a stopped daemon with a
//     max-lag of an hour lets its host serve.
//
// Each test has its own redis-server, segments, daemons and temporary
// directory (the daemons' logs). Every child (redis-server, shmkvd, the
// workers) is forked with PR_SET_PDEATHSIG, so a test killed by its timeout
// leaves none of them behind; TearDown stops the daemons and removes the
// segments whatever failed. No sleeps as synchronisation: every wait polls
// a condition until a deadline (the workload runs for a fixed time).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <new>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "shmkv/cache.h"
#include "shmkv/near_cache.h"
#include "shmkv/shmkv.h"
#include "stale_reads.h"
#include "support/redis_server.h"

namespace shmkv::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using std::chrono::nanoseconds;

constexpr char kPrefix[] = "k:";
constexpr std::chrono::milliseconds kMaxLag = 1s;  // the guarantee under test
constexpr auto kTimeout = 10s;

// CLOCK_MONOTONIC: one clock for every process of the machine.
int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Polls until done() holds (true) or the timeout passes (false). Between
// polls it yields (spin) or waits a millisecond.
bool WaitFor(const std::function<bool()>& done, Clock::duration timeout = kTimeout,
             bool spin = false) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return done();
    if (spin) {
      sched_yield();
    } else {
      std::this_thread::sleep_for(1ms);
    }
  }
}

// fork() for a child that must not outlive the test: the kernel kills it
// (PR_SET_PDEATHSIG) when the thread that forked it goes. 0 in the child.
pid_t ForkTied() {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the test died before prctl()
  }
  return pid;
}

std::string Str(const Result<std::string>& r) {
  return r ? *r : "<error: " + r.error().message() + ">";
}

std::string UniqueSegment(const std::string& host) {
  static int n = 0;
  return "shmkv-test-hosts-" + std::to_string(getpid()) + "-" + std::to_string(n++) + "-" + host;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// shmkvd as a child of the test, its output appended to a log file.
class Daemon {
 public:
  Daemon() = default;
  ~Daemon() { Kill(); }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  bool Start(const std::vector<std::string>& args, const std::string& log) {
    log_ = log;
    std::vector<std::string> strings = {SHMKVD_PATH};
    strings.insert(strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& s : strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    const pid_t pid = ForkTied();
    if (pid < 0) return false;
    if (pid == 0) {
      const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      const int in = open("/dev/null", O_RDONLY);
      if (out < 0 || in < 0) _exit(127);
      dup2(in, STDIN_FILENO);
      dup2(out, STDOUT_FILENO);
      dup2(out, STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    pid_ = pid;
    return true;
  }
  bool running() const { return pid_ > 0; }
  // Reaps the daemon if it has exited; true then.
  bool Exited() {
    if (pid_ <= 0) return true;
    if (waitpid(pid_, &status_, WNOHANG) != pid_) return false;
    pid_ = -1;
    return true;
  }
  void Signal(int sig) const {
    if (pid_ > 0) kill(pid_, sig);
  }
  // SIGTERM (after SIGCONT, in case it is stopped); its wait status, or
  // nullopt if it has not exited within the timeout (then it is killed).
  std::optional<int> Stop() {
    if (pid_ <= 0) return std::nullopt;
    Signal(SIGCONT);
    Signal(SIGTERM);
    if (!WaitFor([&] { return Exited(); })) {
      Kill();
      return std::nullopt;
    }
    return status_;
  }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  std::string Log() const { return ReadFile(log_); }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  std::string log_;
};

// One host: its segment, its daemon, and the test's own client on it.
struct Host {
  explicit Host(std::string n) : name(std::move(n)) {}
  std::string name;  // "A", "B"
  std::string segment;
  Daemon daemon;
  std::optional<Cache> cache;  // the segment itself: the state, raw reads
  std::optional<NearCache> nc;
};

// The randomized workload (ARandomizedWorkloadOfTwoHostsHasNoStaleReads).
constexpr int kHosts = 2;
constexpr int kWorkersPerHost = 2;
constexpr int kWorkers = kHosts * kWorkersPerHost;
constexpr int kKeys = 20;
constexpr size_t kMaxEvents = 400'000;  // per worker; it stops when full

struct WorkerSlot {
  std::atomic<uint64_t> events{0};
  std::atomic<int> state{0};  // 0 running, 1 done, -1 failed (error says why)
  NearCacheStats stats;
  char error[256] = {};
};

// At the start of a MAP_SHARED mapping made before the workers are
// forked, followed by kMaxEvents events per worker (zero pages until
// written). Each worker writes only its own slot and events.
struct Shared {
  std::atomic<int> ready{0};
  std::atomic<int64_t> stop_ns{0};
  std::atomic<int64_t> start_ns{0};  // set last: the start signal
  WorkerSlot workers[kWorkers];
};
constexpr size_t kEventsOffset = (sizeof(Shared) + 63) / 64 * 64;
constexpr size_t kMappingSize = kEventsOffset + sizeof(HistoryEvent) * kMaxEvents * kWorkers;

HistoryEvent* EventsOf(Shared* shared, int worker) {
  return reinterpret_cast<HistoryEvent*>(reinterpret_cast<char*>(shared) + kEventsOffset) +
         kMaxEvents * static_cast<size_t>(worker);
}

struct WorkloadOptions {
  std::chrono::milliseconds duration{3000};
  // Host B's workers only Get, one every b_read_every (local hits are
  // fast: unpaced, they would fill their logs within a fraction of a
  // second).
  bool b_reads_only = false;
  std::chrono::microseconds b_read_every{100};
};

struct WorkloadResult {
  std::vector<HistoryEvent> history;
  NearCacheStats stats[kHosts];
  uint64_t seed = 0;
};

std::string WorkloadKey(int key) { return std::string(kPrefix) + "e:" + std::to_string(key); }

std::string WorkloadValue(uint32_t writer, uint32_t seq) {
  return "p" + std::to_string(writer) + "." + std::to_string(seq);
}

// "p<writer>.<seq>" back into the event; false for anything else.
bool ParseWorkloadValue(std::string_view v, HistoryEvent* e) {
  if (v.size() < 4 || v[0] != 'p') return false;
  const char* end = v.data() + v.size();
  auto r = std::from_chars(v.data() + 1, end, e->writer);
  if (r.ec != std::errc() || r.ptr == end || *r.ptr != '.') return false;
  r = std::from_chars(r.ptr + 1, end, e->seq);
  return r.ec == std::errc() && r.ptr == end && e->writer != 0;
}

// The body of a forked worker: its own NearCache on its host's segment,
// random operations until the stop time, each recorded with its start and
// end. Never returns (the child must not run the test's destructors).
// With read_every > 0 it only reads, one Get every read_every.
[[noreturn]] void RunWorker(Shared* shared, int w, int host, const std::string& segment,
                            std::chrono::microseconds read_every, uint64_t seed) {
  WorkerSlot& me = shared->workers[w];
  auto fail = [&](const std::string& why) {
    std::snprintf(me.error, sizeof(me.error), "%s", why.c_str());
    me.state.store(-1);
    _exit(1);
  };
  std::string error;
  Result<NearCache> nc = NearCache::Open(segment, {}, &error);
  if (!nc) fail("NearCache::Open: " + error);
  shared->ready.fetch_add(1);
  if (!WaitFor([&] { return shared->start_ns.load() != 0; }, kTimeout, /*spin=*/true))
    fail("no start signal");
  const int64_t stop = shared->stop_ns.load();
  std::mt19937_64 rng(seed);
  uint32_t seq = 0;
  HistoryEvent* log = EventsOf(shared, w);
  size_t n = 0;
  const bool reads_only = read_every.count() > 0;
  int64_t next = NowNs();
  while (n < kMaxEvents && NowNs() < stop) {
    if (reads_only) {  // pacing, not synchronisation
      next += nanoseconds(read_every).count();
      const timespec at{static_cast<time_t>(next / 1'000'000'000),
                        static_cast<long>(next % 1'000'000'000)};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, nullptr) == EINTR) {
      }
    }
    HistoryEvent e;
    e.process = static_cast<uint16_t>(w + 1);
    e.host = static_cast<uint8_t>(host);
    e.key = static_cast<uint8_t>(rng() % kKeys);
    const std::string key = WorkloadKey(e.key);
    const uint64_t dice = rng() % 100;
    if (reads_only || dice < 70) {
      e.op = HistoryOp::kGet;
      e.start_ns = NowNs();
      const Result<std::string> r = nc->Get(key);
      e.end_ns = NowNs();
      if (r) {
        e.status = ParseWorkloadValue(*r, &e) ? HistoryStatus::kOk : HistoryStatus::kGarbage;
      } else {
        e.status = r.error() == Errc::kNotFound ? HistoryStatus::kAbsent : HistoryStatus::kError;
      }
    } else if (dice < 95) {
      e.op = HistoryOp::kSet;
      e.writer = e.process;
      e.seq = ++seq;
      const std::string value = WorkloadValue(e.writer, e.seq);
      e.start_ns = NowNs();
      const std::error_code ec = nc->Set(key, value);
      e.end_ns = NowNs();
      e.status = ec ? HistoryStatus::kError : HistoryStatus::kOk;
    } else {
      e.op = HistoryOp::kDelete;
      e.start_ns = NowNs();
      const std::error_code ec = nc->Delete(key);
      e.end_ns = NowNs();
      e.status = !ec                     ? HistoryStatus::kOk
                 : ec == Errc::kNotFound ? HistoryStatus::kAbsent
                                         : HistoryStatus::kError;
    }
    log[n++] = e;
    me.events.store(n, std::memory_order_relaxed);  // read after waitpid()
  }
  me.stats = nc->stats();
  me.state.store(1);
  _exit(0);
}

std::string Percentiles(std::vector<int64_t> ns) {
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    return ns[static_cast<size_t>(q * static_cast<double>(ns.size() - 1))];
  };
  char buf[160];
  std::snprintf(buf, sizeof(buf), "p50 %lld us, p90 %lld us, p99 %lld us, max %lld us",
                static_cast<long long>(at(0.5) / 1000), static_cast<long long>(at(0.9) / 1000),
                static_cast<long long>(at(0.99) / 1000), static_cast<long long>(ns.back() / 1000));
  return buf;
}

std::string Examples(const StaleReadReport& r) {
  std::string s;
  for (const std::string& e : r.examples) s += "\n  " + e;
  return s;
}

class TwoHostsTest : public ::testing::Test {
 protected:
  explicit TwoHostsTest(std::string b_max_lag = "1s") : b_max_lag_(std::move(b_max_lag)) {}

  void SetUp() override {
    if (!RedisServer::Installed()) GTEST_SKIP() << "redis-server is not installed";
    std::string dir = (std::filesystem::temp_directory_path() / "shmkv-hosts-XXXXXX").string();
    ASSERT_NE(mkdtemp(dir.data()), nullptr);
    dir_ = dir;
    ASSERT_TRUE(redis_.Start()) << redis_.error();
    StartHost(&a_, "1s");
    if (HasFatalFailure()) return;
    StartHost(&b_, b_max_lag_);
  }

  void TearDown() override {
    for (pid_t pid : workers_) {
      if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    }
    for (Host* h : {&a_, &b_}) {
      h->nc.reset();
      h->cache.reset();
      if (h->daemon.running()) {
        const std::optional<int> status = h->daemon.Stop();
        EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
            << "host " << h->name << "'s shmkvd did not exit 0 on SIGTERM:\n"
            << h->daemon.Log();
      }
      if (!h->segment.empty()) (void)Cache::Unlink(h->segment);
    }
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

  // Starts the host's daemon, which creates its segment, and waits until
  // the segment publishes UP; then opens the test's client on it.
  void StartHost(Host* h, const std::string& max_lag) {
    h->segment = UniqueSegment(h->name);
    (void)Cache::Unlink(h->segment);
    ASSERT_TRUE(h->daemon.Start(
        {"--segment", h->segment, "--create", "--memory", "16M", "--upstream", redis_.url(),
         "--prefix", kPrefix, "--upstream-max-lag", max_lag, "--upstream-ping", "50ms"},
        dir_ + "/shmkvd-" + h->name + ".log"));
    const bool up = WaitFor([&] {
      if (h->daemon.Exited()) return true;
      if (!h->cache) {
        Result<Cache> c = Cache::Open(h->segment);
        if (!c) return false;
        h->cache.emplace(std::move(*c));
      }
      return State(*h) == SHMKV_UPSTREAM_UP;
    });
    ASSERT_TRUE(up && h->daemon.running()) << "host " << h->name << " not UP within 10 s:\n"
                                           << h->daemon.Log();
    std::string error;
    Result<NearCache> nc = NearCache::Open(h->segment, {}, &error);
    ASSERT_TRUE(nc) << error;
    h->nc.emplace(std::move(*nc));
  }

  // The effective state the host's clients read (and its generation).
  uint32_t State(Host& h, uint64_t* generation = nullptr) {
    uint32_t state = SHMKV_UPSTREAM_NONE;
    uint64_t g = 0;
    EXPECT_EQ(shmkv_upstream_state(h.cache->c_handle(), &state, &g), 0);
    if (generation != nullptr) *generation = g;
    return state;
  }
  // Waits until the host has lost its stream and synced again since
  // generation g0 (DOWN and UP are one publication each).
  bool WaitForResync(Host& h, uint64_t g0) {
    return WaitFor([&] {
      uint64_t g = 0;
      return State(h, &g) == SHMKV_UPSTREAM_UP && g >= g0 + 2;
    });
  }
  // The copy in the host's segment (a placeholder is no copy).
  std::optional<std::string> Local(Host& h, const std::string& key) {
    std::string value;
    ItemInfo info;
    if (h.cache->Get(key, &value, &info) || info.user_flags == SHMKV_UPSTREAM_PLACEHOLDER)
      return std::nullopt;
    return value;
  }
  // One Get on the host that returned `value` from its segment.
  bool ServedLocally(Host& h, const std::string& key, const std::string& value) {
    const uint64_t hits = h.nc->stats().local_hits;
    const Result<std::string> r = h.nc->Get(key);
    return r && *r == value && h.nc->stats().local_hits == hits + 1;
  }
  // Gets until one is served from the segment with `value`.
  bool CachedOn(Host& h, const std::string& key, const std::string& value) {
    return WaitFor([&] { return ServedLocally(h, key, value); });
  }
  // Waits until the host's daemon has applied the invalidation of every
  // write acknowledged before this call: its heartbeat (the send time of a
  // PING answered behind those invalidations) is newer than the call. A
  // copy cached after that cannot be dropped by an invalidation of an
  // earlier write arriving late.
  bool CaughtUp(Host& h) {
    const auto start = std::chrono::steady_clock::now();
    return WaitFor([&] {
      shmkv_upstream_t u;
      u.struct_size = sizeof(u);
      if (shmkv_upstream_get(h.cache->c_handle(), &u) != 0) return false;
      const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - start)
                               .count();
      return u.heartbeat_age_ms != UINT64_MAX &&
             u.heartbeat_age_ms + 1 < static_cast<uint64_t>(elapsed);
    });
  }
  // A command of a plain Redis client (not a near cache).
  upstream::RedisReplyPtr Plain(const std::vector<std::string_view>& args) {
    upstream::RedisReplyPtr r = redis_.Command(args);
    EXPECT_TRUE(r != nullptr && r->type != REDIS_REPLY_ERROR)
        << args[0] << ": " << (r != nullptr ? std::string(r->str, r->len) : "no reply");
    return r;
  }
  // The id in Redis of the host's subscriber connection, from the last
  // "invalidations to client N" of its daemon's log; 0 if none.
  long long SubscriberId(Host& h) {
    const std::string log = h.daemon.Log();
    const std::string mark = "invalidations to client ";
    const size_t at = log.rfind(mark);
    long long id = 0;
    if (at != std::string::npos) {
      const char* p = log.data() + at + mark.size();
      std::from_chars(p, log.data() + log.size(), id);
    }
    return id;
  }
  // The id of the connection whose tracking redirects to `subscriber`
  // (CLIENT LIST's redir=); 0 if none.
  long long TrackingId(long long subscriber) {
    upstream::RedisReplyPtr list = Plain({"CLIENT", "LIST"});
    if (list == nullptr || list->type != REDIS_REPLY_STRING) return 0;
    std::istringstream lines(std::string(list->str, list->len));
    const std::string redir = " redir=" + std::to_string(subscriber) + " ";
    for (std::string line; std::getline(lines, line);) {
      if (line.find(redir) != std::string::npos && line.rfind("id=", 0) == 0)
        return std::stoll(line.substr(3));
    }
    return 0;
  }

  // Runs the workload of 2 hosts x 2 forked workers (each with its own
  // NearCache) and collects its history.
  void RunWorkload(const WorkloadOptions& o, WorkloadResult* out) {
    void* mem =
        mmap(nullptr, kMappingSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem, MAP_FAILED);
    struct Unmap {
      void* p;
      ~Unmap() { munmap(p, kMappingSize); }
    } unmap{mem};
    Shared* shared = new (mem) Shared;
    out->seed = std::random_device{}();
    std::printf("workload seed %llu\n", static_cast<unsigned long long>(out->seed));
    for (int w = 0; w < kWorkers; ++w) {
      const int host = w / kWorkersPerHost;
      const std::string& segment = (host == 0 ? a_ : b_).segment;
      const std::chrono::microseconds read_every =
          host == 1 && o.b_reads_only ? o.b_read_every : std::chrono::microseconds(0);
      const pid_t pid = ForkTied();
      if (pid == 0) RunWorker(shared, w, host, segment, read_every, out->seed * 31 + w);
      ASSERT_GT(pid, 0) << "fork: " << std::strerror(errno);
      workers_.push_back(pid);
    }
    auto failed = [&] {
      std::string why;
      for (int w = 0; w < kWorkers; ++w) {
        if (shared->workers[w].state.load() < 0)
          why += "worker " + std::to_string(w) + ": " + shared->workers[w].error + "\n";
      }
      return why;
    };
    ASSERT_TRUE(WaitFor([&] { return shared->ready.load() == kWorkers || !failed().empty(); }) &&
                failed().empty())
        << "workers not ready:\n"
        << failed();
    const int64_t start = NowNs();
    shared->stop_ns.store(start + nanoseconds(o.duration).count());
    shared->start_ns.store(start);
    int statuses[kWorkers] = {};
    const bool exited = WaitFor(
        [&] {
          bool all = true;
          for (int w = 0; w < kWorkers; ++w) {
            pid_t& pid = workers_[workers_.size() - kWorkers + w];
            if (pid > 0 && waitpid(pid, &statuses[w], WNOHANG) == pid) pid = -1;
            all = all && pid < 0;
          }
          return all;
        },
        o.duration + kTimeout);
    ASSERT_TRUE(exited) << "workers still running " << (o.duration + kTimeout).count()
                        << " ms after the start";
    for (int w = 0; w < kWorkers; ++w) {
      const WorkerSlot& slot = shared->workers[w];
      ASSERT_TRUE(WIFEXITED(statuses[w]) && WEXITSTATUS(statuses[w]) == 0 && slot.state == 1)
          << "worker " << w << " (status " << statuses[w] << "): " << slot.error;
      const uint64_t n = slot.events.load(std::memory_order_relaxed);
      out->history.insert(out->history.end(), EventsOf(shared, w), EventsOf(shared, w) + n);
      NearCacheStats& s = out->stats[w / kWorkersPerHost];
      s.local_hits += slot.stats.local_hits;
      s.fetches += slot.stats.fetches;
      s.bypasses += slot.stats.bypasses;
      s.not_cached += slot.stats.not_cached;
      s.redis_errors += slot.stats.redis_errors;
    }
  }

  std::string PrintReport(const char* title, const WorkloadResult& w, const StaleReadReport& r) {
    char buf[1024];
    std::snprintf(
        buf, sizeof(buf),
        "%s: %llu reads (%llu absent), %llu sets, %llu deletes, %llu failed; host A: %llu "
        "local hits, %llu fetches, %llu bypasses; host B: %llu local hits, %llu fetches, %llu "
        "bypasses; %llu reads older than a write of the other host that had ended, by at most "
        "%lld us; violations: %llu from the future, %llu stale on the writer's host, %llu older "
        "than %lld ms\n",
        title, static_cast<unsigned long long>(r.reads),
        static_cast<unsigned long long>(r.absent_reads), static_cast<unsigned long long>(r.sets),
        static_cast<unsigned long long>(r.deletes), static_cast<unsigned long long>(r.failed),
        static_cast<unsigned long long>(w.stats[0].local_hits),
        static_cast<unsigned long long>(w.stats[0].fetches),
        static_cast<unsigned long long>(w.stats[0].bypasses),
        static_cast<unsigned long long>(w.stats[1].local_hits),
        static_cast<unsigned long long>(w.stats[1].fetches),
        static_cast<unsigned long long>(w.stats[1].bypasses),
        static_cast<unsigned long long>(r.cross_host_stale),
        static_cast<long long>(r.max_cross_host_staleness_ns / 1000),
        static_cast<unsigned long long>(r.future_reads),
        static_cast<unsigned long long>(r.same_host_stale),
        static_cast<unsigned long long>(r.beyond_bound), static_cast<long long>(kMaxLag.count()));
    std::printf("%s", buf);
    return buf;
  }

  const std::string b_max_lag_;
  std::string dir_;
  RedisServer redis_;
  Host a_{"A"};
  Host b_{"B"};
  std::vector<pid_t> workers_;  // -1 once reaped
};

// (a) A write on A is visible on B: B serves the old value from its
// segment, A sets a new one, and B's Gets return the new value once the
// invalidation has reached B's daemon.
TEST_F(TwoHostsTest, AWriteOnOneHostIsSeenOnTheOtherWithinMaxLag) {
  constexpr int kWrites = 300;
  std::vector<int64_t> delays;
  int old_at_first_read = 0;  // B still served the old copy right after A's Set returned
  for (int i = 0; i < kWrites; ++i) {
    const std::string key = "k:a:" + std::to_string(i);
    ASSERT_FALSE(a_.nc->Set(key, "old")) << a_.nc->last_error();
    ASSERT_TRUE(CachedOn(b_, key, "old")) << "B never served " << key << " from its segment";
    ASSERT_FALSE(a_.nc->Set(key, "new")) << a_.nc->last_error();
    const Clock::time_point returned = Clock::now();
    for (int read = 0;; ++read) {
      const Result<std::string> v = b_.nc->Get(key);
      const Clock::time_point now = Clock::now();
      if (v && *v == "new") {
        delays.push_back(nanoseconds(now - returned).count());
        break;
      }
      ASSERT_EQ(Str(v), "old") << key << ": neither the old value nor the new one";
      ASSERT_LT(now - returned, kTimeout) << key << ": B still returns the old value";
      if (read == 0) ++old_at_first_read;
      sched_yield();
    }
  }
  const std::string text = Percentiles(delays);
  std::printf(
      "A's Set returned -> B's Get returns the new value, over %d writes: %s (B served the old "
      "copy right after A's Set returned %d times)\n",
      kWrites, text.c_str(), old_at_first_read);
  RecordProperty("delays", text);
  std::sort(delays.begin(), delays.end());
  RecordProperty("delay_p50_us", static_cast<int>(delays[kWrites / 2] / 1000));
  RecordProperty("delay_p99_us", static_cast<int>(delays[kWrites * 99 / 100] / 1000));
  RecordProperty("delay_max_us", static_cast<int>(delays.back() / 1000));
  const int64_t bound = nanoseconds(kMaxLag).count();
  EXPECT_EQ(std::count_if(delays.begin(), delays.end(), [&](int64_t d) { return d >= bound; }), 0)
      << "delays of max-lag or more; the largest: " << delays.back() / 1000 << " us";
  EXPECT_EQ(State(a_), static_cast<uint32_t>(SHMKV_UPSTREAM_UP));
  EXPECT_EQ(State(b_), static_cast<uint32_t>(SHMKV_UPSTREAM_UP));
}

// (b) A key deleted, and a key expired, in Redis by a plain client leave
// the segments of both hosts, and neither host serves them afterwards.
TEST_F(TwoHostsTest, AKeyDeletedOrExpiredInRedisLeavesBothSegments) {
  Plain({"SET", "k:b:del", "d"});
  Plain({"SET", "k:b:exp", "e"});
  for (Host* h : {&a_, &b_}) {
    ASSERT_TRUE(CachedOn(*h, "k:b:del", "d")) << h->name;
    ASSERT_TRUE(CachedOn(*h, "k:b:exp", "e")) << h->name;
  }

  Plain({"DEL", "k:b:del"});
  for (Host* h : {&a_, &b_}) {
    EXPECT_TRUE(WaitFor([&] { return !Local(*h, "k:b:del"); })) << h->name << " kept k:b:del";
    EXPECT_EQ(h->nc->Get("k:b:del").error(), Errc::kNotFound) << h->name;
  }

  // PEXPIRE is a write: its invalidation removes the copies at once. Read
  // again, they are cached with what is left of the key's TTL in Redis,
  // and go when it expires there.
  Plain({"PEXPIRE", "k:b:exp", "300"});
  for (Host* h : {&a_, &b_}) {
    EXPECT_TRUE(WaitFor([&] { return !Local(*h, "k:b:exp"); })) << h->name << " kept k:b:exp";
  }
  for (Host* h : {&a_, &b_}) {
    ASSERT_EQ(Str(h->nc->Get("k:b:exp")), "e") << h->name;
    ItemInfo info;
    std::string value;
    if (!h->cache->Get("k:b:exp", &value, &info)) {  // unless an invalidation was late
      EXPECT_GE(info.ttl.count(), 0) << h->name;
      EXPECT_LE(info.ttl.count(), 300) << h->name;
    }
  }
  EXPECT_TRUE(WaitFor([&] {
    upstream::RedisReplyPtr pttl = Plain({"PTTL", "k:b:exp"});
    return pttl != nullptr && pttl->integer == -2 && !Local(a_, "k:b:exp") && !Local(b_, "k:b:exp");
  })) << "k:b:exp still in Redis or in a segment";
  for (Host* h : {&a_, &b_}) {
    EXPECT_EQ(h->nc->Get("k:b:exp").error(), Errc::kNotFound) << h->name;
  }
}

// (c) Host B's stream lost: its subscriber connection, then its tracking
// connection, killed in Redis. B goes DOWN at once and bypasses its
// segment (which still holds copies no invalidation will reach), then
// flushes and comes back UP; at no point does B return an old value after
// A's write of the new one returned. Host A keeps its stream throughout.
TEST_F(TwoHostsTest, AHostThatLosesItsStreamBypassesThenFlushesAndComesBack) {
  constexpr int kKeys = 10;
  auto key = [](int j) { return "k:c:" + std::to_string(j); };
  for (const std::string connection : {"subscriber", "tracking"}) {
    SCOPED_TRACE(connection + " connection killed");
    const std::string old_value = "old-" + connection;
    const std::string new_value = "new-" + connection;
    for (int j = 0; j < kKeys; ++j) ASSERT_FALSE(a_.nc->Set(key(j), old_value));
    for (int j = 0; j < kKeys; ++j) ASSERT_TRUE(CachedOn(b_, key(j), old_value)) << key(j);

    const long long subscriber = SubscriberId(b_);
    ASSERT_GT(subscriber, 0) << b_.daemon.Log();
    const long long victim = connection == "subscriber" ? subscriber : TrackingId(subscriber);
    ASSERT_GT(victim, 0) << "no connection redirects to client " << subscriber;
    uint64_t a_generation = 0;
    uint64_t b_generation = 0;
    ASSERT_EQ(State(a_, &a_generation), static_cast<uint32_t>(SHMKV_UPSTREAM_UP));
    ASSERT_EQ(State(b_, &b_generation), static_cast<uint32_t>(SHMKV_UPSTREAM_UP));
    upstream::RedisReplyPtr killed = Plain({"CLIENT", "KILL", "ID", std::to_string(victim)});
    ASSERT_NE(killed, nullptr);
    EXPECT_EQ(killed->integer, 1);
    ASSERT_TRUE(WaitFor([&] { return State(b_) == SHMKV_UPSTREAM_DOWN; }, 2s, /*spin=*/true))
        << "B not DOWN within 2 s\n"
        << b_.daemon.Log();

    for (int j = 0; j < kKeys; ++j) ASSERT_FALSE(a_.nc->Set(key(j), new_value));
    // Every read on B from here on must return the new values.
    const uint64_t bypasses = b_.nc->stats().bypasses;
    uint64_t reads = 0;
    uint64_t rounds_while_down = 0;
    std::string stale;
    const bool back = WaitFor([&] {
      uint64_t g = 0;
      const bool down = State(b_, &g) != SHMKV_UPSTREAM_UP;
      for (int j = 0; j < kKeys; ++j, ++reads) {
        const std::string v = Str(b_.nc->Get(key(j)));
        if (v != new_value && stale.empty()) stale = key(j) + " -> " + v;
      }
      if (down) ++rounds_while_down;
      return State(b_, &g) == SHMKV_UPSTREAM_UP && g >= b_generation + 2;
    });
    ASSERT_TRUE(back) << "B not UP again\n" << b_.daemon.Log();
    EXPECT_EQ(stale, "") << "a read on B after A's write returned";
    EXPECT_GT(rounds_while_down, 0u);
    EXPECT_GT(b_.nc->stats().bypasses, bypasses) << "no read on B bypassed while it was DOWN";
    for (int j = 0; j < kKeys; ++j) {
      EXPECT_NE(Local(b_, key(j)).value_or(""), old_value) << key(j) << " not flushed";
      EXPECT_EQ(Str(b_.nc->Get(key(j))), new_value) << key(j);
    }
    uint64_t g = 0;
    EXPECT_EQ(State(a_, &g), static_cast<uint32_t>(SHMKV_UPSTREAM_UP));
    EXPECT_EQ(g, a_generation) << "host A lost its stream too";

    // B's new stream carries invalidations.
    ASSERT_TRUE(CachedOn(b_, key(0), new_value));
    ASSERT_FALSE(a_.nc->Set(key(0), "again"));
    EXPECT_TRUE(WaitFor([&] { return Str(b_.nc->Get(key(0))) == "again"; }, kMaxLag))
        << "B's new stream did not invalidate " << key(0);
    std::printf("%s connection of host B killed: %llu reads on B until it was UP again\n",
                connection.c_str(), static_cast<unsigned long long>(reads));
  }
  const std::string log = b_.daemon.Log();
  EXPECT_NE(log.find("upstream: stream lost: subscriber connection: "), std::string::npos) << log;
  EXPECT_NE(log.find("upstream: stream lost: tracking connection: "), std::string::npos) << log;
}

// (d) Redis killed and started again on its port, without its data. Both
// hosts go DOWN (reads fail rather than return a local copy), then flush
// and come back UP, and serve what Redis holds now.
TEST_F(TwoHostsTest, ARedisRestartFlushesBothHostsWhichThenServeItsNewData) {
  constexpr int kKeys = 10;
  auto key = [](int j) { return "k:d:" + std::to_string(j); };
  for (int j = 0; j < kKeys; ++j) ASSERT_FALSE(a_.nc->Set(key(j), "before"));
  // The invalidations of those Sets reach both hosts (A's own included)
  // before the copies below are cached, so that only the flush can drop them.
  for (Host* h : {&a_, &b_}) ASSERT_TRUE(CaughtUp(*h)) << h->name;
  for (Host* h : {&a_, &b_}) {
    for (int j = 0; j < kKeys; ++j) ASSERT_TRUE(CachedOn(*h, key(j), "before")) << h->name;
  }
  uint64_t a_generation = 0;
  uint64_t b_generation = 0;
  State(a_, &a_generation);
  State(b_, &b_generation);

  redis_.Kill();
  ASSERT_TRUE(
      WaitFor([&] { return State(a_) == SHMKV_UPSTREAM_DOWN && State(b_) == SHMKV_UPSTREAM_DOWN; },
              2s, /*spin=*/true))
      << "not DOWN within 2 s";
  for (Host* h : {&a_, &b_}) {
    ASSERT_TRUE(Local(*h, key(0))) << h->name << " flushed before UP";
    for (int j = 0; j < kKeys; ++j) {
      const Result<std::string> r = h->nc->Get(key(j));
      EXPECT_FALSE(r) << h->name << " returned " << Str(r) << " for " << key(j)
                      << " with Redis down";
      if (!r) {
        EXPECT_EQ(r.error(), std::errc::connection_refused) << h->nc->last_error();
      }
    }
  }

  ASSERT_TRUE(redis_.Start(redis_.port())) << redis_.error();
  EXPECT_TRUE(WaitForResync(a_, a_generation)) << a_.daemon.Log();
  EXPECT_TRUE(WaitForResync(b_, b_generation)) << b_.daemon.Log();
  for (Host* h : {&a_, &b_}) {
    for (int j = 0; j < kKeys; ++j) {
      EXPECT_FALSE(Local(*h, key(j))) << h->name << " kept " << key(j);
      EXPECT_EQ(Str(h->nc->Get(key(j))), Str(Errc::kNotFound)) << h->name << " " << key(j);
    }
  }
  Plain({"SET", key(0), "after"});
  ASSERT_FALSE(b_.nc->Set(key(1), "from-b")) << b_.nc->last_error();
  for (Host* h : {&a_, &b_}) {
    EXPECT_EQ(Str(h->nc->Get(key(0))), "after") << h->name;
    EXPECT_EQ(Str(h->nc->Get(key(1))), "from-b") << h->name;
  }
  for (Host* h : {&a_, &b_}) {
    EXPECT_NE(h->daemon.Log().find("upstream: stream lost: "), std::string::npos)
        << h->daemon.Log();
  }
}

// (e) The randomized workload: 2 hosts x 2 forked processes, 70% Get, 25%
// Set of a unique value, 5% Delete on 20 keys for 3 s; its history holds
// no value from the future, no stale read on the host of a newer write,
// and nothing older than max-lag on any host.
TEST_F(TwoHostsTest, ARandomizedWorkloadOfTwoHostsHasNoStaleReads) {
  uint64_t a_generation = 0;
  uint64_t b_generation = 0;
  State(a_, &a_generation);
  State(b_, &b_generation);
  WorkloadResult w;
  RunWorkload({}, &w);
  if (HasFatalFailure()) return;
  const StaleReadReport r = CheckStaleReads(w.history, nanoseconds(kMaxLag).count());
  const std::string text = PrintReport("workload", w, r);
  RecordProperty("workload", text);
  RecordProperty("max_cross_host_staleness_us",
                 static_cast<int>(r.max_cross_host_staleness_ns / 1000));
  EXPECT_EQ(r.violations(), 0u) << Examples(r);
  EXPECT_EQ(r.failed, 0u);
  EXPECT_GT(r.reads, 1000u);
  EXPECT_GT(r.sets, 300u);
  EXPECT_GT(r.deletes, 50u);
  EXPECT_GT(w.stats[0].local_hits, 0u) << "host A served nothing from its segment";
  EXPECT_GT(w.stats[1].local_hits, 0u) << "host B served nothing from its segment";
  uint64_t g = 0;
  EXPECT_EQ(State(a_, &g), static_cast<uint32_t>(SHMKV_UPSTREAM_UP));
  std::printf("generations during the workload: A %llu -> %llu, ",
              static_cast<unsigned long long>(a_generation), static_cast<unsigned long long>(g));
  EXPECT_EQ(State(b_, &g), static_cast<uint32_t>(SHMKV_UPSTREAM_UP));
  std::printf("B %llu -> %llu\n", static_cast<unsigned long long>(b_generation),
              static_cast<unsigned long long>(g));
}

// Host B's daemon given a max-lag of an hour.
class StoppedDaemonTest : public TwoHostsTest {
 protected:
  StoppedDaemonTest() : TwoHostsTest("1h") {}
};

// The history check catches stale reads: host B's daemon stopped (SIGSTOP)
// with a max-lag of an hour leaves B's state UP, so B serves copies that no
// invalidation removes. B's processes only read, so the copies they fetched
// first stay for the whole run and are more than 1 s old by its end: (3)
// fails, (1) and (2) hold, and the history is within a bound of an hour
// (the max-lag B was given).
TEST_F(StoppedDaemonTest, TheHistoryCheckCatchesTheStaleCopiesOfAStoppedDaemon) {
  b_.daemon.Signal(SIGSTOP);
  WorkloadOptions o;
  o.duration = 2s;
  o.b_reads_only = true;
  WorkloadResult w;
  RunWorkload(o, &w);
  b_.daemon.Signal(SIGCONT);
  if (HasFatalFailure()) return;
  const StaleReadReport r = CheckStaleReads(w.history, nanoseconds(kMaxLag).count());
  PrintReport("workload with host B's daemon stopped", w, r);
  EXPECT_GT(r.beyond_bound, 0u);
  EXPECT_GT(r.max_cross_host_staleness_ns, nanoseconds(kMaxLag).count());
  EXPECT_EQ(r.future_reads, 0u) << Examples(r);
  EXPECT_EQ(r.same_host_stale, 0u) << Examples(r);
  EXPECT_EQ(w.stats[1].bypasses, 0u) << "B's state was not UP";
  ASSERT_FALSE(r.examples.empty());
  std::printf("first violation: %s\n", r.examples.front().c_str());
  const StaleReadReport lenient = CheckStaleReads(w.history, nanoseconds(1h).count());
  EXPECT_EQ(lenient.violations(), 0u) << Examples(lenient);
}

// The checker itself, on small histories written by hand (times in ns).
class StaleReadCheckTest : public ::testing::Test {
 protected:
  void Set(uint8_t host, uint32_t writer, uint32_t seq, int64_t start, int64_t end) {
    history_.push_back(Event(HistoryOp::kSet, host, start, end, writer, seq, HistoryStatus::kOk));
  }
  void Delete(uint8_t host, int64_t start, int64_t end) {
    history_.push_back(Event(HistoryOp::kDelete, host, start, end, 0, 0, HistoryStatus::kOk));
  }
  void Read(uint8_t host, int64_t start, int64_t end, uint32_t writer, uint32_t seq) {
    history_.push_back(Event(HistoryOp::kGet, host, start, end, writer, seq,
                             writer == 0 ? HistoryStatus::kAbsent : HistoryStatus::kOk));
  }
  StaleReadReport Check(int64_t bound = 1000) { return CheckStaleReads(history_, bound); }

  static HistoryEvent Event(HistoryOp op, uint8_t host, int64_t start, int64_t end, uint32_t writer,
                            uint32_t seq, HistoryStatus status) {
    HistoryEvent e;
    e.op = op;
    e.host = host;
    e.process = static_cast<uint16_t>(host + 1);
    e.start_ns = start;
    e.end_ns = end;
    e.writer = writer;
    e.seq = seq;
    e.status = status;
    return e;
  }

  std::vector<HistoryEvent> history_;
};

TEST_F(StaleReadCheckTest, ReadsOfTheLatestOrAConcurrentWriteAreFine) {
  Read(0, 0, 5, 0, 0);  // initially absent
  Set(0, 1, 1, 10, 20);
  Read(0, 30, 40, 1, 1);
  Set(1, 2, 1, 50, 200);
  Read(0, 60, 70, 1, 1);  // the write of host 1 has not returned yet
  Read(1, 60, 70, 2, 1);  // nor has it been applied: either answer holds
  Delete(0, 300, 310);
  Read(1, 320, 330, 0, 0);
  const StaleReadReport r = Check();
  EXPECT_EQ(r.violations(), 0u) << Examples(r);
  EXPECT_EQ(r.reads, 5u);
  EXPECT_EQ(r.absent_reads, 2u);
  EXPECT_EQ(r.sets, 2u);
  EXPECT_EQ(r.deletes, 1u);
  EXPECT_EQ(r.cross_host_stale, 0u);
}

TEST_F(StaleReadCheckTest, AValueFromTheFutureOrNeverWrittenIsCaught) {
  Read(0, 0, 5, 1, 1);  // written only later
  Set(1, 1, 1, 10, 20);
  Read(0, 30, 40, 1, 2);  // never written
  HistoryEvent garbage = Event(HistoryOp::kGet, 0, 50, 60, 0, 0, HistoryStatus::kGarbage);
  history_.push_back(garbage);
  const StaleReadReport r = Check();
  EXPECT_EQ(r.future_reads, 3u);
  EXPECT_EQ(r.examples.size(), 3u);
}

TEST_F(StaleReadCheckTest, AStaleReadOnTheWritersHostIsCaught) {
  Set(0, 1, 1, 0, 10);
  Set(0, 1, 2, 20, 30);
  Read(0, 40, 50, 1, 1);  // host 0's second write had returned
  Read(1, 40, 50, 1, 1);  // fine on host 1, within the bound
  const StaleReadReport r = Check();
  EXPECT_EQ(r.same_host_stale, 1u) << Examples(r);
  EXPECT_EQ(r.beyond_bound, 0u);
  EXPECT_EQ(r.cross_host_stale, 1u);
  EXPECT_EQ(r.max_cross_host_staleness_ns, 10);  // 40 - 30
}

TEST_F(StaleReadCheckTest, AnAbsentReadAfterASetOnTheSameHostIsCaught) {
  Delete(0, 0, 10);
  Set(0, 1, 1, 20, 30);
  Read(0, 40, 50, 0, 0);
  const StaleReadReport r = Check();
  EXPECT_EQ(r.same_host_stale, 1u) << Examples(r);
}

TEST_F(StaleReadCheckTest, ACopyOlderThanTheBoundIsCaughtOnAnyHost) {
  Set(0, 1, 1, 0, 10);
  Set(0, 1, 2, 20, 30);
  Read(1, 1000, 1010, 1, 1);  // 970 ns after the newer write: within
  Read(1, 1100, 1110, 1, 1);  // 1070 ns: beyond a bound of 1000
  const StaleReadReport r = Check(1000);
  EXPECT_EQ(r.beyond_bound, 1u) << Examples(r);
  EXPECT_EQ(r.same_host_stale, 0u);
  EXPECT_EQ(r.cross_host_stale, 2u);
  EXPECT_EQ(r.max_cross_host_staleness_ns, 1070);
  EXPECT_EQ(Check(2000).violations(), 0u);
}

TEST_F(StaleReadCheckTest, AFailedWriteMayHaveHappenedOrNot) {
  Set(0, 1, 1, 0, 10);
  history_.push_back(Event(HistoryOp::kSet, 0, 20, 30, 1, 2, HistoryStatus::kError));
  Read(0, 40, 50, 1, 1);  // the failed write may not have happened
  Read(0, 60, 70, 1, 2);  // or it may have
  const StaleReadReport r = Check();
  EXPECT_EQ(r.violations(), 0u) << Examples(r);
  EXPECT_EQ(r.failed, 1u);
}

}  // namespace
}  // namespace shmkv::test
