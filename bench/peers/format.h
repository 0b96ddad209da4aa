// How the reports write numbers: ops/s, latencies and ratios, short.
#ifndef SHMKV_BENCH_PEERS_FORMAT_H_
#define SHMKV_BENCH_PEERS_FORMAT_H_

#include <cstdio>
#include <string>

namespace peers {

inline std::string Fmt(const char* fmt, double v) {
  char b[64];
  std::snprintf(b, sizeof(b), fmt, v);
  return b;
}

inline std::string FmtOps(double v) {
  if (v <= 0) return "–";
  if (v >= 1e6) return Fmt("%.2f M", v / 1e6);
  if (v >= 1e3) return Fmt("%.1f k", v / 1e3);
  return Fmt("%.0f", v);
}

inline std::string FmtNs(double v) {
  if (v <= 0) return "–";
  if (v < 1e3) return Fmt("%.0f ns", v);
  if (v < 1e6) return Fmt("%.1f µs", v / 1e3);
  return Fmt("%.1f ms", v / 1e6);
}

// a / b; 0 (which FmtRatio writes as "") unless both are above 0.
inline double Ratio(double a, double b) { return a > 0 && b > 0 ? a / b : 0; }

inline std::string FmtRatio(double r) {
  if (r <= 0) return "";
  if (r >= 100) return Fmt("×%.0f", r);
  if (r >= 10) return Fmt("×%.1f", r);
  return Fmt("×%.2f", r);
}

}  // namespace peers

#endif  // SHMKV_BENCH_PEERS_FORMAT_H_
