// Serve-stale reads (shmkv_get_stale, Cache::GetStale) and cache-aside with
// stampede protection (Cache::GetOrCompute), in one process: plain reads
// never return expired data, get_stale does until something reclaims it;
// GetOrCompute computes on a miss only, stores with the TTL, never stores
// a failure, always releases its lease, waits for or serves stale around
// a lease held by someone else, and takes over a lapsed lease.
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "shmkv/cache.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"
#include "testing.h"

namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;
using std::chrono::milliseconds;

constexpr int64_t kT0 = 7'000'000;

class ComputeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shmkv::testing::SetFakeNowMs(kT0);
    shmkv_options_t o = SmallOptions(4u << 20);
    shmkv_t* kv = nullptr;
    ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &kv), 0) << shmkv_last_error();
    shmkv_close(kv);
    auto c = shmkv::Cache::Open(seg_.name());
    ASSERT_TRUE(c) << c.error().message();
    cache_.emplace(std::move(*c));
  }
  void TearDown() override {
    cache_.reset();
    shmkv::testing::SetFakeNowMs(-1);
  }
  void At(int64_t offset_ms) { shmkv::testing::SetFakeNowMs(kT0 + offset_ms); }
  shmkv::Cache& cache() { return *cache_; }
  static std::string LeaseKey(std::string_view key) {
    return std::string("\0lease:", 7) + std::string(key);
  }

  ScopedSegmentName seg_{"compute"};
  std::optional<shmkv::Cache> cache_;
};

TEST_F(ComputeTest, GetStaleReturnsExpiredValuesThatPlainGetDoesNot) {
  shmkv_t* kv = cache().c_handle();
  ASSERT_EQ(shmkv_set(kv, "page", 4, "old", 3, 1000), 0);
  char buf[16];
  size_t len = 0;
  uint64_t expired_ms = 99;
  shmkv_item_info_t info;
  info.struct_size = sizeof(info);
  ASSERT_EQ(shmkv_get_stale(kv, "page", 4, buf, sizeof(buf), &len, &info, &expired_ms), 0);
  EXPECT_EQ(std::string(buf, len), "old");
  EXPECT_EQ(expired_ms, 0u);  // fresh
  EXPECT_EQ(info.ttl_ms, 1000);
  At(1250);
  ASSERT_EQ(shmkv_get_stale(kv, "page", 4, buf, sizeof(buf), &len, &info, &expired_ms), 0);
  EXPECT_EQ(std::string(buf, len), "old");
  EXPECT_EQ(expired_ms, 251u);  // expired at +1000, now +1250 (+1: expiry is exclusive)
  EXPECT_EQ(info.ttl_ms, 0);
  // Too small a buffer: the size, as shmkv_get does.
  EXPECT_EQ(shmkv_get_stale(kv, "page", 4, buf, 1, &len, nullptr, nullptr), SHMKV_ETOOSMALL);
  EXPECT_EQ(len, 3u);
  // A plain read does not return it, and reclaims it...
  EXPECT_EQ(shmkv_get(kv, "page", 4, buf, sizeof(buf), &len, nullptr), SHMKV_ENOTFOUND);
  // ...after which there is nothing stale either.
  EXPECT_EQ(shmkv_get_stale(kv, "page", 4, buf, sizeof(buf), &len, nullptr, &expired_ms),
            SHMKV_ENOTFOUND);
  EXPECT_EQ(shmkv_get_stale(kv, "none", 4, buf, sizeof(buf), &len, nullptr, nullptr),
            SHMKV_ENOTFOUND);
  EXPECT_EQ(shmkv_get_stale(kv, "", 0, buf, sizeof(buf), &len, nullptr, nullptr), SHMKV_EINVAL);
  EXPECT_EQ(shmkv_get_stale(kv, "page", 4, buf, sizeof(buf), nullptr, nullptr, nullptr),
            SHMKV_EINVAL);
}

TEST_F(ComputeTest, CacheGetStaleGrowsItsString) {
  const std::string big(5000, 'b');
  ASSERT_FALSE(cache().Set("big", big, milliseconds(10)));
  At(20);
  std::string out;
  milliseconds expired_for{-1};
  shmkv::ItemInfo info;
  ASSERT_FALSE(cache().GetStale("big", &out, &info, &expired_for));
  EXPECT_EQ(out, big);
  EXPECT_EQ(expired_for, milliseconds(11));
  EXPECT_EQ(info.ttl, milliseconds(0));
  EXPECT_EQ(cache().GetStale("absent", &out), shmkv::Errc::kNotFound);
  EXPECT_TRUE(out.empty());
}

TEST_F(ComputeTest, ComputesOnAMissOnlyAndStoresWithTheTtl) {
  int calls = 0;
  shmkv::ItemInfo lease_info;
  auto compute = [&]() -> shmkv::Result<std::string> {
    ++calls;
    (void)cache().Get(LeaseKey("user:1"), &lease_info);
    return std::string("row-" + std::to_string(calls));
  };
  shmkv::ComputeOptions o;
  o.ttl = milliseconds(500);
  o.lease = milliseconds(3000);
  auto v = cache().GetOrCompute("user:1", compute, o);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(*v, "row-1");
  v = cache().GetOrCompute("user:1", compute, o);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, "row-1");
  EXPECT_EQ(calls, 1);
  // The lease was held while computing: no-evict, with the lease's TTL.
  EXPECT_TRUE(lease_info.no_evict);
  EXPECT_EQ(lease_info.ttl, milliseconds(3000));
  auto ttl = cache().Ttl("user:1");
  ASSERT_TRUE(ttl);
  EXPECT_EQ(*ttl, milliseconds(500));
  // The lease is gone once the value is stored.
  EXPECT_EQ(cache().Get(LeaseKey("user:1")).error(), shmkv::Errc::kNotFound);
  At(500);  // expired: computed again
  v = cache().GetOrCompute("user:1", compute, o);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, "row-2");
}

TEST_F(ComputeTest, AFailedComputationIsReturnedNotStoredAndReleasesTheLease) {
  auto fail = []() -> shmkv::Result<std::string> {
    return std::make_error_code(std::errc::io_error);
  };
  auto v = cache().GetOrCompute("k", fail);
  EXPECT_EQ(v.error(), std::make_error_code(std::errc::io_error));
  EXPECT_EQ(cache().Get("k").error(), shmkv::Errc::kNotFound);
  EXPECT_EQ(cache().Get(LeaseKey("k")).error(), shmkv::Errc::kNotFound);
  // An exception propagates, and the lease is released too.
  auto thrower = []() -> shmkv::Result<std::string> { throw std::runtime_error("db down"); };
  EXPECT_THROW((void)cache().GetOrCompute("k", thrower), std::runtime_error);
  EXPECT_EQ(cache().Get(LeaseKey("k")).error(), shmkv::Errc::kNotFound);
  auto ok = []() -> shmkv::Result<std::string> { return std::string("fine"); };
  v = cache().GetOrCompute("k", ok);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, "fine");
}

TEST_F(ComputeTest, WhileAnotherHoldsTheLeaseItServesStaleOrWaits) {
  ASSERT_FALSE(cache().Set("report", "v1", milliseconds(100)));
  At(200);  // expired, still in memory
  // Someone else is computing it.
  shmkv::WriteOptions lease;
  lease.mode = shmkv::WriteMode::kAdd;
  lease.ttl = milliseconds(10'000);
  ASSERT_TRUE(cache().Store(LeaseKey("report"), "pid 1", lease));
  int calls = 0;
  auto compute = [&]() -> shmkv::Result<std::string> {
    ++calls;
    return std::string("v2");
  };
  shmkv::ComputeOptions o;
  o.serve_stale = true;
  auto v = cache().GetOrCompute("report", compute, o);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(*v, "v1");
  EXPECT_EQ(calls, 0);
  // Without serve_stale it waits, here until its (short) deadline.
  o.serve_stale = false;
  o.wait = milliseconds(30);
  v = cache().GetOrCompute("report", compute, o);
  EXPECT_EQ(v.error(), shmkv::Errc::kBusy);
  EXPECT_EQ(calls, 0);
  // The lease holder died: its lease lapses and the next caller computes.
  At(200 + 10'000);
  v = cache().GetOrCompute("report", compute, o);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(*v, "v2");
  EXPECT_EQ(calls, 1);
}

TEST_F(ComputeTest, TheStaleValueStaysServableWhileTheLeaseHolderComputes) {
  ASSERT_FALSE(cache().Set("feed", "old", milliseconds(100)));
  At(150);
  std::string seen_during = "<not read>";
  auto compute = [&]() -> shmkv::Result<std::string> {
    // What another process with serve_stale would get now.
    std::string stale;
    milliseconds expired_for{0};
    if (cache().GetStale("feed", &stale, nullptr, &expired_for)) stale = "<gone>";
    seen_during = stale;
    return std::string("new");
  };
  auto v = cache().GetOrCompute("feed", compute);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(*v, "new");
  EXPECT_EQ(seen_during, "old");
}

TEST_F(ComputeTest, BadArguments) {
  int calls = 0;
  auto ok = [&]() -> shmkv::Result<std::string> {
    ++calls;
    return std::string("x");
  };
  shmkv::ComputeOptions o;
  o.lease = milliseconds(0);
  EXPECT_EQ(cache().GetOrCompute("k", ok, o).error(), shmkv::Errc::kInvalid);
  // A bad TTL is refused before anything is computed.
  shmkv::ComputeOptions bad_ttl;
  bad_ttl.ttl = milliseconds(-1);
  EXPECT_EQ(cache().GetOrCompute("k", ok, bad_ttl).error(), shmkv::Errc::kInvalid);
  EXPECT_EQ(calls, 0);
  // Waiting forever is a valid wait.
  shmkv::ComputeOptions forever;
  forever.wait = milliseconds::max();
  EXPECT_TRUE(cache().GetOrCompute("forever", ok, forever));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(cache().GetOrCompute("k", nullptr).error(), shmkv::Errc::kInvalid);
  // Room for the lease key: at most max_key_len - 7 bytes.
  EXPECT_EQ(cache().GetOrCompute(std::string(250, 'k'), ok).error(), shmkv::Errc::kKeyTooBig);
  EXPECT_TRUE(cache().GetOrCompute(std::string(243, 'k'), ok));
}

}  // namespace
