#include "support/test_segment.h"

#include <unistd.h>

#include <atomic>

#include "gtest/gtest.h"

namespace shmkv::test {

std::string UniqueSegmentName(const std::string& tag) {
  static std::atomic<unsigned> counter{0};
  return "shmkv-test-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter.fetch_add(1, std::memory_order_relaxed)) + "-" + tag;
}

ScopedSegmentName::ScopedSegmentName(const std::string& tag) : name_(UniqueSegmentName(tag)) {
  shmkv_unlink(name_.c_str());
}

ScopedSegmentName::~ScopedSegmentName() { shmkv_unlink(name_.c_str()); }

shmkv_options_t SmallOptions(uint64_t memory_bytes, uint64_t max_items) {
  shmkv_options_t o;
  shmkv_options_init(&o);
  o.memory_bytes = memory_bytes;
  o.max_items = max_items;
  o.flags = SHMKV_OPEN_CREATE;
  return o;
}

void ExpectCleanCensus(const internal::Census& c, const std::string& when) {
  EXPECT_EQ(c.blocks_alloc, 0u) << when;
  EXPECT_EQ(c.blocks_killed, 0u) << when;
  EXPECT_EQ(c.linked_unreferenced, 0u) << when;
  EXPECT_EQ(c.referenced_twice, 0u) << when;
  EXPECT_EQ(c.slots_pending, 0u) << when;
  EXPECT_EQ(c.duplicate_keys, 0u) << when;
  EXPECT_EQ(c.bad_slots, 0u) << when;
}

void ExpectCleanCensus(shmkv_t* kv, const std::string& when) {
  internal::Census c;
  ASSERT_EQ(internal::TakeCensus(kv, &c), 0) << when;
  ExpectCleanCensus(c, when);
}

}  // namespace shmkv::test
