// Unique segment names for tests, removed when the test ends, so that
// parallel ctest runs never collide.
#ifndef SHMKV_TESTS_SUPPORT_TEST_SEGMENT_H_
#define SHMKV_TESTS_SUPPORT_TEST_SEGMENT_H_

#include <string>

#include "shmkv/shmkv.h"
#include "testing.h"

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

// Expects a quiescent segment to be whole: no block owned but unpublished,
// no killed claim, no linked block that nothing references, no block
// referenced twice, no pending slot, no duplicate key, no bad slot. `when`
// names the moment in failure messages.
void ExpectCleanCensus(const internal::Census& c, const std::string& when = "");
// Takes the census of kv, then the same expectations.
void ExpectCleanCensus(shmkv_t* kv, const std::string& when = "");

}  // namespace shmkv::test

#endif  // SHMKV_TESTS_SUPPORT_TEST_SEGMENT_H_
