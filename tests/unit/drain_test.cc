// Page drains (design-notes §3.4): a class with no room empties a page of
// another class, reserving every block of it, and hands it back. A block
// that is ALLOC under the drainer's own participant index but was not
// reserved by this drain (what a dead predecessor with that index leaves
// when recovery gave up on it) is someone's write in flight, not a
// reservation: the page must not be drained from under it.
#include <cstdint>
#include <string>

#include "gtest/gtest.h"
#include "handle.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"
#include "table.h"

namespace shmkv {
namespace {

using test::ScopedSegmentName;
using test::SmallOptions;

TEST(DrainTest, ABlockAllocUnderOurIndexButNotReservedByTheDrainKeepsItsPage) {
  ScopedSegmentName seg("drain");
  shmkv_options_t o = SmallOptions(4u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0) << shmkv_last_error();
  const internal::View& v = kv->v;

  // Small entries until every page serves their class.
  const std::string small(8, 's');
  for (int i = 0; i < 100000; ++i) {
    const std::string k = "a" + std::to_string(i);
    ASSERT_EQ(shmkv_set(kv, k.data(), k.size(), small.data(), small.size(), 0), 0);
  }
  // Free room in every page: delete what is left of every other key.
  for (int i = 0; i < 100000; i += 2) {
    const std::string k = "a" + std::to_string(i);
    shmkv_delete(kv, k.data(), k.size(), 0);
  }
  int rc = 0;
  internal::PartLocal* me = internal::CurrentParticipant(kv, &rc);
  ASSERT_NE(me, nullptr) << rc;

  // Plant, in the first page of the small class, a FREE block turned
  // ALLOC(our index): a leftover, not a reservation of any drain.
  uint64_t* planted = nullptr;
  uint64_t planted_word = 0;
  uint64_t small_cls1 = 0;
  for (uint64_t page = 0; page < v.n_pages && planted == nullptr; ++page) {
    const uint64_t pw = internal::LoadAcquire(&v.ptab[page]);
    const uint64_t cls1 = internal::pword::Cls1(pw);
    if (cls1 == 0 || internal::pword::St(pw) != internal::pword::kNormal) continue;
    if (small_cls1 == 0) small_cls1 = cls1;
    if (cls1 != small_cls1) continue;
    const uint32_t cls = static_cast<uint32_t>(cls1 - 1);
    for (uint64_t i = 0; i < v.class_bpp[cls]; ++i) {
      auto* st =
          reinterpret_cast<uint64_t*>(v.data + (page << v.page_shift) + i * v.class_size[cls]);
      uint64_t cur = internal::LoadAcquire(st);
      if (internal::bstate::St(cur) != internal::kFree) continue;
      const uint64_t word =
          internal::bstate::Make(internal::kAlloc, me->index, internal::bstate::Gen(cur) + 1);
      ASSERT_TRUE(internal::CasWord(st, cur, word));
      internal::FetchOr(&v.BitmapOf(page)[i / 64], 1ull << (i % 64));
      planted = st;
      planted_word = word;
      break;
    }
  }
  ASSERT_NE(planted, nullptr) << "no free block in a page of the small class";

  // Large values: their class has no page, so pages of the small class
  // are drained for it, by this thread (the planted block's index).
  const std::string large(1000, 'L');
  for (int i = 0; i < 3000; ++i) {
    const std::string k = "b" + std::to_string(i);
    ASSERT_EQ(shmkv_set(kv, k.data(), k.size(), large.data(), large.size(), 0), 0)
        << shmkv_last_error();
  }
  uint64_t large_pages = 0;
  for (uint64_t page = 0; page < v.n_pages; ++page) {
    const uint64_t cls1 = internal::pword::Cls1(internal::LoadAcquire(&v.ptab[page]));
    large_pages += cls1 != 0 && cls1 != small_cls1;
  }
  EXPECT_GT(large_pages, 0u) << "no page was drained for the large class";
  EXPECT_EQ(internal::LoadAcquire(planted), planted_word)
      << "the page of a block ALLOC(our index) that no drain reserved was drained";
  shmkv_close(kv);
}

}  // namespace
}  // namespace shmkv
