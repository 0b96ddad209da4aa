// A real redis-server for a test, and a relay in front of it that can hold
// Redis's replies back (library shmkv_redis_test_support, built when
// hiredis is installed; used by tests/daemon and tests/upstream).
//
// RedisServer starts redis-server on 127.0.0.1 and a free port, without
// persistence (--save '' --appendonly no, so a restart loses the data), in
// a temporary directory that holds its log, and waits (polling PING until a
// deadline) until it answers. The destructor kills it and removes the
// directory, whatever the test did. The server is started with
// PR_SET_PDEATHSIG: when the thread that started it goes (the test killed
// by a timeout, a crash), the kernel kills it too, so no redis-server
// outlives its test. Start it from a thread that lives as long as it does.
//
// ReplyRelay forwards TCP connections to a Redis port. While held, it
// keeps the bytes Redis sends instead of delivering them, and counts them:
// a test sees that Redis has executed a command and answered, and decides
// when the client reads the answer. That puts a step (a write in Redis, an
// invalidation) between a Redis reply and the client's next move at a
// chosen point, without timing.
#ifndef SHMKV_TESTS_SUPPORT_REDIS_SERVER_H_
#define SHMKV_TESTS_SUPPORT_REDIS_SERVER_H_

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
  ~RedisServer();  // Kill(), then the directory goes
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Whether redis-server is in PATH.
  static bool Installed();

  // Starts it on `port` (0: a free one; after Kill(), Start(port()) starts
  // it again where clients expect it) and waits up to 10 s until it answers
  // PING. False with error() saying why.
  bool Start(int port = 0);
  // SIGKILL, and waits for it to be gone. Nothing if it is not running.
  void Kill();
  // Sends sig (SIGSTOP, SIGCONT...) to the running server.
  void Signal(int sig) const;

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  const std::string& error() const { return error_; }

  // A new connection of the caller's own (nullptr if none can be made).
  upstream::RedisContextPtr Connect() const;
  // Runs one command on the helper's own connection (not through a relay),
  // reconnecting first if it was lost. nullptr if Redis could not be
  // reached.
  upstream::RedisReplyPtr Command(const std::vector<std::string_view>& args);

 private:
  bool StartOn(int port);

  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
  std::string error_;
  upstream::RedisContextPtr client_;
};

// Runs one command, written as words separated by spaces, on c. The reply,
// or nullptr and a test failure when there is none or it is an error.
upstream::RedisReplyPtr Command(redisContext* c, const std::string& text);

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

#endif  // SHMKV_TESTS_SUPPORT_REDIS_SERVER_H_
