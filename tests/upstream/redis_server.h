// A real redis-server for a test, and a relay in front of it that can hold
// Redis's replies back.
//
// RedisServer starts redis-server on a free port of 127.0.0.1, without
// persistence, in a temporary directory, and waits (polling PING until a
// deadline) until it answers. The destructor kills it and removes the
// directory, whatever the test did.
//
// ReplyRelay forwards TCP connections to a Redis port. While held, it
// keeps the bytes Redis sends instead of delivering them, and counts them:
// a test sees that Redis has executed a command and answered, and decides
// when the client reads the answer. That puts a step (a write in Redis, an
// invalidation) between a Redis reply and the client's next move at a
// chosen point, without timing.
#ifndef SHMKV_TESTS_UPSTREAM_REDIS_SERVER_H_
#define SHMKV_TESTS_UPSTREAM_REDIS_SERVER_H_

#include <sys/types.h>

#include <atomic>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "redis.h"

namespace shmkv::test {

class RedisServer {
 public:
  RedisServer() = default;
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Whether redis-server is in PATH.
  static bool Installed();

  // Starts it on `port` (0: a free one). False with error() saying why.
  bool Start(int port = 0);
  // SIGKILL, and waits for it to be gone.
  void Kill();

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  const std::string& error() const { return error_; }

  // Runs one command on a connection of the test's own (not through a
  // relay). nullptr if Redis could not be reached.
  upstream::RedisReplyPtr Command(const std::vector<std::string_view>& args);

 private:
  bool StartOn(int port);

  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
  std::string error_;
  upstream::RedisContextPtr client_;
};

class ReplyRelay {
 public:
  // Listens on a free port of 127.0.0.1 and forwards to `redis_port`.
  explicit ReplyRelay(int redis_port);
  ~ReplyRelay();
  ReplyRelay(const ReplyRelay&) = delete;
  ReplyRelay& operator=(const ReplyRelay&) = delete;

  bool ok() const { return listen_fd_ >= 0; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

  // From now on Redis's replies are kept, not delivered.
  void Hold();
  // Delivers what was kept, and from now on everything as it comes.
  void Release();
  // Bytes of replies kept since the last Hold().
  size_t held_bytes() const { return held_bytes_.load(); }

 private:
  struct Link {
    int client = -1;
    int server = -1;
    std::string pending;  // replies kept while held
  };
  void Run();
  void Flush();

  int redis_port_;
  int port_ = 0;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::atomic<bool> held_{false};
  std::atomic<bool> stop_{false};
  std::atomic<size_t> held_bytes_{0};
  std::vector<Link> links_;  // the relay thread's own
  std::thread thread_;
};

}  // namespace shmkv::test

#endif  // SHMKV_TESTS_UPSTREAM_REDIS_SERVER_H_
