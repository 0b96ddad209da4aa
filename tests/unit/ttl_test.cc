// TTL edges, stepped with the fake clock (shmkv::testing::SetFakeNowMs): an
// entry stored with ttl T at time t is visible up to t+T-1 and gone from t+T
// on, for every verb (get, scan, ttl, touch, incr, add, replace, cas, delete).
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"
#include "testing.h"

namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;

// Not a multiple of 1000: the index keeps a coarse expiry in whole seconds,
// the exact edge must still be exact to the millisecond.
constexpr int64_t kT0 = 1'000'123;

int CollectKey(const void* key, size_t key_len, const shmkv_item_info_t*, void* ctx) {
  static_cast<std::vector<std::string>*>(ctx)->emplace_back(static_cast<const char*>(key), key_len);
  return 0;
}

class TtlTest : public ::testing::Test {
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

  int Set(std::string_view k, std::string_view v, uint64_t ttl = 0) {
    return shmkv_set(kv_, k.data(), k.size(), v.data(), v.size(), ttl);
  }
  int Get(std::string_view k, std::string* out = nullptr, shmkv_item_info_t* info = nullptr) {
    char buf[256];
    size_t len = 0;
    int rc = shmkv_get(kv_, k.data(), k.size(), buf, sizeof(buf), &len, info);
    if (rc == 0 && out != nullptr) out->assign(buf, len);
    return rc;
  }
  int Ttl(std::string_view k, int64_t* t) { return shmkv_ttl(kv_, k.data(), k.size(), t); }
  int Store(std::string_view k, std::string_view v, uint32_t mode, uint64_t ttl = 0,
            uint64_t expect_cas = 0, uint32_t flags = 0) {
    shmkv_write_opts_t w;
    shmkv_write_opts_init(&w);
    w.mode = mode;
    w.ttl_ms = ttl;
    w.expect_cas = expect_cas;
    w.flags = flags;
    return shmkv_store(kv_, k.data(), k.size(), v.data(), v.size(), &w, nullptr);
  }
  std::set<std::string> Keys() {
    std::vector<std::string> keys;
    uint64_t cursor = 0;
    do {
      EXPECT_EQ(shmkv_scan(kv_, &cursor, nullptr, 0, 1000, CollectKey, &keys), 0);
    } while (cursor != 0);
    return {keys.begin(), keys.end()};
  }

  ScopedSegmentName seg_{"ttl"};
  shmkv_t* kv_ = nullptr;
};

TEST_F(TtlTest, VisibleAt999GoneAt1000) {
  ASSERT_EQ(Set("k", "v", 1000), 0);
  At(999);
  std::string v;
  ASSERT_EQ(Get("k", &v), 0);
  EXPECT_EQ(v, "v");
  At(1000);
  EXPECT_EQ(Get("k"), SHMKV_ENOTFOUND);
  At(5000);
  EXPECT_EQ(Get("k"), SHMKV_ENOTFOUND);
}

TEST_F(TtlTest, EdgeHoldsAtManyStartTimes) {
  for (int64_t start = 0; start < 3000; start += 137) {
    At(start);
    const std::string key = "k" + std::to_string(start);
    const uint64_t ttl = 1 + static_cast<uint64_t>(start % 1500);
    ASSERT_EQ(Set(key, "v", ttl), 0);
    At(start + static_cast<int64_t>(ttl) - 1);
    EXPECT_EQ(Get(key), 0) << "start " << start << " ttl " << ttl;
    At(start + static_cast<int64_t>(ttl));
    EXPECT_EQ(Get(key), SHMKV_ENOTFOUND) << "start " << start << " ttl " << ttl;
  }
}

TEST_F(TtlTest, OneMillisecondTtl) {
  ASSERT_EQ(Set("k", "v", 1), 0);
  EXPECT_EQ(Get("k"), 0);
  At(1);
  EXPECT_EQ(Get("k"), SHMKV_ENOTFOUND);
}

TEST_F(TtlTest, TtlCountsDown) {
  ASSERT_EQ(Set("k", "v", 1000), 0);
  int64_t t = 0;
  ASSERT_EQ(Ttl("k", &t), 0);
  EXPECT_EQ(t, 1000);
  At(250);
  ASSERT_EQ(Ttl("k", &t), 0);
  EXPECT_EQ(t, 750);
  At(999);
  ASSERT_EQ(Ttl("k", &t), 0);
  EXPECT_EQ(t, 1);
  shmkv_item_info_t info;
  info.struct_size = sizeof(info);
  ASSERT_EQ(Get("k", nullptr, &info), 0);
  EXPECT_EQ(info.ttl_ms, 1);
  At(1000);
  EXPECT_EQ(Ttl("k", &t), SHMKV_ENOTFOUND);
}

TEST_F(TtlTest, ExpiredKeyIsNotScanned) {
  ASSERT_EQ(Set("short", "v", 1000), 0);
  ASSERT_EQ(Set("long", "v", 5000), 0);
  ASSERT_EQ(Set("forever", "v"), 0);
  EXPECT_EQ(Keys(), (std::set<std::string>{"short", "long", "forever"}));
  At(1000);
  EXPECT_EQ(Keys(), (std::set<std::string>{"long", "forever"}));
  At(5000);
  EXPECT_EQ(Keys(), (std::set<std::string>{"forever"}));
}

TEST_F(TtlTest, ExpiredKeyCannotBeTouched) {
  ASSERT_EQ(Set("k", "v", 1000), 0);
  At(1000);
  EXPECT_EQ(shmkv_touch(kv_, "k", 1, 60000), SHMKV_ENOTFOUND);
  EXPECT_EQ(shmkv_touch(kv_, "k", 1, 0), SHMKV_ENOTFOUND);
  EXPECT_EQ(Get("k"), SHMKV_ENOTFOUND);
}

TEST_F(TtlTest, TouchExtendsFromNow) {
  ASSERT_EQ(Set("k", "v", 1000), 0);
  At(500);
  ASSERT_EQ(shmkv_touch(kv_, "k", 1, 1000), 0);
  At(1499);
  EXPECT_EQ(Get("k"), 0);
  int64_t t = 0;
  ASSERT_EQ(Ttl("k", &t), 0);
  EXPECT_EQ(t, 1);
  At(1500);
  EXPECT_EQ(Get("k"), SHMKV_ENOTFOUND);
}

TEST_F(TtlTest, TouchCanShortenTheTtl) {
  ASSERT_EQ(Set("k", "v", 100000), 0);
  ASSERT_EQ(shmkv_touch(kv_, "k", 1, 10), 0);
  At(10);
  EXPECT_EQ(Get("k"), SHMKV_ENOTFOUND);
}

TEST_F(TtlTest, TouchZeroPersists) {
  ASSERT_EQ(Set("k", "v", 1000), 0);
  At(999);
  ASSERT_EQ(shmkv_touch(kv_, "k", 1, 0), 0);
  At(1'000'000'000);
  EXPECT_EQ(Get("k"), 0);
  int64_t t = 0;
  ASSERT_EQ(Ttl("k", &t), 0);
  EXPECT_EQ(t, -1);
}

TEST_F(TtlTest, IncrOnExpiredKeyCreatesItFresh) {
  int64_t r = 0;
  ASSERT_EQ(shmkv_incr(kv_, "n", 1, 5, 10, 1000, &r), 0);
  EXPECT_EQ(r, 10);
  ASSERT_EQ(shmkv_incr(kv_, "n", 1, 5, 10, 1000, &r), 0);
  EXPECT_EQ(r, 15);
  At(1000);
  ASSERT_EQ(shmkv_incr(kv_, "n", 1, 5, 10, 2000, &r), 0);
  EXPECT_EQ(r, 10) << "an expired counter must restart at initial";
  int64_t t = 0;
  ASSERT_EQ(Ttl("n", &t), 0);
  EXPECT_EQ(t, 2000) << "the fresh counter takes the new ttl";
  std::string v;
  ASSERT_EQ(Get("n", &v), 0);
  EXPECT_EQ(v, "10");
}

TEST_F(TtlTest, IncrOnExpiredNonNumberCreatesItFresh) {
  ASSERT_EQ(Set("n", "not a number", 1000), 0);
  At(1000);
  int64_t r = 0;
  ASSERT_EQ(shmkv_incr(kv_, "n", 1, 1, 7, 0, &r), 0);
  EXPECT_EQ(r, 7);
  int64_t t = 0;
  ASSERT_EQ(Ttl("n", &t), 0);
  EXPECT_EQ(t, -1);
}

TEST_F(TtlTest, IncrKeepsTheCounterWindow) {
  int64_t r = 0;
  ASSERT_EQ(shmkv_incr(kv_, "win", 1, 1, 1, 1000, &r), 0);
  At(400);
  ASSERT_EQ(shmkv_incr(kv_, "win", 1, 1, 1, 1000, &r), 0);
  EXPECT_EQ(r, 2);
  At(999);
  ASSERT_EQ(shmkv_incr(kv_, "win", 1, 1, 1, 1000, &r), 0);
  EXPECT_EQ(r, 3);
  At(1000);
  ASSERT_EQ(shmkv_incr(kv_, "win", 1, 1, 1, 1000, &r), 0);
  EXPECT_EQ(r, 1) << "a fixed window restarts exactly at its end";
}

TEST_F(TtlTest, AddOnExpiredKeySucceeds) {
  ASSERT_EQ(Set("lease", "old", 1000), 0);
  At(999);
  EXPECT_EQ(Store("lease", "new", SHMKV_ADD, 1000), SHMKV_EEXIST);
  At(1000);
  ASSERT_EQ(Store("lease", "new", SHMKV_ADD, 1000), 0);
  std::string v;
  ASSERT_EQ(Get("lease", &v), 0);
  EXPECT_EQ(v, "new");
  int64_t t = 0;
  ASSERT_EQ(Ttl("lease", &t), 0);
  EXPECT_EQ(t, 1000);
}

TEST_F(TtlTest, ReplaceOnExpiredKeyIsEnotfound) {
  ASSERT_EQ(Set("k", "old", 1000), 0);
  At(1000);
  EXPECT_EQ(Store("k", "new", SHMKV_REPLACE), SHMKV_ENOTFOUND);
  EXPECT_EQ(Get("k"), SHMKV_ENOTFOUND);
}

TEST_F(TtlTest, ExpectCasOnExpiredKeyIsEnotfound) {
  ASSERT_EQ(Set("k", "old", 1000), 0);
  shmkv_item_info_t info;
  info.struct_size = sizeof(info);
  ASSERT_EQ(Get("k", nullptr, &info), 0);
  At(1000);
  EXPECT_EQ(Store("k", "new", SHMKV_SET, 0, info.cas), SHMKV_ENOTFOUND);
  EXPECT_EQ(shmkv_delete(kv_, "k", 1, info.cas), SHMKV_ENOTFOUND);
  EXPECT_EQ(Get("k"), SHMKV_ENOTFOUND);
}

TEST_F(TtlTest, DeleteOnExpiredKeyIsEnotfound) {
  ASSERT_EQ(Set("k", "v", 1000), 0);
  At(1000);
  EXPECT_EQ(shmkv_delete(kv_, "k", 1, 0), SHMKV_ENOTFOUND);
}

TEST_F(TtlTest, SetOnExpiredKeyStartsWithoutTheOldTtl) {
  ASSERT_EQ(Set("k", "old", 1000), 0);
  At(1000);
  ASSERT_EQ(Set("k", "new"), 0);
  int64_t t = 0;
  ASSERT_EQ(Ttl("k", &t), 0);
  EXPECT_EQ(t, -1);
  At(100000);
  std::string v;
  ASSERT_EQ(Get("k", &v), 0);
  EXPECT_EQ(v, "new");
}

TEST_F(TtlTest, KeepTtlOnLiveKeyKeepsTheDeadline) {
  ASSERT_EQ(Set("k", "v1", 1000), 0);
  At(600);
  ASSERT_EQ(Store("k", "v2", SHMKV_SET, 50000, 0, SHMKV_WRITE_KEEPTTL), 0);
  int64_t t = 0;
  ASSERT_EQ(Ttl("k", &t), 0);
  EXPECT_EQ(t, 400);
  At(1000);
  EXPECT_EQ(Get("k"), SHMKV_ENOTFOUND);
}

TEST_F(TtlTest, ExpiredEntriesStayCountedUntilReclaimedButNeverReturned) {
  for (int i = 0; i < 100; ++i) ASSERT_EQ(Set("e" + std::to_string(i), "v", 1000), 0);
  At(1000);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(Get("e" + std::to_string(i)), SHMKV_ENOTFOUND);
  shmkv_stats_t s;
  s.struct_size = sizeof(s);
  ASSERT_EQ(shmkv_stats(kv_, &s), 0);
  EXPECT_LE(s.items, 100u);
  EXPECT_TRUE(Keys().empty());
  // Writing over them reclaims them.
  for (int i = 0; i < 100; ++i) ASSERT_EQ(Set("e" + std::to_string(i), "w"), 0);
  ASSERT_EQ(shmkv_stats(kv_, &s), 0);
  EXPECT_EQ(s.items, 100u);
}

TEST_F(TtlTest, LongestTtlIsKept) {
  ASSERT_EQ(Set("k", "v", 1ull << 40), 0);
  int64_t t = 0;
  ASSERT_EQ(Ttl("k", &t), 0);
  EXPECT_EQ(t, int64_t{1} << 40);
  At((int64_t{1} << 40) - 1);
  EXPECT_EQ(Get("k"), 0);
  At(int64_t{1} << 40);
  EXPECT_EQ(Get("k"), SHMKV_ENOTFOUND);
}

TEST_F(TtlTest, ReadOnlyHandleSeesExpiryToo) {
  ASSERT_EQ(Set("k", "v", 1000), 0);
  shmkv_options_t o;
  shmkv_options_init(&o);
  o.flags = SHMKV_OPEN_READONLY;
  shmkv_t* ro = nullptr;
  ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &ro), 0);
  char buf[8];
  size_t len = 0;
  At(999);
  EXPECT_EQ(shmkv_get(ro, "k", 1, buf, sizeof(buf), &len, nullptr), 0);
  At(1000);
  EXPECT_EQ(shmkv_get(ro, "k", 1, buf, sizeof(buf), &len, nullptr), SHMKV_ENOTFOUND);
  shmkv_close(ro);
}

}  // namespace
