// Unique segment names for tests, removed when the test ends, so that
// parallel ctest runs never collide.
#ifndef SHMKV_TESTS_SUPPORT_TEST_SEGMENT_H_
#define SHMKV_TESTS_SUPPORT_TEST_SEGMENT_H_

#include <string>

#include "shmkv/shmkv.h"

namespace shmkv::test {

// "shmkv-test-<pid>-<counter>-<tag>": unique per process and call.
std::string UniqueSegmentName(const std::string& tag);

// Owns a unique segment name; unlinks it on destruction (and at creation,
// in case a crashed earlier run left it).
class ScopedSegmentName {
 public:
  explicit ScopedSegmentName(const std::string& tag);
  ~ScopedSegmentName();
  ScopedSegmentName(const ScopedSegmentName&) = delete;
  ScopedSegmentName& operator=(const ScopedSegmentName&) = delete;
  const std::string& name() const { return name_; }
  const char* c_str() const { return name_.c_str(); }

 private:
  std::string name_;
};

// Options for a small test segment created with SHMKV_OPEN_CREATE.
shmkv_options_t SmallOptions(uint64_t memory_bytes = 8u << 20, uint64_t max_items = 0);

}  // namespace shmkv::test

#endif  // SHMKV_TESTS_SUPPORT_TEST_SEGMENT_H_
