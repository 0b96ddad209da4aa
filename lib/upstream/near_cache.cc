// shmkv::NearCache (near_cache.h): the local segment in front of Redis.
//
// Every call reads the upstream state first. While it is not UP (or the
// key is too long for the segment) the call goes to Redis only
// ("bypass"). Otherwise local copies are made only through a placeholder
// (user_flags SHMKV_UPSTREAM_PLACEHOLDER, empty value, no-evict, TTL of two
// I/O timeouts so that a crashed fetcher cannot block a key for long):
//
//   Get   hit: a value that is not a placeholder.
//         placeholder: another fetch or write is in flight; poll for up to
//           fetch_wait, then read Redis without caching.
//         miss: ADD placeholder (cas p) -> GET + PTTL pipelined -> store the
//           value with expect_cas p -> re-read the state; a changed
//           generation (or not UP) deletes the copy again.
//   Set   SET placeholder (cas p) -> SET in Redis -> store with expect_cas p
//           -> the same re-check. If another Set of the host replaced the
//           placeholder meanwhile, the key is deleted: Redis may have
//           applied that Set before this one.
//   Delete, Incr, Touch: Redis first, then the local copy is deleted.
//   Throttle: one Lua script in Redis (kThrottleScript); an allowed request
//           deletes the local copy of its key, as any write does.
//
// An invalidation (the daemon deleting the key) that lands between the
// placeholder and the CAS makes the CAS fail, so a reply that raced with a
// write in Redis is returned but never kept. Every failure path deletes
// the placeholder it made, by its cas.
//
// Redis: one blocking hiredis connection, the commands of a call pipelined
// in one round trip. A connection found closed before a call is replaced
// first; a connection lost during a call is replaced once and the call
// retried once, unless the command may already have run and is not
// idempotent (INCRBY, the throttle script), where a retry could apply it
// twice. A timeout is not retried (the connection is dropped: a late reply
// would be read as the next call's).
#include "shmkv/near_cache.h"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "redis.h"

namespace shmkv {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using upstream::RedisReplyPtr;

constexpr uint32_t kPlaceholder = SHMKV_UPSTREAM_PLACEHOLDER;

// GCRA, the same decisions as shmkv_throttle (table.cc OpThrottle) in Redis
// time: KEYS[1] holds the theoretical arrival time TAT in decimal
// nanoseconds; a request at `now` is allowed iff
// max(TAT, now) + interval - now <= tolerance, and then TAT becomes
// max(TAT, now) + interval and the key expires just after it. Lua numbers
// are doubles, exact only below 2^53, so every time is a pair (seconds,
// nanoseconds). ARGV: interval seconds, ns, tolerance seconds, ns.
// Returns {allowed, ahead seconds, ahead ns} with ahead = max(TAT, now) +
// interval - now; the caller derives retry_after and remaining from it.
constexpr std::string_view kThrottleScript = R"lua(
local B = 1000000000
local function less(as, an, bs, bn) return as < bs or (as == bs and an < bn) end
local t = redis.call('TIME')
local now_s, now_n = tonumber(t[1]), tonumber(t[2]) * 1000
local tat_s, tat_n = now_s, now_n
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'table' then
  return redis.error_reply('NOTNUM value is not a rate limiter state (decimal nanoseconds)')
end
if v then
  local n = #v
  if not string.find(v, '^%d+$') or n > 19 or (n == 19 and v > '9223372036854775807') then
    return redis.error_reply('NOTNUM value is not a rate limiter state (decimal nanoseconds)')
  end
  local s, ns = 0, tonumber(v)
  if n > 9 then s, ns = tonumber(string.sub(v, 1, n - 9)), tonumber(string.sub(v, n - 8)) end
  if less(now_s, now_n, s, ns) then tat_s, tat_n = s, ns end
end
local next_s, next_n = tat_s + tonumber(ARGV[1]), tat_n + tonumber(ARGV[2])
if next_n >= B then next_s, next_n = next_s + 1, next_n - B end
local ahead_s, ahead_n = next_s - now_s, next_n - now_n
if ahead_n < 0 then ahead_s, ahead_n = ahead_s - 1, ahead_n + B end
if less(tonumber(ARGV[3]), tonumber(ARGV[4]), ahead_s, ahead_n) then
  return {0, ahead_s, ahead_n}
end
local text = string.format('%d', next_n)
if next_s > 0 then text = string.format('%d%09d', next_s, next_n) end
local expire_ms = next_s * 1000 + math.floor(next_n / 1000000) + 1
redis.call('SET', KEYS[1], text, 'PXAT', string.format('%d', expire_ms))
return {1, ahead_s, ahead_n}
)lua";

// One command: its arguments, binary-safe.
using Command = std::vector<std::string_view>;

std::string Decimal(int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, static_cast<size_t>(r.ptr - buf));
}

bool IsError(const redisReply* r) { return r->type == REDIS_REPLY_ERROR; }

std::string_view Text(const redisReply* r) { return {r->str, r->len}; }

// hiredis 0.14 writes with write(): a peer that has closed the connection
// would raise SIGPIPE, which kills a process that did not ignore it. This
// blocks it on the calling thread and consumes one raised meanwhile, so
// that the write fails with EPIPE instead.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{0, 0};
        while (sigtimedwait(&pipe_, nullptr, &zero) == -1 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
};

// An idle connection has nothing to read: readable means the server
// closed it (or sent something unasked), and it must not be used.
bool Idle(const redisContext* c) {
  pollfd p{c->fd, POLLIN | POLLRDHUP, 0};
  return poll(&p, 1, 0) == 0;
}

}  // namespace

// Hidden: a nested class of an exported one would be exported too.
struct __attribute__((visibility("hidden"))) NearCache::Impl {
  Impl(Cache cache, const NearCacheOptions& o, upstream::RedisAddress a, uint32_t max_key)
      : local(std::move(cache)), options(o), address(std::move(a)), max_key_len(max_key) {}

  // The state gate of every call: true while local copies may be served.
  bool Current(uint64_t* generation) {
    uint32_t state = SHMKV_UPSTREAM_NONE;
    if (shmkv_upstream_state(local.c_handle(), &state, generation) != 0) return false;
    if (*generation != tracked_generation && !LoadConfiguration(*generation)) return false;
    return state == SHMKV_UPSTREAM_UP;
  }
  // Whether a copy of key may be kept here: it fits the segment, and the
  // daemon's stream invalidates it (it is under a tracked prefix; no
  // prefixes: every key is tracked). Any other key is served from Redis
  // only: nothing would ever delete a stale copy of it.
  bool Fits(std::string_view key) const {
    if (key.size() > max_key_len) return false;
    if (tracked.empty()) return true;
    for (const std::string& p : tracked) {
      if (key.substr(0, p.size()) == p) return true;
    }
    return false;
  }
  // The daemon's configuration, read again whenever the generation changes
  // (a daemon restarted with other prefixes, or pointed at another Redis
  // after a failover, publishes a new one): the tracked prefixes, and the
  // Redis address (a new one drops the connection to the old). false: it
  // could not be read, so nothing local may be served until it is.
  bool LoadConfiguration(uint64_t generation) {
    shmkv_upstream_t u{};
    u.struct_size = sizeof(u);
    if (shmkv_upstream_get(local.c_handle(), &u) != 0) return false;
    std::string why;
    std::optional<upstream::RedisAddress> a = upstream::ParseRedisUrl(u.url, &why);
    if (!a) return false;
    if (a->ToString() != address.ToString()) {
      address = std::move(*a);
      redis.reset();
    }
    tracked.clear();
    std::string_view all(u.prefixes);
    while (!all.empty()) {
      const size_t space = all.find(' ');
      if (space != 0) tracked.emplace_back(all.substr(0, space));
      if (space == std::string_view::npos) break;
      all.remove_prefix(space + 1);
    }
    tracked_generation = generation;
    return true;
  }

  std::error_code Fail(std::error_code ec, std::string message) {
    last_error = std::move(message);
    return ec;
  }
  std::error_code Invalid(std::string message) { return Fail(Errc::kInvalid, std::move(message)); }
  // A Redis error reply to `command`: the errors the API names get their
  // code, anything else (OOM, READONLY, WRONGTYPE...) is an I/O error.
  std::error_code ReplyError(const redisReply* r, std::string_view command) {
    const std::string_view text = Text(r);
    std::error_code ec = std::make_error_code(std::errc::io_error);
    if (command == "INCRBY" && (text.find("not an integer") != std::string_view::npos ||
                                text.substr(0, 9) == "WRONGTYPE")) {
      ec = Errc::kNotNumber;
    } else if (command == "INCRBY" && text.find("overflow") != std::string_view::npos) {
      ec = Errc::kOverflow;
    } else if (command == "EVALSHA" && text.substr(0, 6) == "NOTNUM") {
      ec = Errc::kNotNumber;
    } else {
      ++stats.redis_errors;
    }
    return Fail(ec, address.ToString() + ": " + std::string(command) + ": " + std::string(text));
  }
  std::error_code Unexpected(const redisReply* r, std::string_view command) {
    if (IsError(r)) return ReplyError(r, command);
    ++stats.redis_errors;
    return Fail(std::make_error_code(std::errc::io_error),
                address.ToString() + ": unexpected reply type " + std::to_string(r->type) + " to " +
                    std::string(command));
  }

  std::error_code Exchange(std::span<const Command> commands, bool idempotent,
                           std::vector<RedisReplyPtr>* replies);
  std::error_code TryExchange(std::span<const Command> commands,
                              std::vector<RedisReplyPtr>* replies, bool* sent,
                              std::string* message);
  std::error_code LoadScript();

  // A Redis GET whose value is not cached (bypass, a wait that timed out).
  Result<std::string> ReadRedis(std::string_view key);
  // The miss path of Get, holding the placeholder `cas`.
  Result<std::string> Fetch(std::string_view key, uint64_t cas, uint64_t generation);
  // Replaces the placeholder `cas` by the value, then the generation
  // re-check. Returns the store's error: kCasMismatch when another write
  // replaced the placeholder, kNotFound when an invalidation deleted it.
  std::error_code Keep(std::string_view key, std::string_view value, milliseconds ttl, uint64_t cas,
                       uint64_t generation);
  void DropLocal(std::string_view key) {
    if (Fits(key)) (void)local.Delete(key);
  }
  WriteOptions PlaceholderOptions(WriteMode mode) const {
    WriteOptions o;
    o.mode = mode;
    // Longer than one call can take (a reconnect and a retry, each with a
    // reply wait), so that no second fetch starts while one is in flight.
    o.ttl = 4 * options.io_timeout + std::chrono::seconds(1);
    o.user_flags = kPlaceholder;
    o.no_evict = true;  // memory pressure must not drop a fetch in flight
    return o;
  }

  Cache local;
  NearCacheOptions options;
  upstream::RedisAddress address;
  uint32_t max_key_len;
  std::vector<std::string> tracked;            // the daemon's --prefix values
  uint64_t tracked_generation = ~uint64_t{0};  // of the state they were read at
  upstream::RedisContextPtr redis;
  pid_t connected_pid = 0;     // the process that opened redis
  bool script_loaded = false;  // on this connection
  std::string script_sha;
  NearCacheStats stats;
  std::string last_error;
};

std::error_code NearCache::Impl::TryExchange(std::span<const Command> commands,
                                             std::vector<RedisReplyPtr>* replies, bool* sent,
                                             std::string* message) {
  SigpipeGuard no_sigpipe;
  // A connection inherited across fork() is the parent's: replies would be
  // shared between the two processes. The child makes its own.
  if (redis != nullptr && (connected_pid != getpid() || !Idle(redis.get()))) redis.reset();
  if (redis == nullptr) {
    script_loaded = false;
    redis = upstream::ConnectRedis(address, options.io_timeout, message);
    if (redis == nullptr) return std::make_error_code(std::errc::connection_refused);
    connected_pid = getpid();
  }
  redisContext* c = redis.get();
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const Command& command : commands) {
    argv.clear();
    lens.clear();
    for (std::string_view a : command) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()) !=
        REDIS_OK) {
      *message = address.ToString() + ": " + upstream::RedisError(c, nullptr);
      return std::make_error_code(std::errc::not_enough_memory);
    }
  }
  // Flushed here rather than by redisGetReply, to know whether the
  // commands left: a failed write means none of them ran.
  for (int done = 0; !done;) {
    if (redisBufferWrite(c, &done) != REDIS_OK) {
      *message = address.ToString() + ": " + upstream::RedisError(c, nullptr);
      return std::make_error_code(std::errc::io_error);
    }
  }
  *sent = true;
  replies->clear();
  for (size_t i = 0; i < commands.size(); ++i) {
    void* r = nullptr;
    if (redisGetReply(c, &r) != REDIS_OK || r == nullptr) {
      const int err = errno;
      if (c->err == REDIS_ERR_IO && (err == EAGAIN || err == EWOULDBLOCK)) {
        *message = address.ToString() + ": no reply to " + std::string(commands[i][0]) +
                   " within " + std::to_string(options.io_timeout.count()) + " ms";
        return std::make_error_code(std::errc::timed_out);
      }
      *message = address.ToString() + ": " + std::string(commands[i][0]) + ": " +
                 upstream::RedisError(c, nullptr);
      return std::make_error_code(std::errc::io_error);
    }
    replies->emplace_back(static_cast<redisReply*>(r));
  }
  return {};
}

std::error_code NearCache::Impl::Exchange(std::span<const Command> commands, bool idempotent,
                                          std::vector<RedisReplyPtr>* replies) {
  for (int attempt = 0;; ++attempt) {
    bool sent = false;
    std::string message;
    const std::error_code ec = TryExchange(commands, replies, &sent, &message);
    if (!ec) return {};
    redis.reset();
    const bool lost = ec == std::errc::io_error;
    if (attempt > 0 || !lost || (sent && !idempotent)) {
      ++stats.redis_errors;
      return Fail(ec, std::move(message));
    }
  }
}

std::error_code NearCache::Impl::LoadScript() {
  const Command load{"SCRIPT", "LOAD", kThrottleScript};
  std::vector<RedisReplyPtr> r;
  if (std::error_code ec = Exchange({&load, 1}, true, &r)) return ec;
  if (r[0]->type != REDIS_REPLY_STRING) return Unexpected(r[0].get(), "SCRIPT LOAD");
  script_sha = std::string(Text(r[0].get()));
  script_loaded = true;
  return {};
}

Result<std::string> NearCache::Impl::ReadRedis(std::string_view key) {
  const Command get{"GET", key};
  std::vector<RedisReplyPtr> r;
  if (std::error_code ec = Exchange({&get, 1}, true, &r)) return ec;
  if (r[0]->type == REDIS_REPLY_NIL) return Errc::kNotFound;
  if (r[0]->type != REDIS_REPLY_STRING) return Unexpected(r[0].get(), "GET");
  return std::string(Text(r[0].get()));
}

std::error_code NearCache::Impl::Keep(std::string_view key, std::string_view value,
                                      milliseconds ttl, uint64_t cas, uint64_t generation) {
  WriteOptions w;
  w.ttl = ttl;
  w.expect_cas = cas;
  Result<uint64_t> stored = local.Store(key, value, w);
  if (!stored) {
    // Anything but ECAS / ENOTFOUND (too big, full): the placeholder is
    // still ours to remove.
    if (stored.error() != Errc::kCasMismatch && stored.error() != Errc::kNotFound)
      (void)local.Delete(key, cas);
    ++stats.not_cached;
    return stored.error();
  }
  uint64_t now_generation = 0;
  if (!Current(&now_generation) || now_generation != generation) {
    // The stream was lost (or regained) meanwhile: an invalidation of this
    // key may have been missed.
    (void)local.Delete(key, *stored);
    ++stats.not_cached;
  }
  return {};
}

Result<std::string> NearCache::Impl::Fetch(std::string_view key, uint64_t cas,
                                           uint64_t generation) {
  ++stats.fetches;
  const Command commands[] = {{"GET", key}, {"PTTL", key}};
  std::vector<RedisReplyPtr> r;
  if (std::error_code ec = Exchange(commands, true, &r)) {
    (void)local.Delete(key, cas);
    return ec;
  }
  const redisReply* get = r[0].get();
  const redisReply* pttl = r[1].get();
  if (get->type != REDIS_REPLY_STRING) {
    (void)local.Delete(key, cas);  // negatives are not cached
    if (get->type == REDIS_REPLY_NIL) return Errc::kNotFound;
    return Unexpected(get, "GET");
  }
  std::string value(Text(get));
  // -1: no TTL in Redis; -2 (or 0): it expired since the GET.
  if (pttl->type != REDIS_REPLY_INTEGER || (pttl->integer < 1 && pttl->integer != -1)) {
    (void)local.Delete(key, cas);
    ++stats.not_cached;
    return value;
  }
  const milliseconds ttl = pttl->integer == -1
                               ? options.max_local_ttl
                               : std::min(milliseconds(pttl->integer), options.max_local_ttl);
  (void)Keep(key, value, ttl, cas, generation);
  return value;
}

NearCache::NearCache(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NearCache::NearCache(NearCache&&) noexcept = default;
NearCache& NearCache::operator=(NearCache&&) noexcept = default;
NearCache::~NearCache() = default;

Result<NearCache> NearCache::Open(std::string_view segment, const NearCacheOptions& options,
                                  std::string* error) {
  std::string why;
  auto fail = [&](std::error_code ec, std::string message) -> Result<NearCache> {
    if (error != nullptr) *error = std::move(message);
    return ec;
  };
  if (options.max_local_ttl.count() < 1 || options.fetch_wait.count() < 0 ||
      options.io_timeout.count() < 1)
    return fail(Errc::kInvalid, "max_local_ttl and io_timeout must be positive, fetch_wait >= 0");
  Result<Cache> cache = Cache::Open(segment);
  if (!cache) return fail(cache.error(), shmkv_last_error());
  shmkv_upstream_t u{};
  u.struct_size = sizeof(u);
  shmkv_info_t info{};
  info.struct_size = sizeof(info);
  if (int rc = shmkv_upstream_get(cache->c_handle(), &u))
    return fail(MakeErrorCode(rc), shmkv_last_error());
  if (int rc = shmkv_info(cache->c_handle(), &info))
    return fail(MakeErrorCode(rc), shmkv_last_error());
  if (u.url[0] == '\0' || u.state == SHMKV_UPSTREAM_NONE)
    return fail(Errc::kInvalid, "segment '" + std::string(segment) +
                                    "' is not a near cache (start shmkvd --upstream on it)");
  std::optional<upstream::RedisAddress> address = upstream::ParseRedisUrl(u.url, &why);
  if (!address) return fail(Errc::kInvalid, why);
  auto impl =
      std::make_unique<Impl>(std::move(*cache), options, std::move(*address), info.max_key_len);
  {
    SigpipeGuard no_sigpipe;
    impl->redis = upstream::ConnectRedis(impl->address, options.io_timeout, &why);
    impl->connected_pid = getpid();
  }
  if (impl->redis == nullptr) return fail(std::make_error_code(std::errc::connection_refused), why);
  return NearCache(std::move(impl));
}

Result<std::string> NearCache::Get(std::string_view key) {
  Impl& m = *impl_;
  if (key.empty()) return m.Invalid("key is empty");
  uint64_t generation = 0;
  if (!m.Current(&generation) || !m.Fits(key)) {
    ++m.stats.bypasses;
    return m.ReadRedis(key);
  }
  std::string value;
  ItemInfo info;
  std::optional<Clock::time_point> deadline;
  milliseconds backoff(1);
  for (;;) {
    const std::error_code read = m.local.Get(key, &value, &info);
    if (!read && info.user_flags != kPlaceholder) {
      ++m.stats.local_hits;
      return value;
    }
    if (!read) {  // a placeholder: another fetch or write of the key is in flight
      const Clock::time_point now = Clock::now();
      if (!deadline) deadline = now + m.options.fetch_wait;
      if (now >= *deadline) {
        ++m.stats.fetches;
        return m.ReadRedis(key);
      }
      std::this_thread::sleep_for(std::min<Clock::duration>(backoff, *deadline - now));
      backoff = std::min(backoff * 2, milliseconds(20));
      continue;
    }
    if (read != Errc::kNotFound) {
      ++m.stats.fetches;
      return m.ReadRedis(key);
    }
    Result<uint64_t> placeholder = m.local.Store(key, "", m.PlaceholderOptions(WriteMode::kAdd));
    if (placeholder) return m.Fetch(key, *placeholder, generation);
    if (placeholder.error() != Errc::kExists) {  // no room for it: serve without a copy
      ++m.stats.fetches;
      return m.ReadRedis(key);
    }
  }
}

std::error_code NearCache::Set(std::string_view key, std::string_view value,
                               std::chrono::milliseconds ttl) {
  Impl& m = *impl_;
  if (key.empty()) return m.Invalid("key is empty");
  if (ttl.count() < 0) return m.Invalid("ttl is negative");
  const std::string px = Decimal(ttl.count());
  const Command set =
      ttl.count() > 0 ? Command{"SET", key, value, "PX", px} : Command{"SET", key, value};
  const auto write = [&]() -> std::error_code {
    std::vector<RedisReplyPtr> r;
    if (std::error_code ec = m.Exchange({&set, 1}, true, &r)) return ec;
    if (r[0]->type != REDIS_REPLY_STATUS) return m.Unexpected(r[0].get(), "SET");
    return {};
  };
  uint64_t generation = 0;
  Result<uint64_t> placeholder = Errc::kInvalid;
  if (!m.Current(&generation) || !m.Fits(key)) {
    ++m.stats.bypasses;
  } else {
    placeholder = m.local.Store(key, "", m.PlaceholderOptions(WriteMode::kSet));
  }
  if (!placeholder) {  // bypass, or no room for a placeholder: Redis only
    const std::error_code ec = write();
    m.DropLocal(key);
    return ec;
  }
  if (std::error_code ec = write()) {
    (void)m.local.Delete(key, *placeholder);
    return ec;
  }
  const milliseconds local_ttl =
      ttl.count() > 0 ? std::min(ttl, m.options.max_local_ttl) : m.options.max_local_ttl;
  // Another Set of the key on this host replaced our placeholder. Its
  // write may have reached Redis before ours, so the copy it keeps may be
  // older than what Redis now holds: remove whatever is there.
  if (m.Keep(key, value, local_ttl, *placeholder, generation) == Errc::kCasMismatch)
    m.DropLocal(key);
  return {};
}

std::error_code NearCache::Delete(std::string_view key) {
  Impl& m = *impl_;
  if (key.empty()) return m.Invalid("key is empty");
  uint64_t generation = 0;
  if (!m.Current(&generation) || !m.Fits(key)) ++m.stats.bypasses;
  const Command del{"DEL", key};
  std::vector<RedisReplyPtr> r;
  const std::error_code ec = m.Exchange({&del, 1}, true, &r);
  m.DropLocal(key);
  if (ec) return ec;
  if (r[0]->type != REDIS_REPLY_INTEGER) return m.Unexpected(r[0].get(), "DEL");
  return r[0]->integer == 0 ? make_error_code(Errc::kNotFound) : std::error_code();
}

Result<int64_t> NearCache::Incr(std::string_view key, int64_t delta) {
  Impl& m = *impl_;
  if (key.empty()) return m.Invalid("key is empty");
  uint64_t generation = 0;
  if (!m.Current(&generation) || !m.Fits(key)) ++m.stats.bypasses;
  const std::string d = Decimal(delta);
  const Command incr{"INCRBY", key, d};
  std::vector<RedisReplyPtr> r;
  const std::error_code ec = m.Exchange({&incr, 1}, false, &r);
  m.DropLocal(key);
  if (ec) return ec;
  if (r[0]->type != REDIS_REPLY_INTEGER) return m.Unexpected(r[0].get(), "INCRBY");
  return static_cast<int64_t>(r[0]->integer);
}

std::error_code NearCache::Touch(std::string_view key, std::chrono::milliseconds ttl) {
  Impl& m = *impl_;
  if (key.empty()) return m.Invalid("key is empty");
  if (ttl.count() < 0) return m.Invalid("ttl is negative");
  uint64_t generation = 0;
  if (!m.Current(&generation) || !m.Fits(key)) ++m.stats.bypasses;
  // PERSIST says 0 both for a missing key and for one without a TTL:
  // EXISTS tells them apart.
  const std::string ms = Decimal(ttl.count());
  const Command expire[] = {{"PEXPIRE", key, ms}};
  const Command persist[] = {{"PERSIST", key}, {"EXISTS", key}};
  const std::span<const Command> commands =
      ttl.count() > 0 ? std::span<const Command>(expire) : std::span<const Command>(persist);
  std::vector<RedisReplyPtr> r;
  const std::error_code ec = m.Exchange(commands, true, &r);
  m.DropLocal(key);
  if (ec) return ec;
  for (size_t i = 0; i < r.size(); ++i) {
    if (r[i]->type != REDIS_REPLY_INTEGER) return m.Unexpected(r[i].get(), commands[i][0]);
  }
  return r.back()->integer == 0 && r.front()->integer == 0 ? make_error_code(Errc::kNotFound)
                                                           : std::error_code();
}

Result<ThrottleDecision> NearCache::Throttle(std::string_view key, uint64_t rate,
                                             std::chrono::milliseconds period, uint64_t burst) {
  Impl& m = *impl_;
  if (key.empty()) return m.Invalid("key is empty");
  // The limits of shmkv_throttle (checks.cc CheckThrottle).
  constexpr uint64_t kMaxNs = uint64_t{1} << 62;
  const uint64_t period_ms = period.count() < 0 ? 0 : static_cast<uint64_t>(period.count());
  if (rate == 0 || period_ms == 0 || burst == 0)
    return m.Invalid("rate, period_ms and burst must each be at least 1");
  if (period_ms > kMaxNs / 1'000'000)
    return m.Invalid("period_ms is too large (at most 146 years)");
  const uint64_t interval = period_ms * 1'000'000 / rate;
  if (interval < 1000) return m.Invalid("rate is too high: at most one request per microsecond");
  uint64_t tolerance = 0;
  if (__builtin_mul_overflow(interval, burst, &tolerance) || tolerance > kMaxNs)
    return m.Invalid("burst x (period_ms / rate) is too large (at most 146 years)");

  uint64_t generation = 0;
  if (!m.Current(&generation) || !m.Fits(key)) ++m.stats.bypasses;
  constexpr uint64_t kNsPerS = 1'000'000'000;
  const std::string args[] = {
      std::to_string(interval / kNsPerS), std::to_string(interval % kNsPerS),
      std::to_string(tolerance / kNsPerS), std::to_string(tolerance % kNsPerS)};
  std::vector<RedisReplyPtr> r;
  for (int attempt = 0;; ++attempt) {
    if (!m.script_loaded) {
      if (std::error_code ec = m.LoadScript()) return ec;
    }
    const Command eval{"EVALSHA", m.script_sha, "1", key, args[0], args[1], args[2], args[3]};
    if (std::error_code ec = m.Exchange({&eval, 1}, false, &r)) return ec;
    // NOSCRIPT: the server lost its script cache (a restart, SCRIPT FLUSH).
    if (attempt == 0 && IsError(r[0].get()) && Text(r[0].get()).substr(0, 8) == "NOSCRIPT") {
      m.script_loaded = false;
      continue;
    }
    break;
  }
  const redisReply* reply = r[0].get();
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
      reply->element[0]->type != REDIS_REPLY_INTEGER ||
      reply->element[1]->type != REDIS_REPLY_INTEGER ||
      reply->element[2]->type != REDIS_REPLY_INTEGER)
    return m.Unexpected(reply, "EVALSHA");
  const uint64_t ahead = static_cast<uint64_t>(reply->element[1]->integer) * kNsPerS +
                         static_cast<uint64_t>(reply->element[2]->integer);
  ThrottleDecision d;
  d.allowed = reply->element[0]->integer == 1;
  if (d.allowed) {
    d.remaining = (tolerance - ahead) / interval;
    m.DropLocal(key);  // the limiter's state changed in Redis
  } else {
    d.retry_after = milliseconds((ahead - tolerance + 999'999) / 1'000'000);
  }
  return d;
}

NearCacheStats NearCache::stats() const { return impl_->stats; }

const std::string& NearCache::last_error() const { return impl_->last_error; }

Cache& NearCache::local() { return impl_->local; }

}  // namespace shmkv
