// One-line log records on stderr. Run by hand:
//   2026-11-25T14:40:01.123Z shmkvd[4242] info: recovered 1 dead process
// Under systemd ($JOURNAL_STREAM set, so stderr is the journal) the
// timestamp and pid are the journal's, and a "<6>" style prefix carries the
// priority (sd-daemon.h, SyslogLevelPrefix=yes).
#ifndef SHMKV_DAEMON_LOG_H_
#define SHMKV_DAEMON_LOG_H_

#include <atomic>
#include <string_view>

#include "options.h"

namespace shmkvd {

class Logger {
 public:
  // journal: use priority prefixes instead of timestamps.
  explicit Logger(bool journal) : journal_(journal) {}
  // True when the environment says stderr is connected to the journal.
  static bool StderrIsJournal();

  // The level may change (SIGHUP) while other threads log: relaxed, a
  // record logged at the old level for a moment is harmless.
  void set_level(LogLevel level) { level_.store(level, std::memory_order_relaxed); }
  bool enabled(LogLevel level) const { return level <= level_.load(std::memory_order_relaxed); }

  void Log(LogLevel level, std::string_view message) const;
  void Error(std::string_view m) const { Log(LogLevel::kError, m); }
  void Warning(std::string_view m) const { Log(LogLevel::kWarning, m); }
  void Info(std::string_view m) const { Log(LogLevel::kInfo, m); }
  void Debug(std::string_view m) const { Log(LogLevel::kDebug, m); }

 private:
  bool journal_;
  std::atomic<LogLevel> level_{LogLevel::kInfo};
};

}  // namespace shmkvd

#endif  // SHMKV_DAEMON_LOG_H_
