#include "log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

namespace shmkvd {
namespace {

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return "error";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kDebug:
      return "debug";
  }
  return "info";
}

}  // namespace

bool Logger::StderrIsJournal() {
  // $JOURNAL_STREAM is "DEV:INODE" of the stream systemd connected; it is
  // inherited by children whose stderr may point elsewhere, so compare.
  const char* js = std::getenv("JOURNAL_STREAM");
  if (js == nullptr || *js == '\0') return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st;
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return st.st_dev == dev && st.st_ino == ino;
}

void Logger::Log(LogLevel level, std::string_view message) const {
  if (!enabled(level)) return;
  std::string line;
  if (journal_) {
    line = "<" + std::to_string(static_cast<int>(level)) + ">";
  } else {
    const auto now = std::chrono::system_clock::now();
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    const std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm;
    ::gmtime_r(&secs, &tm);
    char stamp[64];
    std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms % 1000));
    line = std::string(stamp) + " shmkvd[" + std::to_string(::getpid()) + "] " + LevelName(level) +
           ": ";
  }
  line.append(message);
  line += '\n';
  // One write per record, so that records of concurrent writers to the
  // same stream do not interleave.
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace shmkvd
