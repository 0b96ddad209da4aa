#include "options.h"

#include <boost/program_options.hpp>
#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>
#include <vector>

#include "shmkv/shmkv.h"

namespace shmkvd {
namespace po = boost::program_options;

namespace {

constexpr char kUsage[] = "Usage: shmkvd --segment NAME [options]";

constexpr char kHelpTail[] = R"(
shmkvd is the janitor of one shmkv segment: every --interval it does a
bounded slice of work (expiry sweep, recovery of dead processes, background
eviction, allocation hints), so that a full pass over the index takes
--sweep-period. It runs in the foreground; under systemd it speaks sd_notify
(Type=notify, READY/STATUS/WATCHDOG) and logs with journald priorities.

Sizes take K, M, G suffixes (64K, 64M, 1G); durations take ms, s, m, h
(500ms, 30s, 5m, 1h; a bare number is seconds). The --config file holds
`option = value` lines with the long option names (memory = 1G); the command
line wins over it. SIGHUP re-reads it and applies --interval,
--sweep-period, --metrics-file, --metrics-every and --log-level.

With --upstream, the segment is a near cache of that Redis for the clients
of the near-cache library: shmkvd turns on CLIENT TRACKING (BCAST, for the
--prefix values), deletes the local copy of every key written, expired or
evicted in Redis, and publishes in the segment whether the stream is
current. When the stream is lost (connection error, no PONG within
--upstream-max-lag), clients bypass the local copies at once; shmkvd
reconnects with backoff, flushes the tracked prefixes and resumes.

Signals: SIGTERM, SIGINT finish the current tick, detach and exit 0.
Exit codes: 0 stopped by a signal; 1 cannot open the segment, another
janitor holds it, or a fatal error; 2 usage error.

Example:
  shmkvd --segment sessions --create --memory 1G --mode 0660 --group www-data \
         --metrics-file /var/lib/prometheus/node-exporter/shmkv-sessions.prom
  shmkvd --segment app --create --upstream redis://10.0.0.5:6379 \
         --prefix user: --prefix sess:
)";

std::string Lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

// Leading decimal digits of s as a number; *rest is what follows them.
std::optional<uint64_t> LeadingNumber(std::string_view s, std::string_view* rest) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p == s.data()) return std::nullopt;
  *rest = s.substr(static_cast<size_t>(p - s.data()));
  return v;
}

std::optional<uint64_t> Scaled(uint64_t v, uint64_t mul) {
  if (mul != 0 && v > UINT64_MAX / mul) return std::nullopt;
  return v * mul;
}

// One option per line reads better than what clang-format makes of the chain.
// clang-format off
po::options_description SegmentOptions() {
  po::options_description d("Segment");
  d.add_options()
      ("segment,s", po::value<std::string>()->value_name("NAME"),
       "segment name (POSIX shm object) or path of a file mapping (required)")
      ("create", po::bool_switch(), "create the segment if it does not exist")
      ("memory", po::value<std::string>()->value_name("SIZE")->default_value("256M"),
       "size of a created segment")
      ("max-items", po::value<std::string>()->value_name("N"),
       "index capacity of a created segment (default memory / 256)")
      ("max-key-len", po::value<std::string>()->value_name("N"), "default 250")
      ("max-value-len", po::value<std::string>()->value_name("SIZE"), "default 1M")
      ("mode", po::value<std::string>()->value_name("OCTAL")->default_value("0600"),
       "file mode of a created segment")
      ("group", po::value<std::string>()->value_name("NAME"),
       "group of a created segment, so that workers of another user can attach")
      ("evict", po::value<std::string>()->value_name("POLICY")->default_value("allkeys"),
       "allkeys, volatile or none");
  return d;
}

po::options_description JanitorOptions() {
  po::options_description d("Janitor (reloaded on SIGHUP)");
  d.add_options()
      ("interval", po::value<std::string>()->value_name("DURATION")->default_value("100ms"),
       "time between ticks")
      ("sweep-period", po::value<std::string>()->value_name("DURATION")->default_value("10s"),
       "time of one full pass over the index")
      ("metrics-file", po::value<std::string>()->value_name("PATH"),
       "write Prometheus text metrics to PATH atomically (node-exporter textfile collector)")
      ("metrics-every", po::value<std::string>()->value_name("DURATION")->default_value("1s"),
       "how often to write metrics and STATUS")
      ("log-level", po::value<std::string>()->value_name("LEVEL")->default_value("info"),
       "info or debug");
  return d;
}

po::options_description UpstreamOptions() {
  po::options_description d("Near cache of an upstream Redis (applied at start)");
  d.add_options()
      ("upstream", po::value<std::string>()->value_name("URL"),
       "redis://HOST[:PORT][/DB] or unix:///PATH[?db=N]: hold the host's invalidation stream "
       "of that Redis and delete local copies of keys written there")
      ("prefix", po::value<std::vector<std::string>>()->value_name("P"),
       "track the keys that start with P (repeat for several; default: every key)")
      ("upstream-max-lag", po::value<std::string>()->value_name("DURATION")->default_value("1s"),
       "clients bypass local copies when the stream is not confirmed within this")
      ("upstream-ping", po::value<std::string>()->value_name("DURATION")->default_value("100ms"),
       "how often the stream is confirmed with PING");
  return d;
}

po::options_description GenericOptions() {
  po::options_description d("General");
  d.add_options()
      ("config,c", po::value<std::string>()->value_name("FILE"),
       "read options from FILE (option = value lines)")
      ("help,h", "print this help")
      ("version", "print the version");
  return d;
}
// clang-format on

// The --upstream group. The URL itself is checked by the daemon, which
// has the Redis address parser (when it is built with hiredis).
bool ConvertUpstream(const po::variables_map& vm, DaemonOptions* o, std::string* error) {
  if (vm.count("prefix")) o->prefixes = vm["prefix"].as<std::vector<std::string>>();
  if (!vm.count("upstream")) {
    if (!o->prefixes.empty()) {
      *error = "--prefix needs --upstream";
      return false;
    }
    return true;
  }
  o->upstream_url = vm["upstream"].as<std::string>();
  if (o->upstream_url.empty()) {
    *error = "--upstream needs a URL like redis://127.0.0.1:6379";
    return false;
  }
  // The segment header keeps the prefixes space-separated in 511 bytes.
  size_t total = 0;
  for (size_t i = 0; i < o->prefixes.size(); ++i) {
    const std::string& p = o->prefixes[i];
    if (p.empty() || p.find_first_of(" \t\r\n") != std::string::npos) {
      *error = "invalid value '" + p + "' for --prefix: expected a key prefix without spaces";
      return false;
    }
    // Redis refuses overlapping BCAST prefixes (and a duplicate overlaps).
    for (size_t j = 0; j < i; ++j) {
      const std::string& q = o->prefixes[j];
      if (p.compare(0, q.size(), q) == 0 || q.compare(0, p.size(), p) == 0) {
        *error = "--prefix '" + q + "' and --prefix '" + p +
                 "' overlap (Redis tracks no key under two prefixes)";
        return false;
      }
    }
    total += p.size() + (i > 0 ? 1 : 0);
  }
  if (total > 511) {
    *error = "the --prefix values are longer than 511 bytes together";
    return false;
  }
  if (o->upstream_url.size() > 255) {
    *error = "the --upstream URL is longer than 255 bytes";
    return false;
  }
  auto duration = [&](const char* name, std::chrono::milliseconds* out) {
    const std::string v = vm[name].as<std::string>();
    auto d = ParseDuration(v);
    if (!d || d->count() <= 0) {
      *error = "invalid value '" + v + "' for --" + name + ": expected a duration like 1s or 100ms";
      return false;
    }
    *out = *d;
    return true;
  };
  if (!duration("upstream-max-lag", &o->upstream_max_lag) ||
      !duration("upstream-ping", &o->upstream_ping)) {
    return false;
  }
  if (o->upstream_ping >= o->upstream_max_lag) {
    *error = "--upstream-ping (" + FormatDuration(o->upstream_ping) +
             ") must be shorter than --upstream-max-lag (" + FormatDuration(o->upstream_max_lag) +
             ")";
    return false;
  }
  return true;
}

// Converts the parsed strings; false with *error set on a bad value.
bool Convert(const po::variables_map& vm, DaemonOptions* o, std::string* error) {
  auto bad = [&](const char* name, const std::string& value, const char* want) {
    *error = "invalid value '" + value + "' for --" + name + ": " + want;
    return false;
  };
  auto str = [&](const char* name) { return vm[name].as<std::string>(); };

  if (!vm.count("segment") || str("segment").empty()) {
    *error = "--segment NAME is required";
    return false;
  }
  o->segment = str("segment");
  if (vm.count("config")) o->config_file = str("config");
  o->create = vm["create"].as<bool>();

  auto size = ParseSize(str("memory"));
  if (!size || *size == 0) return bad("memory", str("memory"), "expected a size like 256M");
  o->memory_bytes = *size;
  if (vm.count("max-items")) {
    auto n = ParseSize(str("max-items"));
    if (!n) return bad("max-items", str("max-items"), "expected a number");
    o->max_items = *n;
  }
  if (vm.count("max-key-len")) {
    auto n = ParseSize(str("max-key-len"));
    if (!n || *n > UINT32_MAX) return bad("max-key-len", str("max-key-len"), "expected a number");
    o->max_key_len = static_cast<uint32_t>(*n);
  }
  if (vm.count("max-value-len")) {
    auto n = ParseSize(str("max-value-len"));
    if (!n || *n > UINT32_MAX) {
      return bad("max-value-len", str("max-value-len"), "expected a size like 1M");
    }
    o->max_value_len = static_cast<uint32_t>(*n);
  }
  {
    const std::string m = str("mode");
    uint32_t mode = 0;
    auto [p, ec] = std::from_chars(m.data(), m.data() + m.size(), mode, 8);
    if (ec != std::errc() || p != m.data() + m.size() || mode > 07777) {
      return bad("mode", m, "expected an octal file mode like 0660");
    }
    o->mode = mode;
  }
  if (vm.count("group")) o->group = str("group");
  {
    const std::string e = Lower(str("evict"));
    if (e == "allkeys") {
      o->evict_policy = SHMKV_EVICT_ALLKEYS;
    } else if (e == "volatile") {
      o->evict_policy = SHMKV_EVICT_VOLATILE;
    } else if (e == "none") {
      o->evict_policy = SHMKV_EVICT_NONE;
    } else {
      return bad("evict", str("evict"), "expected allkeys, volatile or none");
    }
  }

  auto duration = [&](const char* name, std::chrono::milliseconds* out) {
    auto d = ParseDuration(str(name));
    if (!d || d->count() <= 0) return bad(name, str(name), "expected a duration like 100ms or 10s");
    *out = *d;
    return true;
  };
  if (!duration("interval", &o->interval) || !duration("sweep-period", &o->sweep_period) ||
      !duration("metrics-every", &o->metrics_every)) {
    return false;
  }
  if (o->sweep_period < o->interval) {
    *error = "--sweep-period (" + FormatDuration(o->sweep_period) +
             ") must not be shorter than --interval (" + FormatDuration(o->interval) + ")";
    return false;
  }
  if (vm.count("metrics-file")) o->metrics_file = str("metrics-file");
  {
    const std::string l = Lower(str("log-level"));
    if (l == "info") {
      o->log_level = LogLevel::kInfo;
    } else if (l == "debug") {
      o->log_level = LogLevel::kDebug;
    } else {
      return bad("log-level", str("log-level"), "expected info or debug");
    }
  }
  return ConvertUpstream(vm, o, error);
}

}  // namespace

std::optional<uint64_t> ParseSize(std::string_view s) {
  std::string_view rest;
  auto v = LeadingNumber(s, &rest);
  if (!v) return std::nullopt;
  const std::string suffix = Lower(rest);
  if (suffix.empty() || suffix == "b") return v;
  if (suffix == "k" || suffix == "kb" || suffix == "kib") return Scaled(*v, 1ull << 10);
  if (suffix == "m" || suffix == "mb" || suffix == "mib") return Scaled(*v, 1ull << 20);
  if (suffix == "g" || suffix == "gb" || suffix == "gib") return Scaled(*v, 1ull << 30);
  if (suffix == "t" || suffix == "tb" || suffix == "tib") return Scaled(*v, 1ull << 40);
  return std::nullopt;
}

std::optional<std::chrono::milliseconds> ParseDuration(std::string_view s) {
  std::string_view rest;
  auto v = LeadingNumber(s, &rest);
  if (!v) return std::nullopt;
  const std::string unit = Lower(rest);
  std::optional<uint64_t> ms;
  if (unit == "ms") {
    ms = v;
  } else if (unit.empty() || unit == "s") {
    ms = Scaled(*v, 1000);
  } else if (unit == "m") {
    ms = Scaled(*v, 60'000);
  } else if (unit == "h") {
    ms = Scaled(*v, 3'600'000);
  }
  if (!ms || *ms > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  return std::chrono::milliseconds(static_cast<int64_t>(*ms));
}

std::string FormatDuration(std::chrono::milliseconds d) {
  const int64_t ms = d.count();
  if (ms % 1000 != 0) return std::to_string(ms) + "ms";
  return std::to_string(ms / 1000) + "s";
}

ParseOutcome ParseOptions(int argc, const char* const* argv, DaemonOptions* out,
                          std::string* text) {
  po::options_description file_options;
  file_options.add(SegmentOptions()).add(JanitorOptions()).add(UpstreamOptions());
  po::options_description all(100);
  all.add(SegmentOptions()).add(JanitorOptions()).add(UpstreamOptions()).add(GenericOptions());

  po::variables_map vm;
  // Boost reports bad input by exceptions; they stop here (STYLE.md).
  try {
    po::store(po::command_line_parser(argc, argv).options(all).run(), vm);
    if (vm.count("help")) {
      std::ostringstream os;
      os << kUsage << "\n" << all << kHelpTail;
      *text = os.str();
      return ParseOutcome::kHelp;
    }
    if (vm.count("version")) {
      *text = "shmkvd " SHMKV_VERSION_STRING "\n";
      return ParseOutcome::kHelp;
    }
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      std::ifstream in(path);
      if (!in) {
        *text = "cannot read --config file " + path;
        return ParseOutcome::kError;
      }
      // Stored second: a value already given on the command line wins.
      po::store(po::parse_config_file(in, file_options), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    *text = e.what();
    return ParseOutcome::kError;
  }
  DaemonOptions parsed;
  if (!Convert(vm, &parsed, text)) return ParseOutcome::kError;
  *out = std::move(parsed);
  return ParseOutcome::kRun;
}

}  // namespace shmkvd
