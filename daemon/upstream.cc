#include "upstream.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <string_view>

#include "options.h"
#include "redis.h"

namespace shmkvd {

using shmkv::upstream::ConnectRedis;
using shmkv::upstream::ParseRedisUrl;
using shmkv::upstream::RedisContextPtr;
using shmkv::upstream::RedisError;
using shmkv::upstream::RedisReplyPtr;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr char kChannel[] = "__redis__:invalidate";
constexpr milliseconds kBackoffMin{100};
constexpr milliseconds kBackoffMax{5000};
// Connect and command timeout of the handshake: --upstream-max-lag, but at
// least this (a connection over a network may take a while to open).
constexpr milliseconds kMinIoTimeout{1000};
// Index slots a flush examines per shmkv_scan call.
constexpr size_t kScanSlots = 4096;

bool IsText(const redisReply* r, std::string_view s) {
  return r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
         std::string_view(r->str, r->len) == s;
}

std::string Describe(const redisReply* r) {
  if (r == nullptr) return "no reply";
  switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      return "'" + std::string(r->str, r->len) + "'";
    case REDIS_REPLY_INTEGER:
      return std::to_string(r->integer);
    case REDIS_REPLY_ARRAY:
      return "an array of " + std::to_string(r->elements);
    default:
      return "nil";
  }
}

// Rounded up: a confirmation is never reported younger than it is.
uint64_t CeilMs(Clock::duration d) {
  const auto ms = std::chrono::ceil<milliseconds>(d).count();
  return ms < 0 ? 0 : static_cast<uint64_t>(ms);
}

// One connection read without ever blocking on it: poll() on its fd, then
// redisBufferRead and redisGetReplyFromReader. (A blocking redisGetReply
// with a socket timeout leaves a hiredis 0.14 context in error when it
// times out.)
struct Connection {
  const char* name;  // for messages
  RedisContextPtr ctx;
  std::deque<Clock::time_point> pings;  // send times of unanswered PINGs, oldest first
  Clock::time_point confirmed{};        // send time of the last answered PING

  bool Send(const char* command, std::string* why) {
    if (redisAppendCommand(ctx.get(), command) != REDIS_OK) return Fail(why);
    for (int done = 0; !done;) {
      if (redisBufferWrite(ctx.get(), &done) != REDIS_OK) return Fail(why);
    }
    return true;
  }
  bool Ping(Clock::time_point now, std::string* why) {
    if (!Send("PING", why)) return false;
    pings.push_back(now);
    return true;
  }
  // Reads what the socket has (poll() said it is readable).
  bool Fill(std::string* why) { return redisBufferRead(ctx.get()) == REDIS_OK || Fail(why); }
  // The next complete reply, or null in *reply when there is none yet.
  bool Next(RedisReplyPtr* reply, std::string* why) {
    void* r = nullptr;
    if (redisGetReplyFromReader(ctx.get(), &r) != REDIS_OK) return Fail(why);
    reply->reset(static_cast<redisReply*>(r));
    return true;
  }
  // A blocking command of the handshake (the socket timeout applies).
  RedisReplyPtr Command(int argc, const char** argv, std::string* why) {
    RedisReplyPtr r(static_cast<redisReply*>(redisCommandArgv(ctx.get(), argc, argv, nullptr)));
    if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
      *why = std::string(name) + " connection: " + argv[0] + (argc > 1 ? " " : "") +
             (argc > 1 ? argv[1] : "") + ": " + RedisError(ctx.get(), r.get());
      return nullptr;
    }
    return r;
  }
  bool Fail(std::string* why) const {
    *why = std::string(name) + " connection: " + RedisError(ctx.get(), nullptr);
    return false;
  }
};

}  // namespace

struct UpstreamStream::Session {
  Connection sub{"subscriber", nullptr};
  Connection trk{"tracking", nullptr};
  long long client_id = 0;
  Clock::time_point sync_pinged_at{};  // when the sync PINGs were sent
  bool synced = false;
};

bool CheckUpstreamUrl(const std::string& url, std::string* error) {
  std::string why;
  if (ParseRedisUrl(url, &why)) return true;
  *error = "invalid value '" + url + "' for --upstream: " + why;
  return false;
}

UpstreamStream::UpstreamStream(shmkv_t* kv, UpstreamConfig config, const Logger* log)
    : kv_(kv),
      config_(std::move(config)),
      log_(log),
      io_timeout_(std::max(config_.max_lag, kMinIoTimeout)) {
  for (const std::string& p : config_.prefixes) {
    if (!prefixes_text_.empty()) prefixes_text_ += ' ';
    prefixes_text_ += p;
  }
}

UpstreamStream::~UpstreamStream() {
  Stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

int UpstreamStream::Start(std::string* why) {
  shmkv_info_t info{};
  info.struct_size = sizeof info;
  if (int rc = shmkv_info(kv_, &info); rc != 0) {
    *why = std::string("cannot read the segment's geometry: ") + shmkv_last_error();
    return rc;
  }
  max_key_len_ = info.max_key_len;
  if (int rc = shmkv_upstream_configure(kv_, config_.url.c_str(), prefixes_text_.c_str(),
                                        static_cast<uint64_t>(config_.max_lag.count()));
      rc != 0) {
    *why = std::string("cannot configure the segment as a near cache: ") + shmkv_last_error();
    return rc;
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    const int e = errno;
    *why = std::string("eventfd: ") + std::strerror(e);
    return e;
  }
  log_->Info(
      "near cache of " + config_.url + ": tracking " +
      (config_.prefixes.empty() ? std::string("every key") : "the prefixes " + prefixes_text_) +
      ", max lag " + FormatDuration(config_.max_lag) + ", ping every " +
      FormatDuration(config_.ping_every));
  thread_ = std::thread([this] { Run(); });
  started_ = true;
  return 0;
}

void UpstreamStream::Stop() {
  if (!started_) return;
  started_ = false;
  stop_.store(true, std::memory_order_relaxed);
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
  thread_.join();
  // After the join, so that nothing publishes UP behind it.
  shmkv_upstream_set_state(kv_, SHMKV_UPSTREAM_DOWN);
  log_->Info("upstream: stopped; local copies are bypassed (state DOWN)");
}

UpstreamMetrics UpstreamStream::Metrics() const {
  UpstreamMetrics m;
  shmkv_upstream_t u{};
  u.struct_size = sizeof u;
  if (shmkv_upstream_get(kv_, &u) == 0) {
    m.up = u.state == SHMKV_UPSTREAM_UP;
    m.generation = u.generation;
    if (u.heartbeat_age_ms != UINT64_MAX) {
      m.heartbeat_age_seconds = static_cast<double>(u.heartbeat_age_ms) / 1e3;
    }
  }
  m.messages = messages_.load(std::memory_order_relaxed);
  m.keys = keys_.load(std::memory_order_relaxed);
  m.flushes = flushes_.load(std::memory_order_relaxed);
  m.losses = losses_.load(std::memory_order_relaxed);
  m.reconnects = reconnects_.load(std::memory_order_relaxed);
  return m;
}

void UpstreamStream::Run() {
  milliseconds backoff = kBackoffMin;
  for (uint64_t attempt = 1; !stopping(); ++attempt) {
    if (attempt == 1) {
      log_->Info("upstream: connecting to " + config_.url);
    } else {
      reconnects_.fetch_add(1, std::memory_order_relaxed);
      log_->Info("upstream: reconnecting to " + config_.url + " (attempt " +
                 std::to_string(attempt) + ")");
    }
    std::string why;
    bool synced = false;
    {
      Session s;
      if (Connect(&s, &why)) why = Serve(&s);
      synced = s.synced;
      // Clients bypass the local copies from here on.
      if (synced) shmkv_upstream_set_state(kv_, SHMKV_UPSTREAM_DOWN);
    }  // closes both connections (Redis drops the tracking)
    if (stopping()) break;
    if (synced) {
      losses_.fetch_add(1, std::memory_order_relaxed);
      backoff = kBackoffMin;
      log_->Warning("upstream: stream lost: " + why +
                    "; local copies are bypassed (state DOWN), reconnecting in " +
                    FormatDuration(backoff));
    } else {
      log_->Warning("upstream: " + why + "; retrying in " + FormatDuration(backoff));
    }
    if (!Sleep(backoff)) break;
    backoff = std::min(backoff * 2, kBackoffMax);
  }
}

bool UpstreamStream::Connect(Session* s, std::string* why) {
  std::string error;
  const auto address = ParseRedisUrl(config_.url, &error);
  if (!address) {  // checked at startup
    *why = error;
    return false;
  }
  s->sub.ctx = ConnectRedis(*address, io_timeout_, &error);
  if (!s->sub.ctx) {
    *why = "cannot connect: " + error;
    return false;
  }
  const char* client_id[] = {"CLIENT", "ID"};
  RedisReplyPtr r = s->sub.Command(2, client_id, why);
  if (!r) return false;
  if (r->type != REDIS_REPLY_INTEGER) {
    *why = "CLIENT ID answered " + Describe(r.get());
    return false;
  }
  s->client_id = r->integer;
  const char* subscribe[] = {"SUBSCRIBE", kChannel};
  r = s->sub.Command(2, subscribe, why);
  if (!r) return false;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || !IsText(r->element[0], "subscribe")) {
    *why = std::string("SUBSCRIBE ") + kChannel + " answered " + Describe(r.get());
    return false;
  }

  s->trk.ctx = ConnectRedis(*address, io_timeout_, &error);
  if (!s->trk.ctx) {
    *why = "cannot connect: " + error;
    return false;
  }
  const std::string id = std::to_string(s->client_id);
  std::vector<const char*> tracking = {"CLIENT", "TRACKING", "on", "REDIRECT", id.c_str(), "BCAST"};
  for (const std::string& p : config_.prefixes) {
    tracking.push_back("PREFIX");
    tracking.push_back(p.c_str());
  }
  // Tracking is on from the moment Redis runs the command, so the send
  // time is a confirmation of the tracking connection.
  s->trk.confirmed = Clock::now();
  r = s->trk.Command(static_cast<int>(tracking.size()), tracking.data(), why);
  if (!r) return false;
  if (!IsText(r.get(), "OK")) {
    *why = "CLIENT TRACKING answered " + Describe(r.get());
    return false;
  }
  log_->Info(
      "upstream: connected to " + config_.url + ": tracking " +
      (config_.prefixes.empty() ? std::string("every key") : "the prefixes " + prefixes_text_) +
      " (BCAST), invalidations to client " + id);
  return true;
}

std::string UpstreamStream::Serve(Session* s) {
  std::string why;
  // Whatever is cached under the prefixes may have missed invalidations
  // while there was no stream; from here on every write is tracked.
  if (!Flush("sync", &why)) return why;
  Clock::time_point now = Clock::now();
  s->sync_pinged_at = now;
  if (!s->sub.Ping(now, &why) || !s->trk.Ping(now, &why)) return why;
  Clock::time_point next_ping = now + config_.ping_every;
  for (;;) {
    // Replies already buffered by an earlier read (or by the handshake).
    if (!ReadSubscriber(s, &why) || !ReadTracking(s, &why)) return why;
    if (stopping()) return "stopping";
    now = Clock::now();
    // Lost once the confirmation is older than max_lag: the moment the
    // heartbeat clients read goes stale too.
    const Connection& late = s->sub.confirmed <= s->trk.confirmed ? s->sub : s->trk;
    const Clock::time_point lag_deadline =
        (s->synced ? late.confirmed : s->sync_pinged_at) + config_.max_lag;
    if (now > lag_deadline) {
      return "no PONG on the " + std::string(late.name) + " connection within " +
             FormatDuration(config_.max_lag);
    }
    if (now >= next_ping) {
      if (!s->sub.Ping(now, &why) || !s->trk.Ping(now, &why)) return why;
      next_ping += config_.ping_every;
      if (next_ping <= now) next_ping = now + config_.ping_every;
    }
    const Clock::time_point wake = std::min(next_ping, lag_deadline);
    // Rounded up, so that the wakeup never comes before the deadline.
    const auto ms = std::chrono::ceil<milliseconds>(wake - now).count() + 1;
    struct pollfd p[3] = {
        {s->sub.ctx->fd, POLLIN, 0}, {s->trk.ctx->fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int n = ::poll(p, 3, static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000)));
    if (n < 0 && errno != EINTR) return std::string("poll: ") + std::strerror(errno);
    if (n <= 0) continue;
    if (p[2].revents != 0) return "stopping";
    if (p[0].revents != 0 && !s->sub.Fill(&why)) return why;
    if (p[1].revents != 0 && !s->trk.Fill(&why)) return why;
  }
}

bool UpstreamStream::ReadSubscriber(Session* s, std::string* why) {
  for (;;) {
    RedisReplyPtr r;
    if (!s->sub.Next(&r, why)) return false;
    if (!r) return true;
    const redisReply* kind =
        r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0] : nullptr;
    if (IsText(kind, "message") && r->elements == 3 && IsText(r->element[1], kChannel)) {
      messages_.fetch_add(1, std::memory_order_relaxed);
      const redisReply* payload = r->element[2];
      if (payload->type == REDIS_REPLY_ARRAY) {
        keys_.fetch_add(payload->elements, std::memory_order_relaxed);
        for (size_t i = 0; i < payload->elements; ++i) {
          const redisReply* key = payload->element[i];
          if (key->type == REDIS_REPLY_STRING &&
              !Invalidate(std::string_view(key->str, key->len), why)) {
            return false;
          }
        }
      } else if (payload->type == REDIS_REPLY_NIL) {
        if (!Flush("FLUSHALL or FLUSHDB in Redis", why)) return false;
      } else {
        *why = "an invalidation message with " + Describe(payload) + " for keys";
        return false;
      }
    } else if (IsText(kind, "pong")) {
      if (s->sub.pings.empty()) {
        *why = "a PONG on the subscriber connection that answers no PING";
        return false;
      }
      s->sub.confirmed = s->sub.pings.front();
      s->sub.pings.pop_front();
      Confirmed(s);
    } else if (r->type == REDIS_REPLY_ERROR) {
      *why = "subscriber connection: " + Describe(r.get());
      return false;
    } else if (!IsText(kind, "subscribe")) {
      log_->Debug("upstream: ignored " + Describe(r.get()) + " on the subscriber connection");
    }
  }
}

bool UpstreamStream::ReadTracking(Session* s, std::string* why) {
  for (;;) {
    RedisReplyPtr r;
    if (!s->trk.Next(&r, why)) return false;
    if (!r) return true;
    if (!IsText(r.get(), "PONG") || s->trk.pings.empty()) {
      *why = "tracking connection: unexpected reply " + Describe(r.get());
      return false;
    }
    s->trk.confirmed = s->trk.pings.front();
    s->trk.pings.pop_front();
    Confirmed(s);
  }
}

void UpstreamStream::Confirmed(Session* s) {
  const Clock::time_point confirmed = std::min(s->sub.confirmed, s->trk.confirmed);
  if (!s->synced && confirmed < s->sync_pinged_at) return;  // a sync PING is still unanswered
  const Clock::time_point now = Clock::now();
  shmkv_upstream_heartbeat(kv_, CeilMs(now - confirmed));
  if (s->synced || stopping()) return;
  // release (in set_state): the flush above is visible to whoever sees UP.
  shmkv_upstream_set_state(kv_, SHMKV_UPSTREAM_UP);
  s->synced = true;
  log_->Info("upstream: synced with " + config_.url + " in " +
             std::to_string(CeilMs(now - s->sync_pinged_at)) +
             " ms; local copies are served (state UP)");
}

bool UpstreamStream::Invalidate(std::string_view key, std::string* why) {
  // Keys the segment cannot hold were never cached.
  if (key.empty() || key.size() > max_key_len_) return true;
  const int rc = shmkv_delete(kv_, key.data(), key.size(), 0);
  if (rc == 0 || rc == SHMKV_ENOTFOUND) return true;
  // A copy that cannot be deleted must not be served.
  *why = "cannot delete key " + std::string(key) + ": " + shmkv_strerror(rc);
  return false;
}

bool UpstreamStream::Flush(const char* reason, std::string* why) {
  flushes_.fetch_add(1, std::memory_order_relaxed);
  if (config_.prefixes.empty()) {
    if (int rc = shmkv_clear(kv_); rc != 0) {
      *why = std::string("cannot clear the segment: ") + shmkv_strerror(rc);
      return false;
    }
    log_->Info(std::string("upstream: ") + reason + ": cleared the segment");
    return true;
  }
  struct Ctx {
    shmkv_t* kv;
    uint64_t deleted;
    int error;  // of the first delete that failed
  } ctx{kv_, 0, 0};
  // shmkv_scan lets the callback delete the key it is given.
  auto remove = [](const void* key, size_t key_len, const shmkv_item_info_t*, void* c) {
    auto* x = static_cast<Ctx*>(c);
    const int rc = shmkv_delete(x->kv, key, key_len, 0);
    if (rc == 0) ++x->deleted;
    if (rc == 0 || rc == SHMKV_ENOTFOUND) return 0;
    x->error = rc;
    return 1;
  };
  for (const std::string& p : config_.prefixes) {
    uint64_t cursor = 0;
    do {
      int rc = shmkv_scan(kv_, &cursor, p.data(), p.size(), kScanSlots, remove, &ctx);
      if (rc == 0) rc = ctx.error;
      if (rc != 0) {
        *why = "cannot flush prefix " + p + ": " + shmkv_strerror(rc);
        return false;
      }
    } while (cursor != 0);
  }
  const uint64_t deleted = ctx.deleted;
  log_->Info(std::string("upstream: ") + reason + ": flushed " + std::to_string(deleted) +
             (deleted == 1 ? " local key" : " local keys") + " under " + prefixes_text_);
  return true;
}

bool UpstreamStream::Sleep(milliseconds d) {
  struct pollfd p = {wake_fd_, POLLIN, 0};
  const Clock::time_point deadline = Clock::now() + d;
  for (;;) {
    if (stopping()) return false;
    const auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return true;
    ::poll(&p, 1, static_cast<int>(left));
  }
}

}  // namespace shmkvd
