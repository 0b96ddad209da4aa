// Property: a process killed with SIGKILL at any instruction never blocks
// the others, its half-done operation either took effect or did not, and
// recovery returns everything it held (DESIGN.md §3.1, §3.3, §3.4).
// Random kills: a child writes in a tight loop (set/add/delete/incr over
// fresh keys, so the insert path runs) and is killed at a random moment,
// 20 times; each time the parent checks every key against the child's
// record of completed operations, then sets and reads every key, recovers,
// and at the end the census shows no leak. Deterministic kills: for every
// crash point of the library, a child arms it and runs a mix that should
// reach it (throttle included); the parent recovers, takes the census and
// checks its own keys.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "stress/stress_util.h"
#include "testing.h"

namespace shmkv::stress {
namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;
using shmkv::test::UniqueSegmentName;

void ExpectNoLeak(shmkv_t* kv, const std::string& when) {
  internal::Census c;
  ASSERT_EQ(internal::TakeCensus(kv, &c), 0) << when;
  test::ExpectCleanCensus(c, when);
  // The full checker, accounting for every block and page and the item
  // counter (nobody else is attached at this point).
  shmkv_check_report_t r{};
  r.struct_size = sizeof(r);
  ASSERT_EQ(shmkv_check(kv, SHMKV_CHECK_OFFLINE, &r), 0) << when;
  EXPECT_EQ(r.problems, 0u) << when << ": " << r.first_problem;
  EXPECT_EQ(r.leaked_blocks, 0u) << when;
}

// ---------------------------------------------------------------------
// Random kills.

constexpr int kKeysPerRound = 200;

// A key's state as one word, so that a kill never tears it:
// bit 63 present, bit 62 numeric, low bits the seq (bytes) or the number.
constexpr uint64_t kPresent = 1ull << 63;
constexpr uint64_t kNumeric = 1ull << 62;
constexpr uint64_t kPayload = kNumeric - 1;

enum CrashOp : uint64_t { kSetBytes = 1, kSetNum, kAddBytes, kDelete, kIncr };
constexpr int64_t kIncrInitial = 1000;

struct ChildLog {
  std::atomic<uint64_t> ops;
  std::atomic<uint64_t> errors;
  std::atomic<uint64_t> inflight;  // 0, or op << 32 | key
  std::atomic<uint64_t> inflight_arg;
  std::atomic<uint64_t> state[kKeysPerRound];
};

std::string RoundKey(int round, int k) {
  return "crash-r" + std::to_string(round) + "-k" + std::to_string(k);
}

std::string BytesValue(int round, int k, uint64_t seq) {
  // Lengths vary so that several size classes are used.
  std::string v = "v" + std::to_string(round) + "." + std::to_string(k) + "." + std::to_string(seq);
  v.resize(v.size() + (seq * 37) % 700, static_cast<char>('a' + seq % 26));
  return v;
}

uint64_t Apply(uint64_t pre, uint64_t op, uint64_t arg) {
  switch (op) {
    case kSetBytes:
      return kPresent | arg;
    case kSetNum:
      return kPresent | kNumeric | arg;
    case kAddBytes:
      return (pre & kPresent) ? pre : (kPresent | arg);
    case kDelete:
      return 0;
    case kIncr:
      if (!(pre & kPresent)) return kPresent | kNumeric | kIncrInitial;
      if (!(pre & kNumeric)) return pre;  // ENOTNUM
      return kPresent | kNumeric | ((pre & kPayload) + 1);
  }
  return pre;
}

std::string DescribeState(int round, int k, uint64_t s) {
  if (!(s & kPresent)) return "<absent>";
  if (s & kNumeric) return std::to_string(s & kPayload);
  return "\"" + BytesValue(round, k, s & kPayload).substr(0, 24) + "...\"";
}

bool Matches(int round, int k, uint64_t s, int rc, const std::string& got) {
  if (!(s & kPresent)) return rc == SHMKV_ENOTFOUND;
  if (rc != 0) return false;
  if (s & kNumeric) return got == std::to_string(s & kPayload);
  return got == BytesValue(round, k, s & kPayload);
}

int CrashWriter(const std::string& seg, shmkv_t* inherited, int round, ChildLog* log) {
  shmkv_t* kv = inherited;
  if (round % 2 == 0 && OpenSegment(seg, nullptr, &kv) != 0) return 2;
  std::mt19937_64 rng(static_cast<uint64_t>(NowNs()) + static_cast<uint64_t>(round));
  uint64_t seq = 0;
  for (;;) {  // until killed
    const int k = static_cast<int>(rng() % kKeysPerRound);
    const std::string key = RoundKey(round, k);
    unsigned dice = static_cast<unsigned>(rng() % 100);
    uint64_t op = dice < 30   ? kSetBytes
                  : dice < 40 ? kSetNum
                  : dice < 55 ? kAddBytes
                  : dice < 75 ? kDelete
                              : kIncr;
    uint64_t arg = op == kSetNum ? (++seq) * 1000 : ++seq;
    log->inflight_arg.store(arg, std::memory_order_relaxed);
    // release: the parent reads the log only after the child is dead, but
    // the compiler must not sink these stores below the call.
    log->inflight.store(op << 32 | static_cast<uint64_t>(k), std::memory_order_release);
    const uint64_t pre = log->state[k].load(std::memory_order_relaxed);
    uint64_t post = pre;
    int rc = 0;
    switch (op) {
      case kSetBytes:
      case kAddBytes: {
        std::string v = BytesValue(round, k, arg);
        shmkv_write_opts_t o;
        shmkv_write_opts_init(&o);
        o.mode = op == kSetBytes ? SHMKV_SET : SHMKV_ADD;
        rc = shmkv_store(kv, key.data(), key.size(), v.data(), v.size(), &o, nullptr);
        if (rc == 0) post = kPresent | arg;
        if (rc == SHMKV_EEXIST && op == kAddBytes) rc = 0;
        break;
      }
      case kSetNum: {
        std::string v = std::to_string(arg);
        rc = shmkv_set(kv, key.data(), key.size(), v.data(), v.size(), 0);
        if (rc == 0) post = kPresent | kNumeric | arg;
        break;
      }
      case kDelete:
        rc = shmkv_delete(kv, key.data(), key.size(), 0);
        if (rc == 0) post = 0;
        if (rc == SHMKV_ENOTFOUND) rc = 0;
        break;
      case kIncr: {
        int64_t result = 0;
        rc = shmkv_incr(kv, key.data(), key.size(), 1, kIncrInitial, 0, &result);
        if (rc == 0) post = kPresent | kNumeric | static_cast<uint64_t>(result);
        if (rc == SHMKV_ENOTNUM) rc = 0;
        break;
      }
    }
    if (rc != 0) {
      log->errors.fetch_add(1);
      std::fprintf(stderr, "crash writer: %s (%s)\n", shmkv_strerror(rc), shmkv_last_error());
    }
    log->state[k].store(post, std::memory_order_relaxed);
    log->inflight.store(0, std::memory_order_release);
    log->ops.fetch_add(1, std::memory_order_release);
  }
}

TEST(CrashTest, RandomSigkillOfWriterLeavesUsableSegmentAndNoLeak) {
  Watchdog dog(120, "CrashTest.RandomSigkillOfWriterLeavesUsableSegmentAndNoLeak");
  ScopedSegmentName seg("crash");
  const int rounds = static_cast<int>(StressScale(20));
  // Every key of every round must stay (the soak scale makes 80 000 keys):
  // room for all of them, values up to 1 KiB.
  const uint64_t all_keys = static_cast<uint64_t>(rounds) * kKeysPerRound;
  shmkv_options_t opts = SmallOptions(std::max<uint64_t>(16u << 20, all_keys * 2048),
                                      std::max<uint64_t>(all_keys * 3, 65536));
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  std::mt19937_64 rng(static_cast<uint64_t>(NowNs()));
  uint64_t recovered_total = 0, inflight_kills = 0, took_effect = 0;
  for (int round = 0; round < rounds && !HasFailure(); ++round) {
    SharedRegion region(sizeof(ChildLog));
    ChildLog* log = region.as<ChildLog>();
    pid_t pid = ForkChild([&] { return CrashWriter(seg.name(), kv, round, log); });
    // Kill at a random moment: after a random number of operations, plus
    // a random spin so that the kill lands anywhere inside one.
    const uint64_t at = 20 + rng() % 3000;
    timespec poll = {0, 50'000};
    const int64_t give_up = NowNs() + 20'000'000'000;
    while (log->ops.load(std::memory_order_acquire) < at && NowNs() < give_up) {
      nanosleep(&poll, nullptr);
    }
    for (unsigned spin = static_cast<unsigned>(rng() % 50'000); spin > 0; --spin) {
      asm volatile("" ::: "memory");
    }
    kill(pid, SIGKILL);
    int status = WaitChild(pid);
    ASSERT_TRUE(KilledBy(status, SIGKILL)) << DescribeStatus(status);
    EXPECT_EQ(log->errors.load(), 0u) << "round " << round;

    // The child's half-done operation either took effect or did not.
    const uint64_t inflight = log->inflight.load(std::memory_order_acquire);
    const int inflight_key = inflight ? static_cast<int>(inflight & 0xffffffff) : -1;
    if (inflight) ++inflight_kills;
    std::string buf(4096, '\0');
    for (int k = 0; k < kKeysPerRound; ++k) {
      const std::string key = RoundKey(round, k);
      size_t len = 0;
      int rc = shmkv_get(kv, key.data(), key.size(), buf.data(), buf.size(), &len, nullptr);
      std::string got = rc == 0 ? buf.substr(0, len) : "";
      const uint64_t pre = log->state[k].load();
      bool ok = Matches(round, k, pre, rc, got);
      if (!ok && k == inflight_key) {
        uint64_t post = Apply(pre, inflight >> 32, log->inflight_arg.load());
        ok = Matches(round, k, post, rc, got);
        if (ok) ++took_effect;
      }
      EXPECT_TRUE(ok) << "round " << round << " key " << key << ": expected "
                      << DescribeState(round, k, pre)
                      << (k == inflight_key ? " (or the in-flight op's result)" : "") << ", got rc "
                      << rc << " \"" << got.substr(0, 24) << "\"";
    }
    // The parent keeps working on every key, the dead child's too.
    for (int k = 0; k < kKeysPerRound; ++k) {
      const std::string key = RoundKey(round, k);
      const std::string v = "parent-" + std::to_string(round) + "-" + std::to_string(k);
      ASSERT_EQ(shmkv_set(kv, key.data(), key.size(), v.data(), v.size(), 0), 0)
          << key << ": " << shmkv_last_error();
      size_t len = 0;
      ASSERT_EQ(shmkv_get(kv, key.data(), key.size(), buf.data(), buf.size(), &len, nullptr), 0)
          << key;
      EXPECT_EQ(buf.substr(0, len), v);
    }
    uint32_t recovered = 0;
    ASSERT_EQ(shmkv_recover(kv, &recovered), 0) << shmkv_last_error();
    EXPECT_GE(recovered, 1u) << "round " << round << ": the killed child was not recovered";
    recovered_total += recovered;
  }
  uint32_t more = 0;
  ASSERT_EQ(shmkv_recover(kv, &more), 0);
  ExpectNoLeak(kv, "after " + std::to_string(rounds) + " random kills");
  // Every key of every round is still there with the parent's value.
  std::string buf(4096, '\0');
  for (int round = 0; round < rounds; ++round) {
    for (int k = 0; k < kKeysPerRound; ++k) {
      const std::string key = RoundKey(round, k);
      size_t len = 0;
      ASSERT_EQ(shmkv_get(kv, key.data(), key.size(), buf.data(), buf.size(), &len, nullptr), 0)
          << key;
      EXPECT_EQ(buf.substr(0, len), "parent-" + std::to_string(round) + "-" + std::to_string(k));
    }
  }
  std::printf("%d kills: %llu inside an operation (%llu of those took effect), %llu recovered\n",
              rounds, static_cast<unsigned long long>(inflight_kills),
              static_cast<unsigned long long>(took_effect),
              static_cast<unsigned long long>(recovered_total));
  shmkv_close(kv);
}

// ---------------------------------------------------------------------
// Deterministic crash points.

constexpr int kAnchors = 100;

std::string AnchorKey(int i) { return "anchor-" + std::to_string(i); }
std::string AnchorValue(int i) { return "anchor-value-" + std::to_string(i * 7919); }

struct PointShared {
  std::atomic<int32_t> racer_pid;
  std::atomic<uint32_t> racer_go;
  std::atomic<uint64_t> child_errors;
};

void Expect(bool ok, PointShared* sh, const char* what, int rc) {
  if (!ok) {
    sh->child_errors.fetch_add(1);
    std::fprintf(stderr, "crash-point child: %s: rc %d %s (%s)\n", what, rc, shmkv_strerror(rc),
                 shmkv_last_error());
  }
}

// A grandchild racing the child on the same fresh keys, so that the
// insert-race paths (losing claims, helping, killing) run. Not armed.
void Racer(shmkv_t* kv, const std::string& prefix, PointShared* sh) {
  while (sh->racer_go.load(std::memory_order_acquire) == 0) sched_yield();
  for (int i = 0; i < 400; ++i) {
    std::string key = prefix + "race-" + std::to_string(i % 100);
    std::string v = "racer-" + std::to_string(i);
    shmkv_set(kv, key.data(), key.size(), v.data(), v.size(), 0);
    shmkv_write_opts_t o;
    shmkv_write_opts_init(&o);
    o.mode = SHMKV_ADD;
    std::string key2 = prefix + "race-add-" + std::to_string(i);
    shmkv_store(kv, key2.data(), key2.size(), v.data(), v.size(), &o, nullptr);
    std::string key3 = prefix + "race-incr-" + std::to_string(i % 50);
    shmkv_incr(kv, key3.data(), key3.size(), 1, 0, 0, nullptr);
    int allowed = 0;
    uint64_t retry = 0, remaining = 0;
    shmkv_throttle(kv, key3.data(), key3.size() - 1, 10, 1000, 5, &allowed, &retry, &remaining);
    shmkv_delete(kv, key.data(), key.size(), 0);
  }
}

// The operation mix run with one crash point armed.
int CrashPointChild(const std::string& seg, shmkv_t* kv, const char* point,
                    const std::string& fresh_seg, PointShared* sh) {
  const std::string prefix = std::string("cp-") + point + "-";
  // A process that dies registered, so that recovery has work to do.
  pid_t corpse = fork();
  if (corpse == 0) {
    for (int i = 0; i < 20; ++i) {
      std::string key = prefix + "corpse-" + std::to_string(i);
      shmkv_set(kv, key.data(), key.size(), "x", 1, 0);
    }
    raise(SIGKILL);
    _exit(3);
  }
  WaitChild(corpse);
  pid_t racer = fork();
  if (racer == 0) {
    Racer(kv, prefix, sh);
    _exit(0);
  }
  sh->racer_pid.store(racer);

  shmkv::testing::ArmCrashPoint(point, 1);
  int rc;
  uint32_t recovered = 0;
  rc = shmkv_recover(kv, &recovered);  // also this process's first call: registration
  Expect(rc == 0, sh, "recover", rc);

  // Attach and detach a second handle.
  shmkv_t* h2 = nullptr;
  rc = shmkv_open(seg.c_str(), nullptr, &h2);
  Expect(rc == 0, sh, "open existing", rc);
  if (rc == 0) shmkv_close(h2);

  // Create, use and clear a fresh segment.
  shmkv_options_t fresh_opts = SmallOptions(2u << 20);
  shmkv_t* fresh = nullptr;
  rc = shmkv_open(fresh_seg.c_str(), &fresh_opts, &fresh);
  Expect(rc == 0, sh, "create fresh segment", rc);
  if (rc == 0) {
    shmkv_set(fresh, "a", 1, "1", 1, 0);
    shmkv_incr(fresh, "a", 1, 1, 0, 0, nullptr);
    shmkv_clear(fresh);
    shmkv_close(fresh);
  }

  // Every kind of operation, on fresh and existing keys.
  sh->racer_go.store(1, std::memory_order_release);
  char buf[4096];
  size_t len;
  for (int i = 0; i < 100; ++i) {
    std::string key = prefix + "k" + std::to_string(i);
    std::string v(10 + (i * 53) % 1500, static_cast<char>('a' + i % 26));
    rc = shmkv_set(kv, key.data(), key.size(), v.data(), v.size(), 0);  // insert
    Expect(rc == 0, sh, "set new", rc);
    rc = shmkv_get(kv, key.data(), key.size(), buf, sizeof(buf), &len, nullptr);
    Expect(rc == 0, sh, "get", rc);
    rc = shmkv_set(kv, key.data(), key.size(), v.data(), v.size() / 2, 0);  // update
    Expect(rc == 0, sh, "set existing", rc);
    shmkv_write_opts_t o;
    shmkv_write_opts_init(&o);
    o.mode = SHMKV_ADD;
    rc = shmkv_store(kv, key.data(), key.size(), "x", 1, &o, nullptr);
    Expect(rc == SHMKV_EEXIST, sh, "add existing", rc);
    std::string key2 = key + "-added";
    rc = shmkv_store(kv, key2.data(), key2.size(), "y", 1, &o, nullptr);
    Expect(rc == 0, sh, "add new", rc);
    o.mode = SHMKV_REPLACE;
    rc = shmkv_store(kv, key2.data(), key2.size(), "z", 1, &o, nullptr);
    Expect(rc == 0, sh, "replace", rc);
    shmkv_item_info_t info;
    info.struct_size = sizeof(info);
    rc = shmkv_get(kv, key2.data(), key2.size(), buf, sizeof(buf), &len, &info);
    shmkv_write_opts_init(&o);
    o.expect_cas = info.cas;
    rc = shmkv_store(kv, key2.data(), key2.size(), "w", 1, &o, nullptr);
    Expect(rc == 0, sh, "store with cas", rc);
    rc = shmkv_store(kv, key2.data(), key2.size(), "v", 1, &o, nullptr);
    Expect(rc == SHMKV_ECAS, sh, "store with stale cas", rc);
    rc = shmkv_touch(kv, key.data(), key.size(), 60'000);
    Expect(rc == 0, sh, "touch", rc);
    int64_t ttl;
    shmkv_ttl(kv, key.data(), key.size(), &ttl);
    rc = shmkv_delete(kv, key2.data(), key2.size(), 0);
    Expect(rc == 0, sh, "delete", rc);
    std::string counter = key + "-n";
    rc = shmkv_incr(kv, counter.data(), counter.size(), 1, 5, 0, nullptr);  // create
    Expect(rc == 0, sh, "incr new", rc);
    rc = shmkv_incr(kv, counter.data(), counter.size(), 1, 5, 0, nullptr);  // in place
    Expect(rc == 0, sh, "incr existing", rc);
    // A cas-checked store seals the counter block before replacing it; the
    // next incr turns the text back into a counter.
    shmkv_item_info_t cinfo;
    cinfo.struct_size = sizeof(cinfo);
    rc = shmkv_get(kv, counter.data(), counter.size(), buf, sizeof(buf), &len, &cinfo);
    Expect(rc == 0 && std::string(buf, len) == "6", sh, "get counter", rc);
    shmkv_write_opts_init(&o);
    o.expect_cas = cinfo.cas;
    rc = shmkv_store(kv, counter.data(), counter.size(), "10", 2, &o, nullptr);
    Expect(rc == 0, sh, "store with cas on a counter", rc);
    rc = shmkv_incr(kv, counter.data(), counter.size(), 1, 5, 0, nullptr);
    Expect(rc == 0, sh, "incr on text", rc);
    rc = shmkv_incr(kv, key.data(), key.size(), 1, 0, 0, nullptr);
    Expect(rc == SHMKV_ENOTNUM, sh, "incr on text", rc);
    rc = shmkv_delete(kv, counter.data(), counter.size(), 0);
    Expect(rc == 0, sh, "delete counter", rc);
    // A rate limiter: created, updated, then denying (one per minute,
    // bursts of 2).
    std::string limiter = key + "-rate";
    int allowed = 0;
    uint64_t retry = 0, remaining = 0;
    for (int call = 0; call < 3; ++call) {
      rc = shmkv_throttle(kv, limiter.data(), limiter.size(), 1, 60'000, 2, &allowed, &retry,
                          &remaining);
      Expect(rc == 0 && allowed == (call < 2 ? 1 : 0), sh, "throttle", rc);
    }
  }
  uint64_t cursor = 0;
  do {
    rc = shmkv_scan(
        kv, &cursor, prefix.data(), prefix.size(), 256,
        [](const void*, size_t, const shmkv_item_info_t*, void*) { return 0; }, nullptr);
  } while (rc == 0 && cursor != 0);
  shmkv_stats_t stats;
  stats.struct_size = sizeof(stats);
  shmkv_stats(kv, &stats);

  // Expiry: jump this process's clock far ahead so that every TTL passes,
  // then read, overwrite and increment expired entries.
  for (int i = 0; i < 50; ++i) {
    std::string key = prefix + "ttl-" + std::to_string(i);
    shmkv_set(kv, key.data(), key.size(), "t", 1, 1000);
    std::string counter = key + "-n";
    shmkv_incr(kv, counter.data(), counter.size(), 1, 0, 1000, nullptr);
  }
  shmkv::testing::SetFakeNowMs(int64_t{1} << 40);
  for (int i = 0; i < 50; ++i) {
    std::string key = prefix + "ttl-" + std::to_string(i);
    rc = shmkv_get(kv, key.data(), key.size(), buf, sizeof(buf), &len, nullptr);
    Expect(rc == SHMKV_ENOTFOUND, sh, "get expired", rc);
    std::string counter = key + "-n";
    shmkv_incr(kv, counter.data(), counter.size(), 1, 0, 0, nullptr);
    if (i % 2 == 0) shmkv_set(kv, key.data(), key.size(), "u", 1, 0);
  }
  shmkv::testing::SetFakeNowMs(-1);

  // Values larger than a page: blocks spanning runs of pages, taken from
  // other classes and given back.
  for (int i = 0; i < 24; ++i) {
    const std::string v((300u << 10) + static_cast<size_t>(i % 4) * (200u << 10), 'L');
    std::string key = prefix + "large-" + std::to_string(i % 6);
    rc = shmkv_set(kv, key.data(), key.size(), v.data(), v.size(), 0);
    Expect(rc == 0 || rc == SHMKV_EBUSY, sh, "set a large value", rc);
  }

  // Page trading: sweep the value size over many size classes, so that
  // pages are drained from one class and formatted for another.
  for (int round = 0; round < 3; ++round) {
    for (size_t size = 100; size <= 6000; size += 97) {
      const std::string v(size, 'q');
      for (int j = 0; j < 40; ++j) {
        std::string key = prefix + "trade-" + std::to_string(size) + "-" + std::to_string(j);
        rc = shmkv_set(kv, key.data(), key.size(), v.data(), v.size(), 0);
        Expect(rc == 0 || rc == SHMKV_EBUSY, sh, "set while trading pages", rc);
      }
    }
  }

  // Pressure: more data than fits, so that eviction (index and memory)
  // runs. The parent's anchors are no-evict and must survive.
  std::string big(3000, 'p');
  for (int i = 0; i < 4000; ++i) {
    std::string key = prefix + "fill-" + std::to_string(i);
    rc = shmkv_set(kv, key.data(), key.size(), big.data(), big.size() - (i % 7) * 300, 0);
    Expect(rc == 0 || rc == SHMKV_EBUSY, sh, "set under pressure", rc);
  }
  for (int i = 0; i < 6000; ++i) {
    std::string key = prefix + "small-" + std::to_string(i);
    rc = shmkv_set(kv, key.data(), key.size(), "s", 1, 0);
    Expect(rc == 0 || rc == SHMKV_EBUSY, sh, "small set under pressure", rc);
  }
  WaitChild(racer);
  sh->racer_pid.store(0);
  shmkv_close(kv);
  return 0;
}

TEST(CrashTest, EveryCrashPointIsRecoverable) {
  Watchdog dog(300, "CrashTest.EveryCrashPointIsRecoverable");
  // Orphaned grandchildren (the racer of a killed child) come back to us,
  // so that they can be waited for before the census.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  ScopedSegmentName seg("points");
  shmkv_options_t opts = SmallOptions(8u << 20, 4096);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  for (int i = 0; i < kAnchors; ++i) {
    shmkv_write_opts_t o;
    shmkv_write_opts_init(&o);
    o.flags = SHMKV_WRITE_NOEVICT;
    std::string k = AnchorKey(i), v = AnchorValue(i);
    ASSERT_EQ(shmkv_store(kv, k.data(), k.size(), v.data(), v.size(), &o, nullptr), 0);
  }
  const char* const* points = shmkv::testing::CrashPoints();
  ASSERT_NE(points, nullptr);
  std::vector<std::string> reached, not_reached;
  SharedRegion region(sizeof(PointShared));
  PointShared* sh = region.as<PointShared>();
  for (const char* const* p = points; *p != nullptr && !HasFailure(); ++p) {
    const std::string point = *p;
    const std::string fresh_seg = UniqueSegmentName("cpfresh");
    sh->racer_pid.store(0);
    sh->racer_go.store(0);
    sh->child_errors.store(0);
    pid_t pid = ForkChild(
        [&] { return CrashPointChild(seg.name(), kv, point.c_str(), fresh_seg, sh); }, 60);
    int status = WaitChild(pid);
    if (KilledBy(status, SIGKILL)) {
      reached.push_back(point);
    } else if (ExitedCleanly(status)) {
      not_reached.push_back(point);
      EXPECT_EQ(sh->child_errors.load(), 0u) << point << ": the operation mix failed";
    } else {
      ADD_FAILURE() << point << ": child " << DescribeStatus(status);
    }
    // A racer left behind by a killed child runs to its end on its own.
    if (pid_t racer = sh->racer_pid.load(); racer > 0) {
      sh->racer_go.store(1);
      WaitChild(racer);
    }
    uint32_t recovered = 0;
    ASSERT_EQ(shmkv_recover(kv, &recovered), 0) << point << ": " << shmkv_last_error();
    ExpectNoLeak(kv, "after crash point " + point);
    // A killed child: recovery rebuilt the hints, so every block the child
    // and its racer held is visible to allocators again (the parent only
    // inserts, and an insert holds nothing).
    if (KilledBy(status, SIGKILL)) {
      shmkv::internal::Census c;
      ASSERT_EQ(shmkv::internal::TakeCensus(kv, &c), 0);
      EXPECT_EQ(c.free_hidden, 0u) << "after crash point " << point;
    }
    char buf[256];
    for (int i = 0; i < kAnchors; ++i) {
      std::string k = AnchorKey(i);
      size_t len = 0;
      int rc = shmkv_get(kv, k.data(), k.size(), buf, sizeof(buf), &len, nullptr);
      ASSERT_EQ(rc, 0) << point << ": anchor " << k << ": " << shmkv_strerror(rc);
      EXPECT_EQ(std::string(buf, len), AnchorValue(i)) << point;
    }
    // Killed between sealing a counter and replacing it: the counter is
    // still there, sealed, with its value; an increment copies it on.
    if (point == "counter.sealed" && KilledBy(status, SIGKILL)) {
      const std::string counter = "cp-counter.sealed-k0-n";
      size_t len = 0;
      ASSERT_EQ(shmkv_get(kv, counter.data(), counter.size(), buf, sizeof(buf), &len, nullptr), 0);
      EXPECT_EQ(std::string(buf, len), "6");
      int64_t r = 0;
      ASSERT_EQ(shmkv_incr(kv, counter.data(), counter.size(), 1, 0, 0, &r), 0);
      EXPECT_EQ(r, 7);
      ASSERT_EQ(shmkv_incr(kv, counter.data(), counter.size(), 1, 0, 0, &r), 0);
      EXPECT_EQ(r, 8);
    }
    // The parent can still write and read (fresh keys and updates).
    for (int i = 0; i < 50; ++i) {
      std::string k = "after-" + point + "-" + std::to_string(i);
      ASSERT_EQ(shmkv_set(kv, k.data(), k.size(), k.data(), k.size(), 0), 0) << point << " " << k;
      size_t len = 0;
      ASSERT_EQ(shmkv_get(kv, k.data(), k.size(), buf, sizeof(buf), &len, nullptr), 0) << point;
      EXPECT_EQ(std::string(buf, len), k);
    }
    // A fresh segment whose creator died is usable by the next opener.
    shmkv_t* fresh = nullptr;
    shmkv_options_t fresh_opts = SmallOptions(2u << 20);
    int rc = shmkv_open(fresh_seg.c_str(), &fresh_opts, &fresh);
    EXPECT_EQ(rc, 0) << point << ": reopening the fresh segment: " << shmkv_strerror(rc) << " "
                     << shmkv_last_error();
    if (rc == 0) {
      EXPECT_EQ(shmkv_set(fresh, "b", 1, "2", 1, 0), 0) << point;
      size_t len = 0;
      EXPECT_EQ(shmkv_get(fresh, "b", 1, buf, sizeof(buf), &len, nullptr), 0) << point;
      shmkv_close(fresh);
    }
    shmkv_unlink(fresh_seg.c_str());
  }
  std::string r, n;
  for (const auto& s : reached) r += " " + s;
  for (const auto& s : not_reached) n += " " + s;
  std::printf("crash points reached (%zu):%s\ncrash points never reached (%zu):%s\n",
              reached.size(), r.c_str(), not_reached.size(), n.c_str());
  RecordProperty("crash_points_reached", r);
  RecordProperty("crash_points_not_reached", n);
  EXPECT_FALSE(reached.empty());
  shmkv_close(kv);
}

// An update frees the old value's block but holds it, hint bit set, for the
// writer's next update (alloc.cc, ClaimReused). Closing the handle lets the
// held blocks go; a process killed with -9 while it holds some leaves them
// hidden from other allocators until recovery rebuilds the hints. Each
// case is checked both ways, so that the census shows what it should.
TEST(CrashTest, BlocksHeldForReuseAreReleasedByCloseAndByRecovery) {
  ScopedSegmentName seg("held");
  shmkv_options_t opts = SmallOptions(8u << 20, 4096);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  auto writer = [&](bool die) {
    shmkv_t* w = nullptr;
    if (shmkv_open(seg.c_str(), nullptr, &w) != 0) return 1;
    // Two size classes, each updated: two blocks held.
    for (int i = 0; i < 50; ++i) {
      const std::string small = "s" + std::to_string(i), big(300, static_cast<char>('a' + i % 26));
      if (shmkv_set(w, "k-small", 7, small.data(), small.size(), 0) != 0) return 2;
      if (shmkv_set(w, "k-big", 5, big.data(), big.size(), 0) != 0) return 3;
    }
    shmkv::internal::Census c;
    if (shmkv::internal::TakeCensus(w, &c) != 0 || c.free_hidden != 2) return 4;
    if (die) raise(SIGKILL);
    shmkv_close(w);  // lets them go
    return 0;
  };
  // Closed: nothing stays hidden.
  int status = WaitChild(ForkChild([&] { return writer(false); }, 60));
  ASSERT_TRUE(ExitedCleanly(status)) << DescribeStatus(status);
  shmkv::internal::Census c;
  ASSERT_EQ(shmkv::internal::TakeCensus(kv, &c), 0);
  EXPECT_EQ(c.free_hidden, 0u);
  // A thread that ends lets its held blocks go too (its participant is
  // given back); a delete holds nothing.
  std::thread([&] {
    for (int i = 0; i < 20; ++i) {
      const std::string v = "t" + std::to_string(i);
      ASSERT_EQ(shmkv_set(kv, "k-thread", 8, v.data(), v.size(), 0), 0);
    }
    shmkv::internal::Census mid;
    ASSERT_EQ(shmkv::internal::TakeCensus(kv, &mid), 0);
    EXPECT_EQ(mid.free_hidden, 1u);
    ASSERT_EQ(shmkv_delete(kv, "k-thread", 8, 0), 0);
    ASSERT_EQ(shmkv::internal::TakeCensus(kv, &mid), 0);
    EXPECT_EQ(mid.free_hidden, 1u);
  }).join();
  ASSERT_EQ(shmkv::internal::TakeCensus(kv, &c), 0);
  EXPECT_EQ(c.free_hidden, 0u);
  // Killed while holding: hidden until recovery, then free for everyone.
  status = WaitChild(ForkChild([&] { return writer(true); }, 60));
  ASSERT_TRUE(KilledBy(status, SIGKILL)) << DescribeStatus(status);
  ASSERT_EQ(shmkv::internal::TakeCensus(kv, &c), 0);
  EXPECT_EQ(c.free_hidden, 2u);
  {  // the offline checker counts them as lost until hints are rebuilt
    shmkv_check_report_t r{};
    r.struct_size = sizeof(r);
    ASSERT_EQ(shmkv_check(kv, SHMKV_CHECK_OFFLINE, &r), 0);
    EXPECT_EQ(r.leaked_blocks, 2u);
    EXPECT_NE(std::string(r.first_problem).find("hinted in use"), std::string::npos)
        << r.first_problem;
  }
  uint32_t recovered = 0;
  ASSERT_EQ(shmkv_recover(kv, &recovered), 0) << shmkv_last_error();
  EXPECT_EQ(recovered, 1u);
  ASSERT_EQ(shmkv::internal::TakeCensus(kv, &c), 0);
  EXPECT_EQ(c.free_hidden, 0u);
  ExpectNoLeak(kv, "after a holder was killed");
  char buf[512];
  size_t len = 0;
  ASSERT_EQ(shmkv_get(kv, "k-small", 7, buf, sizeof(buf), &len, nullptr), 0);
  EXPECT_EQ(std::string(buf, len), "s49");
  shmkv_close(kv);
}

}  // namespace
}  // namespace shmkv::stress
