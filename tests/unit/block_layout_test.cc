// Block layout (layout.h): blocks on 16-byte boundaries, size classes in
// 16-byte steps where entries are small, and View::BlockAt's division-free
// test of "is this offset the start of a block of class c".
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "handle.h"
#include "layout.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"
#include "table.h"

namespace shmkv {
namespace {

using internal::kBlockUnit;
using test::ScopedSegmentName;
using test::SmallOptions;

// Every unit of the first and the last page, for every class of every page
// size a segment is created with (64 KiB to 2 MiB): BlockAt answers a block
// exactly at the multiples of the class size that hold a whole block (the
// start of the page only, for a class of several pages).
TEST(BlockLayoutTest, BlockAtAcceptsExactlyTheStartsOfBlocks) {
  std::set<uint64_t> pages_seen;
  for (uint64_t mib : {1, 2, 3, 5, 9, 17, 33, 48}) {
    ScopedSegmentName seg("layout" + std::to_string(mib));
    shmkv_options_t o = SmallOptions(mib << 20);
    shmkv_t* kv = nullptr;
    ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0) << shmkv_last_error();
    const internal::View& v = kv->v;
    pages_seen.insert(v.page_size);
    ASSERT_EQ(v.data_off % kBlockUnit, 0u);
    const uint64_t units = v.page_size / kBlockUnit;
    for (uint64_t page : {uint64_t{0}, v.n_pages - 1}) {
      const uint64_t first = (v.data_off + (page << v.page_shift)) / kBlockUnit;
      for (uint32_t c = 0; c < v.n_classes; ++c) {
        const uint64_t size = v.class_size[c];
        ASSERT_EQ(size % kBlockUnit, 0u) << "class " << c;
        const bool run = v.class_pages[c] > 1;
        for (uint64_t u = 0; u < units; ++u) {
          const uint64_t at = u * kBlockUnit;
          const bool want = run ? u == 0 && page + v.class_pages[c] <= v.n_pages
                                : at % size == 0 && at / size < v.class_bpp[c];
          unsigned char* got = v.BlockAt(first + u, c);
          ASSERT_EQ(got != nullptr, want) << "page size " << v.page_size << ", class " << c << " ("
                                          << size << " B), unit " << u;
          if (want) {
            ASSERT_EQ(got, v.base + (first + u) * kBlockUnit);
            // FreeBlock's index of the block in its page, by the same
            // reciprocal.
            ASSERT_EQ(v.IndexInPage(got, c), run ? 0 : at / size)
                << "page size " << v.page_size << ", class " << c << ", unit " << u;
          }
        }
      }
    }
    EXPECT_EQ(v.BlockAt(v.data_off / kBlockUnit - 1, 0), nullptr);
    EXPECT_EQ(v.BlockAt((v.data_off + (v.n_pages << v.page_shift)) / kBlockUnit, 0), nullptr);
    EXPECT_EQ(v.BlockAt(v.data_off / kBlockUnit, v.n_classes), nullptr);
    shmkv_close(kv);
  }
  EXPECT_EQ(pages_seen,
            (std::set<uint64_t>{64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20}));
}

uint64_t MemoryUsed(shmkv_t* kv) {
  shmkv_stats_t st{};
  st.struct_size = sizeof(st);
  EXPECT_EQ(shmkv_stats(kv, &st), 0);
  return st.memory_used;
}

// What an entry takes: a 32-byte header, then the key and the value,
// rounded up to a class (16-byte steps up to 128 bytes); a counter a 48-byte
// header and its key.
TEST(BlockLayoutTest, AnEntryTakesItsHeaderKeyAndValueRoundedToSixteen) {
  ScopedSegmentName seg("layout-size");
  shmkv_options_t o = SmallOptions(8u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0) << shmkv_last_error();
  struct Case {
    size_t klen, vlen;
    uint64_t block;
  } cases[] = {{16, 64, 112}, {16, 16, 64},  {16, 17, 80}, {10, 54, 96},
               {16, 80, 128}, {16, 81, 160}, {1, 0, 64}};
  int n = 0;
  for (const Case& c : cases) {
    const std::string key = std::to_string(n++) + std::string(c.klen - 1, 'k');
    const std::string val(c.vlen, 'v');
    const uint64_t before = MemoryUsed(kv);
    ASSERT_EQ(shmkv_set(kv, key.data(), key.size(), val.data(), val.size(), 0), 0);
    EXPECT_EQ(MemoryUsed(kv) - before, c.block)
        << c.klen << "-byte key, " << c.vlen << "-byte value";
  }
  // user_flags and a TTL live in the header: the same 112 bytes.
  const std::string key(16, 'f'), val(64, 'v');
  shmkv_write_opts_t w;
  shmkv_write_opts_init(&w);
  w.user_flags = 0xfedcba98u;
  w.ttl_ms = 60000;
  uint64_t before = MemoryUsed(kv);
  ASSERT_EQ(shmkv_store(kv, key.data(), key.size(), val.data(), val.size(), &w, nullptr), 0)
      << shmkv_last_error();
  EXPECT_EQ(MemoryUsed(kv) - before, 112u);
  shmkv_item_info_t info{};
  info.struct_size = sizeof(info);
  char buf[64];
  size_t len = 0;
  ASSERT_EQ(shmkv_get(kv, key.data(), key.size(), buf, sizeof(buf), &len, &info), 0);
  EXPECT_EQ(info.user_flags, 0xfedcba98u);
  EXPECT_GT(info.ttl_ms, 0);
  EXPECT_LE(info.ttl_ms, 60000);
  EXPECT_EQ(std::string(buf, len), val);

  const std::string counter(16, 'c');
  before = MemoryUsed(kv);
  int64_t out = 0;
  ASSERT_EQ(shmkv_incr(kv, counter.data(), counter.size(), 5, 0, 0, &out), 0);
  EXPECT_EQ(MemoryUsed(kv) - before, 64u);
  shmkv_close(kv);
}

// The slot tag (16 bits) filters the candidate slots of a key before its
// block is read, so it must not repeat the bits that chose the bucket:
// among the keys of one bucket (either of the pair), two share a tag about
// as often as 16 random bits would (1 pair in 65 536).
TEST(BlockLayoutTest, TheTagIsIndependentOfTheBuckets) {
  ScopedSegmentName seg("layout-tag");
  shmkv_options_t o = SmallOptions(1u << 20, 1024);  // a few hundred buckets
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0) << shmkv_last_error();
  const internal::View& v = kv->v;
  ASSERT_GE(v.n_buckets, 64u);
  ASSERT_LE(v.n_buckets, 4096u);
  constexpr int kKeys = 200000;
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> by_b1, by_b2;  // (bucket, tag) -> keys
  std::vector<uint64_t> in_b1(v.n_buckets), in_b2(v.n_buckets);
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = "user:" + std::to_string(i * 7919) + ":session";
    const internal::KeyHash h = internal::HashKey(v, key.data(), key.size());
    uint64_t b1 = 0, b2 = 0;
    internal::BucketsOf(v, h, &b1, &b2);
    ++by_b1[{b1, h.tag()}];
    ++by_b2[{b2, h.tag()}];
    ++in_b1[b1];
    ++in_b2[b2];
  }
  auto pairs = [](uint64_t n) { return n * (n - 1) / 2; };
  struct Side {
    const char* name;
    const std::map<std::pair<uint64_t, uint64_t>, uint64_t>& groups;
    const std::vector<uint64_t>& in_bucket;
  };
  for (const Side& side : {Side{"b1", by_b1, in_b1}, Side{"b2", by_b2, in_b2}}) {
    double expected = 0;
    for (uint64_t n : side.in_bucket) expected += static_cast<double>(pairs(n)) / 65536;
    uint64_t same = 0;
    for (const auto& [where, n] : side.groups) same += pairs(n);
    // About 10^3 expected; a tag that repeats bucket bits gives many times more.
    EXPECT_LT(static_cast<double>(same), 1.5 * expected) << side.name;
    EXPECT_GT(static_cast<double>(same), 0.5 * expected) << side.name;
  }
  shmkv_close(kv);
}

}  // namespace
}  // namespace shmkv
