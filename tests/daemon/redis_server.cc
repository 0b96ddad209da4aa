#include "redis_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>
#include <vector>

#include "gtest/gtest.h"

namespace shmkv::test {
namespace {

using namespace std::chrono_literals;

// A port the kernel had free a moment ago (bound to 0, then released).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  struct sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  int port = 0;
  if (::bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) == 0 &&
      ::getsockname(fd, reinterpret_cast<struct sockaddr*>(&sa), &len) == 0) {
    port = ntohs(sa.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace

RedisServer::RedisServer() : port_(FreePort()) {
  char tmpl[] = "/tmp/shmkv-redis-test-XXXXXX";
  if (::mkdtemp(tmpl) != nullptr) dir_ = tmpl;
}

RedisServer::~RedisServer() {
  Kill();
  if (!dir_.empty()) RunCommand("rm -rf '" + dir_ + "'");
}

bool RedisServer::Installed() { return HaveProgram("redis-server"); }

bool RedisServer::Start(Deadline deadline, std::string* why) {
  if (port_ == 0 || dir_.empty()) {
    *why = "no free port or no temporary directory";
    return false;
  }
  std::vector<std::string> args = {"redis-server",
                                   "--port",
                                   std::to_string(port_),
                                   "--bind",
                                   "127.0.0.1",
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--dir",
                                   dir_,
                                   "--daemonize",
                                   "no"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log = dir_ + "/redis.log";
  const pid_t pid = ::fork();
  if (pid < 0) {
    *why = "fork failed";
    return false;
  }
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
    }
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  const bool up = WaitUntil(
      [&] {
        auto c = Connect();
        if (!c) return false;
        upstream::RedisReplyPtr r(static_cast<redisReply*>(redisCommand(c.get(), "PING")));
        return r != nullptr && r->type == REDIS_REPLY_STATUS;
      },
      deadline);
  if (!up) *why = "redis-server did not answer PING on port " + std::to_string(port_);
  return up;
}

void RedisServer::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void RedisServer::Signal(int sig) const {
  if (pid_ > 0) ::kill(pid_, sig);
}

upstream::RedisContextPtr RedisServer::Connect() const {
  upstream::RedisAddress a;
  a.host = "127.0.0.1";
  a.port = port_;
  std::string error;
  return upstream::ConnectRedis(a, std::chrono::milliseconds(2000), &error);
}

upstream::RedisReplyPtr Command(redisContext* c, const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string w; in >> w;) words.push_back(w);
  std::vector<const char*> argv;
  for (const auto& w : words) argv.push_back(w.c_str());
  upstream::RedisReplyPtr r(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), nullptr)));
  if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
    ADD_FAILURE() << text << ": " << upstream::RedisError(c, r.get());
    return nullptr;
  }
  return r;
}

}  // namespace shmkv::test
