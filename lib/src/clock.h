// Segment time: milliseconds of CLOCK_MONOTONIC since the segment's epoch.
// The hot path reads CLOCK_MONOTONIC_COARSE (a few ns, one-jiffy
// resolution); SHMKV_OPEN_PRECISE_CLOCK selects CLOCK_MONOTONIC. A segment
// from another boot is wiped at attach (segment.cc), so segment time of one
// boot is all that ever needs comparing.
#ifndef SHMKV_SRC_CLOCK_H_
#define SHMKV_SRC_CLOCK_H_

#include <time.h>

#include <atomic>
#include <cstdint>

namespace shmkv::internal {

inline uint64_t MonotonicNs(bool precise) {
  timespec ts;
  clock_gettime(precise ? CLOCK_MONOTONIC : CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

#if defined(SHMKV_TESTING)
// < 0: real clock. Relaxed: a test sets it between operations.
inline std::atomic<int64_t> g_fake_now_ms{-1};
#endif

// Segment time in ms. Never 0 for a live segment (expiry 0 means "none"),
// so it starts at 1.
inline uint64_t SegmentNowMs(uint64_t epoch_ns, bool precise) {
#if defined(SHMKV_TESTING)
  const int64_t fake = g_fake_now_ms.load(std::memory_order_relaxed);
  if (fake >= 0) return static_cast<uint64_t>(fake) + 1;
#endif
  const uint64_t now = MonotonicNs(precise);
  return (now > epoch_ns ? (now - epoch_ns) / 1000000ull : 0) + 1;
}

// Segment time in ns, always from the precise clock (the rate limiter's
// clock): SegmentNowMs(epoch, true) == SegmentNowNs(epoch) / 10^6 + 1.
inline uint64_t SegmentNowNs(uint64_t epoch_ns) {
#if defined(SHMKV_TESTING)
  const int64_t fake = g_fake_now_ms.load(std::memory_order_relaxed);
  if (fake >= 0) return static_cast<uint64_t>(fake) * 1000000ull;
#endif
  const uint64_t now = MonotonicNs(true);
  return now > epoch_ns ? now - epoch_ns : 0;
}

// The coarse expiry kept in a slot: whole seconds, rounded up, so that
// now_s >= coarse proves expiry from the index alone. 0 = none.
inline uint32_t CoarseExpiry(uint64_t expiry_ms) {
  if (expiry_ms == 0) return 0;
  const uint64_t s = (expiry_ms + 999) / 1000;  // >= 1: segment time starts at 1
  return s > 0xffffffffull ? 0xffffffffu : static_cast<uint32_t>(s);
}

}  // namespace shmkv::internal

#endif  // SHMKV_SRC_CLOCK_H_
