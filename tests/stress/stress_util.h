// Helpers shared by the stress tests: clocks, durations overridable for
// soaks, shared anonymous memory for results that must survive a killed
// child, forked workers, a start gate, a watchdog, and self-describing
// values whose tearing is detectable.
#ifndef SHMKV_TESTS_STRESS_STRESS_UTIL_H_
#define SHMKV_TESTS_STRESS_STRESS_UTIL_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "shmkv/shmkv.h"
#include "support/test_segment.h"

namespace shmkv::stress {

// CLOCK_MONOTONIC_RAW in ns: system-wide, so comparable across processes.
int64_t NowNs();

// A test's running time: `default_seconds`, or SHMKV_STRESS_SECONDS when
// set (for soaks).
double StressSeconds(double default_seconds);
// An iteration count: `n` times SHMKV_STRESS_SCALE (default 1).
uint64_t StressScale(uint64_t n);

// A MAP_SHARED | MAP_ANONYMOUS region, zero-filled, that forked children
// share with the parent; it survives a child killed with SIGKILL.
class SharedRegion {
 public:
  explicit SharedRegion(size_t bytes);
  ~SharedRegion();
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;
  void* data() const { return data_; }
  size_t size() const { return size_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Children block in Wait() until the parent calls Open(), so that every
// worker starts together. A pipe, not a sleep.
class StartGate {
 public:
  StartGate();
  ~StartGate();
  void Wait();  // in a child: returns once the parent opened the gate
  void Open();  // in the parent
 private:
  int read_fd_ = -1;
  int write_fd_ = -1;
};

// Forks; the child runs `body` under its own alarm watchdog and _exits
// with its return value (an escaping exception exits 120). Never returns
// in the child.
pid_t ForkChild(const std::function<int()>& body, unsigned watchdog_seconds = 120);

// waitpid with EINTR handling; returns the raw status.
int WaitChild(pid_t pid);
// Waits at most `seconds` (polling waitpid with WNOHANG); false on timeout.
bool WaitChildFor(pid_t pid, double seconds, int* status);
std::string DescribeStatus(int status);
bool ExitedCleanly(int status);  // exited with code 0
bool KilledBy(int status, int sig);

// Kills the process (SIGALRM) if the test runs longer than `seconds`,
// after printing which test hung. Disarmed by the destructor.
class Watchdog {
 public:
  Watchdog(unsigned seconds, const char* what);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
};

// Opens `name` (creating it with `opts` when non-null); aborts the child
// or fails the test through the returned code.
int OpenSegment(const std::string& name, const shmkv_options_t* opts, shmkv_t** out);

// Self-describing values: a header with writer, seq and length, then
// filler derived from (writer, seq), so that a copy mixed from two writes,
// or a truncated one, does not verify. Length is at least kMinGenLen.
constexpr size_t kMinGenLen = 18;
void MakeValue(uint32_t writer, uint32_t seq, size_t len, std::string* out);
bool VerifyValue(std::string_view v, uint32_t* writer, uint32_t* seq);

// Values that carry their own key and a checksum, any length from 1 byte.
// From kTaggedHeader bytes on: magic, key id, writer, seq, length and a
// checksum of the whole value; shorter values are a fixed function of
// (key id, length), so they verify exactly but name no writer.
constexpr size_t kTaggedHeader = 24;
void MakeTaggedValue(uint32_t key_id, uint32_t writer, uint32_t seq, size_t len, std::string* out);
enum class TaggedCheck {
  kOk,
  kTooShortButOk,
  kBadMagic,
  kWrongKey,
  kWrongLength,
  kBadChecksum,
  kBadShortValue
};
// On kOk fills writer and seq.
TaggedCheck CheckTaggedValue(std::string_view v, uint32_t key_id, uint32_t* writer, uint32_t* seq);
const char* TaggedCheckName(TaggedCheck c);

// 64-bit mixing (splitmix64 finaliser) and a byte-string hash.
uint64_t Mix64(uint64_t x);
uint64_t HashBytes(const void* data, size_t len);

// A decimal int64 exactly as incr accepts it.
bool ParseDecimal(std::string_view s, int64_t* out);

}  // namespace shmkv::stress

#endif  // SHMKV_TESTS_STRESS_STRESS_UTIL_H_
