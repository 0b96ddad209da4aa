// Properties of the use-case helpers across forked processes:
//  - throttle: with the clock standing still, 4 processes together admit
//    exactly `burst` requests (each decision is one atomic step on the
//    limiter's key, so none is lost or doubled);
//  - throttle under kill -9: a process killed at a random moment while
//    throttling leaves a limiter whose state counts every admission it
//    reported, plus at most the one in flight; recovery leaves no leak;
//  - GetOrCompute: 8 processes missing the same key at once run the
//    computation once, and all get its value.
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "shmkv/cache.h"
#include "stress/stress_util.h"
#include "testing.h"

namespace shmkv::stress {
namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;

constexpr int64_t kFrozenMs = 3'000'000;

// Restores the real clock when a test ends.
struct FrozenClock {
  FrozenClock() { shmkv::testing::SetFakeNowMs(kFrozenMs); }
  ~FrozenClock() { shmkv::testing::SetFakeNowMs(-1); }
};

TEST(UseCaseStressTest, ThrottleAcrossProcessesAdmitsExactlyTheBurst) {
  Watchdog dog(120, "UseCaseStressTest.ThrottleAcrossProcessesAdmitsExactlyTheBurst");
  FrozenClock frozen;  // inherited by the children
  ScopedSegmentName seg("throttle-procs");
  shmkv_options_t opts = SmallOptions();
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  constexpr int kProcs = 4;
  const uint64_t attempts = StressScale(3000);
  const uint64_t burst = attempts * kProcs / 2;
  struct Shared {
    std::atomic<uint64_t> admitted;
    std::atomic<uint64_t> errors;
  };
  SharedRegion region(sizeof(Shared));
  Shared* sh = region.as<Shared>();
  StartGate gate;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcs; ++p) {
    pids.push_back(ForkChild([&, p] {
      gate.Wait();
      shmkv_t* h = kv;
      if (p % 2 == 0 && OpenSegment(seg.name(), nullptr, &h) != 0) return 2;
      for (uint64_t i = 0; i < attempts; ++i) {
        int allowed = 0;
        uint64_t retry = 0, remaining = 0;
        if (shmkv_throttle(h, "api:client-7", 12, 1000, 1000, burst, &allowed, &retry,
                           &remaining) != 0) {
          sh->errors.fetch_add(1);
        }
        sh->admitted.fetch_add(static_cast<uint64_t>(allowed));
      }
      if (h != kv) shmkv_close(h);
      return 0;
    }));
  }
  gate.Open();
  for (pid_t pid : pids) {
    const int status = WaitChild(pid);
    EXPECT_TRUE(ExitedCleanly(status)) << DescribeStatus(status);
  }
  EXPECT_EQ(sh->errors.load(), 0u);
  EXPECT_EQ(sh->admitted.load(), burst);
  test::ExpectCleanCensus(kv, "after throttling from 4 processes");
  shmkv_close(kv);
}

TEST(UseCaseStressTest, ThrottleStateSurvivesKillNine) {
  Watchdog dog(120, "UseCaseStressTest.ThrottleStateSurvivesKillNine");
  FrozenClock frozen;
  ScopedSegmentName seg("throttle-kill");
  shmkv_options_t opts = SmallOptions();
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  // One request per microsecond (the finest rate), burst large enough
  // that nothing is denied: the state is then exactly
  // now + admitted x interval.
  constexpr uint64_t kRate = 1000, kPeriodMs = 1;
  constexpr uint64_t kIntervalNs = kPeriodMs * 1'000'000 / kRate;
  constexpr uint64_t kBurst = uint64_t{1} << 30;
  const std::string key = "login:ann";
  struct Shared {
    std::atomic<uint64_t> reported;  // admissions the child saw returned
    std::atomic<uint64_t> errors;
  };
  SharedRegion region(sizeof(Shared));
  Shared* sh = region.as<Shared>();
  std::mt19937_64 rng(0x7477);
  const int rounds = static_cast<int>(StressScale(20));
  for (int round = 0; round < rounds && !HasFailure(); ++round) {
    const uint64_t before = sh->reported.load();
    pid_t pid = ForkChild([&] {
      for (;;) {
        int allowed = 0;
        uint64_t retry = 0, remaining = 0;
        const int rc = shmkv_throttle(kv, key.data(), key.size(), kRate, kPeriodMs, kBurst,
                                      &allowed, &retry, &remaining);
        if (rc != 0 || allowed != 1) sh->errors.fetch_add(1);
        sh->reported.fetch_add(1);
      }
      return 0;
    });
    // Let it make progress, then kill it at a random point of its loop.
    const uint64_t target = before + 200 + rng() % 3000;
    while (sh->reported.load() < target) sched_yield();
    for (uint64_t spin = rng() % 20000; spin > 0; --spin) asm volatile("");
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    const int status = WaitChild(pid);
    ASSERT_TRUE(KilledBy(status, SIGKILL)) << DescribeStatus(status);
    uint32_t recovered = 0;
    ASSERT_EQ(shmkv_recover(kv, &recovered), 0) << shmkv_last_error();
    EXPECT_EQ(recovered, 1u) << "round " << round;
    test::ExpectCleanCensus(kv, "round " + std::to_string(round));
    char buf[32];
    size_t len = 0;
    ASSERT_EQ(shmkv_get(kv, key.data(), key.size(), buf, sizeof(buf), &len, nullptr), 0)
        << "round " << round;
    uint64_t tat = 0;
    ASSERT_EQ(std::from_chars(buf, buf + len, tat).ec, std::errc()) << std::string(buf, len);
    const uint64_t now_ns = static_cast<uint64_t>(kFrozenMs) * 1'000'000;
    ASSERT_GE(tat, now_ns);
    const uint64_t recorded = (tat - now_ns) / kIntervalNs;
    const uint64_t reported = sh->reported.load();
    // The one in flight when the kill came either took effect or did not.
    EXPECT_TRUE(recorded == reported || recorded == reported + 1)
        << "round " << round << ": state counts " << recorded << ", reported " << reported;
    sh->reported.store(recorded);  // the next child continues from the state
  }
  EXPECT_EQ(sh->errors.load(), 0u);
  shmkv_close(kv);
}

TEST(UseCaseStressTest, StampedeOfEightProcessesComputesOnce) {
  Watchdog dog(120, "UseCaseStressTest.StampedeOfEightProcessesComputesOnce");
  ScopedSegmentName seg("stampede");
  shmkv_options_t opts = SmallOptions();
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  shmkv_close(kv);
  constexpr int kProcs = 8;
  const int rounds = static_cast<int>(StressScale(5));
  struct Shared {
    std::atomic<uint64_t> computations;
    std::atomic<uint64_t> wrong;
  };
  SharedRegion region(sizeof(Shared));
  Shared* sh = region.as<Shared>();
  for (int round = 0; round < rounds; ++round) {
    const std::string key = "report:" + std::to_string(round);
    const std::string expected = "result of round " + std::to_string(round);
    StartGate gate;
    std::vector<pid_t> pids;
    for (int p = 0; p < kProcs; ++p) {
      pids.push_back(ForkChild([&] {
        auto cache = Cache::Open(seg.name());
        if (!cache) return 2;
        gate.Wait();
        ComputeOptions o;
        o.ttl = std::chrono::seconds(60);
        auto v = cache->GetOrCompute(
            key,
            [&]() -> Result<std::string> {
              sh->computations.fetch_add(1);
              // A slow query: the others arrive while it runs.
              std::this_thread::sleep_for(std::chrono::milliseconds(30));
              return expected;
            },
            o);
        if (!v || *v != expected) sh->wrong.fetch_add(1);
        return 0;
      }));
    }
    gate.Open();
    for (pid_t pid : pids) {
      const int status = WaitChild(pid);
      EXPECT_TRUE(ExitedCleanly(status)) << DescribeStatus(status);
    }
    EXPECT_EQ(sh->computations.load(), static_cast<uint64_t>(round + 1)) << "round " << round;
  }
  EXPECT_EQ(sh->wrong.load(), 0u);
}

}  // namespace
}  // namespace shmkv::stress
