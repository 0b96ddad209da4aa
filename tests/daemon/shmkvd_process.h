// Test helpers: a shmkvd child process with its stderr captured, a fake
// systemd notify socket, and polling with a deadline.
#ifndef SHMKV_TESTS_DAEMON_SHMKVD_PROCESS_H_
#define SHMKV_TESTS_DAEMON_SHMKVD_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace shmkv::test {

using Deadline = std::chrono::steady_clock::time_point;
inline Deadline After(std::chrono::milliseconds d) { return std::chrono::steady_clock::now() + d; }

// Calls pred every few milliseconds until it is true (returns true) or the
// deadline passes (returns false).
bool WaitUntil(const std::function<bool()>& pred, Deadline deadline);

// An AF_UNIX datagram socket in the abstract namespace, as systemd's
// $NOTIFY_SOCKET. Each datagram is one sd_notify() call.
class FakeNotifySocket {
 public:
  FakeNotifySocket();
  ~FakeNotifySocket();
  FakeNotifySocket(const FakeNotifySocket&) = delete;
  FakeNotifySocket& operator=(const FakeNotifySocket&) = delete;

  bool ok() const { return fd_ >= 0; }
  // The value for $NOTIFY_SOCKET ("@name").
  const std::string& address() const { return address_; }
  // The next datagram, or nullopt at the deadline.
  std::optional<std::string> Receive(Deadline deadline);
  // Datagrams until one has a line equal to `line` (returned last), or
  // nullopt at the deadline; *seen collects every datagram received.
  bool WaitForLine(const std::string& line, Deadline deadline, std::vector<std::string>* seen);

 private:
  int fd_ = -1;
  std::string address_;
};

class ShmkvdProcess {
 public:
  ShmkvdProcess() = default;
  ~ShmkvdProcess();  // SIGKILLs and reaps a child still running
  ShmkvdProcess(const ShmkvdProcess&) = delete;
  ShmkvdProcess& operator=(const ShmkvdProcess&) = delete;

  // Starts shmkvd with args. The environment is the test's, without the
  // systemd variables, plus env (NOTIFY_SOCKET, WATCHDOG_USEC, ...).
  // env values of "" unset a variable; a JOURNAL_STREAM of kStderrStream
  // names the child's stderr pipe, as systemd does for the journal.
  static constexpr const char* kStderrStream = "<stderr>";
  bool Start(const std::vector<std::string>& args,
             const std::map<std::string, std::string>& env = {});

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  // The stderr read so far (reads what is available first).
  const std::string& Stderr();
  // Waits until stderr contains text.
  bool WaitForStderr(const std::string& text, Deadline deadline);

  void Signal(int sig) const;
  // Waits for the child to exit: its wait status, or nullopt at the deadline.
  std::optional<int> WaitExit(Deadline deadline);

 private:
  void Drain();

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int err_fd_ = -1;
  std::string err_;
};

// Runs a shell command; its exit status and combined output.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunCommand(const std::string& command);
bool HaveProgram(const std::string& name);

}  // namespace shmkv::test

#endif  // SHMKV_TESTS_DAEMON_SHMKVD_PROCESS_H_
