// The Redis connection shared by the near-cache clients (near_cache.cc)
// and the daemon's invalidation stream (daemon/upstream.cc): the address
// of the upstream as the segment header names it, and a hiredis context
// connected to it with timeouts, on the right database. RESP2 only
// (hiredis 0.14, Debian 12).
#ifndef SHMKV_LIB_UPSTREAM_REDIS_H_
#define SHMKV_LIB_UPSTREAM_REDIS_H_

#include <hiredis/hiredis.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace shmkv::upstream {

struct RedisAddress {
  std::string host;  // a name or an address; empty for a unix socket
  int port = 6379;
  std::string unix_path;  // set for unix:// addresses
  int db = 0;
  std::string ToString() const;  // for messages
};

// redis://HOST[:PORT][/DB] (IPv6 as [::1]) or unix:///PATH[?db=N].
// nullopt with *error saying what is wrong.
std::optional<RedisAddress> ParseRedisUrl(std::string_view url, std::string* error);

struct RedisContextFree {
  void operator()(redisContext* c) const { redisFree(c); }
};
using RedisContextPtr = std::unique_ptr<redisContext, RedisContextFree>;

struct RedisReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyFree>;

// Connects with `timeout` for the connection and for every later command,
// with TCP keepalive, and SELECTs the database. nullptr with *error saying
// why.
RedisContextPtr ConnectRedis(const RedisAddress& address, std::chrono::milliseconds timeout,
                             std::string* error);

// The text of a failed context or an error reply, for messages.
std::string RedisError(const redisContext* c, const redisReply* reply);

}  // namespace shmkv::upstream

#endif  // SHMKV_LIB_UPSTREAM_REDIS_H_
