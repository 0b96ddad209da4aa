// The clocks of measure.h, and the figures of runs.
#include "measure.h"

#include <time.h>

#include <algorithm>
#include <cmath>

namespace peers {

double CalibrateNsPerTick(int ms) {
  const double c0 = NowS();
  const uint64_t t0 = TicksBegin();
  SleepS(ms / 1000.0);
  const double c1 = NowS();
  const uint64_t t1 = TicksEnd();
  return (c1 - c0) * 1e9 / static_cast<double>(t1 - t0);
}

double NowS() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void SleepS(double s) {
  timespec ts{static_cast<time_t>(s), static_cast<long>((s - std::floor(s)) * 1e9)};
  nanosleep(&ts, nullptr);
}

double OpsPerS(uint64_t ops, uint64_t ticks, double ns_per_tick) {
  if (ticks == 0) return 0;
  return static_cast<double>(ops) / (static_cast<double>(ticks) * ns_per_tick * 1e-9);
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

Stats Medians(const std::vector<Stats>& runs) {
  std::vector<double> ops, p50, p99, p999, mx;
  for (const Stats& r : runs) {
    ops.push_back(r.ops_per_s);
    p50.push_back(r.p50);
    p99.push_back(r.p99);
    p999.push_back(r.p999);
    mx.push_back(r.max_ns);
  }
  Stats m;
  m.ops_per_s = Median(ops);
  m.p50 = Median(p50);
  m.p99 = Median(p99);
  m.p999 = Median(p999);
  m.max_ns = Median(mx);
  return m;
}

}  // namespace peers
