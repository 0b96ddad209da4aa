// shmkvd: the janitor daemon of one shmkv segment (DESIGN.md §7, issue 4).
//
// A thin loop over the library: open (or create) the segment, become its
// janitor (Janitor::Acquire, an OFD lock, so one per segment and a killed
// janitor's successor can take over), then every --interval run one
// Janitor::Tick() of bounded work. Between ticks it waits in poll() on a
// signalfd, so signals are handled here, never in a handler:
//   SIGTERM, SIGINT  finish the tick, write the last metrics, detach, exit 0
//   SIGHUP           re-read --config; apply the reloadable options
// Under systemd it sends READY=1 after the first tick, WATCHDOG=1 every tick
// when the unit has WatchdogSec=, STATUS= with every metrics write, and
// STOPPING=1 on the way out. With --upstream, the Redis invalidation stream
// (upstream.h) runs on a thread of its own beside this loop, from after the
// segment is opened until the loop ends (it publishes DOWN as it stops).
#include <fcntl.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "janitor.h"
#include "log.h"
#include "metrics.h"
#include "options.h"
#include "segment_group.h"
#include "shmkv/shmkv.h"
#ifdef SHMKVD_HAVE_UPSTREAM
#include "upstream.h"
#endif

namespace shmkvd {
namespace {

using Clock = std::chrono::steady_clock;
using shmkv::internal::Janitor;
using shmkv::internal::JanitorOptions;
using shmkv::internal::TickReport;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
// Expirations in one tick or one sweep pass at or above this are logged at
// info level (below it, at debug level).
constexpr uint64_t kLargeExpiry = 1000;

std::string Plural(uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// A startup failure: one "shmkvd: ..." line, like a usage error, with an
// error priority when stderr is the journal.
int Fatal(bool journal, const std::string& message) {
  std::fprintf(stderr, "%sshmkvd: %s\n", journal ? "<3>" : "", message.c_str());
  return kExitFailure;
}

void Notify(const std::string& state) { sd_notify(0, state.c_str()); }

class Daemon {
 public:
  Daemon(int argc, char** argv, DaemonOptions options)
      : argc_(argc),
        argv_(argv),
        options_(std::move(options)),
        journal_(Logger::StderrIsJournal()),
        log_(journal_) {
    log_.set_level(options_.log_level);
  }
  ~Daemon() {
#ifdef SHMKVD_HAVE_UPSTREAM
    upstream_.reset();  // before the handle it uses
#endif
    janitor_.reset();  // before the handle it refers to
    shmkv_close(kv_);
    if (signal_fd_ >= 0) ::close(signal_fd_);
  }

  int Run() {
    if (int rc = SetUpSignals(); rc != 0) return rc;
    if (int rc = OpenSegment(); rc != 0) return rc;
    if (int rc = BecomeJanitor(); rc != 0) return rc;
    if (int rc = StartUpstream(); rc != 0) return rc;
    uint64_t watchdog_usec = 0;
    watchdog_ = sd_watchdog_enabled(0, &watchdog_usec) > 0;
    if (watchdog_ && std::chrono::microseconds(watchdog_usec) < 2 * options_.interval) {
      log_.Warning("--interval " + FormatDuration(options_.interval) +
                   " is more than half of the watchdog timeout; the watchdog may fire");
    }
    Loop();
    Notify("STOPPING=1");
#ifdef SHMKVD_HAVE_UPSTREAM
    if (upstream_) upstream_->Stop();  // publishes DOWN
#endif
    Publish();  // the last word for the textfile collector
    janitor_.reset();
    shmkv_close(kv_);
    kv_ = nullptr;
    log_.Info("stopped; detached from segment " + options_.segment);
    return 0;
  }

 private:
  int SetUpSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    // Blocked in every thread (none exist yet), delivered through the fd.
    if (::pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) {
      return Fatal(journal_, "cannot block signals");
    }
    signal_fd_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd_ < 0) {
      return Fatal(journal_, std::string("signalfd: ") + std::strerror(errno));
    }
    std::signal(SIGPIPE, SIG_IGN);
    return 0;
  }

  int OpenSegment() {
    const DaemonOptions& o = options_;
    std::optional<gid_t> gid;
    if (o.create && !o.group.empty()) {
      gid = ResolveGroup(o.group);
      if (!gid) {
        std::fprintf(stderr, "shmkvd: unknown group '%s' for --group\n", o.group.c_str());
        return kExitUsage;
      }
    }
    int rc;
    if (o.create) {
      shmkv_options_t so;
      shmkv_options_init(&so);
      so.memory_bytes = o.memory_bytes;
      if (o.max_items) so.max_items = o.max_items;
      if (o.max_key_len) so.max_key_len = o.max_key_len;
      if (o.max_value_len) so.max_value_len = o.max_value_len;
      so.mode = o.mode;
      so.evict_policy = o.evict_policy;
      so.flags = SHMKV_OPEN_CREATE | SHMKV_OPEN_EXCL;
      rc = shmkv_open(o.segment.c_str(), &so, &kv_);
      if (rc == 0) {
        log_.Info("created segment " + o.segment);
        if (gid) {
          std::string why;
          if (ChownSegment(o.segment, *gid, &why) != 0) {
            // Unlinked so that a restart creates it again with the group,
            // rather than finding it and leaving the group wrong.
            shmkv_close(kv_);
            kv_ = nullptr;
            shmkv_unlink(o.segment.c_str());
            return Fatal(journal_, "segment " + o.segment + ": " + why);
          }
        }
      } else if (rc == SHMKV_EEXIST) {
        rc = shmkv_open(o.segment.c_str(), nullptr, &kv_);
        if (rc == 0) log_.Info("segment " + o.segment + " exists; its own geometry is kept");
      }
    } else {
      rc = shmkv_open(o.segment.c_str(), nullptr, &kv_);
    }
    if (rc != 0) {
      const std::string detail = shmkv_last_error();
      return Fatal(journal_, "cannot open segment " + o.segment + ": " + shmkv_strerror(rc) +
                                 (detail.empty() ? "" : " (" + detail + ")") +
                                 (rc == SHMKV_ENOSEG ? "; use --create to create it" : ""));
    }
    return 0;
  }

  // The near cache's invalidation stream (--upstream), if asked for. Only
  // the janitor holds it, so a host has one stream per segment.
  int StartUpstream() {
    if (options_.upstream_url.empty()) return 0;
#ifdef SHMKVD_HAVE_UPSTREAM
    UpstreamConfig c;
    c.url = options_.upstream_url;
    c.prefixes = options_.prefixes;
    c.max_lag = options_.upstream_max_lag;
    c.ping_every = options_.upstream_ping;
    upstream_ = std::make_unique<UpstreamStream>(kv_, std::move(c), &log_);
    std::string why;
    if (upstream_->Start(&why) != 0) {
      upstream_.reset();
      return Fatal(journal_, "segment " + options_.segment + ": " + why);
    }
    return 0;
#else
    return Fatal(journal_, "--upstream: built without hiredis");  // refused in main()
#endif
  }

  JanitorOptions MakeJanitorOptions() const {
    JanitorOptions j;
    j.interval = options_.interval;
    j.sweep_period = options_.sweep_period;
    return j;
  }

  int BecomeJanitor() {
    std::string why;
    const int rc = Janitor::Acquire(kv_, MakeJanitorOptions(), &janitor_, &why);
    if (rc == SHMKV_EBUSY) {
      const uint64_t pid = shmkv::internal::JanitorPid(kv_);
      return Fatal(journal_, "segment " + options_.segment + " already has a janitor (pid " +
                                 (pid ? std::to_string(pid) : std::string("unknown")) + ")");
    }
    if (rc != 0) {
      return Fatal(journal_, "cannot become the janitor of segment " + options_.segment + ": " +
                                 shmkv_strerror(rc) + (why.empty() ? "" : " (" + why + ")"));
    }
    shmkv_stats_t s;
    s.struct_size = sizeof s;
    shmkv_stats(kv_, &s);
    log_.Info("janitor of segment " + options_.segment + " (" +
              std::to_string(s.memory_bytes >> 20) + " MiB, max_items " +
              std::to_string(s.capacity_items) + "): interval " +
              FormatDuration(options_.interval) + ", sweep period " +
              FormatDuration(options_.sweep_period));
    return 0;
  }

  void Loop() {
    Clock::time_point next_tick = Clock::now();
    Clock::time_point next_publish = next_tick;
    bool ready = false;
    while (!stop_) {
      DoTick();
      if (!ready) {
        ready = true;
        Notify("READY=1");
      }
      if (watchdog_) Notify("WATCHDOG=1");
      Clock::time_point now = Clock::now();
      if (now >= next_publish) {
        Publish();
        next_publish += options_.metrics_every;
        if (next_publish <= now) next_publish = now + options_.metrics_every;
      }
      // Fixed rate; after an overrun, start again from now rather than
      // running the missed ticks back to back.
      next_tick += options_.interval;
      if (next_tick <= now) next_tick = now;
      WaitForSignals(next_tick);
    }
  }

  // Sleeps in poll() until deadline, handling signals as they come.
  void WaitForSignals(Clock::time_point deadline) {
    for (;;) {
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero() || stop_) return;
      // Rounded up, so that a wakeup never comes before the deadline.
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
      struct pollfd p = {signal_fd_, POLLIN, 0};
      const int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 60'000)));
      if (n > 0) HandleSignals();
    }
  }

  void HandleSignals() {
    struct signalfd_siginfo si;
    while (::read(signal_fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
        if (!stop_) {
          log_.Info(std::string("received ") + (si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT") +
                    ", stopping");
        }
        stop_ = true;
      } else if (si.ssi_signo == SIGHUP) {
        Reload();
      }
    }
  }

  void Reload() {
    if (options_.config_file.empty()) {
      log_.Info("SIGHUP: no --config file was given; nothing to reload");
      return;
    }
    struct timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    Notify("RELOADING=1\nMONOTONIC_USEC=" +
           std::to_string(static_cast<uint64_t>(ts.tv_sec) * 1'000'000 +
                          static_cast<uint64_t>(ts.tv_nsec) / 1000));
    DaemonOptions fresh;
    std::string error;
    if (ParseOptions(argc_, argv_, &fresh, &error) != ParseOutcome::kRun) {
      log_.Error("SIGHUP: " + options_.config_file + ": " + error + "; keeping the old options");
      Notify("READY=1");
      return;
    }
    if (fresh.segment != options_.segment || fresh.create != options_.create ||
        fresh.memory_bytes != options_.memory_bytes || fresh.max_items != options_.max_items ||
        fresh.max_key_len != options_.max_key_len ||
        fresh.max_value_len != options_.max_value_len || fresh.mode != options_.mode ||
        fresh.group != options_.group || fresh.evict_policy != options_.evict_policy) {
      log_.Warning("SIGHUP: segment options changed; they take effect at the next start");
    }
    if (fresh.upstream_url != options_.upstream_url || fresh.prefixes != options_.prefixes ||
        fresh.upstream_max_lag != options_.upstream_max_lag ||
        fresh.upstream_ping != options_.upstream_ping) {
      log_.Warning("SIGHUP: upstream options changed; they take effect at the next start");
    }
    const bool janitor_changed =
        fresh.interval != options_.interval || fresh.sweep_period != options_.sweep_period;
    options_.interval = fresh.interval;
    options_.sweep_period = fresh.sweep_period;
    options_.metrics_file = fresh.metrics_file;
    options_.metrics_every = fresh.metrics_every;
    options_.log_level = fresh.log_level;
    log_.set_level(fresh.log_level);
    if (janitor_changed) janitor_->set_options(MakeJanitorOptions());
    log_.Info("SIGHUP: reloaded " + options_.config_file + ": interval " +
              FormatDuration(options_.interval) + ", sweep period " +
              FormatDuration(options_.sweep_period) + ", metrics " +
              (options_.metrics_file.empty()
                   ? std::string("off")
                   : options_.metrics_file + " every " + FormatDuration(options_.metrics_every)));
    Notify("READY=1");
  }

  void DoTick() {
    if (!janitor_) return;
    TickReport r;
    const int rc = janitor_->Tick(&r);
    if (rc != 0) {
      if (rc != last_tick_error_) {
        log_.Error(std::string("tick failed: ") + shmkv_strerror(rc) + " (" + shmkv_last_error() +
                   ")");
      }
      last_tick_error_ = rc;
      return;
    }
    if (last_tick_error_ != 0) log_.Info("ticks succeed again");
    last_tick_error_ = 0;

    const double seconds = static_cast<double>(r.duration_ns) / 1e9;
    tick_seconds_ = seconds;
    if (seconds > tick_seconds_max_) {
      tick_seconds_max_ = seconds;
      if (std::chrono::duration<double>(seconds) > options_.interval) {
        char ms[32];
        std::snprintf(ms, sizeof ms, "%.1f", seconds * 1e3);
        log_.Warning(std::string("a tick took ") + ms + " ms, longer than the interval " +
                     FormatDuration(options_.interval));
      }
    }
    pass_expired_ += r.expired;
    if (r.recovered_processes > 0) {
      log_.Info("recovered " + Plural(r.recovered_processes, "dead process", "dead processes"));
    }
    if (r.expired >= kLargeExpiry) {
      log_.Info("expired " + Plural(r.expired, "entry", "entries") + " in one tick");
    } else if (r.expired > 0 && log_.enabled(LogLevel::kDebug)) {
      log_.Debug("expired " + Plural(r.expired, "entry", "entries"));
    }
    if (r.evicted > 0 && log_.enabled(LogLevel::kDebug)) {
      log_.Debug("evicted " + Plural(r.evicted, "entry", "entries") +
                 " to keep free-memory watermarks");
    }
    if (r.pass_completed) {
      ++sweep_passes_;
      // At most one line per sweep period at info level.
      log_.Log(pass_expired_ >= kLargeExpiry ? LogLevel::kInfo : LogLevel::kDebug,
               "sweep pass " + std::to_string(sweep_passes_) +
                   " done: " + Plural(pass_expired_, "entry", "entries") + " expired");
      pass_expired_ = 0;
    }
  }

  // Metrics file and STATUS=.
  void Publish() {
    MetricsSnapshot m;
    m.segment = options_.segment;
    m.stats.struct_size = sizeof m.stats;
    if (const int rc = shmkv_stats(kv_, &m.stats); rc != 0) {
      log_.Error(std::string("cannot read stats: ") + shmkv_strerror(rc));
      return;
    }
    for (const auto& c : shmkv::internal::GetClassUsage(kv_)) {
      m.classes.push_back({c.class_index, c.block_size, c.blocks_used * c.block_size});
    }
    m.tick_seconds = tick_seconds_;
    m.tick_seconds_max = tick_seconds_max_;
    m.sweep_passes = sweep_passes_;
#ifdef SHMKVD_HAVE_UPSTREAM
    if (upstream_) m.upstream = upstream_->Metrics();
#endif
    Notify("STATUS=" + FormatStatus(m));
    if (options_.metrics_file.empty()) return;
    std::string why;
    if (WriteFileAtomically(options_.metrics_file, FormatPrometheus(m), &why) != 0) {
      if (why != last_metrics_error_) log_.Error("metrics: " + why);
      last_metrics_error_ = why;
    } else if (!last_metrics_error_.empty()) {
      log_.Info("metrics: " + options_.metrics_file + " written again");
      last_metrics_error_.clear();
    }
  }

 public:
  int exit_code() const { return exit_code_; }

 private:
  const int argc_;
  char** const argv_;
  DaemonOptions options_;
  const bool journal_;
  Logger log_;
  int signal_fd_ = -1;
  shmkv_t* kv_ = nullptr;
  std::unique_ptr<Janitor> janitor_;
#ifdef SHMKVD_HAVE_UPSTREAM
  std::unique_ptr<UpstreamStream> upstream_;
#endif
  bool watchdog_ = false;
  bool stop_ = false;
  int exit_code_ = 0;

  int last_tick_error_ = 0;
  std::string last_metrics_error_;
  double tick_seconds_ = 0;
  double tick_seconds_max_ = 0;
  uint64_t sweep_passes_ = 0;
  uint64_t pass_expired_ = 0;
};

}  // namespace
}  // namespace shmkvd

int main(int argc, char** argv) {
  shmkvd::DaemonOptions options;
  std::string text;
  switch (shmkvd::ParseOptions(argc, argv, &options, &text)) {
    case shmkvd::ParseOutcome::kHelp:
      std::fputs(text.c_str(), stdout);
      return 0;
    case shmkvd::ParseOutcome::kError:
      std::fprintf(stderr, "shmkvd: %s\nTry 'shmkvd --help'.\n", text.c_str());
      return shmkvd::kExitUsage;
    case shmkvd::ParseOutcome::kRun:
      break;
  }
  if (!options.upstream_url.empty()) {
#ifdef SHMKVD_HAVE_UPSTREAM
    if (!shmkvd::CheckUpstreamUrl(options.upstream_url, &text)) {
      std::fprintf(stderr, "shmkvd: %s\nTry 'shmkvd --help'.\n", text.c_str());
      return shmkvd::kExitUsage;
    }
#else
    std::fputs("shmkvd: --upstream: this shmkvd was built without hiredis (libhiredis-dev)\n",
               stderr);
    return shmkvd::kExitUsage;
#endif
  }
  shmkvd::Daemon daemon(argc, argv, std::move(options));
  const int rc = daemon.Run();
  return rc != 0 ? rc : daemon.exit_code();
}
