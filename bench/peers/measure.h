// Measuring: a cycle-counter clock calibrated against CLOCK_MONOTONIC, a
// log-linear latency histogram that forked workers fill in shared memory,
// and what a run's figures are: ops/s, latencies, the median of runs.
#ifndef SHMKV_BENCH_PEERS_MEASURE_H_
#define SHMKV_BENCH_PEERS_MEASURE_H_

#include <x86intrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace peers {

// rdtsc: ~10 ns to read, where clock_gettime costs ~20 ns even through the
// vDSO. The TSC is invariant on this machine (constant_tsc, nonstop_tsc), so
// one calibration holds for every core and every process of the run.
// lfence keeps the timed ops from moving across the reads.
inline uint64_t TicksBegin() {
  _mm_lfence();
  const uint64_t t = __rdtsc();
  _mm_lfence();
  return t;
}

inline uint64_t TicksEnd() {
  unsigned aux;
  const uint64_t t = __rdtscp(&aux);
  _mm_lfence();
  return t;
}

// Nanoseconds per tick, measured over `ms` milliseconds of CLOCK_MONOTONIC.
double CalibrateNsPerTick(int ms);

// CLOCK_MONOTONIC in seconds, and a sleep of s seconds on it.
double NowS();
void SleepS(double s);

// HdrHistogram-like: 32 linear sub-buckets in each power of two, so a value
// is placed within 1/32 (3 %) of itself, from 0 to 2^63. Values are tenths
// of a nanosecond (a batch of 16 ops of 40 ns gives 25 ns per op: whole
// nanoseconds would round too coarsely). Plain data, no pointers: it lives in
// the result page shared with forked workers.
class Histogram {
 public:
  static constexpr int kSubBits = 5;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kBuckets = 64 * kSub;

  void Clear() { std::memset(this, 0, sizeof(*this)); }

  void Record(uint64_t tenths_ns) {
    ++counts_[Index(tenths_ns)];
    ++total_;
    if (tenths_ns > max_) max_ = tenths_ns;
  }

  void Add(const Histogram& o) {
    for (int i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    if (o.max_ > max_) max_ = o.max_;
  }

  uint64_t count() const { return total_; }

  // How many recorded values are certainly above ns (their whole bucket is).
  uint64_t CountAbove(double ns) const {
    const uint64_t v = static_cast<uint64_t>(ns * 10.0);
    uint64_t n = 0;
    for (int i = 0; i < kBuckets; ++i) {
      if (Lowest(i) > v) n += counts_[i];
    }
    return n;
  }
  double MaxNs() const { return static_cast<double>(max_) / 10.0; }

  // The p-th percentile (0 < p <= 100) in ns: the middle of the bucket that
  // holds it (the exact maximum for the top bucket). 0 when empty.
  double PercentileNs(double p) const {
    if (total_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(p / 100.0 * static_cast<double>(total_) + 0.5);
    if (rank < 1) rank = 1;
    if (rank > total_) rank = total_;
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const uint64_t lo = Lowest(i);
        const uint64_t hi = Lowest(i + 1);
        double mid = (static_cast<double>(lo) + static_cast<double>(hi - 1)) / 2.0;
        if (mid > static_cast<double>(max_)) mid = static_cast<double>(max_);
        return mid / 10.0;
      }
    }
    return MaxNs();
  }

 private:
  static int Index(uint64_t v) {
    if (v < 2 * kSub) return static_cast<int>(v);
    const int e = 63 - __builtin_clzll(v);
    const int shift = e - kSubBits;
    return shift * kSub + static_cast<int>(v >> shift);
  }
  static uint64_t Lowest(int idx) {
    if (idx < 2 * kSub) return static_cast<uint64_t>(idx);
    const int shift = idx / kSub - 1;
    return static_cast<uint64_t>(idx - shift * kSub) << shift;
  }

  uint64_t counts_[kBuckets];
  uint64_t total_;
  uint64_t max_;
};

// The figures of one run, or the medians over runs.
struct Stats {
  double ops_per_s = 0;
  double p50 = 0, p99 = 0, p999 = 0, max_ns = 0;  // per op, ns

  // p50, p99, p99.9 and the maximum of h.
  void SetLatencies(const Histogram& h) {
    p50 = h.PercentileNs(50);
    p99 = h.PercentileNs(99);
    p999 = h.PercentileNs(99.9);
    max_ns = h.MaxNs();
  }
};

// ops done in `ticks` of the cycle counter, per second; 0 without ticks.
double OpsPerS(uint64_t ops, uint64_t ticks, double ns_per_tick);

// The median of v; 0 when it is empty.
double Median(std::vector<double> v);

// Each figure's median over the runs.
Stats Medians(const std::vector<Stats>& runs);

}  // namespace peers

#endif  // SHMKV_BENCH_PEERS_MEASURE_H_
