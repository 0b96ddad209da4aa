// The view of `shmkv top` (top.h). Take() reads a Snapshot of the segment,
// Render() draws one snapshot (with rates against an earlier one) on the
// whole screen, and RunTop() owns the timing and the keys.
#include "top.h"

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iterator>
#include <optional>
#include <utility>
#include <vector>

#include "janitor.h"

// Last: curses defines macros (timeout, erase, refresh, ...) that would
// rewrite identifiers in the headers above.
#include <curses.h>

namespace shmkv_cli {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long a getch() waits at most, so that a signal or a paused view is
// noticed promptly whatever the interval.
constexpr int kPollMs = 100;
// The intervals + and - step through.
constexpr int64_t kIntervalStepsMs[] = {100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000};

// Everything one refresh shows. Each field is a lock-free read; together they
// are not one atomic snapshot (under load they are a few operations apart).
struct Snapshot {
  Clock::time_point at;  // when stats were read: the rates' time base
  shmkv_stats_t stats{};
  shmkv_info_t info{};
  std::vector<shmkv_process_info_t> processes;  // by pid
  std::vector<shmkv::internal::ClassUsage> classes;
};

std::string Describe(const char* what, int rc) {
  std::string msg = std::string(what) + ": " + shmkv_strerror(rc);
  const std::string detail = shmkv_last_error();
  if (!detail.empty()) msg += " (" + detail + ")";
  return msg;
}

bool Take(shmkv_t* kv, Snapshot* s, std::string* error) {
  s->stats.struct_size = sizeof s->stats;
  if (const int rc = shmkv_stats(kv, &s->stats); rc != 0) {
    *error = Describe("stats", rc);
    return false;
  }
  s->at = Clock::now();
  s->info.struct_size = sizeof s->info;
  if (const int rc = shmkv_info(kv, &s->info); rc != 0) {
    *error = Describe("info", rc);
    return false;
  }
  s->processes.resize(s->info.process_slots);
  size_t n = 0;
  if (const int rc = shmkv_processes(kv, s->processes.data(), s->processes.size(), &n); rc != 0) {
    *error = Describe("processes", rc);
    return false;
  }
  s->processes.resize(std::min(n, s->processes.size()));
  std::sort(
      s->processes.begin(), s->processes.end(),
      [](const shmkv_process_info_t& a, const shmkv_process_info_t& b) { return a.pid < b.pid; });
  s->classes = shmkv::internal::GetClassUsage(kv);
  return true;
}

// ---------------------------------------------------------------- formatting

__attribute__((format(printf, 1, 2))) std::string Format(const char* format, ...) {
  char buf[256];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  return buf;
}

// Three significant digits with a binary unit: "448B", "1.50K", "64.0M".
std::string Bytes(uint64_t bytes) {
  constexpr char kUnits[] = "BKMGTPE";
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024 && unit < 6) {
    v /= 1024;
    ++unit;
  }
  if (unit == 0) return Format("%" PRIu64 "B", bytes);
  return Format("%.*f%c", v < 10 ? 2 : v < 100 ? 1 : 0, v, kUnits[unit]);
}

// Exact below 100000, then three significant digits with k, M, G.
std::string Rate(double r) {
  if (r < 99999.5) return Format("%.0f", r);
  constexpr char kUnits[] = "kMGT";
  int unit = 0;
  r /= 1000;
  while (r >= 999.5 && unit < 3) {
    r /= 1000;
    ++unit;
  }
  return Format("%.*f%c", r < 10 ? 2 : r < 100 ? 1 : 0, r, kUnits[unit]);
}

std::string Percent(uint64_t part, uint64_t whole) {
  if (whole == 0) return "-";
  return Format("%.1f%%", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

std::string Interval(milliseconds d) {
  const int64_t ms = d.count();
  if (ms < 1000) return Format("%" PRId64 "ms", ms);
  if (ms % 1000 == 0) return Format("%" PRId64 "s", ms / 1000);
  return Format("%.1fs", static_cast<double>(ms) / 1000);
}

std::string Age(int64_t secs) {
  secs = std::max<int64_t>(secs, 0);
  if (secs < 60) return Format("%" PRId64 "s", secs);
  if (secs < 3600) return Format("%" PRId64 "m%02" PRId64 "s", secs / 60, secs % 60);
  if (secs < 86400) return Format("%" PRId64 "h%02" PRId64 "m", secs / 3600, secs / 60 % 60);
  return Format("%" PRId64 "d%02" PRId64 "h", secs / 86400, secs / 3600 % 24);
}

milliseconds Longer(milliseconds d) {
  for (const int64_t step : kIntervalStepsMs) {
    if (step > d.count()) return milliseconds(step);
  }
  return d;
}

milliseconds Shorter(milliseconds d) {
  for (auto it = std::rbegin(kIntervalStepsMs); it != std::rend(kIntervalStepsMs); ++it) {
    if (*it < d.count()) return milliseconds(*it);
  }
  return d;
}

// ---------------------------------------------------------------- drawing

// Writes text at row y, column x, cut at the right edge of the screen.
void Put(int y, int x, const std::string& text, attr_t attr = A_NORMAL) {
  if (y < 0 || y >= LINES || x < 0 || x >= COLS) return;
  attron(attr);
  mvaddnstr(y, x, text.c_str(), COLS - x);
  attroff(attr);
}

// A full-width reverse-video bar: left at the left edge, right at the right.
void Bar(int y, const std::string& left, const std::string& right) {
  std::string line = left;
  const size_t width = static_cast<size_t>(std::max(COLS, 0));
  if (line.size() + right.size() < width) line.append(width - line.size() - right.size(), ' ');
  Put(y, 0, line + right, A_REVERSE);
}

struct ViewState {
  std::string segment;
  milliseconds interval;
  bool paused = false;
};

struct OpsRow {
  const char* name;
  uint64_t shmkv_stats_t::*member;
};

constexpr OpsRow kOpsRows[] = {
    {"gets", &shmkv_stats_t::gets},
    {"hits", &shmkv_stats_t::hits},
    {"misses", &shmkv_stats_t::misses},
    {"sets", &shmkv_stats_t::sets},
    {"deletes", &shmkv_stats_t::deletes},
    {"incrs", &shmkv_stats_t::incrs},
    {"cas_failures", &shmkv_stats_t::cas_failures},
    {"evictions", &shmkv_stats_t::evictions},
    {"expirations", &shmkv_stats_t::expirations},
};

// Rows 0-2: who and how full.
void DrawHeader(const Snapshot& cur, const ViewState& vs) {
  char clock[16] = "";
  const time_t now = std::time(nullptr);
  struct tm local;
  if (localtime_r(&now, &local) != nullptr) std::strftime(clock, sizeof clock, "%H:%M:%S", &local);
  Bar(0, " shmkv top  " + vs.segment,
      std::string(vs.paused ? "PAUSED   " : "") + "every " + Interval(vs.interval) + "   " + clock +
          " ");
  const shmkv_stats_t& s = cur.stats;
  Put(1, 1,
      Format("memory %s / %s (%s)", Bytes(s.memory_used).c_str(), Bytes(s.memory_bytes).c_str(),
             Percent(s.memory_used, s.memory_bytes).c_str()) +
          Format("    items %" PRIu64 " / %" PRIu64 " (%s)", s.items, s.capacity_items,
                 Percent(s.items, s.capacity_items).c_str()));
  Put(2, 1,
      Format("processes %" PRIu64 " attached    janitor %s", s.attached_processes,
             cur.info.janitor_pid ? Format("pid %u", cur.info.janitor_pid).c_str() : "none") +
          (cur.info.superseded ? "    SUPERSEDED (copied into a new segment)" : ""));
}

// Operations per second over the last interval and since creation. Returns
// the number of rows drawn.
int DrawOps(int y, const Snapshot& cur, const Snapshot* prev) {
  const double secs = prev ? std::chrono::duration<double>(cur.at - prev->at).count() : 0;
  const bool rates = prev != nullptr && secs > 0;
  auto delta = [&](uint64_t shmkv_stats_t::*m) {
    const uint64_t a = cur.stats.*m, b = prev->stats.*m;
    return a >= b ? a - b : 0;  // counters only grow; never show a negative rate
  };
  Put(y, 0, Format(" %-12s %10s %16s", "OPS", "per sec", "total"), A_BOLD);
  int row = 1;
  for (const OpsRow& r : kOpsRows) {
    const std::string rate = rates ? Rate(static_cast<double>(delta(r.member)) / secs) : "-";
    Put(y + row++, 0, Format(" %-12s %10s %16" PRIu64, r.name, rate.c_str(), cur.stats.*r.member));
  }
  const std::string interval_ratio =
      rates ? Percent(delta(&shmkv_stats_t::hits),
                      delta(&shmkv_stats_t::hits) + delta(&shmkv_stats_t::misses))
            : "-";
  const std::string overall_ratio = Percent(cur.stats.hits, cur.stats.hits + cur.stats.misses);
  Put(y + row++, 0,
      Format(" %-12s %10s %16s", "hit ratio", interval_ratio.c_str(), overall_ratio.c_str()));
  return row;
}

// The attached processes, at most max_rows rows. Returns the rows drawn.
int DrawProcesses(int y, int x, int max_rows, const Snapshot& cur) {
  Put(y, x, Format("%-10s %8s  %-5s  %s", "PROCESSES", "pid", "state", "attached"), A_BOLD);
  const int64_t now_s = static_cast<int64_t>(std::time(nullptr));
  const auto& procs = cur.processes;
  int row = 1;
  for (size_t i = 0; i < procs.size() && row < max_rows; ++i) {
    if (row == max_rows - 1 && i + 1 < procs.size()) {
      Put(y + row++, x, Format("%-10s ... %zu more", "", procs.size() - i));
      break;
    }
    const shmkv_process_info_t& p = procs[i];
    const int64_t attached_s = static_cast<int64_t>(p.attach_realtime_ns / 1000000000u);
    Put(y + row++, x,
        Format("%-10s %8u  %-5s  %s ago", "", p.pid, p.alive ? "alive" : "dead",
               Age(now_s - attached_s).c_str()),
        p.alive ? A_NORMAL : A_BOLD);
  }
  if (procs.empty()) Put(y + row++, x, Format("%-10s %8s", "", "none"));
  return row;
}

// Memory by size class (classes that own at least one page), down to the
// row above the footer.
void DrawClasses(int y, const Snapshot& cur) {
  Put(y, 0,
      Format(" %-5s %8s %7s %11s %11s %10s  %s", "CLASS", "block", "pages", "used", "blocks",
             "bytes", "fill"),
      A_BOLD);
  const int last = LINES - 2;  // the footer is LINES - 1
  const auto& classes = cur.classes;
  int row = y + 1;
  if (classes.empty() && row <= last) Put(row, 0, " (no page in use)");
  for (size_t i = 0; i < classes.size() && row <= last; ++i) {
    if (row == last && i + 1 < classes.size()) {
      Put(row, 0,
          Format(" ... %zu more classes (a taller terminal shows them)", classes.size() - i));
      break;
    }
    const shmkv::internal::ClassUsage& c = classes[i];
    std::string line = Format(" %5u %8s %7" PRIu64 " %11" PRIu64 " %11" PRIu64 " %10s  ",
                              c.class_index, Bytes(c.block_size).c_str(), c.pages, c.blocks_used,
                              c.blocks, Bytes(c.blocks_used * c.block_size).c_str());
    const int bar = std::min(30, COLS - static_cast<int>(line.size()) - 9);
    if (bar >= 5 && c.blocks != 0) {
      const int filled =
          static_cast<int>(static_cast<double>(bar) * static_cast<double>(c.blocks_used) /
                               static_cast<double>(c.blocks) +
                           0.5);
      line += "[" + std::string(static_cast<size_t>(std::min(filled, bar)), '#') +
              std::string(static_cast<size_t>(bar - std::min(filled, bar)), '.') + "] ";
    }
    Put(row++, 0, line + Percent(c.blocks_used, c.blocks));
  }
}

void Render(const Snapshot& cur, const Snapshot* prev, const ViewState& vs) {
  erase();
  DrawHeader(cur, vs);
  constexpr int kTop = 4;
  const int ops_rows = DrawOps(kTop, cur, prev);
  int below = kTop + ops_rows;
  // Processes beside the counters when the screen is wide enough, else below.
  constexpr int kSideX = 46;
  if (COLS >= kSideX + 36) {
    DrawProcesses(kTop, kSideX, ops_rows, cur);
  } else {
    below += 1 + DrawProcesses(below + 1, 1, 6, cur);
  }
  DrawClasses(below + 1, cur);
  Bar(LINES - 1, " q quit   p pause   + / - interval", "");
  refresh();
}

// ---------------------------------------------------------------- terminal

std::atomic<bool> g_stop{false};

// relaxed: a flag polled by RunTop's loop; nothing is published with it.
void OnStopSignal(int) { g_stop.store(true, std::memory_order_relaxed); }

// Curses on stdin/stdout while it lives. SIGINT and SIGTERM end the view
// cleanly (the terminal restored, the handle closed by the caller); they are
// installed before newterm() so that curses keeps its own handlers out.
class Terminal {
 public:
  Terminal() = default;
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;
  ~Terminal() {
    if (screen_ != nullptr) {
      endwin();
      delscreen(screen_);
    }
    if (handlers_set_) {
      sigaction(SIGINT, &old_int_, nullptr);
      sigaction(SIGTERM, &old_term_, nullptr);
    }
  }

  bool Open(std::string* error) {
    g_stop.store(false, std::memory_order_relaxed);
    struct sigaction sa {};
    sa.sa_handler = OnStopSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
    handlers_set_ = true;
    screen_ = newterm(nullptr, stdout, stdin);
    if (screen_ == nullptr) {
      const char* term = std::getenv("TERM");
      *error = std::string("cannot use the terminal (TERM=") + (term ? term : "unset") + ")";
      return false;
    }
    set_term(screen_);
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);  // may fail on terminals without the capability: harmless
    return true;
  }

 private:
  SCREEN* screen_ = nullptr;
  bool handlers_set_ = false;
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

}  // namespace

bool RunTop(shmkv_t* kv, const TopOptions& options, std::string* error) {
  Snapshot cur;
  if (!Take(kv, &cur, error)) return false;  // before curses: the error prints plainly
  Terminal terminal;
  if (!terminal.Open(error)) return false;
  ViewState vs{options.segment, options.interval, false};
  std::optional<Snapshot> prev;  // the refresh before cur, for its rates
  std::optional<Snapshot> base;  // taken on resume: the next rates start there, not at cur
  Render(cur, nullptr, vs);
  auto next = cur.at + vs.interval;
  uint64_t refreshes = 0;
  while (!g_stop.load(std::memory_order_relaxed)) {
    const auto now = Clock::now();
    if (!vs.paused && now >= next) {
      Snapshot fresh;
      if (!Take(kv, &fresh, error)) return false;
      if (base) {
        prev = std::move(base);
        base.reset();
      } else {
        prev = std::move(cur);
      }
      cur = std::move(fresh);
      Render(cur, &*prev, vs);
      next = cur.at + vs.interval;
      if (options.iterations != 0 && ++refreshes >= options.iterations) break;
      continue;
    }
    const auto wait = std::chrono::duration_cast<milliseconds>(next - now).count() + 1;
    timeout(vs.paused ? kPollMs : static_cast<int>(std::min<int64_t>(wait, kPollMs)));
    const int key = getch();
    switch (key) {
      case 'q':
      case 'Q':
        return true;
      case 'p':
      case 'P':
        vs.paused = !vs.paused;
        if (!vs.paused) {
          // The first rates after a pause cover the time since the resume.
          base.emplace();
          if (!Take(kv, &*base, error)) return false;
          next = base->at + vs.interval;
        }
        break;
      case '+':
      case '=':  // + without shift
        vs.interval = Longer(vs.interval);
        next = (base ? base->at : cur.at) + vs.interval;
        break;
      case '-':
      case '_':
        vs.interval = Shorter(vs.interval);
        next = (base ? base->at : cur.at) + vs.interval;
        break;
      case KEY_RESIZE:  // curses has resized stdscr already
        break;
      default:
        continue;  // ERR (timeout, interrupted) or a key without a meaning
    }
    Render(cur, prev ? &*prev : nullptr, vs);
  }
  return true;
}

}  // namespace shmkv_cli
