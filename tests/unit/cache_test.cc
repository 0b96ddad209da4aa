// The C++ API (shmkv::Cache, DESIGN.md §6): the same behaviour as the C API,
// with std::error_code errors in the shmkv category, move-only RAII handles
// and a Get overload that reuses the caller's buffer.
#include "shmkv/cache.h"

#include <chrono>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "shmkv/error.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"

namespace {

using shmkv::Cache;
using shmkv::Errc;
using shmkv::test::ScopedSegmentName;
using std::chrono::milliseconds;

static_assert(!std::is_copy_constructible_v<Cache>);
static_assert(!std::is_copy_assignable_v<Cache>);
static_assert(std::is_nothrow_move_constructible_v<Cache>);
static_assert(std::is_nothrow_move_assignable_v<Cache>);

shmkv::Options CreateOptions(uint64_t memory = 8u << 20) {
  shmkv::Options o;
  o.memory_bytes = memory;
  o.create = true;
  return o;
}

class CacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = Cache::Open(seg_.name(), CreateOptions());
    ASSERT_TRUE(c.ok()) << c.error().message();
    cache_.emplace(std::move(*c));
  }

  Cache& cache() { return *cache_; }

  ScopedSegmentName seg_{"cache"};
  std::optional<Cache> cache_;
};

TEST(CacheOpenTest, MissingSegmentIsNoSegment) {
  ScopedSegmentName seg("cache-missing");
  auto c = Cache::Open(seg.name());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error(), Errc::kNoSegment);
  EXPECT_FALSE(c.error().message().empty());
}

TEST(CacheOpenTest, ExclusiveOnExistingIsExists) {
  ScopedSegmentName seg("cache-excl");
  shmkv::Options o = CreateOptions();
  o.exclusive = true;
  auto first = Cache::Open(seg.name(), o);
  ASSERT_TRUE(first.ok()) << first.error().message();
  auto second = Cache::Open(seg.name(), o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error(), Errc::kExists);
}

TEST(CacheOpenTest, BadOptionsAreInvalid) {
  ScopedSegmentName seg("cache-badopts");
  shmkv::Options o = CreateOptions(1000);
  EXPECT_EQ(Cache::Open(seg.name(), o).error(), Errc::kInvalid);
  o = CreateOptions();
  o.max_key_len = 5000;
  EXPECT_EQ(Cache::Open(seg.name(), o).error(), Errc::kInvalid);
  EXPECT_EQ(Cache::Open("bad name", CreateOptions()).error(), Errc::kInvalid);
  EXPECT_EQ(Cache::Open("", CreateOptions()).error(), Errc::kInvalid);
}

TEST(CacheOpenTest, NameIsNotRequiredToBeNulTerminated) {
  ScopedSegmentName seg("cache-view");
  const std::string padded = seg.name() + "XYZ";
  std::string_view name(padded.data(), seg.name().size());
  auto c = Cache::Open(name, CreateOptions());
  ASSERT_TRUE(c.ok()) << c.error().message();
  ASSERT_FALSE(c->Set("k", "v"));
  auto again = Cache::Open(seg.name());
  ASSERT_TRUE(again.ok()) << again.error().message();
  EXPECT_EQ(again->Get("k").value(), "v");
}

TEST(CacheOpenTest, UnlinkRemovesTheName) {
  ScopedSegmentName seg("cache-unlink");
  {
    auto c = Cache::Open(seg.name(), CreateOptions());
    ASSERT_TRUE(c.ok());
  }
  EXPECT_FALSE(Cache::Unlink(seg.name()));
  EXPECT_EQ(Cache::Open(seg.name()).error(), Errc::kNoSegment);
  EXPECT_EQ(Cache::Unlink(seg.name()), Errc::kNoSegment);
}

TEST(CacheOpenTest, ReadOnlyCacheRefusesWrites) {
  ScopedSegmentName seg("cache-ro");
  auto rw = Cache::Open(seg.name(), CreateOptions());
  ASSERT_TRUE(rw.ok());
  ASSERT_FALSE(rw->Set("k", "v"));
  shmkv::Options o;
  o.read_only = true;
  auto ro = Cache::Open(seg.name(), o);
  ASSERT_TRUE(ro.ok()) << ro.error().message();
  EXPECT_EQ(ro->Get("k").value(), "v");
  EXPECT_EQ(ro->Set("k", "w"), Errc::kReadOnly);
  EXPECT_EQ(ro->Delete("k"), Errc::kReadOnly);
  EXPECT_EQ(ro->Incr("n").error(), Errc::kReadOnly);
  EXPECT_EQ(ro->Touch("k", milliseconds(10)), Errc::kReadOnly);
  EXPECT_EQ(ro->Clear(), Errc::kReadOnly);
  shmkv::WriteOptions w;
  EXPECT_EQ(ro->Store("k", "w", w).error(), Errc::kReadOnly);
  EXPECT_EQ(rw->Get("k").value(), "v");
}

TEST(CacheOpenTest, OptionsReachTheSegment) {
  ScopedSegmentName seg("cache-opts");
  shmkv::Options o = CreateOptions(4u << 20);
  o.max_items = 3000;
  o.max_key_len = 8;
  o.max_value_len = 100;
  o.evict_policy = shmkv::EvictPolicy::kNone;
  auto c = Cache::Open(seg.name(), o);
  ASSERT_TRUE(c.ok()) << c.error().message();
  auto st = c->Stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->memory_bytes, 4u << 20);
  EXPECT_EQ(st->capacity_items, 3000u);
  EXPECT_EQ(c->Set("123456789", "v"), Errc::kKeyTooBig);
  EXPECT_FALSE(c->Set("12345678", "v"));
  EXPECT_EQ(c->Set("k", std::string(101, 'v')), Errc::kValueTooBig);
  EXPECT_FALSE(c->Set("k", std::string(100, 'v')));
}

TEST_F(CacheTest, MoveConstructionTransfersTheHandle) {
  ASSERT_FALSE(cache().Set("k", "v"));
  shmkv_t* h = cache().c_handle();
  ASSERT_NE(h, nullptr);
  Cache moved(std::move(cache()));
  EXPECT_EQ(moved.c_handle(), h);
  EXPECT_EQ(cache().c_handle(), nullptr);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(moved.Get("k").value(), "v");
  cache_.reset();  // destroying the moved-from cache must not close the handle
  EXPECT_EQ(moved.Get("k").value(), "v");
}

TEST_F(CacheTest, MoveAssignmentClosesTheOldHandle) {
  ASSERT_FALSE(cache().Set("k", "v"));
  ScopedSegmentName other_seg("cache-other");
  auto other = Cache::Open(other_seg.name(), CreateOptions());
  ASSERT_TRUE(other.ok());
  ASSERT_FALSE(other->Set("k", "other"));
  shmkv_t* h = cache().c_handle();
  *other = std::move(cache());
  EXPECT_EQ(other->c_handle(), h);
  EXPECT_EQ(other->Get("k").value(), "v");
  // The segment the assigned-to cache had is still intact.
  auto probe = Cache::Open(other_seg.name());
  ASSERT_TRUE(probe.ok());
  EXPECT_EQ(probe->Get("k").value(), "other");
}

TEST_F(CacheTest, GetReturnsValueAndInfo) {
  shmkv::WriteOptions w;
  w.ttl = milliseconds(60000);
  w.user_flags = 42;
  auto cas = cache().Store("k", std::string("v\0w", 3), w);
  ASSERT_TRUE(cas.ok());
  shmkv::ItemInfo info;
  auto v = cache().Get("k", &info);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, std::string("v\0w", 3));
  EXPECT_EQ(info.cas, *cas);
  EXPECT_EQ(info.user_flags, 42u);
  EXPECT_EQ(info.value_len, 3u);
  EXPECT_GT(info.ttl.count(), 0);
  EXPECT_LE(info.ttl.count(), 60000);
}

TEST_F(CacheTest, MissIsNotFound) {
  auto v = cache().Get("missing");
  EXPECT_FALSE(v.ok());
  EXPECT_FALSE(static_cast<bool>(v));
  EXPECT_TRUE(v.IsNotFound());
  EXPECT_EQ(v.error(), Errc::kNotFound);
  std::string out = "untouched";
  EXPECT_EQ(cache().Get("missing", &out), Errc::kNotFound);
}

TEST_F(CacheTest, GetIntoStringReusesCapacity) {
  const std::string value(1000, 'x');
  ASSERT_FALSE(cache().Set("k", value));
  std::string out;
  out.reserve(4096);
  const char* data = out.data();
  const size_t cap = out.capacity();
  ASSERT_FALSE(cache().Get("k", &out));
  EXPECT_EQ(out, value);
  EXPECT_EQ(out.data(), data);
  EXPECT_EQ(out.capacity(), cap);
  ASSERT_FALSE(cache().Set("k", "short"));
  ASSERT_FALSE(cache().Get("k", &out));
  EXPECT_EQ(out, "short");
  EXPECT_EQ(out.data(), data);
  // Grows when it must.
  const std::string big(10000, 'y');
  ASSERT_FALSE(cache().Set("k", big));
  shmkv::ItemInfo info;
  ASSERT_FALSE(cache().Get("k", &out, &info));
  EXPECT_TRUE(out == big);
  EXPECT_EQ(info.value_len, big.size());
  // Empty value.
  ASSERT_FALSE(cache().Set("k", ""));
  ASSERT_FALSE(cache().Get("k", &out));
  EXPECT_TRUE(out.empty());
}

TEST_F(CacheTest, SetWithTtlAndTtlReportsIt) {
  ASSERT_FALSE(cache().Set("k", "v", milliseconds(5000)));
  auto t = cache().Ttl("k");
  ASSERT_TRUE(t.ok());
  EXPECT_GT(t->count(), 0);
  EXPECT_LE(t->count(), 5000);
  ASSERT_FALSE(cache().Set("k", "v"));
  EXPECT_EQ(cache().Ttl("k").value(), milliseconds(-1));
  EXPECT_EQ(cache().Ttl("missing").error(), Errc::kNotFound);
  EXPECT_EQ(cache().Set("k", "v", milliseconds((1ll << 40) + 1)), Errc::kInvalid);
}

TEST_F(CacheTest, StoreModesAndCas) {
  shmkv::WriteOptions add;
  add.mode = shmkv::WriteMode::kAdd;
  auto c1 = cache().Store("k", "one", add);
  ASSERT_TRUE(c1.ok());
  EXPECT_NE(*c1, 0u);
  EXPECT_EQ(cache().Store("k", "two", add).error(), Errc::kExists);

  shmkv::WriteOptions replace;
  replace.mode = shmkv::WriteMode::kReplace;
  EXPECT_EQ(cache().Store("missing", "x", replace).error(), Errc::kNotFound);
  auto c2 = cache().Store("k", "two", replace);
  ASSERT_TRUE(c2.ok());
  EXPECT_NE(*c2, *c1);

  shmkv::WriteOptions cas;
  cas.expect_cas = *c1;  // stale
  EXPECT_EQ(cache().Store("k", "three", cas).error(), Errc::kCasMismatch);
  cas.expect_cas = *c2;
  auto c3 = cache().Store("k", "three", cas);
  ASSERT_TRUE(c3.ok());
  EXPECT_EQ(cache().Get("k").value(), "three");
  cas.expect_cas = 777;
  EXPECT_EQ(cache().Store("nope", "x", cas).error(), Errc::kNotFound);
}

TEST_F(CacheTest, StoreKeepTtlAndNoEvict) {
  ASSERT_FALSE(cache().Set("k", "v", milliseconds(60000)));
  shmkv::WriteOptions w;
  w.keep_ttl = true;
  w.no_evict = true;
  ASSERT_TRUE(cache().Store("k", "w", w).ok());
  auto t = cache().Ttl("k");
  ASSERT_TRUE(t.ok());
  EXPECT_GT(t->count(), 0);
  EXPECT_LE(t->count(), 60000);
  EXPECT_EQ(cache().Get("k").value(), "w");
}

TEST_F(CacheTest, DeletePlainAndWithCas) {
  ASSERT_FALSE(cache().Set("k", "v"));
  shmkv::ItemInfo info;
  ASSERT_TRUE(cache().Get("k", &info).ok());
  EXPECT_EQ(cache().Delete("k", info.cas + 1), Errc::kCasMismatch);
  EXPECT_EQ(cache().Get("k").value(), "v");
  EXPECT_FALSE(cache().Delete("k", info.cas));
  EXPECT_TRUE(cache().Get("k").IsNotFound());
  EXPECT_EQ(cache().Delete("k"), Errc::kNotFound);
  ASSERT_FALSE(cache().Set("k2", "v"));
  EXPECT_FALSE(cache().Delete("k2"));
}

TEST_F(CacheTest, IncrDefaultsAndErrors) {
  auto r = cache().Incr("n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 0);  // created with initial 0; delta not applied
  EXPECT_EQ(cache().Incr("n").value(), 1);
  EXPECT_EQ(cache().Incr("n", 10).value(), 11);
  EXPECT_EQ(cache().Incr("n", -20).value(), -9);
  EXPECT_EQ(cache().Get("n").value(), "-9");
  EXPECT_EQ(cache().Incr("w", 5, 100, milliseconds(60000)).value(), 100);
  EXPECT_GT(cache().Ttl("w")->count(), 0);

  ASSERT_FALSE(cache().Set("s", "abc"));
  EXPECT_EQ(cache().Incr("s").error(), Errc::kNotNumber);
  EXPECT_EQ(cache().Get("s").value(), "abc");
  ASSERT_FALSE(cache().Set("m", "9223372036854775807"));
  EXPECT_EQ(cache().Incr("m").error(), Errc::kOverflow);
  EXPECT_EQ(cache().Get("m").value(), "9223372036854775807");
  EXPECT_EQ(cache().Incr("").error(), Errc::kInvalid);
}

TEST_F(CacheTest, TouchChangesTtlAndCas) {
  ASSERT_FALSE(cache().Set("k", "v"));
  shmkv::ItemInfo before;
  ASSERT_TRUE(cache().Get("k", &before).ok());
  EXPECT_FALSE(cache().Touch("k", milliseconds(9000)));
  shmkv::ItemInfo after;
  ASSERT_TRUE(cache().Get("k", &after).ok());
  EXPECT_NE(after.cas, before.cas);
  EXPECT_GT(after.ttl.count(), 0);
  EXPECT_LE(after.ttl.count(), 9000);
  EXPECT_FALSE(cache().Touch("k", milliseconds(0)));
  EXPECT_EQ(cache().Ttl("k").value(), milliseconds(-1));
  EXPECT_EQ(cache().Touch("missing", milliseconds(5)), Errc::kNotFound);
}

TEST_F(CacheTest, ScanByPrefixAndStop) {
  std::set<std::string> want;
  for (int i = 0; i < 150; ++i) {
    want.insert("user:" + std::to_string(i));
    ASSERT_FALSE(cache().Set("user:" + std::to_string(i), std::string(i % 7, 'v')));
  }
  for (int i = 0; i < 30; ++i) ASSERT_FALSE(cache().Set("other:" + std::to_string(i), "v"));
  std::multiset<std::string> seen;
  ASSERT_FALSE(cache().Scan("user:", [&](std::string_view key, const shmkv::ItemInfo& info) {
    seen.emplace(key);
    EXPECT_EQ(info.value_len, static_cast<uint64_t>(std::stoi(std::string(key.substr(5))) % 7));
    return true;
  }));
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), want);

  int calls = 0;
  ASSERT_FALSE(cache().Scan("", [&](std::string_view, const shmkv::ItemInfo&) {
    ++calls;
    return calls < 10;
  }));
  EXPECT_EQ(calls, 10);

  // fn may write to the cache, including deleting the key it was given.
  ASSERT_FALSE(cache().Scan("other:", [&](std::string_view key, const shmkv::ItemInfo&) {
    EXPECT_FALSE(cache().Delete(key));
    return true;
  }));
  int left = 0;
  ASSERT_FALSE(cache().Scan("other:", [&](std::string_view, const shmkv::ItemInfo&) {
    ++left;
    return true;
  }));
  EXPECT_EQ(left, 0);
}

TEST_F(CacheTest, StatsAndClear) {
  for (int i = 0; i < 20; ++i) ASSERT_FALSE(cache().Set("k" + std::to_string(i), "v"));
  auto st = cache().Stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->items, 20u);
  EXPECT_EQ(st->memory_bytes, 8u << 20);
  EXPECT_GE(st->sets, 20u);
  EXPECT_GE(st->attached_processes, 1u);
  EXPECT_FALSE(cache().Clear());
  EXPECT_EQ(cache().Stats()->items, 0u);
  EXPECT_TRUE(cache().Get("k0").IsNotFound());
}

TEST_F(CacheTest, RecoverWithNothingDead) {
  auto r = cache().Recover();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 0u);
}

TEST_F(CacheTest, BadInputGivesSpecificErrors) {
  ASSERT_FALSE(cache().Set("base", "v"));
  EXPECT_EQ(cache().Set("", "v"), Errc::kInvalid);
  EXPECT_EQ(cache().Get("").error(), Errc::kInvalid);
  EXPECT_EQ(cache().Set(std::string(251, 'k'), "v"), Errc::kKeyTooBig);
  EXPECT_EQ(cache().Set("k", std::string((1u << 20) + 1, 'v')), Errc::kValueTooBig);
  EXPECT_EQ(cache().Touch("base", milliseconds((1ll << 40) + 1)), Errc::kInvalid);
  EXPECT_TRUE(cache().Get("k").IsNotFound());
  EXPECT_EQ(cache().Ttl("base").value(), milliseconds(-1));
}

// A negative duration is an absurd TTL (DESIGN.md §3.7): it must not be
// silently taken as "no expiry".
TEST_F(CacheTest, NegativeTtlIsInvalid) {
  ASSERT_FALSE(cache().Set("base", "v"));
  EXPECT_EQ(cache().Touch("base", milliseconds(-5)), Errc::kInvalid);
  EXPECT_EQ(cache().Set("k", "v", milliseconds(-1)), Errc::kInvalid);
  shmkv::WriteOptions w;
  w.ttl = milliseconds(-1);
  EXPECT_EQ(cache().Store("k", "v", w).error(), Errc::kInvalid);
  EXPECT_EQ(cache().Incr("n", 1, 0, milliseconds(-1)).error(), Errc::kInvalid);
  EXPECT_TRUE(cache().Get("k").IsNotFound());
  EXPECT_TRUE(cache().Get("n").IsNotFound());
  EXPECT_EQ(cache().Ttl("base").value(), milliseconds(-1));
}

TEST_F(CacheTest, CHandleSharesTheSegment) {
  ASSERT_FALSE(cache().Set("k", "from-cpp"));
  char buf[16];
  size_t len = 0;
  ASSERT_EQ(shmkv_get(cache().c_handle(), "k", 1, buf, sizeof(buf), &len, nullptr), 0);
  EXPECT_EQ(std::string(buf, len), "from-cpp");
  ASSERT_EQ(shmkv_set(cache().c_handle(), "c", 1, "from-c", 6, 0), 0);
  EXPECT_EQ(cache().Get("c").value(), "from-c");
}

TEST(ErrorCategoryTest, CodesCompareEqualToErrcValues) {
  EXPECT_STREQ(shmkv::ErrorCategory().name(), "shmkv");
  EXPECT_EQ(shmkv::MakeErrorCode(0), std::error_code());
  EXPECT_EQ(shmkv::MakeErrorCode(SHMKV_ENOTFOUND), Errc::kNotFound);
  EXPECT_EQ(shmkv::MakeErrorCode(SHMKV_EBUSY), Errc::kBusy);
  EXPECT_NE(shmkv::MakeErrorCode(SHMKV_ENOTFOUND), Errc::kExists);
  const std::error_code os = shmkv::MakeErrorCode(ENOENT);
  EXPECT_EQ(os.category(), std::generic_category());
  EXPECT_EQ(os, std::errc::no_such_file_or_directory);
  std::error_code e = Errc::kInvalid;
  EXPECT_EQ(e.value(), SHMKV_EINVAL);
  EXPECT_EQ(&e.category(), &shmkv::ErrorCategory());
}

TEST(ErrorCategoryTest, MessagesAreMeaningful) {
  std::set<std::string> messages;
  for (int code = SHMKV_EBUSY; code <= SHMKV_ENOTFOUND; ++code) {
    const std::error_code e = shmkv::MakeErrorCode(code);
    const std::string m = e.message();
    EXPECT_GT(m.size(), 3u) << code;
    EXPECT_EQ(m.find("nknown"), std::string::npos) << code << ": " << m;
    EXPECT_EQ(m, shmkv_strerror(code));
    messages.insert(m);
  }
  EXPECT_EQ(messages.size(), 15u);
}

TEST(ResultTest, HoldsValueOrError) {
  shmkv::Result<int> ok = 5;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 5);
  EXPECT_FALSE(ok.error());
  EXPECT_FALSE(ok.IsNotFound());
  shmkv::Result<int> miss = Errc::kNotFound;
  EXPECT_FALSE(miss.ok());
  EXPECT_TRUE(miss.IsNotFound());
  shmkv::Result<int> other = Errc::kBusy;
  EXPECT_FALSE(other.IsNotFound());
}

TEST_F(CacheTest, MGetFillsPresentKeysAndLeavesAbsentOnesEmpty) {
  ASSERT_FALSE(cache().Set("a", "1"));
  ASSERT_FALSE(cache().Set("big", std::string(5000, 'b')));  // above the first buffer
  ASSERT_FALSE(cache().Set("empty", ""));
  const std::vector<std::string_view> keys{"a", "missing", "big", "empty", "a"};
  std::vector<std::optional<std::string>> out{std::string("stale"), std::string("stale")};
  ASSERT_FALSE(cache().MGet(keys, &out));
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[0], "1");
  EXPECT_EQ(out[1], std::nullopt);
  EXPECT_EQ(out[2], std::string(5000, 'b'));
  EXPECT_EQ(out[3], "");
  EXPECT_EQ(out[4], "1");
  // A bad key fails the call.
  const std::vector<std::string_view> bad{"a", ""};
  EXPECT_EQ(cache().MGet(bad, &out), Errc::kInvalid);
  // More keys than one chunk.
  std::vector<std::string> many;
  for (int i = 0; i < 300; ++i) {
    many.push_back("k" + std::to_string(i));
    if (i % 3 == 0) {
      ASSERT_FALSE(cache().Set(many.back(), "v" + std::to_string(i)));
    }
  }
  const std::vector<std::string_view> views(many.begin(), many.end());
  ASSERT_FALSE(cache().MGet(views, &out));
  ASSERT_EQ(out.size(), 300u);
  for (int i = 0; i < 300; ++i) {
    if (i % 3 == 0) {
      EXPECT_EQ(out[i], "v" + std::to_string(i));
    } else {
      EXPECT_EQ(out[i], std::nullopt) << i;
    }
  }
}

}  // namespace
