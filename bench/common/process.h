// Child processes: servers a run starts and stops (Spawn, Stop), workers it
// forks and reaps (Reap), waiting with a deadline (WaitFor), and what a
// terminating signal must not leave behind.
#ifndef SHMKV_BENCH_COMMON_PROCESS_H_
#define SHMKV_BENCH_COMMON_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "measure.h"

namespace bench {

// Starts args[0] (found in PATH) with stdin from /dev/null and stdout and
// stderr appended to log; it gets SIGTERM if this process dies. Throws if
// it cannot fork. The child is remembered for CleanUpOnSignals().
pid_t Spawn(const std::vector<std::string>& args, const std::string& log);

// True once pid has exited (it is reaped then).
bool Exited(pid_t pid);

// Waits for every pid until deadline (peers::NowS()), then kills the rest
// (SIGCONT first, in case one is stopped). "" or how the first one that did
// not exit with 0 ended.
std::string Reap(std::vector<pid_t>* pids, double deadline);

// SIGTERM, then SIGKILL if it has not exited within grace_s seconds.
void Stop(pid_t pid, double grace_s);

// Calls pred every poll_s seconds until it returns true (true), or until
// timeout_s seconds have passed (false).
template <typename Pred>
bool WaitFor(Pred pred, double timeout_s, double poll_s) {
  const double deadline = peers::NowS() + timeout_s;
  for (;;) {
    if (pred()) return true;
    if (peers::NowS() >= deadline) return false;
    peers::SleepS(poll_s);
  }
}

// A TCP port of 127.0.0.1 the kernel had free a moment ago; 0 if none.
int FreePort();

// What SIGINT, SIGTERM or SIGHUP must not leave behind, once
// CleanUpOnSignals() is called: the children of Spawn() are killed
// (SIGKILL), the remembered files and segments (/dev/shm/NAME) removed, then
// the directory; then the process dies of the signal.
void CleanUpOnSignals();
void RememberPath(const std::string& path);
void RememberDir(const std::string& dir);
// The normal end, once the children are stopped: removes the remembered
// paths and directory now, and forgets them and the children.
void RemoveRemembered();

}  // namespace bench

#endif  // SHMKV_BENCH_COMMON_PROCESS_H_
