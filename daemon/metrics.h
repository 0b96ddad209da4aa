// Metrics of a segment and its janitor in the Prometheus text exposition
// format 0.0.4, for the node-exporter textfile collector (--metrics-file).
// Names follow Prometheus conventions: base units, counters end in _total,
// every family has HELP and TYPE, the only labels are the segment name and
// (for memory by class) the class and its block size.
#ifndef SHMKV_DAEMON_METRICS_H_
#define SHMKV_DAEMON_METRICS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shmkv/shmkv.h"

namespace shmkvd {

struct ClassMetrics {
  uint32_t class_index = 0;
  uint32_t block_size = 0;
  uint64_t used_bytes = 0;  // blocks in use * block size
};

// The near-cache stream (shmkvd --upstream): counters since the daemon
// started, and the state the segment publishes.
struct UpstreamMetrics {
  bool up = false;                    // effective state UP (local copies served)
  double heartbeat_age_seconds = -1;  // < 0: never confirmed
  uint64_t generation = 0;
  uint64_t messages = 0;    // invalidation messages received
  uint64_t keys = 0;        // keys they named, each deleted locally
  uint64_t flushes = 0;     // tracked prefixes flushed (every sync, FLUSHALL)
  uint64_t losses = 0;      // times the stream was lost
  uint64_t reconnects = 0;  // connection attempts after a loss or a failed attempt
};

struct MetricsSnapshot {
  std::string segment;
  shmkv_stats_t stats{};
  std::vector<ClassMetrics> classes;
  double tick_seconds = 0;                  // duration of the last tick
  double tick_seconds_max = 0;              // longest tick since the daemon started
  uint64_t sweep_passes = 0;                // full expiry passes over the index since start
  std::optional<UpstreamMetrics> upstream;  // only with --upstream
};

// The whole exposition, ending in a newline.
std::string FormatPrometheus(const MetricsSnapshot& m);

// One line for sd_notify STATUS= (no newline).
std::string FormatStatus(const MetricsSnapshot& m);

// hits / (hits + misses); 0 before the first get.
double HitRatio(const shmkv_stats_t& s);

// Writes contents to path so that a reader sees the old file or the new
// one, never a part: a temporary file in the same directory, fsync,
// rename. Returns 0 or an errno, with *why naming the failing step.
int WriteFileAtomically(const std::string& path, const std::string& contents, std::string* why);

}  // namespace shmkvd

#endif  // SHMKV_DAEMON_METRICS_H_
