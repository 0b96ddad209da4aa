// The child processes of process.h.
#include "process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace bench {
namespace {

// What the signal handler must kill and remove: plain arrays, filled as
// each child starts and before each file exists, used with
// async-signal-safe calls only.
struct Leftovers {
  static constexpr int kMax = 16;
  volatile sig_atomic_t npids = 0;
  pid_t pids[kMax] = {};
  volatile sig_atomic_t npaths = 0;
  char paths[kMax][256] = {};  // files and segments (/dev/shm/NAME)
  char dir[256] = {};          // removed last
};
Leftovers g_left;

void AddPid(pid_t pid) {
  if (g_left.npids >= Leftovers::kMax) return;
  g_left.pids[g_left.npids] = pid;
  g_left.npids = g_left.npids + 1;
}

extern "C" void OnSignal(int sig) {
  for (int i = 0; i < g_left.npids; ++i) kill(g_left.pids[i], SIGKILL);
  for (int i = 0; i < g_left.npids; ++i) waitpid(g_left.pids[i], nullptr, 0);
  for (int i = 0; i < g_left.npaths; ++i) unlink(g_left.paths[i]);
  if (g_left.dir[0] != '\0') rmdir(g_left.dir);
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    signal(SIGPIPE, SIG_DFL);
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    const int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    if (null >= 0) dup2(null, STDIN_FILENO);
    execvp(argv[0], argv.data());
    dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  AddPid(pid);
  return pid;
}

bool Exited(pid_t pid) { return waitpid(pid, nullptr, WNOHANG) == pid; }

std::string Reap(std::vector<pid_t>* pids, double deadline) {
  std::string err;
  while (!pids->empty()) {
    for (size_t i = 0; i < pids->size();) {
      int st = 0;
      const pid_t r = waitpid((*pids)[i], &st, WNOHANG);
      if (r == (*pids)[i] || r < 0) {
        if (r > 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0) && err.empty()) {
          err = WIFSIGNALED(st) ? "worker killed by signal " + std::to_string(WTERMSIG(st))
                                : "worker exited with " + std::to_string(WEXITSTATUS(st));
        }
        pids->erase(pids->begin() + static_cast<long>(i));
      } else {
        ++i;
      }
    }
    if (pids->empty()) break;
    if (peers::NowS() > deadline) {
      for (pid_t p : *pids) {
        kill(p, SIGCONT);
        kill(p, SIGKILL);
      }
      for (pid_t p : *pids) waitpid(p, nullptr, 0);
      pids->clear();
      return "timed out (workers killed)";
    }
    usleep(500);
  }
  return err;
}

void Stop(pid_t pid, double grace_s) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  std::vector<pid_t> one = {pid};
  Reap(&one, peers::NowS() + grace_s);
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0) {
    port = ntohs(sa.sin_port);
  }
  close(fd);
  return port;
}

void CleanUpOnSignals() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
}

void RememberPath(const std::string& path) {
  if (g_left.npaths >= Leftovers::kMax || path.size() >= sizeof(g_left.paths[0])) return;
  std::memcpy(g_left.paths[g_left.npaths], path.c_str(), path.size() + 1);
  g_left.npaths = g_left.npaths + 1;
}

void RememberDir(const std::string& dir) {
  std::snprintf(g_left.dir, sizeof(g_left.dir), "%s", dir.c_str());
}

void RemoveRemembered() {
  for (int i = 0; i < g_left.npaths; ++i) unlink(g_left.paths[i]);
  if (g_left.dir[0] != '\0') rmdir(g_left.dir);
  g_left.npids = 0;
  g_left.npaths = 0;
  g_left.dir[0] = '\0';
}

}  // namespace bench
