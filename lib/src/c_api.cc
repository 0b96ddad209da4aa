// The C API: argument checks, then the verbs of table.cc. Nothing throws
// across this boundary; every error has a code and a message
// (shmkv_last_error).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include "handle.h"
#include "shmkv/shmkv.h"
#include "testing.h"

using shmkv::internal::CheckKey;
using shmkv::internal::CheckTtl;
using shmkv::internal::CheckValue;
using shmkv::internal::Ctx;
using shmkv::internal::Enter;
using shmkv::internal::Fail;
using shmkv::internal::FailNotFound;

namespace {

bool ReadStructSize(uint32_t declared, size_t ours) {
  return declared >= sizeof(uint32_t) && declared <= 4 * ours;
}

#define SHMKV_ENTER(kv, write)                                      \
  if ((kv) == nullptr) return Fail(SHMKV_EINVAL, "handle is NULL"); \
  Ctx c{(kv), (kv)->v, nullptr, 0};                                 \
  if (int enter_rc = Enter((kv), (write), &c)) return enter_rc

std::string_view Bytes(const void* p, size_t n) {
  return n == 0 ? std::string_view() : std::string_view(static_cast<const char*>(p), n);
}

template <typename F>
auto Guard(F&& f) noexcept -> decltype(f()) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return Fail(ENOMEM, "out of memory");
  } catch (...) {
    return Fail(SHMKV_EINVAL, "internal error");
  }
}

}  // namespace

extern "C" {

void shmkv_options_init(shmkv_options_t* opts) {
  if (opts == nullptr) return;
  std::memset(opts, 0, sizeof(*opts));
  opts->struct_size = sizeof(*opts);
  opts->memory_bytes = 64ull << 20;
  opts->max_items = 0;
  opts->max_key_len = 250;
  opts->max_value_len = 1u << 20;
  opts->mode = 0600;
  opts->flags = 0;
  opts->evict_policy = SHMKV_EVICT_ALLKEYS;
}

void shmkv_write_opts_init(shmkv_write_opts_t* opts) {
  if (opts == nullptr) return;
  std::memset(opts, 0, sizeof(*opts));
  opts->struct_size = sizeof(*opts);
}

int shmkv_open(const char* name, const shmkv_options_t* opts, shmkv_t** out) {
  return Guard([&]() -> int {
    shmkv::internal::ClearError();
    if (out == nullptr) return Fail(SHMKV_EINVAL, "out is NULL");
    *out = nullptr;
    shmkv_options_t o;
    shmkv_options_init(&o);
    if (opts != nullptr) {
      if (!ReadStructSize(opts->struct_size, sizeof(o)))
        return Fail(SHMKV_EINVAL, "options.struct_size is not sizeof(shmkv_options_t)");
      std::memcpy(&o, opts, std::min<size_t>(opts->struct_size, sizeof(o)));
    }
    std::string why;
    auto kv = std::make_unique<shmkv_handle>();
    const int rc = shmkv::internal::Segment::Open(name, opts ? &o : nullptr, &kv->seg, &why);
    if (rc != 0) return Fail(rc, why);
    kv->read_only = kv->seg->read_only();
    kv->precise = (o.flags & SHMKV_OPEN_PRECISE_CLOCK) != 0;
    kv->v.Init(kv->seg->base());
    shmkv::internal::TrackHandle(kv.get());
    if (!kv->read_only) {
      std::lock_guard<std::mutex> g(kv->mu);
      if (int r = shmkv::internal::RegisterProcess(kv.get())) {
        shmkv::internal::DetachHandle(kv.get());
        return r;
      }
    }
    *out = kv.release();
    return 0;
  });
}

int shmkv_close(shmkv_t* kv) {
  if (kv == nullptr) return 0;
  shmkv::internal::DetachHandle(kv);
  delete kv;
  return 0;
}

int shmkv_unlink(const char* name) {
  return Guard([&]() -> int {
    shmkv::internal::ClearError();
    std::string why;
    const int rc = shmkv::internal::Segment::Unlink(name, &why);
    return rc ? Fail(rc, why) : 0;
  });
}

int shmkv_get(shmkv_t* kv, const void* key, size_t key_len, void* buf, size_t buf_len,
              size_t* val_len, shmkv_item_info_t* info) {
  return Guard([&]() -> int {
    SHMKV_ENTER(kv, false);
    if (int rc = CheckKey(kv, key, key_len)) return rc;
    if (val_len == nullptr) return Fail(SHMKV_EINVAL, "val_len is NULL");
    if (buf == nullptr && buf_len != 0) return Fail(SHMKV_EINVAL, "buf is NULL but buf_len > 0");
    const int rc = shmkv::internal::OpGet(c, Bytes(key, key_len), buf, buf_len, val_len, info);
    if (rc == SHMKV_ENOTFOUND) return FailNotFound();
    if (rc == SHMKV_ETOOSMALL)
      return Fail(rc, "buffer of " + std::to_string(buf_len) + " bytes is too small for " +
                          std::to_string(*val_len));
    return rc;
  });
}

int64_t shmkv_get_into(shmkv_t* kv, const void* key, size_t key_len, void* buf, size_t buf_len) {
  // Lengths are >= 0 here, so an errno (positive in the rest of the API:
  // ENOMEM, or EMFILE from re-registering after fork) comes back negated.
  auto negated = [](int rc) -> int64_t { return rc > 0 ? -static_cast<int64_t>(rc) : rc; };
  try {
    if (kv == nullptr) return Fail(SHMKV_EINVAL, "handle is NULL");
    Ctx c{kv, kv->v, nullptr, 0};
    if (int rc = shmkv::internal::Enter(kv, false, &c)) return negated(rc);
    if (int rc = CheckKey(kv, key, key_len)) return rc;
    if (buf == nullptr && buf_len != 0) return Fail(SHMKV_EINVAL, "buf is NULL but buf_len > 0");
    size_t len = 0;
    const int rc = shmkv::internal::OpGet(c, Bytes(key, key_len), buf, buf_len, &len, nullptr);
    if (rc == 0 || rc == SHMKV_ETOOSMALL) return static_cast<int64_t>(len);
    if (rc == SHMKV_ENOTFOUND) return FailNotFound();
    return negated(rc);
  } catch (const std::bad_alloc&) {
    return negated(Fail(ENOMEM, "out of memory"));
  } catch (...) {
    return Fail(SHMKV_EINVAL, "internal error");
  }
}

int shmkv_get_stale(shmkv_t* kv, const void* key, size_t key_len, void* buf, size_t buf_len,
                    size_t* val_len, shmkv_item_info_t* info, uint64_t* expired_ms) {
  return Guard([&]() -> int {
    SHMKV_ENTER(kv, false);
    if (int rc = CheckKey(kv, key, key_len)) return rc;
    if (val_len == nullptr) return Fail(SHMKV_EINVAL, "val_len is NULL");
    if (buf == nullptr && buf_len != 0) return Fail(SHMKV_EINVAL, "buf is NULL but buf_len > 0");
    const int rc = shmkv::internal::OpGetStale(c, Bytes(key, key_len), buf, buf_len, val_len, info,
                                               expired_ms);
    if (rc == SHMKV_ENOTFOUND) return Fail(rc, "key not found (not even expired)");
    if (rc == SHMKV_ETOOSMALL)
      return Fail(rc, "buffer of " + std::to_string(buf_len) + " bytes is too small for " +
                          std::to_string(*val_len));
    return rc;
  });
}

int shmkv_mget(shmkv_t* kv, size_t n, const void* const* keys, const size_t* key_lens,
               void* const* bufs, const size_t* buf_lens, size_t* val_lens, int* rcs,
               shmkv_item_info_t* infos) {
  return Guard([&]() -> int {
    SHMKV_ENTER(kv, false);
    if (n == 0) return 0;
    if (keys == nullptr || key_lens == nullptr || bufs == nullptr || buf_lens == nullptr ||
        val_lens == nullptr || rcs == nullptr)
      return Fail(SHMKV_EINVAL, "an array argument is NULL");
    for (size_t i = 0; i < n; ++i) {
      if (bufs[i] == nullptr && buf_lens[i] != 0)
        return Fail(SHMKV_EINVAL, "bufs[" + std::to_string(i) + "] is NULL but its length > 0");
    }
    // In chunks, so that no call allocates; a bad key is reported in its
    // rcs entry and skipped (an empty view).
    constexpr size_t kChunk = 64;
    std::string_view views[kChunk];

    for (size_t base = 0; base < n; base += kChunk) {
      const size_t m = std::min(kChunk, n - base);
      for (size_t i = 0; i < m; ++i) {
        const int rc = CheckKey(kv, keys[base + i], key_lens[base + i]);
        views[i] = rc ? std::string_view() : Bytes(keys[base + i], key_lens[base + i]);
        rcs[base + i] = rc;
      }
      shmkv::internal::OpMGet(c, m, views, bufs + base, buf_lens + base, val_lens + base,
                              rcs + base, infos ? infos + base : nullptr);
    }
    return 0;
  });
}

int shmkv_get_alloc(shmkv_t* kv, const void* key, size_t key_len, void** val, size_t* val_len,
                    shmkv_item_info_t* info) {
  return Guard([&]() -> int {
    SHMKV_ENTER(kv, false);
    if (int rc = CheckKey(kv, key, key_len)) return rc;
    if (val == nullptr || val_len == nullptr) return Fail(SHMKV_EINVAL, "val or val_len is NULL");
    *val = nullptr;
    std::string s;
    const int rc = shmkv::internal::OpGetString(c, Bytes(key, key_len), &s, info);
    if (rc != 0) return FailNotFound();  // OpGetString: 0 or SHMKV_ENOTFOUND
    void* p = std::malloc(s.size() ? s.size() : 1);
    if (p == nullptr) return Fail(ENOMEM, "out of memory");
    std::memcpy(p, s.data(), s.size());
    *val = p;
    *val_len = s.size();
    return 0;
  });
}

void shmkv_free(void* p) { std::free(p); }

int shmkv_set(shmkv_t* kv, const void* key, size_t key_len, const void* val, size_t val_len,
              uint64_t ttl_ms) {
  return Guard([&]() -> int {
    SHMKV_ENTER(kv, true);
    if (int rc = CheckKey(kv, key, key_len)) return rc;
    if (int rc = CheckValue(kv, val, val_len)) return rc;
    if (int rc = CheckTtl(ttl_ms)) return rc;
    shmkv_write_opts_t o{};
    o.struct_size = sizeof(o);
    o.mode = SHMKV_SET;
    o.ttl_ms = ttl_ms;
    return shmkv::internal::OpStore(c, Bytes(key, key_len), Bytes(val, val_len), o, nullptr);
  });
}

int shmkv_store(shmkv_t* kv, const void* key, size_t key_len, const void* val, size_t val_len,
                const shmkv_write_opts_t* opts, uint64_t* new_cas) {
  return Guard([&]() -> int {
    SHMKV_ENTER(kv, true);
    if (int rc = CheckKey(kv, key, key_len)) return rc;
    if (int rc = CheckValue(kv, val, val_len)) return rc;
    shmkv_write_opts_t o;
    shmkv_write_opts_init(&o);
    if (opts != nullptr) {
      if (!ReadStructSize(opts->struct_size, sizeof(o)))
        return Fail(SHMKV_EINVAL, "write_opts.struct_size is not sizeof(shmkv_write_opts_t)");
      std::memcpy(&o, opts, std::min<size_t>(opts->struct_size, sizeof(o)));
    }
    if (o.mode > SHMKV_REPLACE) return Fail(SHMKV_EINVAL, "write mode is not SET, ADD or REPLACE");
    if (o.flags & ~uint32_t{SHMKV_WRITE_KEEPTTL | SHMKV_WRITE_NOEVICT})
      return Fail(SHMKV_EINVAL, "unknown write flags");
    if (int rc = CheckTtl(o.ttl_ms)) return rc;
    return shmkv::internal::OpStore(c, Bytes(key, key_len), Bytes(val, val_len), o, new_cas);
  });
}

int shmkv_delete(shmkv_t* kv, const void* key, size_t key_len, uint64_t expect_cas) {
  return Guard([&]() -> int {
    SHMKV_ENTER(kv, true);
    if (int rc = CheckKey(kv, key, key_len)) return rc;
    return shmkv::internal::OpDelete(c, Bytes(key, key_len), expect_cas);
  });
}

int shmkv_incr(shmkv_t* kv, const void* key, size_t key_len, int64_t delta, int64_t initial,
               uint64_t ttl_ms, int64_t* result) {
  return Guard([&]() -> int {
    SHMKV_ENTER(kv, true);
    if (int rc = CheckKey(kv, key, key_len)) return rc;
    if (int rc = CheckTtl(ttl_ms)) return rc;
    return shmkv::internal::OpIncr(c, Bytes(key, key_len), delta, initial, ttl_ms, result);
  });
}

int shmkv_touch(shmkv_t* kv, const void* key, size_t key_len, uint64_t ttl_ms) {
  return Guard([&]() -> int {
    SHMKV_ENTER(kv, true);
    if (int rc = CheckKey(kv, key, key_len)) return rc;
    if (int rc = CheckTtl(ttl_ms)) return rc;
    return shmkv::internal::OpTouch(c, Bytes(key, key_len), ttl_ms);
  });
}

int shmkv_ttl(shmkv_t* kv, const void* key, size_t key_len, int64_t* ttl_ms) {
  return Guard([&]() -> int {
    SHMKV_ENTER(kv, false);
    if (int rc = CheckKey(kv, key, key_len)) return rc;
    if (ttl_ms == nullptr) return Fail(SHMKV_EINVAL, "ttl_ms is NULL");
    return shmkv::internal::OpTtl(c, Bytes(key, key_len), ttl_ms);
  });
}

int shmkv_throttle(shmkv_t* kv, const void* key, size_t key_len, uint64_t rate, uint64_t period_ms,
                   uint64_t burst, int* allowed, uint64_t* retry_after_ms, uint64_t* remaining) {
  return Guard([&]() -> int {
    SHMKV_ENTER(kv, true);
    if (int rc = CheckKey(kv, key, key_len)) return rc;
    if (allowed == nullptr || retry_after_ms == nullptr || remaining == nullptr)
      return Fail(SHMKV_EINVAL, "allowed, retry_after_ms and remaining must not be NULL");
    shmkv::internal::ThrottleArgs a;
    if (int rc = shmkv::internal::CheckThrottle(c, rate, period_ms, burst, &a)) return rc;
    shmkv::internal::ThrottleResult r{};
    if (int rc = shmkv::internal::OpThrottle(c, Bytes(key, key_len), a, &r)) return rc;
    *allowed = r.allowed ? 1 : 0;
    *retry_after_ms = (r.retry_after_ns + 999'999) / 1'000'000;
    *remaining = r.remaining;
    return 0;
  });
}

int shmkv_clear(shmkv_t* kv) {
  return Guard([&]() -> int {
    SHMKV_ENTER(kv, true);
    return shmkv::internal::OpClear(c);
  });
}

int shmkv_scan(shmkv_t* kv, uint64_t* cursor, const void* prefix, size_t prefix_len, size_t limit,
               shmkv_scan_fn fn, void* ctx) {
  return Guard([&]() -> int {
    SHMKV_ENTER(kv, false);
    if (cursor == nullptr || fn == nullptr) return Fail(SHMKV_EINVAL, "cursor or fn is NULL");
    if (prefix == nullptr && prefix_len != 0)
      return Fail(SHMKV_EINVAL, "prefix is NULL but prefix_len > 0");
    if (limit == 0) return Fail(SHMKV_EINVAL, "limit is 0");
    return shmkv::internal::OpScan(c, cursor, Bytes(prefix, prefix_len), limit, fn, ctx);
  });
}

int shmkv_stats(shmkv_t* kv, shmkv_stats_t* out) {
  return Guard([&]() -> int {
    shmkv::internal::ClearError();
    if (kv == nullptr || out == nullptr) return Fail(SHMKV_EINVAL, "handle or out is NULL");
    if (!ReadStructSize(out->struct_size, sizeof(*out)))
      return Fail(SHMKV_EINVAL, "stats.struct_size is not sizeof(shmkv_stats_t)");
    shmkv::internal::SumStats(kv, out);
    return 0;
  });
}

int shmkv_recover(shmkv_t* kv, uint32_t* recovered_processes) {
  return Guard([&]() -> int {
    shmkv::internal::ClearError();
    if (kv == nullptr) return Fail(SHMKV_EINVAL, "handle is NULL");
    if (kv->read_only) return Fail(SHMKV_EREADONLY, "the handle is read-only");
    uint32_t n = 0;
    const int rc = shmkv::internal::RecoverDead(kv, &n);
    if (recovered_processes) *recovered_processes = n;
    return rc;
  });
}

int shmkv_check(shmkv_t* kv, uint32_t flags, shmkv_check_report_t* report) {
  return Guard([&]() -> int {
    shmkv::internal::ClearError();
    if (kv == nullptr || report == nullptr) return Fail(SHMKV_EINVAL, "handle or report is NULL");
    if (!ReadStructSize(report->struct_size, sizeof(*report)))
      return Fail(SHMKV_EINVAL, "report.struct_size is not sizeof(shmkv_check_report_t)");
    if (flags & ~uint32_t{SHMKV_CHECK_OFFLINE}) return Fail(SHMKV_EINVAL, "unknown check flags");
    shmkv::internal::Census census;
    shmkv_check_report_t r{};
    r.struct_size = report->struct_size;
    std::string first;
    shmkv::internal::RunCheck(kv, flags & SHMKV_CHECK_OFFLINE, &census, &r.problems,
                              &r.leaked_blocks, &first);
    r.slots_live = census.slots_live;
    r.slots_pending = census.slots_pending;
    r.blocks_free = census.blocks_free;
    r.blocks_alloc = census.blocks_alloc;
    r.blocks_linked = census.blocks_linked;
    r.blocks_killed = census.blocks_killed;
    std::snprintf(r.first_problem, sizeof(r.first_problem), "%s", first.c_str());
    std::memcpy(report, &r, std::min<size_t>(report->struct_size, sizeof(r)));
    return 0;
  });
}

int shmkv_info(shmkv_t* kv, shmkv_info_t* out) {
  return Guard([&]() -> int {
    shmkv::internal::ClearError();
    if (kv == nullptr || out == nullptr) return Fail(SHMKV_EINVAL, "handle or out is NULL");
    if (!ReadStructSize(out->struct_size, sizeof(*out)))
      return Fail(SHMKV_EINVAL, "info.struct_size is not sizeof(shmkv_info_t)");
    const shmkv::internal::View& v = kv->v;
    const shmkv::internal::Header* h = v.hdr;
    shmkv_info_t r{};
    r.struct_size = out->struct_size;
    r.layout_version = h->layout_version;
    r.memory_bytes = h->total_size;
    r.max_items = h->max_items;
    r.index_slots = v.n_buckets * 4;
    r.data_bytes = v.n_pages * v.page_size;
    r.page_size = v.page_size;
    r.size_classes = v.n_classes;
    r.max_key_len = v.max_key_len;
    r.max_value_len = v.max_value_len;
    r.evict_policy = v.evict_policy;
    r.mode = h->mode;
    r.creator_pid = h->creator_pid;
    r.created_realtime_ns = h->created_realtime_ns;
    r.clock_ms = shmkv::internal::SegmentNowMs(v.epoch_ns, true) - 1;
    std::memcpy(r.boot_id, h->boot_id, sizeof(r.boot_id));
    r.boot_id[sizeof(r.boot_id) - 1] = '\0';
    r.janitor_pid = static_cast<uint32_t>(shmkv::internal::LoadAcquire(&h->janitor_pid));
    shmkv_stats_t s{};
    s.struct_size = sizeof(s);
    shmkv::internal::SumStats(kv, &s);
    r.attached_processes = static_cast<uint32_t>(s.attached_processes);
    r.process_slots = static_cast<uint32_t>(v.n_procs);
    r.superseded =
        shmkv::internal::LoadAcquire32(&h->init_state) == shmkv::internal::kSuperseded ? 1 : 0;
    if (out->struct_size >= offsetof(shmkv_info_t, huge_page_bytes) + sizeof(r.huge_page_bytes)) {
      std::call_once(kv->huge_once, [&] {
        kv->huge_bytes = shmkv::internal::MappedHugeBytes(v.base, h->total_size);
      });
      r.huge_page_bytes = kv->huge_bytes;
    }
    std::memcpy(out, &r, std::min<size_t>(out->struct_size, sizeof(r)));
    return 0;
  });
}

int shmkv_processes(shmkv_t* kv, shmkv_process_info_t* out, size_t cap, size_t* count) {
  return Guard([&]() -> int {
    shmkv::internal::ClearError();
    if (kv == nullptr || count == nullptr || (out == nullptr && cap != 0))
      return Fail(SHMKV_EINVAL, "handle, out or count is NULL");
    *count = shmkv::internal::ListProcesses(kv, out, cap);
    return 0;
  });
}

const char* shmkv_strerror(int code) {
  switch (code) {
    case 0:
      return "success";
    case SHMKV_ENOTFOUND:
      return "key not found (missing or expired)";
    case SHMKV_EEXIST:
      return "already exists";
    case SHMKV_ECAS:
      return "cas token mismatch";
    case SHMKV_ETOOSMALL:
      return "buffer too small";
    case SHMKV_EINVAL:
      return "invalid argument";
    case SHMKV_EKEYTOOBIG:
      return "key too long";
    case SHMKV_EVALTOOBIG:
      return "value too large";
    case SHMKV_ENOSPC:
      return "no space: full and nothing may be evicted";
    case SHMKV_ENOTNUM:
      return "value is not a decimal 64-bit integer";
    case SHMKV_EOVERFLOW:
      return "integer overflow";
    case SHMKV_ENOSEG:
      return "segment does not exist";
    case SHMKV_EACCES:
      return "permission denied";
    case SHMKV_EBADSEG:
      return "bad segment (corrupt, truncated, or another layout version)";
    case SHMKV_EREADONLY:
      return "read-only handle";
    case SHMKV_EBUSY:
      return "contention limit reached; retry";
    default:
      break;
  }
  if (code > 0) {
    thread_local char buf[128];
    return strerror_r(code, buf, sizeof(buf));  // GNU: returns the message
  }
  return "unknown shmkv error";
}

const char* shmkv_version(void) { return SHMKV_VERSION_STRING; }

const char* shmkv_last_error(void) { return shmkv::internal::LastError(); }

}  // extern "C"
