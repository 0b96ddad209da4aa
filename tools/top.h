// `shmkv top`: a live ncurses view of a segment (DESIGN.md §8). The command
// line is parsed in shmkv.cc like every other command; this is the view.
//
// Each refresh takes a snapshot (shmkv_stats, shmkv_info, shmkv_processes and
// the per-class memory of the janitor library), all lock-free reads on a
// read-only handle, so the view never blocks or slows down writers. Rates are
// the difference between two snapshots divided by the time between them.
#ifndef SHMKV_TOOLS_TOP_H_
#define SHMKV_TOOLS_TOP_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "shmkv/shmkv.h"

namespace shmkv_cli {

struct TopOptions {
  std::string segment;  // shown in the header
  std::chrono::milliseconds interval{1000};
  uint64_t iterations = 0;  // stop after this many refreshes; 0 = until q
};

// Runs the view on kv (a read-only handle) on the terminal of stdin/stdout
// until the user quits (q, Ctrl-C) or after options.iterations refreshes.
// Keys: q quit, p pause/resume, + / - longer / shorter interval. Returns
// false with *error set if the terminal cannot be used or a read of the
// segment fails; the terminal is restored in every case.
[[nodiscard]] bool RunTop(shmkv_t* kv, const TopOptions& options, std::string* error);

}  // namespace shmkv_cli

#endif  // SHMKV_TOOLS_TOP_H_
