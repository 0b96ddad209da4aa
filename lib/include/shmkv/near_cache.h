// The near cache of an upstream Redis (DESIGN.md §10; libshmkv_upstream).
//
// One segment per host sits in front of a Redis that several hosts share.
// shmkvd --upstream redis://HOST:PORT configures the segment and holds the
// host's one invalidation stream (CLIENT TRACKING ... BCAST over RESP2): it
// deletes the local copy of every key written in Redis, and publishes in the
// segment header whether the stream is current (shmkv_upstream_state). A
// NearCache opens the segment, finds the upstream's address in its header,
// and connects to Redis itself for misses and writes:
//
//   auto nc = shmkv::NearCache::Open("app");     // shmkvd --upstream ... runs
//   nc->Set("user:42", "alice", 60s);            // Redis first, then here
//   auto v = nc->Get("user:42");                 // memory speed once cached
//
// PROTOCOL (what makes a local copy safe to serve)
//   - Served only while the stream is current (state UP: the daemon has
//     confirmed within max_lag_ms that every invalidation of an
//     acknowledged write has been applied). Otherwise every call goes to
//     Redis and nothing is stored locally ("bypass").
//   - A copy is stored only through a placeholder: an entry with
//     user_flags SHMKV_UPSTREAM_PLACEHOLDER put at the key *before* the
//     Redis read (ADD: one fetch per key on the host; the others wait for
//     it) or before the Redis write (SET: it replaces whatever was there),
//     and replaced by the value only with a CAS on the placeholder's token.
//     An invalidation that arrives in between deletes the placeholder, so
//     the CAS fails and nothing is cached: the race between a read reply
//     and an invalidation never leaves a stale copy. The generation of the
//     state is read before the placeholder and after the CAS; if it changed
//     (the stream was lost meanwhile), the copy is deleted again. A Set
//     whose CAS fails because another local Set replaced its placeholder
//     deletes the key locally: Redis may have applied the two writes in
//     either order, so neither value may be kept.
//   - Delete, Incr and Touch run in Redis (atomic there) and then delete
//     the local copy. Throttle runs as one Lua script in Redis (GCRA, the
//     same answers as shmkv_throttle).
//   - The local TTL of a copy is the key's remaining TTL in Redis, capped by
//     max_local_ttl.
//
// GUARANTEES, with the daemon running and the stream current: on the host
// that made a write, once Set/Delete/Incr/Touch returned, no read returns
// an older value; on other hosts, a read returns an older value for at most
// the invalidation delay (Redis -> daemon -> delete), and never for longer
// than max_lag_ms, whatever happens to the stream or the daemon.
//
// A NearCache is movable, not copyable, and not for concurrent use by
// several threads (one Redis connection each); open one per thread.
#ifndef SHMKV_NEAR_CACHE_H_
#define SHMKV_NEAR_CACHE_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "shmkv/cache.h"
#include "shmkv/error.h"
#include "shmkv/export.h"

namespace shmkv {

struct NearCacheOptions {
  // Cap of a local copy's TTL (also for keys without a TTL in Redis).
  std::chrono::milliseconds max_local_ttl{std::chrono::seconds(60)};
  // How long a Get waits for another process's fetch of the same key before
  // reading Redis itself.
  std::chrono::milliseconds fetch_wait{std::chrono::milliseconds(200)};
  // Connect and command timeout of the Redis connection.
  std::chrono::milliseconds io_timeout{std::chrono::seconds(2)};
};

// Counters of one NearCache (this process, this handle).
struct NearCacheStats {
  uint64_t local_hits = 0;  // served from the segment
  uint64_t fetches = 0;     // read from Redis on a miss
  uint64_t bypasses = 0;    // calls made while the stream was not current
  uint64_t not_cached = 0;  // fetched or written values not kept (a race lost)
  uint64_t redis_errors = 0;
};

class SHMKV_EXPORT NearCache {
 public:
  // Opens the segment (which shmkvd --upstream configured) and connects to
  // the Redis its header names. Errc::kInvalid if the segment is not a near
  // cache; a connection failure is std::errc::connection_refused. *error,
  // if given, receives what went wrong.
  static Result<NearCache> Open(std::string_view segment, const NearCacheOptions& options = {},
                                std::string* error = nullptr);

  NearCache(NearCache&&) noexcept;
  NearCache& operator=(NearCache&&) noexcept;
  ~NearCache();

  // Errc::kNotFound when the key is not in Redis.
  Result<std::string> Get(std::string_view key);
  std::error_code Set(std::string_view key, std::string_view value,
                      std::chrono::milliseconds ttl = std::chrono::milliseconds{0});
  std::error_code Delete(std::string_view key);  // kNotFound if it was not there
  Result<int64_t> Incr(std::string_view key, int64_t delta = 1);
  std::error_code Touch(std::string_view key, std::chrono::milliseconds ttl);
  Result<ThrottleDecision> Throttle(std::string_view key, uint64_t rate,
                                    std::chrono::milliseconds period, uint64_t burst);

  NearCacheStats stats() const;
  // What the last failed call said (Redis's error text, a lost connection).
  const std::string& last_error() const;
  // The local segment (read-only use: inspection, Stats).
  Cache& local();

 private:
  struct Impl;
  explicit NearCache(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shmkv

#endif  // SHMKV_NEAR_CACHE_H_
