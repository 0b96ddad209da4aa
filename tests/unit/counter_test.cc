// Counters (layout.h, COUNTER blocks): incr writes a counter block once and
// then changes it in place with one 16-byte CAS, without touching the slot;
// reads show decimal text; every increment is a new cas token; writers that
// decide on what they read (cas-checked store and delete, touch) seal the
// block first, so that no increment is lost or slips past a cas check.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "gtest/gtest.h"
#include "handle.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"
#include "table.h"

namespace shmkv {
namespace {

using internal::SlotWord;
using test::ScopedSegmentName;
using test::SmallOptions;

class CounterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shmkv_options_t o = SmallOptions(8u << 20);
    ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &kv_), 0) << shmkv_last_error();
  }
  void TearDown() override { shmkv_close(kv_); }

  int Incr(std::string_view key, int64_t delta, int64_t initial = 0, int64_t* r = nullptr) {
    return shmkv_incr(kv_, key.data(), key.size(), delta, initial, 0, r);
  }
  std::string Get(std::string_view key, shmkv_item_info_t* info = nullptr) {
    char buf[64];
    size_t len = 0;
    const int rc = shmkv_get(kv_, key.data(), key.size(), buf, sizeof(buf), &len, info);
    if (rc != 0) return "<" + std::to_string(rc) + ">";
    return std::string(buf, len);
  }
  shmkv_item_info_t Info(std::string_view key) {
    shmkv_item_info_t info{};
    info.struct_size = sizeof(info);
    Get(key, &info);
    return info;
  }
  int StoreCas(std::string_view key, std::string_view val, uint64_t expect_cas) {
    shmkv_write_opts_t w;
    shmkv_write_opts_init(&w);
    w.expect_cas = expect_cas;
    return shmkv_store(kv_, key.data(), key.size(), val.data(), val.size(), &w, nullptr);
  }
  // The LIVE slot word that holds key (ref and meta), found the way a
  // reader finds it.
  SlotWord SlotOf(std::string_view key) {
    const internal::View& v = kv_->v;
    const internal::KeyHash h = internal::HashKey(v, key.data(), key.size());
    uint64_t b[2];
    internal::BucketsOf(v, h, &b[0], &b[1]);
    for (int i = 0; i < 8; ++i) {
      const SlotWord w = internal::LoadSlot(&v.buckets[b[i / 4]].slot[i % 4]);
      if (internal::ref::State(w.ref) == internal::kLive && internal::ref::Tag(w.ref) == h.tag())
        return w;
    }
    ADD_FAILURE() << "no LIVE slot for " << key;
    return {};
  }

  ScopedSegmentName seg_{"counter"};
  shmkv_t* kv_ = nullptr;
};

TEST_F(CounterTest, IncrementsChangeTheBlockInPlaceWithAFreshCasEachTime) {
  ASSERT_EQ(Incr("hits", 1, 0), 0);  // creates the counter block
  const SlotWord first = SlotOf("hits");
  std::set<uint64_t> tokens{Info("hits").cas};
  for (int i = 1; i <= 1000; ++i) {
    int64_t r = 0;
    ASSERT_EQ(Incr("hits", 1, 0, &r), 0);
    ASSERT_EQ(r, i);
    tokens.insert(Info("hits").cas);
  }
  EXPECT_EQ(Get("hits"), "1000");
  EXPECT_EQ(tokens.size(), 1001u) << "every increment is a new cas token";
  const SlotWord last = SlotOf("hits");
  // Same block, same slot version: nothing but the block's pair changed.
  EXPECT_EQ(last.ref & ~internal::ref::kRBit, first.ref & ~internal::ref::kRBit);
  EXPECT_EQ(last.meta, first.meta);
}

TEST_F(CounterTest, ATextNumberBecomesACounterKeepingFlagsTtlAndNoEvict) {
  shmkv_write_opts_t w;
  shmkv_write_opts_init(&w);
  w.ttl_ms = 60'000;
  w.user_flags = 0xabcdef01u;
  w.flags = SHMKV_WRITE_NOEVICT;
  ASSERT_EQ(shmkv_store(kv_, "n", 1, "41", 2, &w, nullptr), 0);
  int64_t r = 0;
  ASSERT_EQ(Incr("n", 1, 0, &r), 0);  // copy on write into a counter block
  EXPECT_EQ(r, 42);
  ASSERT_EQ(Incr("n", 958, 0, &r), 0);  // in place
  EXPECT_EQ(r, 1000);
  const shmkv_item_info_t info = Info("n");
  EXPECT_EQ(Get("n"), "1000");
  EXPECT_EQ(info.value_len, 4u);
  EXPECT_EQ(info.user_flags, 0xabcdef01u);
  EXPECT_EQ(info.write_flags, static_cast<uint32_t>(SHMKV_WRITE_NOEVICT));
  EXPECT_GT(info.ttl_ms, 0);
  EXPECT_LE(info.ttl_ms, 60'000);
}

TEST_F(CounterTest, ReadsShowDecimalTextAtEveryLength) {
  const int64_t kMin = std::numeric_limits<int64_t>::min();
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  ASSERT_EQ(Incr("lo", 0, kMin), 0);
  ASSERT_EQ(Incr("lo", 0, 0), 0);
  ASSERT_EQ(Incr("hi", 0, kMax), 0);
  ASSERT_EQ(Incr("hi", 0, 0), 0);
  ASSERT_EQ(Incr("z", -3, 2), 0);
  ASSERT_EQ(Incr("z", -3, 0), 0);
  EXPECT_EQ(Get("lo"), "-9223372036854775808");
  EXPECT_EQ(Get("hi"), "9223372036854775807");
  EXPECT_EQ(Get("z"), "-1");
  EXPECT_EQ(Incr("hi", 1), SHMKV_EOVERFLOW);
  EXPECT_EQ(Get("hi"), "9223372036854775807");
  // A buffer one byte short: the length, nothing copied; exactly enough: the text.
  char buf[19];
  std::memset(buf, 'x', sizeof(buf));
  size_t len = 0;
  EXPECT_EQ(shmkv_get(kv_, "hi", 2, buf, 18, &len, nullptr), SHMKV_ETOOSMALL);
  EXPECT_EQ(len, 19u);
  EXPECT_EQ(shmkv_get(kv_, "lo", 2, buf, 19, &len, nullptr), SHMKV_ETOOSMALL);
  EXPECT_EQ(len, 20u);
  EXPECT_EQ(std::string(buf, 3), "xxx");
  EXPECT_EQ(shmkv_get(kv_, "hi", 2, buf, 19, &len, nullptr), 0);
  EXPECT_EQ(std::string(buf, len), "9223372036854775807");
  // get_alloc, mget and scan see the same text and length.
  void* val = nullptr;
  ASSERT_EQ(shmkv_get_alloc(kv_, "z", 1, &val, &len, nullptr), 0);
  EXPECT_EQ(std::string(static_cast<char*>(val), len), "-1");
  shmkv_free(val);
  const void* keys[2] = {"lo", "z"};
  size_t klens[2] = {2, 1}, caps[2] = {32, 32}, lens[2] = {0, 0};
  char b0[32], b1[32];
  void* bufs[2] = {b0, b1};
  int rcs[2] = {-1, -1};
  ASSERT_EQ(shmkv_mget(kv_, 2, keys, klens, bufs, caps, lens, rcs, nullptr), 0);
  EXPECT_EQ(rcs[0], 0);
  EXPECT_EQ(std::string(b0, lens[0]), "-9223372036854775808");
  EXPECT_EQ(std::string(b1, lens[1]), "-1");
  uint64_t cursor = 0;
  uint64_t total_len = 0;
  do {
    ASSERT_EQ(shmkv_scan(
                  kv_, &cursor, nullptr, 0, 1000,
                  [](const void*, size_t, const shmkv_item_info_t* info, void* ctx) {
                    *static_cast<uint64_t*>(ctx) += info->value_len;
                    return 0;
                  },
                  &total_len),
              0);
  } while (cursor != 0);
  EXPECT_EQ(total_len, 20u + 19u + 2u);
}

TEST_F(CounterTest, AStaleCasTokenFailsAfterAnInPlaceIncrement) {
  ASSERT_EQ(Incr("c", 1, 5), 0);
  const uint64_t before = Info("c").cas;
  ASSERT_EQ(Incr("c", 1), 0);
  EXPECT_EQ(StoreCas("c", "0", before), SHMKV_ECAS);
  EXPECT_EQ(shmkv_delete(kv_, "c", 1, before), SHMKV_ECAS);
  EXPECT_EQ(Get("c"), "6");
  // With the current token: the store replaces the counter.
  ASSERT_EQ(StoreCas("c", "text", Info("c").cas), 0);
  EXPECT_EQ(Get("c"), "text");
  EXPECT_EQ(Incr("c", 1), SHMKV_ENOTNUM);
  ASSERT_EQ(Incr("d", 1, 7), 0);
  ASSERT_EQ(Incr("d", 1), 0);
  EXPECT_EQ(shmkv_delete(kv_, "d", 1, Info("d").cas), 0);
  EXPECT_EQ(Get("d"), "<" + std::to_string(SHMKV_ENOTFOUND) + ">");
}

TEST_F(CounterTest, TouchKeepsTheCounterAndIncrementsGoOnInPlace) {
  ASSERT_EQ(Incr("t", 1, 10), 0);
  ASSERT_EQ(Incr("t", 1), 0);
  const uint64_t before = Info("t").cas;
  ASSERT_EQ(shmkv_touch(kv_, "t", 1, 30'000), 0);
  EXPECT_EQ(Get("t"), "11");
  EXPECT_NE(Info("t").cas, before);
  EXPECT_GT(Info("t").ttl_ms, 0);
  const SlotWord touched = SlotOf("t");
  int64_t r = 0;
  ASSERT_EQ(Incr("t", 1, 0, &r), 0);
  EXPECT_EQ(r, 12);
  EXPECT_EQ(SlotOf("t").meta, touched.meta) << "the touched counter is incremented in place";
  EXPECT_GT(Info("t").ttl_ms, 0);
}

// Writers that decide on what they read race in-place increments: a
// cas-checked store adds 1 000 000 to the value it read, touch copies it, a
// cas-checked delete takes the value it read away (the incrementer then
// creates the key again, counting itself). Whatever the interleaving,
// nothing is lost: every increment is in the final value, next to what the
// stores added and the deletes took.
enum class Racer { kCasStore, kTouch, kCasDelete };

class CounterRaceTest : public CounterTest, public ::testing::WithParamInterface<Racer> {};

TEST_P(CounterRaceTest, RacingAnIncrementerLosesNothing) {
  const Racer racer = GetParam();
  ASSERT_EQ(Incr("race", 0, 0), 0);
  std::atomic<bool> ready{false}, done{false}, failed{false};
  std::atomic<uint64_t> wins{0};
  std::atomic<int64_t> taken{0};
  std::thread other([&] {
    shmkv_t* kv = nullptr;
    if (shmkv_open(seg_.c_str(), nullptr, &kv) != 0) failed = true;
    ready = true;
    while (!failed.load() && !done.load(std::memory_order_relaxed)) {
      char buf[32];
      size_t len = 0;
      shmkv_item_info_t info{};
      info.struct_size = sizeof(info);
      int rc = shmkv_get(kv, "race", 4, buf, sizeof(buf), &len, &info);
      if (rc == SHMKV_ENOTFOUND) continue;  // deleted: the incrementer creates it again
      if (rc != 0) {
        ADD_FAILURE() << "get: " << rc;
        failed = true;
        break;
      }
      const int64_t seen = std::stoll(std::string(buf, len));
      if (racer == Racer::kCasStore) {
        const std::string next = std::to_string(seen + 1'000'000);
        shmkv_write_opts_t w;
        shmkv_write_opts_init(&w);
        w.expect_cas = info.cas;
        rc = shmkv_store(kv, "race", 4, next.data(), next.size(), &w, nullptr);
      } else if (racer == Racer::kTouch) {
        rc = shmkv_touch(kv, "race", 4, 0);
      } else {
        rc = shmkv_delete(kv, "race", 4, info.cas);
        if (rc == 0) taken.fetch_add(seen);
      }
      if (rc == 0) {
        wins.fetch_add(1);
      } else if (rc != SHMKV_ECAS && rc != SHMKV_ENOTFOUND) {
        ADD_FAILURE() << "write: " << rc;
        failed = true;
      }
    }
    shmkv_close(kv);
  });
  while (!ready.load()) std::this_thread::yield();
  // Increment until the other writer has won many times in between.
  int64_t increments = 0;
  while (!failed.load() && (increments < 20'000 || wins.load() < 1000)) {
    ASSERT_EQ(Incr("race", 1, 1), 0);  // absent: created as 1, this increment
    ++increments;
  }
  done = true;
  other.join();
  ASSERT_FALSE(failed.load());
  const int64_t added =
      racer == Racer::kCasStore ? 1'000'000 * static_cast<int64_t>(wins.load()) : 0;
  const std::string left = Get("race");
  const int64_t final_value = left[0] == '<' ? 0 : std::stoll(left);
  EXPECT_EQ(final_value + taken.load(), increments + added)
      << "wins " << wins.load() << ", taken " << taken.load();
}

INSTANTIATE_TEST_SUITE_P(Writers, CounterRaceTest,
                         ::testing::Values(Racer::kCasStore, Racer::kTouch, Racer::kCasDelete),
                         [](const ::testing::TestParamInfo<Racer>& i) {
                           return i.param == Racer::kCasStore ? std::string("CasStore")
                                  : i.param == Racer::kTouch  ? std::string("Touch")
                                                              : std::string("CasDelete");
                         });

// In-place increments do not change the slot, but they set its CLOCK bit
// as a read does (once cleared by eviction's second chance): a counter that
// is only ever incremented is not taken for a cold entry (it would silently
// start again at its initial value: a rate limit's window granted anew).
TEST_F(CounterTest, AnIncrementSetsTheClockBitLikeARead) {
  ASSERT_EQ(Incr("hot", 1, 1), 0);
  ASSERT_EQ(Incr("hot", 1), 0);
  auto clear_r = [&] {
    const SlotWord w = SlotOf("hot");
    ASSERT_TRUE(internal::ref::R(w.ref));
    // What eviction's second chance does.
    internal::Slot* s = nullptr;
    const internal::View& v = kv_->v;
    for (uint64_t i = 0; i < v.n_buckets * 4 && s == nullptr; ++i) {
      internal::Slot* c = &v.buckets[i / 4].slot[i % 4];
      if (internal::LoadSlot(c) == w) s = c;
    }
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(internal::CasSlot(s, w, {w.ref & ~internal::ref::kRBit, w.meta}));
    ASSERT_FALSE(internal::ref::R(SlotOf("hot").ref));
  };
  clear_r();
  int64_t r = 0;
  ASSERT_EQ(Incr("hot", 1, 0, &r), 0);
  EXPECT_EQ(r, 3);
  EXPECT_TRUE(internal::ref::R(SlotOf("hot").ref)) << "an increment marks the counter used";
  clear_r();
  EXPECT_EQ(Get("hot"), "3");
  EXPECT_TRUE(internal::ref::R(SlotOf("hot").ref)) << "and so does a read";
}

}  // namespace
}  // namespace shmkv
