// Property: shmkv is linearizable per key across processes (DESIGN.md §3.2).
// Forked workers run random get/set/add/replace/delete/incr on a few keys
// and record every operation, with CLOCK_MONOTONIC_RAW invoke and return
// times, in a MAP_SHARED region; the per-key Wing–Gong/Lowe checker then
// looks for a legal sequential order. A worker SIGKILLed mid-run leaves its
// in-flight operation pending; recovery must then leave no leak. Finally,
// with the planted read bug (no re-validation after the copy) the same
// harness must find torn values: that proves the checker can catch one.
#include <gtest/gtest.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "stress/linearizability.h"
#include "stress/stress_util.h"
#include "testing.h"

namespace shmkv::stress {
namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;

enum ValType : uint8_t { kNone = 0, kGen = 1, kNum = 2, kGarbage = 3 };

// One recorded operation. `phase` is written last with release: 1 once
// the invoke is recorded (before the call), 2 once the return is.
struct Rec {
  std::atomic<uint32_t> phase;
  uint8_t kind;
  uint8_t key;
  uint8_t in_type;
  uint8_t out_type;
  int32_t rc;  // the raw shmkv return code
  uint32_t in_writer, in_seq;
  uint32_t out_writer, out_seq;
  int64_t in_num;  // numeric value written, or incr delta
  int64_t in_initial;
  int64_t call_ns, ret_ns;
  int64_t out_num;  // incr result, or a numeric value read
  uint64_t out_hash;
  uint32_t in_len, out_len;
};

struct Region {
  std::atomic<uint64_t> count;  // records [0, count) are invoked
  std::atomic<uint64_t> torn_reads;
  std::atomic<uint64_t> duplicates;  // probes that saw two LIVE entries of one key
  // `capacity` records follow the header.
  Rec* recs() { return reinterpret_cast<Rec*>(this + 1); }
  const Rec* recs() const { return reinterpret_cast<const Rec*>(this + 1); }
};
static_assert(sizeof(Region) % alignof(Rec) == 0);

struct Config {
  const char* tag = "lin";
  int workers = 3;
  int keys = 6;
  double seconds = 2.0;
  uint64_t capacity = 60000;  // records per worker
  size_t min_len = kMinGenLen;
  size_t max_len = 40;
  int numeric_percent = 30;  // writes of decimal values (so incr works)
  bool skip_read_validation = false;
  bool mostly_set_get = false;
  int kill_worker = -1;  // SIGKILL this worker mid-run, then fork a replacement
};

size_t RegionBytes(uint64_t capacity) { return sizeof(Region) + capacity * sizeof(Rec); }

std::string KeyName(const Config& c, int round, int k) {
  return std::string(c.tag) + "-r" + std::to_string(round) + "-key" + std::to_string(k);
}

// The worker body: random operations until the deadline or a full log.
int RunWorker(const Config& c, const std::string& seg, shmkv_t* inherited, int id, int round,
              Region* reg, int64_t deadline_ns, StartGate* gate) {
  if (c.skip_read_validation) shmkv::testing::SetSkipReadValidation(true);
  shmkv_t* kv = inherited;
  bool own = (id % 2 == 0) || inherited == nullptr;  // half use the inherited handle
  if (gate) gate->Wait();
  if (own && OpenSegment(seg, nullptr, &kv) != 0) return 2;
  std::mt19937_64 rng(static_cast<uint64_t>(NowNs()) ^ (static_cast<uint64_t>(id) << 48));
  std::string value;
  std::string buf(c.max_len + 64, '\0');
  uint32_t seq = 0;
  for (uint64_t i = 0; i < c.capacity && NowNs() < deadline_ns; ++i) {
    Rec& r = reg->recs()[i];
    int k = static_cast<int>(rng() % static_cast<uint64_t>(c.keys));
    std::string key = KeyName(c, round, k);
    unsigned dice = static_cast<unsigned>(rng() % 100);
    OpKind kind;
    if (c.mostly_set_get) {
      kind = dice < 50 ? OpKind::kGet : dice < 90 ? OpKind::kSet : OpKind::kReplace;
    } else {
      kind = dice < 35   ? OpKind::kGet
             : dice < 55 ? OpKind::kSet
             : dice < 63 ? OpKind::kAdd
             : dice < 71 ? OpKind::kReplace
             : dice < 83 ? OpKind::kDelete
                         : OpKind::kIncr;
    }
    r.kind = static_cast<uint8_t>(kind);
    r.key = static_cast<uint8_t>(k);
    r.in_type = kNone;
    r.out_type = kNone;
    bool write = kind == OpKind::kSet || kind == OpKind::kAdd || kind == OpKind::kReplace;
    if (write) {
      ++seq;
      if (static_cast<int>(rng() % 100) < c.numeric_percent) {
        r.in_type = kNum;
        r.in_num = static_cast<int64_t>(id + 1) * 1'000'000'000'000 + seq * 1000;
        value = std::to_string(r.in_num);
      } else {
        r.in_type = kGen;
        r.in_writer = static_cast<uint32_t>(id);
        r.in_seq = seq;
        r.in_len = static_cast<uint32_t>(c.min_len + rng() % (c.max_len - c.min_len + 1));
        MakeValue(r.in_writer, seq, r.in_len, &value);
      }
    } else if (kind == OpKind::kIncr) {
      static constexpr int64_t kDeltas[] = {1, 2, 3, -1};
      r.in_num = kDeltas[rng() % 4];
      r.in_initial = static_cast<int64_t>(rng() % 100);
    }
    r.call_ns = NowNs();
    r.phase.store(1, std::memory_order_release);
    reg->count.store(i + 1, std::memory_order_release);
    // ---- the operation ----
    int rc = 0;
    switch (kind) {
      case OpKind::kGet: {
        size_t len = 0;
        rc = shmkv_get(kv, key.data(), key.size(), buf.data(), buf.size(), &len, nullptr);
        r.ret_ns = NowNs();
        if (rc == 0) {
          std::string_view v(buf.data(), len);
          if (VerifyValue(v, &r.out_writer, &r.out_seq)) {
            r.out_type = kGen;
            r.out_len = static_cast<uint32_t>(len);
          } else if (ParseDecimal(v, &r.out_num)) {
            r.out_type = kNum;
          } else {
            r.out_type = kGarbage;
            r.out_hash = HashBytes(v.data(), v.size());
            r.out_len = static_cast<uint32_t>(len);
            reg->torn_reads.fetch_add(1, std::memory_order_relaxed);
          }
        }
        break;
      }
      case OpKind::kSet:
      case OpKind::kAdd:
      case OpKind::kReplace: {
        shmkv_write_opts_t o;
        shmkv_write_opts_init(&o);
        o.mode = kind == OpKind::kSet   ? SHMKV_SET
                 : kind == OpKind::kAdd ? SHMKV_ADD
                                        : SHMKV_REPLACE;
        rc = shmkv_store(kv, key.data(), key.size(), value.data(), value.size(), &o, nullptr);
        r.ret_ns = NowNs();
        break;
      }
      case OpKind::kDelete:
        rc = shmkv_delete(kv, key.data(), key.size(), 0);
        r.ret_ns = NowNs();
        break;
      case OpKind::kIncr:
        rc = shmkv_incr(kv, key.data(), key.size(), r.in_num, r.in_initial, 0, &r.out_num);
        r.ret_ns = NowNs();
        break;
    }
    r.rc = rc;
    r.phase.store(2, std::memory_order_release);
    // Invariant 2, checked directly: after a write, the key has at most
    // one LIVE entry (a history can hide a duplicate that is removed soon).
    if (kind != OpKind::kGet) {
      std::string why;
      if (shmkv::testing::LiveCopies(kv, key.data(), key.size(), &why) > 1) {
        reg->duplicates.fetch_add(1, std::memory_order_relaxed);
        std::fprintf(stderr, "worker %d op %llu: two LIVE entries of %s: %s\n", id,
                     static_cast<unsigned long long>(i), key.c_str(), why.c_str());
      }
    }
  }
  if (own) shmkv_close(kv);
  return 0;
}

std::string ValueString(uint8_t type, uint32_t writer, uint32_t seq, uint32_t len, int64_t num,
                        uint64_t hash) {
  switch (type) {
    case kGen:
      return "G" + std::to_string(writer) + "." + std::to_string(seq) + "." + std::to_string(len);
    case kNum:
      return std::to_string(num);
    case kGarbage:
      return "<torn or foreign value, " + std::to_string(len) + " bytes, hash " +
             std::to_string(hash) + ">";
    default:
      return "";
  }
}

// Converts the records to checker operations. Returns a description of
// any record that is not a legal outcome (an unexpected error code, or a
// pending record in a worker that was not killed).
std::string ToHistory(const Config& c, int round, int worker, const Region* reg, bool killed,
                      std::vector<Operation>* out) {
  uint64_t n = reg->count.load(std::memory_order_acquire);
  std::string problems;
  for (uint64_t i = 0; i < n; ++i) {
    const Rec& r = reg->recs()[i];
    uint32_t phase = r.phase.load(std::memory_order_acquire);
    Operation op;
    op.key = KeyName(c, round, r.key);
    op.kind = static_cast<OpKind>(r.kind);
    op.process = worker;
    op.call_ns = r.call_ns;
    if (op.kind == OpKind::kSet || op.kind == OpKind::kAdd || op.kind == OpKind::kReplace) {
      op.value = ValueString(r.in_type, r.in_writer, r.in_seq, r.in_len, r.in_num, 0);
    }
    op.delta = r.in_num;
    op.initial = r.in_initial;
    if (phase != 2) {
      if (!killed || i + 1 != n) {
        problems += "worker " + std::to_string(worker) + " record " + std::to_string(i) +
                    " never returned\n";
      }
      op.pending = true;
      out->push_back(op);
      continue;
    }
    op.return_ns = r.ret_ns;
    int rc = r.rc;
    bool legal = true;
    switch (op.kind) {
      case OpKind::kGet:
        if (rc == 0) {
          op.outcome = Outcome::kOk;
          op.result =
              ValueString(r.out_type, r.out_writer, r.out_seq, r.out_len, r.out_num, r.out_hash);
        } else {
          legal = rc == SHMKV_ENOTFOUND;
          op.outcome = Outcome::kNotFound;
        }
        break;
      case OpKind::kSet:
        legal = rc == 0;
        break;
      case OpKind::kAdd:
        legal = rc == 0 || rc == SHMKV_EEXIST;
        op.outcome = rc == 0 ? Outcome::kOk : Outcome::kExists;
        break;
      case OpKind::kReplace:
      case OpKind::kDelete:
        legal = rc == 0 || rc == SHMKV_ENOTFOUND;
        op.outcome = rc == 0 ? Outcome::kOk : Outcome::kNotFound;
        break;
      case OpKind::kIncr:
        legal = rc == 0 || rc == SHMKV_ENOTNUM || rc == SHMKV_EOVERFLOW;
        op.outcome = rc == 0               ? Outcome::kOk
                     : rc == SHMKV_ENOTNUM ? Outcome::kNotNum
                                           : Outcome::kOverflow;
        op.number = r.out_num;
        break;
    }
    if (!legal) {
      problems += "worker " + std::to_string(worker) + ": " + Describe(op) + " failed with " +
                  std::to_string(rc) + " (" + shmkv_strerror(rc) + ")\n";
      continue;
    }
    out->push_back(op);
  }
  return problems;
}

struct RoundResult {
  CheckResult check;
  std::string problems;
  uint64_t ops = 0;
  uint64_t torn_reads = 0;
  bool killed_by_sigkill = true;
  uint32_t recovered = 0;
  internal::Census census;
};

// One round: fork the workers, optionally kill one, collect, check.
RoundResult RunRound(const Config& c, const ScopedSegmentName& seg, shmkv_t* kv, int round) {
  RoundResult result;
  const int slots = c.workers + (c.kill_worker >= 0 ? 1 : 0);
  const size_t bytes = RegionBytes(c.capacity);
  SharedRegion shared(bytes * static_cast<size_t>(slots));
  auto region = [&](int w) {
    return reinterpret_cast<Region*>(static_cast<char*>(shared.data()) + bytes * w);
  };
  const int64_t duration_ns = static_cast<int64_t>(c.seconds * 1e9);
  StartGate gate;
  std::vector<pid_t> pids;
  const int64_t start = NowNs();
  for (int w = 0; w < c.workers; ++w) {
    pids.push_back(ForkChild([&, w] {
      return RunWorker(c, seg.name(), kv, w, round, region(w), start + duration_ns + 500'000'000,
                       &gate);
    }));
  }
  gate.Open();
  if (c.kill_worker >= 0) {
    // Kill at a random point in the worker's run: once it has logged a
    // random number of operations (polling the shared counter).
    std::mt19937_64 rng(static_cast<uint64_t>(NowNs()));
    Region* victim = region(c.kill_worker);
    uint64_t at = 1000 + rng() % (c.capacity / 4);
    timespec poll = {0, 100'000};
    while (victim->count.load(std::memory_order_acquire) < at && NowNs() < start + duration_ns) {
      nanosleep(&poll, nullptr);
    }
    for (unsigned spin = static_cast<unsigned>(rng() % 20000); spin > 0; --spin) {
      asm volatile("" ::: "memory");
    }
    kill(pids[c.kill_worker], SIGKILL);
    int status = WaitChild(pids[c.kill_worker]);
    result.killed_by_sigkill = KilledBy(status, SIGKILL);
    if (!result.killed_by_sigkill) {
      result.problems += "victim worker: " + DescribeStatus(status) + "\n";
    }
    // Survivors keep running while the parent recovers, then a
    // replacement joins them.
    int rc = shmkv_recover(kv, &result.recovered);
    if (rc != 0) result.problems += std::string("shmkv_recover: ") + shmkv_strerror(rc) + "\n";
    const int replacement = c.workers;
    pids.push_back(ForkChild([&] {
      return RunWorker(c, seg.name(), nullptr, replacement, round, region(replacement),
                       NowNs() + duration_ns / 2, nullptr);
    }));
  }
  for (size_t i = 0; i < pids.size(); ++i) {
    if (static_cast<int>(i) == c.kill_worker) continue;
    int status = WaitChild(pids[i]);
    if (!ExitedCleanly(status)) {
      result.problems += "worker " + std::to_string(i) + ": " + DescribeStatus(status) + "\n";
    }
  }
  std::vector<Operation> history;
  for (int w = 0; w < slots; ++w) {
    result.problems += ToHistory(c, round, w, region(w), w == c.kill_worker, &history);
    result.torn_reads += region(w)->torn_reads.load();
    if (uint64_t d = region(w)->duplicates.load()) {
      result.problems += "worker " + std::to_string(w) + ": " + std::to_string(d) +
                         " probe(s) saw two LIVE entries of one key\n";
    }
  }
  result.ops = history.size();
  if (c.kill_worker >= 0) {
    uint32_t more = 0;
    shmkv_recover(kv, &more);
    result.recovered += more;
    internal::TakeCensus(kv, &result.census);
  }
  result.check = CheckHistory(history);
  return result;
}

void ExpectNoLeak(const internal::Census& c) { test::ExpectCleanCensus(c); }

TEST(LinearizabilityStressTest, ForkedWorkersProduceLinearizableHistories) {
  Watchdog dog(120, "LinearizabilityStressTest.ForkedWorkersProduceLinearizableHistories");
  ScopedSegmentName seg("lin");
  shmkv_options_t opts = SmallOptions(16u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  // Rounds of at most `capacity` operations per worker (a fraction of a
  // second), each checked on its own keys, until the time is up.
  Config c;
  const int64_t end = NowNs() + static_cast<int64_t>(StressSeconds(2.0) * 1e9);
  for (int round = 0; NowNs() < end; ++round) {
    c.seconds = std::max(0.1, static_cast<double>(end - NowNs()) / 1e9);
    RoundResult r = RunRound(c, seg, kv, round);
    EXPECT_EQ(r.problems, "");
    EXPECT_TRUE(r.check.ok) << r.check.explanation;
    EXPECT_EQ(r.torn_reads, 0u);
    EXPECT_GT(r.ops, 1000u);
    std::printf("round %d: %llu ops on %llu keys checked in %llu steps\n", round,
                static_cast<unsigned long long>(r.ops),
                static_cast<unsigned long long>(r.check.keys_checked),
                static_cast<unsigned long long>(r.check.steps));
    if (HasFailure()) break;
  }
  shmkv_close(kv);
}

TEST(LinearizabilityStressTest, KilledWorkerLeavesPendingOpAndNoLeak) {
  Watchdog dog(120, "LinearizabilityStressTest.KilledWorkerLeavesPendingOpAndNoLeak");
  ScopedSegmentName seg("link");
  shmkv_options_t opts = SmallOptions(16u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  Config c;
  c.tag = "kill";
  c.kill_worker = 0;
  const int64_t end = NowNs() + static_cast<int64_t>(StressSeconds(2.0) * 1e9);
  for (int round = 0; NowNs() < end; ++round) {
    c.seconds = std::max(0.2, static_cast<double>(end - NowNs()) / 1e9);
    RoundResult r = RunRound(c, seg, kv, round);
    EXPECT_TRUE(r.killed_by_sigkill);
    EXPECT_EQ(r.problems, "");
    EXPECT_GE(r.recovered, 1u) << "the killed worker was not recovered";
    ExpectNoLeak(r.census);
    EXPECT_TRUE(r.check.ok) << r.check.explanation;
    EXPECT_EQ(r.torn_reads, 0u);
    std::printf("kill round %d: %llu ops checked, %u recovered\n", round,
                static_cast<unsigned long long>(r.ops), r.recovered);
    if (HasFailure()) break;
  }
  shmkv_close(kv);
}

// The planted bug (reads skip the re-validation of the slot version after
// the copy) must be caught. Writers replace large values of the same size
// class on a few keys so that freed blocks are reused while readers copy
// them. Rounds repeat until a violation is found, within a bounded time.
TEST(LinearizabilityStressTest, PlantedReadBugIsDetected) {
  Watchdog dog(180, "LinearizabilityStressTest.PlantedReadBugIsDetected");
  ScopedSegmentName seg("linbug");
  shmkv_options_t opts = SmallOptions(16u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  Config c;
  c.tag = "bug";
  c.keys = 3;
  c.min_len = 200;
  c.max_len = 2000;
  c.numeric_percent = 0;
  c.mostly_set_get = true;
  c.skip_read_validation = true;
  c.seconds = 1.0;
  c.capacity = 40000;
  const double budget = std::max(20.0, StressSeconds(20.0));
  const int64_t give_up = NowNs() + static_cast<int64_t>(budget * 1e9);
  int rounds = 0;
  uint64_t ops = 0, torn = 0;
  bool detected = false;
  std::string first;
  while (NowNs() < give_up) {
    RoundResult r = RunRound(c, seg, kv, rounds);
    ++rounds;
    ops += r.ops;
    torn += r.torn_reads;
    EXPECT_EQ(r.problems, "");
    if (!r.check.ok && !r.check.inconclusive) {
      detected = true;
      first = r.check.explanation;
      break;
    }
  }
  std::printf("planted read bug: %s after %d round(s) of %.1f s, %llu ops, %llu torn reads\n",
              detected ? "DETECTED" : "not detected", rounds, c.seconds,
              static_cast<unsigned long long>(ops), static_cast<unsigned long long>(torn));
  if (detected) std::printf("first violation:\n%s", first.c_str());
  RecordProperty("planted_bug_rounds", rounds);
  RecordProperty("planted_bug_torn_reads", static_cast<int>(torn));
  EXPECT_TRUE(detected) << "the checker missed the planted read bug in " << rounds << " rounds ("
                        << torn << " torn reads seen)";
  shmkv_close(kv);
}

}  // namespace
}  // namespace shmkv::stress
