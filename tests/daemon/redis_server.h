// Test helper: a redis-server of the test's own, on 127.0.0.1 and a free
// port, without persistence, in a temporary directory; SIGKILLed (and its
// directory removed) when the helper goes, whatever state it is in.
#ifndef SHMKV_TESTS_DAEMON_REDIS_SERVER_H_
#define SHMKV_TESTS_DAEMON_REDIS_SERVER_H_

#include <sys/types.h>

#include <string>

#include "redis.h"
#include "shmkvd_process.h"

namespace shmkv::test {

class RedisServer {
 public:
  RedisServer();  // picks the port and the directory; starts nothing
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  static bool Installed();

  // Starts redis-server (again, on the same port after Kill()) and waits
  // until it answers PING. False with the reason in *why.
  bool Start(Deadline deadline, std::string* why);
  void Kill();  // SIGKILL, reaped
  void Signal(int sig) const;

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  // A new client connection (nullptr if it cannot connect).
  upstream::RedisContextPtr Connect() const;

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
};

// Runs one command on c; the reply (nullptr and a test failure on an error).
upstream::RedisReplyPtr Command(redisContext* c, const std::string& text);

}  // namespace shmkv::test

#endif  // SHMKV_TESTS_DAEMON_REDIS_SERVER_H_
