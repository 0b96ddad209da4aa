#include "shmkvd_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <thread>

extern char** environ;

namespace shmkv::test {
namespace {

int MillisLeft(Deadline deadline) {
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(std::min<int64_t>(left.count(), 1000));
}

}  // namespace

bool WaitUntil(const std::function<bool()>& pred, Deadline deadline) {
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

FakeNotifySocket::FakeNotifySocket() {
  static std::atomic<unsigned> counter{0};
  const std::string name = "shmkvd-test-notify-" + std::to_string(::getpid()) + "-" +
                           std::to_string(counter.fetch_add(1));
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return;
  struct sockaddr_un sa = {};
  sa.sun_family = AF_UNIX;
  // Abstract namespace: sun_path[0] is NUL; sd_notify spells it "@name".
  std::memcpy(sa.sun_path + 1, name.data(), name.size());
  const socklen_t len =
      static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + 1 + name.size());
  if (::bind(fd_, reinterpret_cast<struct sockaddr*>(&sa), len) != 0) {
    ::close(fd_);
    fd_ = -1;
    return;
  }
  address_ = "@" + name;
}

FakeNotifySocket::~FakeNotifySocket() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<std::string> FakeNotifySocket::Receive(Deadline deadline) {
  for (;;) {
    struct pollfd p = {fd_, POLLIN, 0};
    const int n = ::poll(&p, 1, MillisLeft(deadline));
    if (n > 0) {
      char buf[4096];
      const ssize_t got = ::recv(fd_, buf, sizeof buf, 0);
      if (got >= 0) return std::string(buf, static_cast<size_t>(got));
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
  }
}

bool FakeNotifySocket::WaitForLine(const std::string& line, Deadline deadline,
                                   std::vector<std::string>* seen) {
  for (;;) {
    auto msg = Receive(deadline);
    if (!msg) return false;
    seen->push_back(*msg);
    std::istringstream in(*msg);
    for (std::string l; std::getline(in, l);) {
      if (l == line) return true;
    }
  }
}

ShmkvdProcess::~ShmkvdProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (pidfd_ >= 0) ::close(pidfd_);
  if (err_fd_ >= 0) ::close(err_fd_);
}

bool ShmkvdProcess::Start(const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  struct stat st;
  ::fstat(fds[1], &st);
  const std::string stderr_stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);

  // Everything the child needs is built before fork().
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    if (key == "NOTIFY_SOCKET" || key == "WATCHDOG_USEC" || key == "WATCHDOG_PID" ||
        key == "JOURNAL_STREAM" || env.count(key)) {
      continue;
    }
    env_strings.push_back(kv);
  }
  for (const auto& [key, value] : env) {
    if (value == kStderrStream) {
      env_strings.push_back(key + "=" + stderr_stream);
    } else if (!value.empty()) {
      env_strings.push_back(key + "=" + value);
    }
  }
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> arg_strings = {SHMKVD_PATH};
  arg_strings.insert(arg_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : arg_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) {
    ::dup2(fds[1], STDERR_FILENO);
    ::dup2(fds[1], STDOUT_FILENO);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  err_fd_ = fds[0];
  ::fcntl(err_fd_, F_SETFL, O_NONBLOCK);
  pid_ = pid;
  // Through syscall(): glibc 2.36's <sys/pidfd.h> lacks extern "C".
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  return pidfd_ >= 0;
}

void ShmkvdProcess::Drain() {
  if (err_fd_ < 0) return;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(err_fd_, buf, sizeof buf);
    if (n > 0) {
      err_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {  // every writer closed it: the child is gone
      ::close(err_fd_);
      err_fd_ = -1;
    }
    return;
  }
}

const std::string& ShmkvdProcess::Stderr() {
  Drain();
  return err_;
}

bool ShmkvdProcess::WaitForStderr(const std::string& text, Deadline deadline) {
  for (;;) {
    Drain();
    if (err_.find(text) != std::string::npos) return true;
    if (std::chrono::steady_clock::now() >= deadline || err_fd_ < 0) return false;
    struct pollfd p = {err_fd_, POLLIN, 0};
    ::poll(&p, 1, MillisLeft(deadline));
  }
}

void ShmkvdProcess::Signal(int sig) const {
  if (pid_ > 0) ::kill(pid_, sig);
}

std::optional<int> ShmkvdProcess::WaitExit(Deadline deadline) {
  if (pid_ <= 0) return std::nullopt;
  for (;;) {
    Drain();
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      Drain();
      return status;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    // The pidfd becomes readable when the child exits.
    struct pollfd p[2] = {{pidfd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    ::poll(p, err_fd_ >= 0 ? 2 : 1, MillisLeft(deadline));
  }
}

CommandResult RunCommand(const std::string& command) {
  CommandResult r;
  FILE* f = ::popen((command + " 2>&1").c_str(), "r");
  if (f == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) r.output.append(buf, n);
  const int status = ::pclose(f);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

bool HaveProgram(const std::string& name) {
  return RunCommand("command -v " + name + " >/dev/null").exit_code == 0;
}

}  // namespace shmkv::test
