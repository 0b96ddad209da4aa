// shmkv_throttle (GCRA) and Cache::Throttle, stepped with the fake clock:
// a burst of `burst` is admitted at once, then one request per
// period/rate; retry_after and remaining say exactly when and how many;
// an idle limiter expires back to a full burst; concurrent callers on one
// key never admit more than the algorithm allows (one atomic step each).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "shmkv/cache.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"
#include "testing.h"

namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;

constexpr int64_t kT0 = 5'000'000;

struct Decision {
  int rc = 0;
  int allowed = -1;
  uint64_t retry_after_ms = 0;
  uint64_t remaining = 0;
};

class ThrottleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shmkv::testing::SetFakeNowMs(kT0);
    shmkv_options_t o = SmallOptions(4u << 20);
    ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &kv_), 0) << shmkv_last_error();
  }
  void TearDown() override {
    shmkv_close(kv_);
    shmkv::testing::SetFakeNowMs(-1);
  }
  void At(int64_t offset_ms) { shmkv::testing::SetFakeNowMs(kT0 + offset_ms); }

  Decision Throttle(std::string_view key, uint64_t rate, uint64_t period_ms, uint64_t burst) {
    Decision d;
    d.rc = shmkv_throttle(kv_, key.data(), key.size(), rate, period_ms, burst, &d.allowed,
                          &d.retry_after_ms, &d.remaining);
    return d;
  }

  ScopedSegmentName seg_{"throttle"};
  shmkv_t* kv_ = nullptr;
};

TEST_F(ThrottleTest, BurstIsAdmittedAtOnceThenDenied) {
  // 10 per second (one per 100 ms), bursts of 5.
  for (uint64_t i = 0; i < 5; ++i) {
    const Decision d = Throttle("ip:1", 10, 1000, 5);
    ASSERT_EQ(d.rc, 0) << shmkv_last_error();
    EXPECT_EQ(d.allowed, 1) << "request " << i;
    EXPECT_EQ(d.retry_after_ms, 0u);
    EXPECT_EQ(d.remaining, 4 - i);
  }
  const Decision d = Throttle("ip:1", 10, 1000, 5);
  ASSERT_EQ(d.rc, 0);
  EXPECT_EQ(d.allowed, 0);
  EXPECT_EQ(d.retry_after_ms, 100u);
  EXPECT_EQ(d.remaining, 0u);
  // Another key has its own limiter.
  EXPECT_EQ(Throttle("ip:2", 10, 1000, 5).allowed, 1);
}

TEST_F(ThrottleTest, RetryAfterIsExact) {
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Throttle("k", 10, 1000, 3).allowed, 1);
  At(37);
  Decision d = Throttle("k", 10, 1000, 3);
  EXPECT_EQ(d.allowed, 0);
  EXPECT_EQ(d.retry_after_ms, 63u);
  At(99);
  d = Throttle("k", 10, 1000, 3);
  EXPECT_EQ(d.allowed, 0);
  EXPECT_EQ(d.retry_after_ms, 1u);
  At(100);  // exactly when it said
  d = Throttle("k", 10, 1000, 3);
  EXPECT_EQ(d.allowed, 1);
  EXPECT_EQ(d.remaining, 0u);
  // A denied request recorded nothing: the next slot is 100 ms later.
  At(199);
  EXPECT_EQ(Throttle("k", 10, 1000, 3).allowed, 0);
  At(200);
  EXPECT_EQ(Throttle("k", 10, 1000, 3).allowed, 1);
}

TEST_F(ThrottleTest, SustainedLoadIsAdmittedAtTheRate) {
  // 100 per second with bursts of 10, three attempts every millisecond for
  // 10 s: the burst at once, then one every interval.
  const uint64_t rate = 100, period_ms = 1000, burst = 10;
  const int64_t duration_ms = 10'000;
  const uint64_t interval_ms = period_ms / rate;
  uint64_t admitted = 0;
  for (int64_t t = 0; t < duration_ms; ++t) {
    At(t);
    for (int i = 0; i < 3; ++i) {
      const Decision d = Throttle("busy", rate, period_ms, burst);
      ASSERT_EQ(d.rc, 0);
      admitted += static_cast<uint64_t>(d.allowed);
    }
  }
  EXPECT_EQ(admitted, burst + static_cast<uint64_t>(duration_ms - 1) / interval_ms);
}

TEST_F(ThrottleTest, IdleLimiterExpiresBackToAFullBurst) {
  for (int i = 0; i < 4; ++i) ASSERT_EQ(Throttle("idle", 2, 1000, 4).allowed, 1);
  int64_t ttl = 0;
  ASSERT_EQ(shmkv_ttl(kv_, "idle", 4, &ttl), 0);
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 4 * 500 + 2);  // the limiter is full again after burst x interval
  At(4 * 500 + 2);
  size_t len = 0;
  char buf[32];
  EXPECT_EQ(shmkv_get(kv_, "idle", 4, buf, sizeof(buf), &len, nullptr), SHMKV_ENOTFOUND);
  const Decision d = Throttle("idle", 2, 1000, 4);
  EXPECT_EQ(d.allowed, 1);
  EXPECT_EQ(d.remaining, 3u);
}

TEST_F(ThrottleTest, PartialRefill) {
  for (int i = 0; i < 4; ++i) ASSERT_EQ(Throttle("refill", 2, 1000, 4).allowed, 1);
  At(1000);  // two intervals later: two requests again, not four
  EXPECT_EQ(Throttle("refill", 2, 1000, 4).remaining, 1u);
  EXPECT_EQ(Throttle("refill", 2, 1000, 4).remaining, 0u);
  EXPECT_EQ(Throttle("refill", 2, 1000, 4).allowed, 0);
}

TEST_F(ThrottleTest, ALimiterIsNotEvictedByAFullCache) {
  // Exhausted: one request a minute, bursts of 2.
  for (int i = 0; i < 2; ++i) ASSERT_EQ(Throttle("ip:9", 1, 60'000, 2).allowed, 1);
  shmkv_item_info_t info;
  info.struct_size = sizeof(info);
  char buf[32];
  size_t len = 0;
  ASSERT_EQ(shmkv_get(kv_, "ip:9", 4, buf, sizeof(buf), &len, &info), 0);
  EXPECT_EQ(info.write_flags & SHMKV_WRITE_NOEVICT, static_cast<uint32_t>(SHMKV_WRITE_NOEVICT));
  // Far more data than the segment holds: other entries are evicted.
  const std::string value(200, 'v');
  for (int i = 0; i < 60'000; ++i) {
    const std::string k = "fill:" + std::to_string(i);
    ASSERT_EQ(shmkv_set(kv_, k.data(), k.size(), value.data(), value.size(), 0), 0) << i;
  }
  shmkv_stats_t st;
  st.struct_size = sizeof(st);
  ASSERT_EQ(shmkv_stats(kv_, &st), 0);
  EXPECT_GT(st.evictions, 0u);
  // The limiter is still there, still exhausted: no new burst.
  const Decision d = Throttle("ip:9", 1, 60'000, 2);
  EXPECT_EQ(d.allowed, 0);
  EXPECT_GT(d.retry_after_ms, 0u);
}

TEST_F(ThrottleTest, BadArgumentsAreRefusedWithAReason) {
  int allowed;
  uint64_t retry, remaining;
  EXPECT_EQ(Throttle("k", 0, 1000, 1).rc, SHMKV_EINVAL);
  EXPECT_NE(std::string(shmkv_last_error()).find("at least 1"), std::string::npos);
  EXPECT_EQ(Throttle("k", 1, 0, 1).rc, SHMKV_EINVAL);
  EXPECT_EQ(Throttle("k", 1, 1000, 0).rc, SHMKV_EINVAL);
  EXPECT_EQ(Throttle("k", 2'000'000, 1000, 1).rc, SHMKV_EINVAL);  // > 1 per microsecond
  EXPECT_NE(std::string(shmkv_last_error()).find("too high"), std::string::npos);
  EXPECT_EQ(Throttle("k", 1, uint64_t{1} << 62, 1).rc, SHMKV_EINVAL);
  EXPECT_EQ(Throttle("k", 1, 1000, uint64_t{1} << 40).rc, SHMKV_EINVAL);  // burst x interval
  EXPECT_EQ(shmkv_throttle(kv_, "k", 1, 1, 1000, 1, nullptr, &retry, &remaining), SHMKV_EINVAL);
  EXPECT_EQ(shmkv_throttle(kv_, "k", 1, 1, 1000, 1, &allowed, nullptr, &remaining), SHMKV_EINVAL);
  EXPECT_EQ(shmkv_throttle(kv_, "k", 0, 1, 1000, 1, &allowed, &retry, &remaining), SHMKV_EINVAL);
  EXPECT_EQ(shmkv_throttle(nullptr, "k", 1, 1, 1000, 1, &allowed, &retry, &remaining),
            SHMKV_EINVAL);
  const std::string long_key(300, 'k');
  EXPECT_EQ(Throttle(long_key, 1, 1000, 1).rc, SHMKV_EKEYTOOBIG);
  // Nothing was stored by any of them.
  shmkv_stats_t st;
  st.struct_size = sizeof(st);
  ASSERT_EQ(shmkv_stats(kv_, &st), 0);
  EXPECT_EQ(st.items, 0u);
}

TEST_F(ThrottleTest, AKeyHoldingSomethingElseIsNotTouched) {
  ASSERT_EQ(shmkv_set(kv_, "name", 4, "alice", 5, 0), 0);
  EXPECT_EQ(Throttle("name", 10, 1000, 5).rc, SHMKV_ENOTNUM);
  EXPECT_NE(std::string(shmkv_last_error()).find("rate limiter"), std::string::npos);
  ASSERT_EQ(shmkv_set(kv_, "neg", 3, "-5", 2, 0), 0);
  EXPECT_EQ(Throttle("neg", 10, 1000, 5).rc, SHMKV_ENOTNUM);
  char buf[16];
  size_t len = 0;
  ASSERT_EQ(shmkv_get(kv_, "name", 4, buf, sizeof(buf), &len, nullptr), 0);
  EXPECT_EQ(std::string(buf, len), "alice");
}

TEST_F(ThrottleTest, ReadOnlyHandleCannotThrottle) {
  shmkv_options_t o;
  shmkv_options_init(&o);
  o.flags = SHMKV_OPEN_READONLY;
  shmkv_t* ro = nullptr;
  ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &ro), 0) << shmkv_last_error();
  int allowed;
  uint64_t retry, remaining;
  EXPECT_EQ(shmkv_throttle(ro, "k", 1, 10, 1000, 5, &allowed, &retry, &remaining), SHMKV_EREADONLY);
  shmkv_close(ro);
}

TEST_F(ThrottleTest, ConcurrentCallersAdmitExactlyTheBurst) {
  // The clock stands still: exactly `burst` requests can be admitted, however
  // the threads' attempts interleave. Each admission is one slot CAS on
  // the limiter's key; a lost update would admit more.
  constexpr uint64_t kBurst = 2000;
  constexpr int kThreads = 4;
  constexpr int kAttempts = 1500;
  std::atomic<uint64_t> admitted{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kAttempts; ++i) {
        const Decision d = Throttle("shared", 1000, 1000, kBurst);
        if (d.rc != 0) errors.fetch_add(1);
        admitted.fetch_add(static_cast<uint64_t>(d.allowed == 1));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(admitted.load(), kBurst);
  shmkv::test::ExpectCleanCensus(kv_, "after concurrent throttling");
}

TEST_F(ThrottleTest, CacheThrottleAgreesWithTheCApi) {
  auto cache = shmkv::Cache::Open(seg_.name());
  ASSERT_TRUE(cache) << cache.error().message();
  using std::chrono::milliseconds;
  for (uint64_t i = 0; i < 3; ++i) {
    auto d = cache->Throttle("cpp", 4, milliseconds(1000), 3);
    ASSERT_TRUE(d) << d.error().message();
    EXPECT_TRUE(d->allowed);
    EXPECT_EQ(d->remaining, 2 - i);
  }
  auto d = cache->Throttle("cpp", 4, milliseconds(1000), 3);
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->allowed);
  EXPECT_EQ(d->retry_after, milliseconds(250));
  // The C API sees the same limiter.
  EXPECT_EQ(Throttle("cpp", 4, 1000, 3).allowed, 0);
  EXPECT_EQ(cache->Throttle("cpp", 4, milliseconds(-1), 3).error(), shmkv::Errc::kInvalid);
}

}  // namespace
