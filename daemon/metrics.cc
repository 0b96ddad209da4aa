#include "metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace shmkvd {
namespace {

// Label values escape backslash, double quote and newline (exposition format).
std::string EscapeLabel(const std::string& v) {
  std::string r;
  r.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      r += "\\\\";
    } else if (c == '"') {
      r += "\\\"";
    } else if (c == '\n') {
      r += "\\n";
    } else {
      r += c;
    }
  }
  return r;
}

std::string Number(uint64_t v) { return std::to_string(v); }

std::string Number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

class Writer {
 public:
  explicit Writer(const std::string& segment)
      : segment_label_("segment=\"" + EscapeLabel(segment) + "\"") {}

  void Family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // A sample with the segment label and extra labels (`k="v",...` or "").
  void Sample(const char* name, const std::string& value, const std::string& extra = "") {
    out_ += name;
    out_ += '{';
    out_ += segment_label_;
    if (!extra.empty()) {
      out_ += ',';
      out_ += extra;
    }
    out_ += "} ";
    out_ += value;
    out_ += '\n';
  }
  template <typename T>
  void One(const char* name, const char* type, const char* help, T value) {
    Family(name, type, help);
    Sample(name, Number(value));
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string segment_label_;
  std::string out_;
};

}  // namespace

double HitRatio(const shmkv_stats_t& s) {
  const uint64_t lookups = s.hits + s.misses;
  return lookups == 0 ? 0.0 : static_cast<double>(s.hits) / static_cast<double>(lookups);
}

std::string FormatPrometheus(const MetricsSnapshot& m) {
  const shmkv_stats_t& s = m.stats;
  Writer w(m.segment);
  w.One("shmkv_items", "gauge", "Entries in the index, expired ones not yet reclaimed included.",
        s.items);
  w.One("shmkv_capacity_items", "gauge", "Index capacity (max_items).", s.capacity_items);
  w.One("shmkv_memory_bytes", "gauge", "Size of the segment.", s.memory_bytes);
  w.One("shmkv_memory_used_bytes", "gauge", "Memory of the segment in use by entries.",
        s.memory_used);
  w.Family("shmkv_memory_class_used_bytes", "gauge",
           "Memory in use per size class (blocks in use times block size).");
  for (const ClassMetrics& c : m.classes) {
    w.Sample("shmkv_memory_class_used_bytes", Number(c.used_bytes),
             "class=\"" + Number(uint64_t{c.class_index}) + "\",block_size=\"" +
                 Number(uint64_t{c.block_size}) + "\"");
  }
  w.One("shmkv_gets_total", "counter", "Lookups.", s.gets);
  w.One("shmkv_hits_total", "counter", "Lookups that found the key.", s.hits);
  w.One("shmkv_misses_total", "counter", "Lookups that did not find the key.", s.misses);
  w.One("shmkv_hit_ratio", "gauge", "hits / (hits + misses) since the segment was created.",
        HitRatio(s));
  w.One("shmkv_sets_total", "counter", "Successful writes.", s.sets);
  w.One("shmkv_deletes_total", "counter", "Successful deletes.", s.deletes);
  w.One("shmkv_incrs_total", "counter", "Successful increments.", s.incrs);
  w.One("shmkv_cas_failures_total", "counter", "Writes refused by a cas mismatch.", s.cas_failures);
  w.One("shmkv_evictions_total", "counter", "Entries evicted to make room.", s.evictions);
  w.One("shmkv_expirations_total", "counter", "Expired entries reclaimed.", s.expirations);
  w.One("shmkv_recovered_processes_total", "counter",
        "Dead processes whose blocks and pending claims were recovered.", s.recovered_processes);
  w.One("shmkv_attached_processes", "gauge", "Processes attached to the segment.",
        s.attached_processes);
  w.One("shmkv_janitor_tick_seconds", "gauge", "Duration of the janitor's last tick.",
        m.tick_seconds);
  w.One("shmkv_janitor_tick_seconds_max", "gauge", "Longest janitor tick since the daemon started.",
        m.tick_seconds_max);
  w.One("shmkv_janitor_sweep_passes_total", "counter",
        "Full expiry sweeps over the index since the daemon started.", m.sweep_passes);
  if (m.upstream) {
    const UpstreamMetrics& u = *m.upstream;
    w.One("shmkv_upstream_up", "gauge",
          "1 while the invalidation stream of the upstream Redis is current (local copies "
          "served), else 0.",
          uint64_t{u.up});
    w.Family("shmkv_upstream_heartbeat_age_seconds", "gauge",
             "Age of the last confirmation that every invalidation was applied (+Inf: none).");
    w.Sample("shmkv_upstream_heartbeat_age_seconds",
             u.heartbeat_age_seconds < 0 ? "+Inf" : Number(u.heartbeat_age_seconds));
    w.One("shmkv_upstream_generation", "gauge", "Generation of the published upstream state.",
          u.generation);
    w.One("shmkv_upstream_invalidation_messages_total", "counter",
          "Invalidation messages received from the upstream Redis.", u.messages);
    w.One("shmkv_upstream_invalidated_keys_total", "counter",
          "Keys named by invalidation messages, deleted locally.", u.keys);
    w.One("shmkv_upstream_flushes_total", "counter",
          "Flushes of the tracked prefixes (every sync, FLUSHALL and FLUSHDB).", u.flushes);
    w.One("shmkv_upstream_losses_total", "counter", "Times the invalidation stream was lost.",
          u.losses);
    w.One("shmkv_upstream_reconnects_total", "counter",
          "Connection attempts after a loss or a failed attempt.", u.reconnects);
  }
  return w.Take();
}

std::string FormatStatus(const MetricsSnapshot& m) {
  const shmkv_stats_t& s = m.stats;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "%" PRIu64 " items, %.1f/%.1f MiB used, hit ratio %.3f, %" PRIu64
                " processes attached, tick %.2f ms (max %.2f ms)",
                s.items, static_cast<double>(s.memory_used) / (1 << 20),
                static_cast<double>(s.memory_bytes) / (1 << 20), HitRatio(s), s.attached_processes,
                m.tick_seconds * 1e3, m.tick_seconds_max * 1e3);
  std::string status = buf;
  if (m.upstream) status += m.upstream->up ? ", upstream up" : ", upstream down";
  return status;
}

int WriteFileAtomically(const std::string& path, const std::string& contents, std::string* why) {
  // Same directory, so the rename is atomic; a name the textfile collector
  // ignores (it reads *.prom only).
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int e = errno;
    *why = "cannot create " + tmp + ": " + std::strerror(e);
    return e;
  }
  auto fail = [&](const char* step) {
    const int e = errno;
    *why = std::string(step) + " " + tmp + ": " + std::strerror(e);
    ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  };
  size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("cannot fsync");
  if (::close(fd) != 0) {
    const int e = errno;
    *why = "cannot close " + tmp + ": " + std::strerror(e);
    ::unlink(tmp.c_str());
    return e;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    *why = "cannot rename " + tmp + " to " + path + ": " + std::strerror(e);
    ::unlink(tmp.c_str());
    return e;
  }
  return 0;
}

}  // namespace shmkvd
