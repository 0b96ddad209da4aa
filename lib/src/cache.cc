// The C++ API: the same core as the C API (handle.h), with error_code
// results. noexcept throughout: an allocation failure becomes ENOMEM.
#include "shmkv/cache.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <thread>

#include "handle.h"

namespace shmkv {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "shmkv"; }
  std::string message(int code) const override { return shmkv_strerror(code); }
};

std::error_code Ec(int rc) { return MakeErrorCode(rc); }

ItemInfo ToInfo(const shmkv_item_info_t& i) {
  return {i.cas, std::chrono::milliseconds(i.ttl_ms), i.user_flags, i.value_len,
          (i.write_flags & SHMKV_WRITE_NOEVICT) != 0};
}

template <typename F>
auto Guard(F&& f) noexcept -> decltype(f()) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return std::error_code(ENOMEM, std::generic_category());
  }
}

// A negative duration is not a TTL: it maps to a value CheckTtl refuses.
uint64_t Ms(std::chrono::milliseconds d) {
  return d.count() < 0 ? ~uint64_t{0} : static_cast<uint64_t>(d.count());
}

}  // namespace

const std::error_category& ErrorCategory() noexcept {
  static const Category c;
  return c;
}

Result<Cache> Cache::Open(std::string_view name, const Options& options) noexcept {
  return Guard([&]() -> Result<Cache> {
    shmkv_options_t o;
    shmkv_options_init(&o);
    o.memory_bytes = options.memory_bytes;
    o.max_items = options.max_items;
    o.max_key_len = options.max_key_len;
    o.max_value_len = options.max_value_len;
    o.mode = options.mode;
    o.evict_policy = static_cast<uint32_t>(options.evict_policy);
    o.flags = (options.create ? SHMKV_OPEN_CREATE : 0) | (options.exclusive ? SHMKV_OPEN_EXCL : 0) |
              (options.read_only ? SHMKV_OPEN_READONLY : 0) |
              (options.precise_clock ? SHMKV_OPEN_PRECISE_CLOCK : 0);
    const std::string n(name);
    shmkv_t* h = nullptr;
    if (int rc = shmkv_open(n.c_str(), &o, &h)) return Ec(rc);
    return Cache(h);
  });
}

std::error_code Cache::Unlink(std::string_view name) noexcept {
  return Guard([&]() -> std::error_code { return Ec(shmkv_unlink(std::string(name).c_str())); });
}

Cache::Cache(Cache&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }

Cache& Cache::operator=(Cache&& other) noexcept {
  if (this != &other) {
    shmkv_close(handle_);
    handle_ = other.handle_;
    other.handle_ = nullptr;
  }
  return *this;
}

Cache::~Cache() { shmkv_close(handle_); }

#define SHMKV_CPP_ENTER(write)                      \
  if (handle_ == nullptr) return Ec(SHMKV_EINVAL);  \
  internal::Ctx c{handle_, handle_->v, nullptr, 0}; \
  if (int enter_rc = internal::Enter(handle_, (write), &c)) return Ec(enter_rc)

std::error_code Cache::Get(std::string_view key, std::string* out, ItemInfo* info) const noexcept {
  return Guard([&]() -> std::error_code {
    SHMKV_CPP_ENTER(false);
    if (int rc = internal::CheckKey(handle_, key.data(), key.size())) return Ec(rc);
    shmkv_item_info_t i{};
    i.struct_size = sizeof(i);
    const int rc = internal::OpGetString(c, key, out, &i);
    if (rc == 0 && info) *info = ToInfo(i);
    return Ec(rc);
  });
}

std::error_code Cache::MGet(std::span<const std::string_view> keys,
                            std::vector<std::optional<std::string>>* out) const noexcept {
  return Guard([&]() -> std::error_code {
    SHMKV_CPP_ENTER(false);
    for (std::string_view k : keys) {
      if (int rc = internal::CheckKey(handle_, k.data(), k.size())) return Ec(rc);
    }
    out->resize(keys.size());
    constexpr size_t kChunk = 64;
    void* bufs[kChunk];
    size_t caps[kChunk], lens[kChunk];
    int rcs[kChunk];
    for (size_t base = 0; base < keys.size(); base += kChunk) {
      const size_t m = std::min(kChunk, keys.size() - base);
      for (size_t i = 0; i < m; ++i) {
        std::optional<std::string>& o = (*out)[base + i];
        if (!o) o.emplace();
        o->resize(std::max<size_t>(o->capacity(), 128));
        bufs[i] = o->data();
        caps[i] = o->size();
      }
      internal::OpMGet(c, m, keys.data() + base, bufs, caps, lens, rcs, nullptr);
      for (size_t i = 0; i < m; ++i) {
        std::optional<std::string>& o = (*out)[base + i];
        if (rcs[i] == 0) {
          o->resize(lens[i]);
        } else if (rcs[i] == SHMKV_ETOOSMALL) {  // larger than the buffer: read it alone
          if (internal::OpGetString(c, keys[base + i], &*o, nullptr) != 0) o.reset();
        } else {
          o.reset();
        }
      }
    }
    return std::error_code();
  });
}

Result<std::string> Cache::Get(std::string_view key, ItemInfo* info) const noexcept {
  return Guard([&]() -> Result<std::string> {
    std::string s;
    if (std::error_code ec = Get(key, &s, info)) return ec;
    return s;
  });
}

std::error_code Cache::Set(std::string_view key, std::string_view value,
                           std::chrono::milliseconds ttl) noexcept {
  WriteOptions o;
  o.ttl = ttl;
  return Store(key, value, o).error();
}

Result<uint64_t> Cache::Store(std::string_view key, std::string_view value,
                              const WriteOptions& options) noexcept {
  return Guard([&]() -> Result<uint64_t> {
    SHMKV_CPP_ENTER(true);
    if (int rc = internal::CheckKey(handle_, key.data(), key.size())) return Ec(rc);
    if (int rc = internal::CheckValue(handle_, value.data(), value.size())) return Ec(rc);
    shmkv_write_opts_t o;
    shmkv_write_opts_init(&o);
    o.mode = static_cast<uint32_t>(options.mode);
    o.ttl_ms = Ms(options.ttl);
    o.expect_cas = options.expect_cas;
    o.user_flags = options.user_flags;
    o.flags =
        (options.keep_ttl ? SHMKV_WRITE_KEEPTTL : 0) | (options.no_evict ? SHMKV_WRITE_NOEVICT : 0);
    if (int rc = internal::CheckTtl(o.ttl_ms)) return Ec(rc);
    uint64_t cas = 0;
    if (int rc = internal::OpStore(c, key, value, o, &cas)) return Ec(rc);
    return cas;
  });
}

std::error_code Cache::Delete(std::string_view key, uint64_t expect_cas) noexcept {
  return Guard([&]() -> std::error_code {
    SHMKV_CPP_ENTER(true);
    if (int rc = internal::CheckKey(handle_, key.data(), key.size())) return Ec(rc);
    return Ec(internal::OpDelete(c, key, expect_cas));
  });
}

Result<int64_t> Cache::Incr(std::string_view key, int64_t delta, int64_t initial,
                            std::chrono::milliseconds ttl) noexcept {
  return Guard([&]() -> Result<int64_t> {
    SHMKV_CPP_ENTER(true);
    if (int rc = internal::CheckKey(handle_, key.data(), key.size())) return Ec(rc);
    if (int rc = internal::CheckTtl(Ms(ttl))) return Ec(rc);
    int64_t r = 0;
    if (int rc = internal::OpIncr(c, key, delta, initial, Ms(ttl), &r)) return Ec(rc);
    return r;
  });
}

std::error_code Cache::Touch(std::string_view key, std::chrono::milliseconds ttl) noexcept {
  return Guard([&]() -> std::error_code {
    SHMKV_CPP_ENTER(true);
    if (int rc = internal::CheckKey(handle_, key.data(), key.size())) return Ec(rc);
    if (int rc = internal::CheckTtl(Ms(ttl))) return Ec(rc);
    return Ec(internal::OpTouch(c, key, Ms(ttl)));
  });
}

std::error_code Cache::GetStale(std::string_view key, std::string* out, ItemInfo* info,
                                std::chrono::milliseconds* expired_for) const noexcept {
  return Guard([&]() -> std::error_code {
    SHMKV_CPP_ENTER(false);
    if (int rc = internal::CheckKey(handle_, key.data(), key.size())) return Ec(rc);
    shmkv_item_info_t i{};
    i.struct_size = sizeof(i);
    uint64_t expired_ms = 0;
    if (out->capacity() == 0) out->reserve(64);
    for (;;) {
      out->resize(out->capacity());
      size_t len = 0;
      const int rc = internal::OpGetStale(c, key, out->data(), out->size(), &len, &i, &expired_ms);
      if (rc == SHMKV_ETOOSMALL) {
        out->resize(len);  // grow and read again
        continue;
      }
      if (rc != 0) {
        out->clear();
        return Ec(rc);
      }
      out->resize(len);
      if (info) *info = ToInfo(i);
      if (expired_for) *expired_for = std::chrono::milliseconds(expired_ms);
      return std::error_code();
    }
  });
}

Result<ThrottleDecision> Cache::Throttle(std::string_view key, uint64_t rate,
                                         std::chrono::milliseconds period,
                                         uint64_t burst) noexcept {
  return Guard([&]() -> Result<ThrottleDecision> {
    SHMKV_CPP_ENTER(true);
    if (int rc = internal::CheckKey(handle_, key.data(), key.size())) return Ec(rc);
    internal::ThrottleArgs a;
    const uint64_t period_ms = period.count() < 0 ? 0 : static_cast<uint64_t>(period.count());
    if (int rc = internal::CheckThrottle(c, rate, period_ms, burst, &a)) return Ec(rc);
    internal::ThrottleResult r{};
    if (int rc = internal::OpThrottle(c, key, a, &r)) return Ec(rc);
    ThrottleDecision d;
    d.allowed = r.allowed;
    d.retry_after = std::chrono::milliseconds((r.retry_after_ns + 999'999) / 1'000'000);
    d.remaining = r.remaining;
    return d;
  });
}

namespace {

// Releases a GetOrCompute lease on every way out of the computing branch.
class LeaseRelease {
 public:
  LeaseRelease(Cache* cache, const std::string& key, uint64_t cas)
      : cache_(cache), key_(key), cas_(cas) {}
  ~LeaseRelease() {
    // Only our own lease: if it lapsed and another process took it, the
    // cas differs and the delete fails, as it should.
    (void)cache_->Delete(key_, cas_);
  }
  LeaseRelease(const LeaseRelease&) = delete;
  LeaseRelease& operator=(const LeaseRelease&) = delete;

 private:
  Cache* cache_;
  const std::string& key_;
  uint64_t cas_;
};

}  // namespace

Result<std::string> Cache::GetOrCompute(std::string_view key,
                                        const std::function<Result<std::string>()>& compute,
                                        const ComputeOptions& options) {
  using Clock = std::chrono::steady_clock;
  if (handle_ == nullptr) return Ec(SHMKV_EINVAL);
  if (!compute || options.lease.count() <= 0 || options.wait.count() < 0) return Ec(SHMKV_EINVAL);
  // A bad TTL fails before anything is computed.
  if (int rc = internal::CheckTtl(Ms(options.ttl))) return Ec(rc);
  const std::string lease_key = std::string("\0lease:", 7) + std::string(key);
  const std::string holder = "pid " + std::to_string(getpid());
  const Clock::time_point start = Clock::now();
  // A wait too long to add to the clock (milliseconds::max(): forever)
  // waits until the clock's end.
  const Clock::time_point deadline =
      options.wait >= std::chrono::duration_cast<std::chrono::milliseconds>(
                          Clock::time_point::max() - start)
          ? Clock::time_point::max()
          : start + options.wait;
  auto backoff = std::chrono::milliseconds(1);
  std::string value;
  for (;;) {
    std::chrono::milliseconds expired_for{0};
    const std::error_code read = GetStale(key, &value, nullptr, &expired_for);
    if (!read && expired_for.count() == 0) return value;  // fresh
    if (read && read != Errc::kNotFound) return read;
    const bool have_stale = !read;
    WriteOptions lease;
    lease.mode = WriteMode::kAdd;
    lease.ttl = options.lease;
    lease.no_evict = true;  // memory pressure must not start a second computation
    Result<uint64_t> took = Store(lease_key, holder, lease);
    if (took) {
      LeaseRelease release(this, lease_key, *took);
      // The value may have been stored between the read and the lease.
      // A serve-stale read, not Get: Get would reclaim an expired value
      // that the other callers are being served meanwhile.
      std::string again;
      if (!GetStale(key, &again, nullptr, &expired_for) && expired_for.count() == 0) return again;
      Result<std::string> computed = compute();
      if (!computed) return computed.error();
      WriteOptions w;
      w.ttl = options.ttl;
      if (std::error_code ec = Store(key, *computed, w).error()) return ec;
      return computed;
    }
    if (took.error() != Errc::kExists) return took.error();
    if (have_stale && options.serve_stale) return value;
    const Clock::time_point now = Clock::now();
    if (now >= deadline) return Ec(SHMKV_EBUSY);
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
  }
}

Result<std::chrono::milliseconds> Cache::Ttl(std::string_view key) const noexcept {
  return Guard([&]() -> Result<std::chrono::milliseconds> {
    SHMKV_CPP_ENTER(false);
    if (int rc = internal::CheckKey(handle_, key.data(), key.size())) return Ec(rc);
    int64_t t = 0;
    if (int rc = internal::OpTtl(c, key, &t)) return Ec(rc);
    return std::chrono::milliseconds(t);
  });
}

std::error_code Cache::Clear() noexcept { return Ec(shmkv_clear(handle_)); }

namespace {
struct ScanCtx {
  const std::function<bool(std::string_view, const ItemInfo&)>* fn;
  bool stopped = false;
};
int ScanThunk(const void* key, size_t len, const shmkv_item_info_t* info, void* ctx) {
  auto* sc = static_cast<ScanCtx*>(ctx);
  sc->stopped = !(*sc->fn)(std::string_view(static_cast<const char*>(key), len), ToInfo(*info));
  return sc->stopped ? 1 : 0;
}
}  // namespace

std::error_code Cache::Scan(
    std::string_view prefix,
    const std::function<bool(std::string_view, const ItemInfo&)>& fn) const noexcept {
  return Guard([&]() -> std::error_code {
    ScanCtx sc{&fn};
    uint64_t cursor = 0;
    do {
      if (int rc = shmkv_scan(handle_, &cursor, prefix.data(), prefix.size(), 4096, ScanThunk, &sc))
        return Ec(rc);
    } while (cursor != 0 && !sc.stopped);
    return {};
  });
}

Result<shmkv_stats_t> Cache::Stats() const noexcept {
  shmkv_stats_t s{};
  s.struct_size = sizeof(s);
  if (int rc = shmkv_stats(handle_, &s)) return Ec(rc);
  return s;
}

Result<uint32_t> Cache::Recover() noexcept {
  uint32_t n = 0;
  if (int rc = shmkv_recover(handle_, &n)) return Ec(rc);
  return n;
}

}  // namespace shmkv
