#include "support/redis_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "gtest/gtest.h"

extern char** environ;

namespace shmkv::test {
namespace {

using Clock = std::chrono::steady_clock;

// A port nobody listens on now (the kernel's choice for port 0).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

bool SendAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// The path of `name` in PATH, or "" if it is not there.
std::string ProgramPath(const std::string& name) {
  const char* path = getenv("PATH");
  std::string_view rest = path == nullptr ? "/usr/bin:/bin" : path;
  while (!rest.empty()) {
    const size_t colon = rest.find(':');
    const std::string dir(rest.substr(0, colon));
    if (!dir.empty() && access((dir + "/" + name).c_str(), X_OK) == 0) return dir + "/" + name;
    rest = colon == std::string_view::npos ? "" : rest.substr(colon + 1);
  }
  return "";
}

}  // namespace

RedisServer::~RedisServer() {
  Kill();
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

bool RedisServer::Installed() { return !ProgramPath("redis-server").empty(); }

bool RedisServer::Start(int port) {
  if (dir_.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "shmkv-redis-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      error_ = "mkdtemp failed";
      return false;
    }
    dir_ = tmpl;
  }
  // A free port may be taken by someone else before redis-server binds it:
  // then try another.
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (StartOn(port != 0 ? port : FreePort())) return true;
    if (port != 0) break;
  }
  return false;
}

bool RedisServer::StartOn(int port) {
  port_ = port;
  const std::string port_text = std::to_string(port);
  const std::string log = dir_ + "/redis.log";
  std::vector<std::string> args = {"redis-server",
                                   "--port",
                                   port_text,
                                   "--bind",
                                   "127.0.0.1",
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--dir",
                                   dir_,
                                   "--logfile",
                                   log,
                                   "--daemonize",
                                   "no"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string program = ProgramPath("redis-server");
  if (program.empty()) {
    error_ = "redis-server is not in PATH";
    return false;
  }
  // fork + exec rather than posix_spawn, for PR_SET_PDEATHSIG. The child
  // makes only async-signal-safe calls.
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) {
    error_ = "fork: " + std::string(strerror(errno));
    pid_ = -1;
    return false;
  }
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the test died before prctl()
    const int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
      for (int fd = 0; fd < 3; ++fd) dup2(null, fd);
    }
    execve(program.c_str(), argv.data(), environ);
    _exit(127);
  }
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
  upstream::RedisAddress address;
  address.host = "127.0.0.1";
  address.port = port;
  while (Clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      error_ = "redis-server on port " + port_text + " exited (see " + log + ")";
      return false;
    }
    std::string why;
    upstream::RedisContextPtr c = upstream::ConnectRedis(address, std::chrono::seconds(2), &why);
    if (c != nullptr) {
      upstream::RedisReplyPtr r(static_cast<redisReply*>(redisCommand(c.get(), "PING")));
      if (r != nullptr && r->type == REDIS_REPLY_STATUS) {
        client_ = std::move(c);
        return true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  error_ = "redis-server on port " + port_text + " did not answer PING within 10 s";
  Kill();
  return false;
}

void RedisServer::Kill() {
  client_.reset();
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

void RedisServer::Signal(int sig) const {
  if (pid_ > 0) kill(pid_, sig);
}

upstream::RedisContextPtr RedisServer::Connect() const {
  upstream::RedisAddress address;
  address.host = "127.0.0.1";
  address.port = port_;
  std::string why;
  return upstream::ConnectRedis(address, std::chrono::seconds(5), &why);
}

upstream::RedisReplyPtr RedisServer::Command(const std::vector<std::string_view>& args) {
  if (client_ == nullptr || client_->err != 0) {
    client_ = Connect();
    if (client_ == nullptr) return nullptr;
  }
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (std::string_view a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return upstream::RedisReplyPtr(static_cast<redisReply*>(
      redisCommandArgv(client_.get(), static_cast<int>(argv.size()), argv.data(), lens.data())));
}

upstream::RedisReplyPtr Command(redisContext* c, const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string w; in >> w;) words.push_back(w);
  std::vector<const char*> argv;
  for (const std::string& w : words) argv.push_back(w.c_str());
  upstream::RedisReplyPtr r(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), nullptr)));
  if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
    ADD_FAILURE() << text << ": " << upstream::RedisError(c, r.get());
    return nullptr;
  }
  return r;
}

ReplyRelay::ReplyRelay(int redis_port) : redis_port_(redis_port) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      listen(listen_fd_, 16) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0 || pipe(wake_) != 0) {
    close(listen_fd_);
    listen_fd_ = -1;
    return;
  }
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] { Run(); });
}

ReplyRelay::~ReplyRelay() {
  if (thread_.joinable()) {
    stop_ = true;
    (void)!write(wake_[1], "x", 1);
    thread_.join();
  }
  for (Link& l : links_) {
    close(l.client);
    close(l.server);
  }
  for (int fd : {listen_fd_, wake_[0], wake_[1]}) {
    if (fd >= 0) close(fd);
  }
}

void ReplyRelay::Hold() {
  held_bytes_ = 0;
  held_ = true;
}

void ReplyRelay::Release() {
  held_ = false;
  (void)!write(wake_[1], "x", 1);
}

void ReplyRelay::Flush() {
  for (Link& l : links_) {
    if (!l.pending.empty()) SendAll(l.client, l.pending.data(), l.pending.size());
    l.pending.clear();
  }
}

void ReplyRelay::Run() {
  char buf[65536];
  while (!stop_) {
    std::vector<pollfd> fds = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    for (const Link& l : links_) {
      fds.push_back({l.client, POLLIN, 0});
      fds.push_back({l.server, POLLIN, 0});
    }
    if (poll(fds.data(), fds.size(), -1) < 0) continue;
    if (fds[1].revents != 0) {
      (void)!read(wake_[0], buf, sizeof(buf));
      if (!held_) Flush();
    }
    if (fds[0].revents != 0) {
      const int client = accept(listen_fd_, nullptr, nullptr);
      const int server = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<uint16_t>(redis_port_));
      if (client >= 0 && connect(server, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
        links_.push_back({client, server, {}});
      } else {
        if (client >= 0) close(client);
        close(server);
      }
    }
    // Links added above are polled from the next round.
    for (size_t i = 0; i + 2 < fds.size(); i += 2) {
      Link& l = links_[i / 2];
      bool closed = false;
      if (fds[i + 2].revents != 0) {  // from the client: forwarded at once
        const ssize_t n = read(l.client, buf, sizeof(buf));
        closed = n <= 0 || !SendAll(l.server, buf, static_cast<size_t>(n));
      }
      if (!closed && fds[i + 3].revents != 0) {  // from Redis: kept while held
        const ssize_t n = read(l.server, buf, sizeof(buf));
        if (n <= 0) {
          closed = true;
        } else if (held_) {
          l.pending.append(buf, static_cast<size_t>(n));
          held_bytes_ += static_cast<size_t>(n);
        } else {
          if (!l.pending.empty()) SendAll(l.client, l.pending.data(), l.pending.size());
          l.pending.clear();
          closed = !SendAll(l.client, buf, static_cast<size_t>(n));
        }
      }
      if (closed) {
        close(l.client);
        close(l.server);
        l.client = l.server = -1;
      }
    }
    std::erase_if(links_, [](const Link& l) { return l.client < 0; });
  }
}

}  // namespace shmkv::test
