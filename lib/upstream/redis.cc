#include "redis.h"

#include <charconv>
#include <cstring>

namespace shmkv::upstream {
namespace {

bool ParseInt(std::string_view s, int lo, int hi, int* out) {
  int v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

}  // namespace

std::string RedisAddress::ToString() const {
  std::string s = unix_path.empty()
                      ? "redis://" +
                            (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                            std::to_string(port)
                      : "unix://" + unix_path;
  if (db != 0) s += (unix_path.empty() ? "/" : "?db=") + std::to_string(db);
  return s;
}

std::optional<RedisAddress> ParseRedisUrl(std::string_view url, std::string* error) {
  RedisAddress a;
  constexpr std::string_view kRedis = "redis://", kUnix = "unix://";
  if (url.substr(0, kUnix.size()) == kUnix) {
    std::string_view rest = url.substr(kUnix.size());
    if (const size_t q = rest.find('?'); q != std::string_view::npos) {
      std::string_view query = rest.substr(q + 1);
      rest = rest.substr(0, q);
      if (query.substr(0, 3) != "db=" || !ParseInt(query.substr(3), 0, 1 << 20, &a.db)) {
        *error = "bad query in '" + std::string(url) + "': only ?db=N is understood";
        return std::nullopt;
      }
    }
    if (rest.empty() || rest[0] != '/') {
      *error = "a unix:// address needs an absolute path: unix:///run/redis.sock";
      return std::nullopt;
    }
    a.unix_path = std::string(rest);
    return a;
  }
  if (url.substr(0, kRedis.size()) != kRedis) {
    *error = "'" + std::string(url) + "' is not redis://HOST[:PORT][/DB] or unix:///PATH";
    return std::nullopt;
  }
  std::string_view rest = url.substr(kRedis.size());
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    if (!ParseInt(rest.substr(slash + 1), 0, 1 << 20, &a.db)) {
      *error = "bad database number in '" + std::string(url) + "'";
      return std::nullopt;
    }
    rest = rest.substr(0, slash);
  }
  if (rest.find('@') != std::string_view::npos) {
    *error = "credentials in the URL are not supported: '" + std::string(url) + "'";
    return std::nullopt;
  }
  std::string_view port;
  if (!rest.empty() && rest[0] == '[') {  // [IPv6]:port
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      *error = "unclosed '[' in '" + std::string(url) + "'";
      return std::nullopt;
    }
    a.host = std::string(rest.substr(1, close - 1));
    rest = rest.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') {
        *error = "expected ':PORT' after ']' in '" + std::string(url) + "'";
        return std::nullopt;
      }
      port = rest.substr(1);
    }
  } else {
    const size_t colon = rest.find(':');
    a.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port = rest.substr(colon + 1);
  }
  if (a.host.empty()) {
    *error = "no host in '" + std::string(url) + "'";
    return std::nullopt;
  }
  if (!port.empty() && !ParseInt(port, 1, 65535, &a.port)) {
    *error = "bad port in '" + std::string(url) + "'";
    return std::nullopt;
  }
  return a;
}

std::string RedisError(const redisContext* c, const redisReply* reply) {
  if (reply != nullptr && reply->type == REDIS_REPLY_ERROR)
    return std::string(reply->str, reply->len);
  if (c != nullptr && c->err != 0) return c->errstr;
  return "no reply";
}

RedisContextPtr ConnectRedis(const RedisAddress& address, std::chrono::milliseconds timeout,
                             std::string* error) {
  timeval tv;
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  RedisContextPtr c(address.unix_path.empty()
                        ? redisConnectWithTimeout(address.host.c_str(), address.port, tv)
                        : redisConnectUnixWithTimeout(address.unix_path.c_str(), tv));
  if (c == nullptr) {
    *error = "cannot allocate a connection";
    return nullptr;
  }
  if (c->err != 0) {
    *error = address.ToString() + ": " + c->errstr;
    return nullptr;
  }
  if (redisSetTimeout(c.get(), tv) != REDIS_OK ||
      (address.unix_path.empty() && redisEnableKeepAlive(c.get()) != REDIS_OK)) {
    *error = address.ToString() + ": " + c->errstr;
    return nullptr;
  }
  if (address.db != 0) {
    RedisReplyPtr r(static_cast<redisReply*>(redisCommand(c.get(), "SELECT %d", address.db)));
    if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
      *error = address.ToString() + ": SELECT " + std::to_string(address.db) + ": " +
               RedisError(c.get(), r.get());
      return nullptr;
    }
  }
  return c;
}

}  // namespace shmkv::upstream
