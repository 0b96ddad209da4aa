// Command line and `--config` file of shmkvd (DESIGN.md §7), parsed with
// Boost.Program_options. The config file takes the long option names as
// `key = value` lines; the command line wins over it. SIGHUP re-runs the
// whole parse and the daemon applies the options marked "reloadable".
#ifndef SHMKV_DAEMON_OPTIONS_H_
#define SHMKV_DAEMON_OPTIONS_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shmkvd {

enum class LogLevel { kError = 3, kWarning = 4, kInfo = 6, kDebug = 7 };

struct DaemonOptions {
  std::string segment;
  std::string config_file;

  // Creation (only with --create; an existing segment keeps its geometry).
  bool create = false;
  uint64_t memory_bytes = 256ull << 20;
  uint64_t max_items = 0;  // 0: the library's default
  uint32_t max_key_len = 0;
  uint32_t max_value_len = 0;
  uint32_t mode = 0600;       // DESIGN.md §3.8: safe default; group access is explicit
  std::string group;          // empty: the creator's group
  uint32_t evict_policy = 0;  // SHMKV_EVICT_ALLKEYS, _VOLATILE or _NONE

  // Reloadable on SIGHUP.
  std::chrono::milliseconds interval{100};
  std::chrono::milliseconds sweep_period{10000};
  std::string metrics_file;  // empty: no metrics file
  std::chrono::milliseconds metrics_every{1000};
  LogLevel log_level = LogLevel::kInfo;

  // Near cache of an upstream Redis (DESIGN.md §10); applied at start only.
  std::string upstream_url;           // empty: not a near cache
  std::vector<std::string> prefixes;  // tracked key prefixes; empty: every key
  std::chrono::milliseconds upstream_max_lag{1000};
  std::chrono::milliseconds upstream_ping{100};
};

enum class ParseOutcome { kRun, kHelp, kError };

// Parses argv (and the --config file it names). kHelp: *text is the help
// (or the version) to print.
// kError: *text says what was wrong (a usage error, exit code 2).
ParseOutcome ParseOptions(int argc, const char* const* argv, DaemonOptions* out, std::string* text);

// "64K", "64M", "1G", "1T" (binary multiples, case-insensitive) or a bare
// number of bytes.
std::optional<uint64_t> ParseSize(std::string_view s);
// "500ms", "30s", "5m", "1h"; a bare number is seconds.
std::optional<std::chrono::milliseconds> ParseDuration(std::string_view s);
// "30s", "1.5s", "250ms": for messages.
std::string FormatDuration(std::chrono::milliseconds d);

}  // namespace shmkvd

#endif  // SHMKV_DAEMON_OPTIONS_H_
