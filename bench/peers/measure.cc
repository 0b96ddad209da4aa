// The calibration of the cycle-counter clock of measure.h.
#include "measure.h"

#include <time.h>

namespace peers {
namespace {

double MonotonicS() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

double CalibrateNsPerTick(int ms) {
  const double c0 = MonotonicS();
  const uint64_t t0 = TicksBegin();
  const timespec nap{ms / 1000, static_cast<long>(ms % 1000) * 1'000'000};
  nanosleep(&nap, nullptr);
  const double c1 = MonotonicS();
  const uint64_t t1 = TicksEnd();
  return (c1 - c0) * 1e9 / static_cast<double>(t1 - t0);
}

}  // namespace peers
