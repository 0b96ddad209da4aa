// Eviction policies on a small segment filled far beyond its capacity
// (DESIGN.md §3.3, §5): ALLKEYS never refuses a write; NOEVICT entries and,
// under VOLATILE, entries without a TTL are never evicted; NONE refuses with
// SHMKV_ENOSPC but still reclaims expired entries. Afterwards the census
// shows no leaked block or slot.
#include <cstdint>
#include <random>
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

std::string Value(uint64_t i, size_t len) {
  std::string v(len, '\0');
  for (size_t j = 0; j < len; ++j) v[j] = static_cast<char>((i * 2654435761u + j) & 0xff);
  return v;
}

class EvictionTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (kv_ != nullptr) {
      ExpectNoLeak();
      shmkv_close(kv_);
    }
    shmkv::testing::SetFakeNowMs(-1);
  }

  void Open(uint32_t policy, uint64_t memory = 2u << 20, uint64_t max_items = 2000) {
    shmkv_options_t o = SmallOptions(memory, max_items);
    o.evict_policy = policy;
    ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &kv_), 0) << shmkv_last_error();
  }

  int Set(std::string_view k, std::string_view v, uint64_t ttl = 0, uint32_t flags = 0) {
    shmkv_write_opts_t w;
    shmkv_write_opts_init(&w);
    w.ttl_ms = ttl;
    w.flags = flags;
    return shmkv_store(kv_, k.data(), k.size(), v.data(), v.size(), &w, nullptr);
  }
  // 0 and the value, or the error.
  int Get(std::string_view k, std::string* out) {
    std::string buf(8192, '\0');
    size_t len = 0;
    int rc = shmkv_get(kv_, k.data(), k.size(), buf.data(), buf.size(), &len, nullptr);
    if (rc == 0) out->assign(buf.data(), len);
    return rc;
  }
  shmkv_stats_t Stats() {
    shmkv_stats_t s;
    s.struct_size = sizeof(s);
    EXPECT_EQ(shmkv_stats(kv_, &s), 0);
    return s;
  }
  void ExpectNoLeak() {
    shmkv::internal::Census c;
    ASSERT_EQ(shmkv::internal::TakeCensus(kv_, &c), 0);
    shmkv::test::ExpectCleanCensus(c);
    EXPECT_EQ(c.slots_live, c.blocks_linked);
    EXPECT_EQ(Stats().items, c.slots_live);
  }

  ScopedSegmentName seg_{"evict"};
  shmkv_t* kv_ = nullptr;
};

TEST_F(EvictionTest, AllKeysEverySetSucceedsAndIsImmediatelyVisible) {
  ASSERT_NO_FATAL_FAILURE(Open(SHMKV_EVICT_ALLKEYS));
  const int kN = 50000;
  for (int i = 0; i < kN; ++i) {
    const std::string k = "key:" + std::to_string(i);
    const std::string v = Value(i, 100);
    ASSERT_EQ(Set(k, v), 0) << "set " << i << ": " << shmkv_last_error();
    std::string got;
    ASSERT_EQ(Get(k, &got), 0) << "a set that returned 0 must be visible, key " << i;
    ASSERT_TRUE(got == v) << i;
  }
  int recent = 0;
  for (int i = kN - 100; i < kN; ++i) {
    std::string got;
    if (Get("key:" + std::to_string(i), &got) == 0) {
      ++recent;
      EXPECT_TRUE(got == Value(i, 100)) << i;
    }
  }
  EXPECT_GE(recent, 50) << "most of the last 100 keys should have survived";
  const shmkv_stats_t s = Stats();
  EXPECT_GT(s.evictions, 0u);
  EXPECT_LE(s.items, s.capacity_items * 2);
  EXPECT_GE(s.evictions + s.items, static_cast<uint64_t>(kN) * 9 / 10);
}

TEST_F(EvictionTest, AllKeysMixedSizesEverySetSucceeds) {
  ASSERT_NO_FATAL_FAILURE(Open(SHMKV_EVICT_ALLKEYS));
  std::mt19937_64 rng(7);
  for (int i = 0; i < 30000; ++i) {
    const std::string k = "mixed:" + std::to_string(i);
    const size_t len = rng() % 4000;
    const std::string v = Value(i, len);
    ASSERT_EQ(Set(k, v), 0) << "set " << i << " of " << len << " bytes: " << shmkv_last_error();
    std::string got;
    ASSERT_EQ(Get(k, &got), 0) << i;
    ASSERT_TRUE(got == v) << i;
  }
  EXPECT_GT(Stats().evictions, 0u);
}

TEST_F(EvictionTest, AllKeysOverwritesOfOneKeyNeverFail) {
  ASSERT_NO_FATAL_FAILURE(Open(SHMKV_EVICT_ALLKEYS, 1u << 20, 500));
  for (int i = 0; i < 20000; ++i) {
    const std::string v = Value(i, i % 3000);
    ASSERT_EQ(Set("same", v), 0) << i;
  }
  std::string got;
  ASSERT_EQ(Get("same", &got), 0);
  EXPECT_TRUE(got == Value(19999, 19999 % 3000));
}

TEST_F(EvictionTest, NoEvictEntriesAreNeverEvicted) {
  ASSERT_NO_FATAL_FAILURE(Open(SHMKV_EVICT_ALLKEYS));
  const int kPinned = 100;
  for (int i = 0; i < kPinned; ++i)
    ASSERT_EQ(Set("pin:" + std::to_string(i), Value(i, 100), 0, SHMKV_WRITE_NOEVICT), 0);
  int enospc = 0;
  for (int i = 0; i < 50000; ++i) {
    const int rc = Set("churn:" + std::to_string(i), Value(i, 100));
    // Only a bucket pair whose 8 candidates are all pinned may refuse.
    ASSERT_TRUE(rc == 0 || rc == SHMKV_ENOSPC) << rc;
    enospc += rc == SHMKV_ENOSPC;
  }
  EXPECT_LT(enospc, 500);
  for (int i = 0; i < kPinned; ++i) {
    std::string got;
    ASSERT_EQ(Get("pin:" + std::to_string(i), &got), 0) << "pinned key " << i << " was evicted";
    EXPECT_TRUE(got == Value(i, 100));
  }
  EXPECT_GT(Stats().evictions, 0u);
}

TEST_F(EvictionTest, NoEvictFlagIsDroppedByAPlainRewrite) {
  ASSERT_NO_FATAL_FAILURE(Open(SHMKV_EVICT_ALLKEYS));
  ASSERT_EQ(Set("pin", "v", 0, SHMKV_WRITE_NOEVICT), 0);
  ASSERT_EQ(Set("pin", "w"), 0);  // carries no NOEVICT: evictable again
  for (int i = 0; i < 50000; ++i) ASSERT_EQ(Set("churn:" + std::to_string(i), Value(i, 100)), 0);
  std::string got;
  EXPECT_EQ(Get("pin", &got), SHMKV_ENOTFOUND) << "a plain rewrite should drop NOEVICT";
}

TEST_F(EvictionTest, VolatileEvictsOnlyEntriesWithTtl) {
  ASSERT_NO_FATAL_FAILURE(Open(SHMKV_EVICT_VOLATILE));
  const int kPermanent = 300;
  for (int i = 0; i < kPermanent; ++i)
    ASSERT_EQ(Set("perm:" + std::to_string(i), Value(i, 100)), 0) << i;
  int stored = 0;
  for (int i = 0; i < 50000; ++i) {
    const int rc = Set("vol:" + std::to_string(i), Value(i, 100), 3600000);
    ASSERT_TRUE(rc == 0 || rc == SHMKV_ENOSPC) << rc;
    stored += rc == 0;
  }
  EXPECT_GT(stored, 45000);
  for (int i = 0; i < kPermanent; ++i) {
    std::string got;
    ASSERT_EQ(Get("perm:" + std::to_string(i), &got), 0)
        << "entry without TTL " << i << " was evicted";
    EXPECT_TRUE(got == Value(i, 100));
  }
  EXPECT_GT(Stats().evictions, 0u);
}

TEST_F(EvictionTest, VolatileWithNothingEvictableIsEnospc) {
  ASSERT_NO_FATAL_FAILURE(Open(SHMKV_EVICT_VOLATILE));
  std::vector<int> stored;
  int rc = 0;
  int i = 0;
  for (; i < 100000; ++i) {
    rc = Set("perm:" + std::to_string(i), Value(i, 100));
    if (rc != 0) break;
    stored.push_back(i);
  }
  ASSERT_EQ(rc, SHMKV_ENOSPC) << "never refused after " << i << " entries without TTL";
  EXPECT_NE(std::string(shmkv_last_error()), "");
  for (int j : stored) {
    std::string got;
    ASSERT_EQ(Get("perm:" + std::to_string(j), &got), 0) << j;
  }
  EXPECT_EQ(Stats().evictions, 0u);
  // A refused set of an existing key leaves the old value in place.
  std::string got;
  const int rc2 = Set("perm:0", Value(1234567, 3000));
  ASSERT_EQ(Get("perm:0", &got), 0);
  if (rc2 != 0) {
    EXPECT_TRUE(got == Value(0, 100));
  }
}

TEST_F(EvictionTest, NoneRefusesWhenFullAndEvictsNothing) {
  ASSERT_NO_FATAL_FAILURE(Open(SHMKV_EVICT_NONE));
  std::vector<int> stored;
  int refused = 0;
  for (int i = 0; i < 20000; ++i) {
    const int rc = Set("k:" + std::to_string(i), Value(i, 100), i % 2 ? 3600000 : 0);
    ASSERT_TRUE(rc == 0 || rc == SHMKV_ENOSPC) << rc;
    if (rc == 0) stored.push_back(i);
    refused += rc != 0;
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(stored.size(), 1000u);
  for (int j : stored) {
    std::string got;
    ASSERT_EQ(Get("k:" + std::to_string(j), &got), 0) << "key " << j << " vanished under NONE";
    EXPECT_TRUE(got == Value(j, 100));
  }
  const shmkv_stats_t s = Stats();
  EXPECT_EQ(s.evictions, 0u);
  EXPECT_EQ(s.items, stored.size());
}

// Memory, not the index, is the limit here (a big index, 2 KB values), so
// every refusal after expiry would be a failure to reclaim expired blocks.
TEST_F(EvictionTest, NoneStillReclaimsExpiredEntries) {
  shmkv::testing::SetFakeNowMs(50'000);
  ASSERT_NO_FATAL_FAILURE(Open(SHMKV_EVICT_NONE, 2u << 20, 20000));
  std::vector<int> stored;
  int rc = 0;
  for (int i = 0; i < 100000; ++i) {
    rc = Set("t:" + std::to_string(i), Value(i, 2000), 1000);
    if (rc != 0) break;
    stored.push_back(i);
  }
  ASSERT_EQ(rc, SHMKV_ENOSPC);
  ASSERT_GT(stored.size(), 100u);
  shmkv::testing::SetFakeNowMs(50'999);
  EXPECT_EQ(Set("t:more", Value(0, 2000), 1000), SHMKV_ENOSPC) << "nothing has expired yet";
  shmkv::testing::SetFakeNowMs(51'000);  // every entry has expired
  for (int j : stored) {
    ASSERT_EQ(Set("t:" + std::to_string(j), Value(j + 1, 2000)), 0)
        << "expired entries were not reclaimed, key " << j << ": " << shmkv_last_error();
  }
  for (int j : stored) {
    std::string got;
    ASSERT_EQ(Get("t:" + std::to_string(j), &got), 0);
    EXPECT_TRUE(got == Value(j + 1, 2000));
  }
  EXPECT_EQ(Stats().evictions, 0u);
  EXPECT_EQ(Stats().items, stored.size());
}

TEST_F(EvictionTest, NoneReclaimsExpiredEntriesForNewKeysToo) {
  shmkv::testing::SetFakeNowMs(50'000);
  ASSERT_NO_FATAL_FAILURE(Open(SHMKV_EVICT_NONE, 2u << 20, 20000));
  int n = 0;
  for (; n < 100000; ++n)
    if (Set("old:" + std::to_string(n), Value(n, 2000), 1000) != 0) break;
  ASSERT_GT(n, 100);
  shmkv::testing::SetFakeNowMs(51'000);
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(Set("new:" + std::to_string(i), Value(i, 2000)), 0)
        << "key " << i << " of " << n << ": " << shmkv_last_error();
  }
  EXPECT_EQ(Stats().evictions, 0u);
}

TEST_F(EvictionTest, VolatileEvictsTtlEntriesWhenMemoryIsFull) {
  ASSERT_NO_FATAL_FAILURE(Open(SHMKV_EVICT_VOLATILE, 2u << 20, 20000));
  for (int i = 0; i < 100; ++i) ASSERT_EQ(Set("perm:" + std::to_string(i), Value(i, 2000)), 0);
  for (int i = 0; i < 5000; ++i) {
    ASSERT_EQ(Set("vol:" + std::to_string(i), Value(i, 2000), 3600000), 0)
        << i << ": " << shmkv_last_error();
  }
  for (int i = 0; i < 100; ++i) {
    std::string got;
    ASSERT_EQ(Get("perm:" + std::to_string(i), &got), 0) << i;
  }
  EXPECT_GT(Stats().evictions, 0u);
}

}  // namespace
