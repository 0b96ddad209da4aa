// Large values (DESIGN.md §5: "max_value_len is capped at a quarter of the
// data area"; default 1 MiB). Values larger than a page are stored in
// blocks spanning several contiguous pages, so small segments take large
// values: 8 MiB and larger take the default 1 MiB, a 4 MiB segment takes
// about a quarter of its data area. Covers large values mixed with small
// ones, pages traded between large and small values both ways, TTL expiry
// of a large value (expired entries are always reclaimable), and
// SHMKV_EVICT_NONE. Every test ends with a leak census.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "handle.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"
#include "testing.h"

namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;

uint64_t Mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t HashOf(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// A recognisable value: every 8-byte word depends on (tag, len, position),
// so a value of another key, another version, another length or a shifted
// copy never matches.
std::string Pattern(uint64_t tag, size_t len) {
  std::string s(len, '\0');
  const uint64_t seed = Mix(tag ^ Mix(len));
  for (size_t i = 0; i < len; i += 8) {
    const uint64_t w = Mix(seed + i);
    std::memcpy(&s[i], &w, std::min<size_t>(8, len - i));
  }
  return s;
}

// Tag of version `version` of key `key`.
uint64_t TagOf(std::string_view key, uint64_t version) { return HashOf(key) * 31 + version; }

// "above max_value_len N" in the last error message, or 0.
uint64_t MaxValueLenFromLastError() {
  const std::string msg = shmkv_last_error();
  const std::string marker = "above max_value_len ";
  const size_t at = msg.find(marker);
  if (at == std::string::npos) return 0;
  return std::strtoull(msg.c_str() + at + marker.size(), nullptr, 10);
}

class LargeValuesTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (kv_ != nullptr) {
      ExpectNoLeak();
      shmkv_close(kv_);
      kv_ = nullptr;
    }
    shmkv::testing::SetFakeNowMs(-1);
  }

  void Open(uint64_t memory_bytes, uint32_t policy = SHMKV_EVICT_ALLKEYS) {
    shmkv_options_t o = SmallOptions(memory_bytes);
    o.evict_policy = policy;
    ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &kv_), 0) << shmkv_last_error();
  }

  void ExpectNoLeak() {
    uint32_t recovered = 0;
    EXPECT_EQ(shmkv_recover(kv_, &recovered), 0) << shmkv_last_error();
    shmkv::internal::Census c;
    ASSERT_EQ(shmkv::internal::TakeCensus(kv_, &c), 0);
    shmkv::test::ExpectCleanCensus(c);
    EXPECT_EQ(c.slots_live, c.blocks_linked);
  }

  int Store(std::string_view k, std::string_view v, uint64_t ttl = 0, uint32_t flags = 0) {
    shmkv_write_opts_t w;
    shmkv_write_opts_init(&w);
    w.ttl_ms = ttl;
    w.flags = flags;
    return shmkv_store(kv_, k.data(), k.size(), v.data(), v.size(), &w, nullptr);
  }

  // 0 and the value, or the error code.
  int GetAlloc(std::string_view k, std::string* out) {
    void* p = nullptr;
    size_t len = 0;
    shmkv_item_info_t info;
    info.struct_size = sizeof(info);
    const int rc = shmkv_get_alloc(kv_, k.data(), k.size(), &p, &len, &info);
    if (rc == 0) {
      out->assign(static_cast<const char*>(p), len);
      EXPECT_EQ(info.value_len, len);
    }
    shmkv_free(p);
    return rc;
  }

  // Present (size query gives ETOOSMALL, or 0 for an empty value)?
  bool Present(std::string_view k) {
    size_t len = 0;
    const int rc = shmkv_get(kv_, k.data(), k.size(), nullptr, 0, &len, nullptr);
    EXPECT_TRUE(rc == SHMKV_ETOOSMALL || rc == 0 || rc == SHMKV_ENOTFOUND) << rc;
    return rc == SHMKV_ETOOSMALL || rc == 0;
  }

  // Byte-exact comparison without printing megabytes on failure.
  static ::testing::AssertionResult Same(const std::string& got, const std::string& want) {
    if (got.size() != want.size())
      return ::testing::AssertionFailure()
             << "length " << got.size() << ", expected " << want.size();
    const auto mm = std::mismatch(got.begin(), got.end(), want.begin());
    if (mm.first != got.end())
      return ::testing::AssertionFailure()
             << "first difference at byte " << (mm.first - got.begin()) << " of " << got.size();
    return ::testing::AssertionSuccess();
  }

  ::testing::AssertionResult ReadsBack(std::string_view k, const std::string& want) {
    std::string got;
    const int rc = GetAlloc(k, &got);
    if (rc != 0)
      return ::testing::AssertionFailure()
             << "get " << k << ": " << rc << " " << shmkv_last_error();
    ::testing::AssertionResult r = Same(got, want);
    if (!r) r << " (key " << k << ")";
    return r;
  }

  // Either absent or exactly `want` (a cache may evict, never corrupt).
  ::testing::AssertionResult AbsentOrExact(std::string_view k, const std::string& want) {
    std::string got;
    const int rc = GetAlloc(k, &got);
    if (rc == SHMKV_ENOTFOUND) return ::testing::AssertionSuccess();
    if (rc != 0)
      return ::testing::AssertionFailure()
             << "get " << k << ": " << rc << " " << shmkv_last_error();
    ::testing::AssertionResult r = Same(got, want);
    if (!r) r << " (key " << k << ")";
    return r;
  }

  shmkv_stats_t Stats() {
    shmkv_stats_t s;
    s.struct_size = sizeof(s);
    EXPECT_EQ(shmkv_stats(kv_, &s), 0);
    return s;
  }

  ScopedSegmentName seg_{"large"};
  shmkv_t* kv_ = nullptr;
};

// --- 1. Geometry: which segments take which values --------------------------

class LargeValueSizesTest : public LargeValuesTest,
                            public ::testing::WithParamInterface<uint64_t> {};

// 8 MiB and more: a quarter of the data area is above 1 MiB, so the default
// max_value_len (1 MiB) stands and a 1 MiB value is stored and read back.
TEST_P(LargeValueSizesTest, OneMiBValueStoresAndReadsBack) {
  Open(GetParam() * kMiB);
  const std::string v1 = Pattern(TagOf("big", 1), kMiB);
  ASSERT_EQ(Store("big", v1), 0) << shmkv_last_error();
  EXPECT_TRUE(ReadsBack("big", v1));
  // Overwrite with another 1 MiB value: the old run is freed, the new one read.
  const std::string v2 = Pattern(TagOf("big", 2), kMiB);
  ASSERT_EQ(Store("big", v2), 0) << shmkv_last_error();
  EXPECT_TRUE(ReadsBack("big", v2));
  // A second key of 1 MiB next to it.
  const std::string w = Pattern(TagOf("big2", 1), kMiB);
  ASSERT_EQ(Store("big2", w), 0) << shmkv_last_error();
  EXPECT_TRUE(ReadsBack("big2", w));
  EXPECT_TRUE(AbsentOrExact("big", v2));
  // The default max_value_len is 1 MiB: the cap lowers it, never raises it.
  const std::string over(kMiB + 1, 'x');
  EXPECT_EQ(Store("over", over), SHMKV_EVALTOOBIG);
  EXPECT_EQ(MaxValueLenFromLastError(), kMiB) << shmkv_last_error();
}

INSTANTIATE_TEST_SUITE_P(Segments, LargeValueSizesTest, ::testing::Values(8, 16, 32),
                         [](const ::testing::TestParamInfo<uint64_t>& i) {
                           return std::to_string(i.param) + "MiB";
                         });

// 4 MiB: the data area is below 4 MiB, so 1 MiB is above a quarter of it;
// the effective max (named by the error) is about a quarter of ~3.5 MiB and
// a value of exactly that size is stored.
// The size-class lookup table (sizes up to 64 KiB) gives what a search of
// the class sizes gives, at every byte count, on small and large segments.
TEST_F(LargeValuesTest, ClassLookupAgreesWithASearchOfTheClassSizes) {
  for (uint64_t memory : {uint64_t{4} << 20, uint64_t{64} << 20}) {
    shmkv_close(kv_);
    kv_ = nullptr;
    ScopedSegmentName seg("class-lookup");
    shmkv_options_t o = SmallOptions(memory);
    ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv_), 0) << shmkv_last_error();
    const shmkv::internal::View& v = kv_->v;
    for (uint64_t bytes = 1; bytes <= 3 * 64 * 1024; ++bytes) {
      int want = -1;
      for (uint32_t c = 0; c < v.n_classes; ++c) {
        if (v.class_size[c] >= bytes) {
          want = static_cast<int>(c);
          break;
        }
      }
      ASSERT_EQ(shmkv::internal::ClassFor(v, bytes), want) << bytes << " bytes";
    }
  }
}

TEST_F(LargeValuesTest, FourMiBSegmentTakesAQuarterOfItsDataArea) {
  Open(4 * kMiB);
  const std::string mib(kMiB, 'x');
  ASSERT_EQ(Store("probe", mib), SHMKV_EVALTOOBIG);
  const uint64_t max = MaxValueLenFromLastError();
  ASSERT_GT(max, 0u) << "no max_value_len in: " << shmkv_last_error();
  EXPECT_LT(max, kMiB);
  EXPECT_GE(max, 700 * kKiB) << "a quarter of the data area of a 4 MiB segment";
  const std::string over(max + 1, 'y');
  EXPECT_EQ(Store("probe", over), SHMKV_EVALTOOBIG);
  const std::string v = Pattern(TagOf("max", 1), max);
  ASSERT_EQ(Store("max", v), 0) << shmkv_last_error();
  EXPECT_TRUE(ReadsBack("max", v));
  EXPECT_EQ(Store("probe", mib), SHMKV_EVALTOOBIG) << "nothing stored under the probe key";
  EXPECT_FALSE(Present("probe"));
}

// --- 2. Mixed sizes ---------------------------------------------------------

// Thousands of 100-byte values interleaved with a few 300 KiB..1 MiB values
// overwritten many times with different sizes: every store succeeds (the
// default policy may evict), the value just written always reads back, and
// whatever is present is the latest version of its key.
TEST_F(LargeValuesTest, MixedSmallAndLargeValues) {
  Open(8 * kMiB);
  std::mt19937_64 rng(12345);
  constexpr int kLarge = 4;
  constexpr int kSmallKeys = 5000;
  constexpr int kRounds = 60;
  constexpr int kSmallPerRound = 150;
  std::map<std::string, std::string> latest;  // key -> latest value
  uint64_t version = 0;
  int small_cursor = 0;
  for (int round = 0; round < kRounds; ++round) {
    for (int j = 0; j < kSmallPerRound; ++j) {
      const std::string k = "small-" + std::to_string(small_cursor++ % kSmallKeys);
      std::string v = Pattern(TagOf(k, ++version), 100);
      ASSERT_EQ(Store(k, v), 0) << "round " << round << ": " << shmkv_last_error();
      latest[k] = std::move(v);
    }
    const std::string lk = "large-" + std::to_string(round % kLarge);
    const size_t len = 300 * kKiB + rng() % (kMiB - 300 * kKiB + 1);
    std::string lv = Pattern(TagOf(lk, ++version), len);
    ASSERT_EQ(Store(lk, lv), 0) << "round " << round << ", " << len
                                << " bytes: " << shmkv_last_error();
    ASSERT_TRUE(ReadsBack(lk, lv)) << "round " << round << ", " << len << " bytes";
    latest[lk] = std::move(lv);
    for (int i = 0; i < kLarge; ++i) {
      const std::string k = "large-" + std::to_string(i);
      if (latest.count(k) != 0) {
        ASSERT_TRUE(AbsentOrExact(k, latest[k])) << "round " << round;
      }
    }
  }
  int small_present = 0;
  for (const auto& [k, v] : latest) {
    EXPECT_TRUE(AbsentOrExact(k, v));
    if (k.rfind("small-", 0) == 0 && Present(k)) ++small_present;
  }
  EXPECT_GT(small_present, 0);
}

// Memory freed by deletes is used before anything is evicted: once every
// page held a ~250 KB value and all were deleted, two ~200 KB values
// (under 10 % of the segment) are both kept, whatever the page geometry.
TEST_F(LargeValuesTest, DeletedMemoryIsReusedBeforeEvicting) {
  Open(8 * kMiB);
  std::vector<std::string> filler;
  for (int i = 0; i < 40; ++i) {
    const std::string k = "w" + std::to_string(i);
    ASSERT_EQ(Store(k, Pattern(TagOf(k, 1), 250000)), 0) << shmkv_last_error();
    filler.push_back(k);
  }
  for (const std::string& k : filler) shmkv_delete(kv_, k.data(), k.size(), 0);
  const uint64_t evictions = Stats().evictions;
  std::map<std::string, std::string> latest;
  for (int round = 0; round < 6; ++round) {
    const std::string k = round % 2 == 0 ? "a" : "b";
    latest[k] = Pattern(TagOf(k, round), 200000);
    ASSERT_EQ(Store(k, latest[k]), 0) << shmkv_last_error();
    for (const auto& [key, v] : latest) EXPECT_TRUE(ReadsBack(key, v)) << "round " << round;
  }
  EXPECT_EQ(Stats().evictions, evictions) << "evicted with more than 90 % of memory free";
}

// --- 3. Pages traded both ways ----------------------------------------------

// Large values fill the segment (until evictions happen); then only small
// values (64..500 B) are written until they hold more than half of the
// segment, which needs pages taken from the large values; then large values
// again, which need contiguous pages taken back from the small ones.
TEST_F(LargeValuesTest, PagesTradedBetweenLargeAndSmallBothWays) {
  Open(8 * kMiB);
  const uint64_t mem = 8 * kMiB;
  // Phase 1: 1 MiB values until the segment evicts.
  int large = 0;
  for (; large < 32 && Stats().evictions == 0; ++large) {
    const std::string k = "L" + std::to_string(large);
    const std::string v = Pattern(TagOf(k, 1), kMiB);
    ASSERT_EQ(Store(k, v), 0) << "large " << large << ": " << shmkv_last_error();
    ASSERT_TRUE(ReadsBack(k, v));
  }
  ASSERT_GT(Stats().evictions, 0u) << "32 MiB of values never evicted in an 8 MiB segment";

  // Phase 2: small values only, until the present ones take more than half
  // the segment (counted as key + value + 32-byte block header, a lower
  // bound of what they occupy).
  std::mt19937_64 rng(777);
  std::vector<std::pair<std::string, size_t>> alive;  // not yet seen evicted
  std::vector<std::string> written;
  uint64_t small_bytes = 0;
  constexpr int kMaxSmall = 60000;
  constexpr int kBatch = 2000;
  int n = 0;
  while (n < kMaxSmall && small_bytes <= mem / 2) {
    for (int j = 0; j < kBatch; ++j, ++n) {
      const std::string k = "s" + std::to_string(n);
      const size_t len = 64 + rng() % (500 - 64 + 1);
      ASSERT_EQ(Store(k, Pattern(TagOf(k, 1), len)), 0)
          << "small " << n << ": " << shmkv_last_error();
      alive.emplace_back(k, len);
      written.push_back(k);
    }
    small_bytes = 0;
    std::vector<std::pair<std::string, size_t>> still;
    for (auto& [k, len] : alive) {
      if (!Present(k)) continue;  // never rewritten: gone for good
      small_bytes += k.size() + len + 32;
      still.emplace_back(std::move(k), len);
    }
    alive.swap(still);
  }
  const shmkv_stats_t s = Stats();
  int large_left = 0;
  for (int i = 0; i < large; ++i)
    if (Present("L" + std::to_string(i))) ++large_left;
  EXPECT_GT(small_bytes, mem / 2) << "after " << n << " small values only " << small_bytes
                                  << " bytes of them are present; memory_used " << s.memory_used
                                  << ", " << large_left
                                  << " of the 1 MiB values of phase 1 still present";
  EXPECT_GT(s.memory_used, mem / 2);
  int recent_present = 0;
  const int recent = 1000;
  for (int i = n - recent; i < n; ++i)
    if (Present(written[i])) ++recent_present;
  EXPECT_GE(recent_present, recent * 9 / 10) << "of the " << recent << " small values written last";

  // Phase 3: large values again, each stored and read back.
  for (int i = 0; i < 12; ++i) {
    const std::string k = "M" + std::to_string(i);
    const size_t len = (i % 2 == 0) ? kMiB : 600 * kKiB + i * kKiB;
    const std::string v = Pattern(TagOf(k, 1), len);
    ASSERT_EQ(Store(k, v), 0) << "large again " << i << ": " << shmkv_last_error();
    ASSERT_TRUE(ReadsBack(k, v)) << "large again " << i;
  }
  // Small values still present are intact.
  int checked = 0;
  for (const auto& [k, len] : alive) {
    EXPECT_TRUE(AbsentOrExact(k, Pattern(TagOf(k, 1), len)));
    if (++checked == 2000) break;
  }
}

// The contract's capacity promise ("4 MiB holds more than 10 000 items of
// 100 B") still holds after the segment was filled with max-size values:
// their pages go back to the small items.
TEST_F(LargeValuesTest, FourMiBSegmentHoldsTenThousandSmallItemsAfterLargeValues) {
  Open(4 * kMiB);
  const std::string mib(kMiB, 'x');
  ASSERT_EQ(Store("probe", mib), SHMKV_EVALTOOBIG);
  const uint64_t max = MaxValueLenFromLastError();
  ASSERT_GT(max, 0u) << shmkv_last_error();
  for (int i = 0; i < 8; ++i) {
    const std::string k = "big" + std::to_string(i);
    ASSERT_EQ(Store(k, Pattern(TagOf(k, 1), max)), 0) << shmkv_last_error();
  }
  ASSERT_GT(Stats().evictions, 0u);
  constexpr int kItems = 11000;
  for (int i = 0; i < kItems; ++i) {
    const std::string k = "item" + std::to_string(i);
    ASSERT_EQ(Store(k, Pattern(TagOf(k, 1), 100)), 0) << "item " << i << ": " << shmkv_last_error();
  }
  int present = 0;
  for (int i = 0; i < kItems; ++i) {
    const std::string k = "item" + std::to_string(i);
    if (Present(k)) ++present;
  }
  EXPECT_GT(present, 10000) << "of " << kItems << " items of 100 B";
}

// --- 4. TTL ------------------------------------------------------------------

constexpr int64_t kT0 = 1'000'123;  // not a multiple of 1000 (coarse expiry)

TEST_F(LargeValuesTest, LargeValueExpiresAtTheRightInstant) {
  shmkv::testing::SetFakeNowMs(kT0);
  Open(8 * kMiB);
  const std::string v = Pattern(TagOf("big", 1), kMiB);
  ASSERT_EQ(Store("big", v, 1000), 0) << shmkv_last_error();
  shmkv::testing::SetFakeNowMs(kT0 + 999);
  EXPECT_TRUE(ReadsBack("big", v));
  int64_t ttl = 0;
  EXPECT_EQ(shmkv_ttl(kv_, "big", 3, &ttl), 0);
  EXPECT_EQ(ttl, 1);
  shmkv::testing::SetFakeNowMs(kT0 + 1000);
  std::string got;
  EXPECT_EQ(GetAlloc("big", &got), SHMKV_ENOTFOUND);
  EXPECT_FALSE(Present("big"));
  // Its memory is reusable: another 1 MiB value of the same key.
  const std::string v2 = Pattern(TagOf("big", 2), kMiB);
  ASSERT_EQ(Store("big", v2), 0) << shmkv_last_error();
  EXPECT_TRUE(ReadsBack("big", v2));
}

// The segment is full of no-evict entries (small ones, and one large one
// with a TTL). Once the large one expires, its memory is reclaimable
// ("expired entries are always reclaimed, under every policy"): a new large
// value of another key is stored, and no no-evict entry is lost for it.
TEST_F(LargeValuesTest, ExpiredLargeValueIsReclaimedInASegmentFullOfNoEvictEntries) {
  shmkv::testing::SetFakeNowMs(kT0);
  Open(8 * kMiB);
  const std::string big = Pattern(TagOf("big1", 1), kMiB);
  ASSERT_EQ(Store("big1", big, 1000, SHMKV_WRITE_NOEVICT), 0) << shmkv_last_error();
  // 2000-byte values: memory fills long before the index does.
  std::vector<std::string> keys;
  int rc = 0;
  for (int i = 0; i < 10000; ++i) {
    const std::string k = "n" + std::to_string(i);
    rc = Store(k, Pattern(TagOf(k, 1), 2000), 0, SHMKV_WRITE_NOEVICT);
    if (rc != 0) break;
    keys.push_back(k);
  }
  ASSERT_EQ(rc, SHMKV_ENOSPC) << "after " << keys.size()
                              << " no-evict values: " << shmkv_last_error();
  EXPECT_GT(keys.size(), 1000u);
  shmkv::testing::SetFakeNowMs(kT0 + 999);
  EXPECT_TRUE(ReadsBack("big1", big));
  shmkv::testing::SetFakeNowMs(kT0 + 1000);
  const std::string big2 = Pattern(TagOf("big2", 1), kMiB);
  ASSERT_EQ(Store("big2", big2), 0) << shmkv_last_error();
  EXPECT_TRUE(ReadsBack("big2", big2));
  EXPECT_FALSE(Present("big1"));
  for (const std::string& k : keys) ASSERT_TRUE(ReadsBack(k, Pattern(TagOf(k, 1), 2000)));
}

// --- 5. SHMKV_EVICT_NONE ----------------------------------------------------

// 1 MiB values until SHMKV_ENOSPC (which must come); those stored read back
// exactly; deleting one makes room for another 1 MiB value.
TEST_F(LargeValuesTest, EvictNoneFillsUpThenDeleteMakesRoom) {
  Open(8 * kMiB, SHMKV_EVICT_NONE);
  std::vector<std::string> keys;
  int rc = 0;
  for (int i = 0; i < 16; ++i) {
    const std::string k = "k" + std::to_string(i);
    rc = Store(k, Pattern(TagOf(k, 1), kMiB));
    if (rc != 0) break;
    keys.push_back(k);
  }
  ASSERT_EQ(rc, SHMKV_ENOSPC) << "after " << keys.size() << " values: " << shmkv_last_error();
  EXPECT_GE(keys.size(), 3u) << "the data area is more than 4 max-size values";
  EXPECT_EQ(Stats().evictions, 0u);
  for (const std::string& k : keys) EXPECT_TRUE(ReadsBack(k, Pattern(TagOf(k, 1), kMiB)));
  ASSERT_FALSE(keys.empty());
  ASSERT_EQ(shmkv_delete(kv_, keys[0].data(), keys[0].size(), 0), 0);
  const std::string fresh = Pattern(TagOf("k-new", 1), kMiB);
  ASSERT_EQ(Store("k-new", fresh), 0) << shmkv_last_error();
  EXPECT_TRUE(ReadsBack("k-new", fresh));
  for (size_t i = 1; i < keys.size(); ++i)
    EXPECT_TRUE(ReadsBack(keys[i], Pattern(TagOf(keys[i], 1), kMiB)));
  // Full again: the next one is refused, not stored by evicting.
  EXPECT_EQ(Store("k-more", Pattern(TagOf("k-more", 1), kMiB)), SHMKV_ENOSPC);
  EXPECT_EQ(Stats().evictions, 0u);
}

}  // namespace
