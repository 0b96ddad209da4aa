// The C++ API of shmkv: a thin, idiomatic layer over the same core as the C
// API (shmkv.h). Everything is noexcept; failures are std::error_code values
// in the shmkv category (see error.h). Keys and values are string_views and
// may hold any bytes.
//
//   auto cache = shmkv::Cache::Open("sessions", {.memory_bytes = 64 << 20,
//                                                .create = true});
//   if (!cache) { /* cache.error().message() says why */ }
//   cache->Set("user:42", "alice", std::chrono::seconds(30));
//   auto v = cache->Get("user:42");   // Result<std::string>
#ifndef SHMKV_CACHE_H_
#define SHMKV_CACHE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "shmkv/error.h"
#include "shmkv/export.h"
#include "shmkv/shmkv.h"

namespace shmkv {

namespace internal {
class Segment;
}  // namespace internal

enum class EvictPolicy : uint32_t {
  kAllKeys = SHMKV_EVICT_ALLKEYS,
  kVolatile = SHMKV_EVICT_VOLATILE,
  kNone = SHMKV_EVICT_NONE,
};

enum class WriteMode : uint32_t { kSet = SHMKV_SET, kAdd = SHMKV_ADD, kReplace = SHMKV_REPLACE };

struct Options {
  uint64_t memory_bytes = 64ull << 20;
  uint64_t max_items = 0;  // 0: memory_bytes / 256
  uint32_t max_key_len = 250;
  uint32_t max_value_len = 1u << 20;
  uint32_t mode = 0600;
  bool create = false;     // create the segment if it does not exist
  bool exclusive = false;  // with create: fail with kExists if it exists
  bool read_only = false;
  bool precise_clock = false;
  EvictPolicy evict_policy = EvictPolicy::kAllKeys;
};

// TTLs: 0 means no expiry; a negative TTL is Errc::kInvalid.
struct WriteOptions {
  WriteMode mode = WriteMode::kSet;
  std::chrono::milliseconds ttl{0};  // 0: no expiry
  uint64_t expect_cas = 0;           // 0: any
  uint32_t user_flags = 0;
  bool keep_ttl = false;
  bool no_evict = false;
};

struct ItemInfo {
  uint64_t cas = 0;
  std::chrono::milliseconds ttl{-1};  // -1: no expiry
  uint32_t user_flags = 0;
  uint64_t value_len = 0;
  bool no_evict = false;  // stored with WriteOptions::no_evict
};

// Throttle's answer (see shmkv_throttle).
struct ThrottleDecision {
  bool allowed = false;
  std::chrono::milliseconds retry_after{0};  // 0 when allowed
  uint64_t remaining = 0;                    // requests that would be allowed now
};

// GetOrCompute's options.
struct ComputeOptions {
  std::chrono::milliseconds ttl{0};  // TTL of the computed value; 0: none
  // How long the one computing process holds the lease: if it dies or
  // hangs, another process takes over after this.
  std::chrono::milliseconds lease{std::chrono::seconds(10)};
  // How long the other callers wait for the value before failing with
  // Errc::kBusy.
  std::chrono::milliseconds wait{std::chrono::seconds(10)};
  // While another process computes, return the expired value if one is
  // still in memory (shmkv_get_stale) instead of waiting.
  bool serve_stale = false;
};

class SHMKV_EXPORT Cache {
 public:
  static Result<Cache> Open(std::string_view name, const Options& options = {}) noexcept;
  static std::error_code Unlink(std::string_view name) noexcept;

  Cache(Cache&& other) noexcept;
  Cache& operator=(Cache&& other) noexcept;
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;
  ~Cache();

  Result<std::string> Get(std::string_view key, ItemInfo* info = nullptr) const noexcept;
  // Reuses out's capacity: no allocation when it is large enough.
  std::error_code Get(std::string_view key, std::string* out,
                      ItemInfo* info = nullptr) const noexcept;
  // Batch get (shmkv_mget): (*out)[i] is the value of keys[i], or nullopt
  // if it is absent. Much faster per key than single gets when the data is
  // not in cache (the memory accesses of the keys overlap). Reuses the
  // strings already in *out. A bad key fails the whole call.
  std::error_code MGet(std::span<const std::string_view> keys,
                       std::vector<std::optional<std::string>>* out) const noexcept;
  // Serve-stale read (shmkv_get_stale): also returns an entry that has
  // expired but is still in memory; *expired_for is how long ago it expired
  // (0: not expired). Plain Get never returns expired data.
  std::error_code GetStale(std::string_view key, std::string* out, ItemInfo* info = nullptr,
                           std::chrono::milliseconds* expired_for = nullptr) const noexcept;
  std::error_code Set(std::string_view key, std::string_view value,
                      std::chrono::milliseconds ttl = std::chrono::milliseconds{0}) noexcept;
  // Returns the new cas token.
  Result<uint64_t> Store(std::string_view key, std::string_view value,
                         const WriteOptions& options) noexcept;
  std::error_code Delete(std::string_view key, uint64_t expect_cas = 0) noexcept;
  Result<int64_t> Incr(std::string_view key, int64_t delta = 1, int64_t initial = 0,
                       std::chrono::milliseconds ttl = std::chrono::milliseconds{0}) noexcept;
  std::error_code Touch(std::string_view key, std::chrono::milliseconds ttl) noexcept;
  // Rate limiter (shmkv_throttle): bursts of up to `burst` requests, then
  // `rate` per `period`, decided and recorded in one atomic step.
  Result<ThrottleDecision> Throttle(std::string_view key, uint64_t rate,
                                    std::chrono::milliseconds period, uint64_t burst) noexcept;
  // Cache-aside with stampede protection: returns the value of key; on a
  // miss exactly one caller across all processes runs compute (holding a
  // lease: an ADD, no-evict, of the key "\0lease:" + key with a TTL of
  // options.lease) and stores its result with options.ttl, while the others
  // poll with backoff until the value appears (or the lease lapses and one
  // of them takes over) for up to options.wait, or get the expired value at
  // once with options.serve_stale. An error from compute is returned, nothing is
  // stored, and the lease is released; so is it if compute throws (the
  // exception propagates: the one member that is not noexcept). The key
  // may be at most max_key_len - 7 bytes (room for the lease key).
  Result<std::string> GetOrCompute(std::string_view key,
                                   const std::function<Result<std::string>()>& compute,
                                   const ComputeOptions& options = {});
  // -1 ms: the key has no expiry.
  Result<std::chrono::milliseconds> Ttl(std::string_view key) const noexcept;
  std::error_code Clear() noexcept;
  // Visits live entries whose key starts with prefix; fn returns false to stop.
  // Keys present for the whole scan are visited at least once.
  std::error_code Scan(
      std::string_view prefix,
      const std::function<bool(std::string_view key, const ItemInfo&)>& fn) const noexcept;
  Result<shmkv_stats_t> Stats() const noexcept;
  Result<uint32_t> Recover() noexcept;

  // The C handle, for code that mixes both APIs. Owned by this Cache.
  shmkv_t* c_handle() const noexcept { return handle_; }

 private:
  explicit Cache(shmkv_t* handle) noexcept : handle_(handle) {}
  shmkv_t* handle_ = nullptr;
};

}  // namespace shmkv

#endif  // SHMKV_CACHE_H_
