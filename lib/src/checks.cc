// Argument checks and the per-operation entry shared by the C and C++ APIs.
#include "handle.h"

namespace shmkv::internal {

int CheckKeySlow(const shmkv_t* kv, const void* key, size_t len) {
  if (key == nullptr) return Fail(SHMKV_EINVAL, "key is NULL");
  if (len == 0) return Fail(SHMKV_EINVAL, "key is empty");
  if (len > kv->v.max_key_len)
    return Fail(SHMKV_EKEYTOOBIG, "key of " + std::to_string(len) + " bytes is above max_key_len " +
                                      std::to_string(kv->v.max_key_len));
  return 0;
}

int CheckValueSlow(const shmkv_t* kv, const void* val, size_t len) {
  if (val == nullptr && len != 0) return Fail(SHMKV_EINVAL, "value is NULL");
  if (len > kv->v.max_value_len)
    return Fail(SHMKV_EVALTOOBIG, "value of " + std::to_string(len) +
                                      " bytes is above max_value_len " +
                                      std::to_string(kv->v.max_value_len));
  return 0;
}

int CheckTtlSlow(uint64_t ttl_ms) {
  if (ttl_ms == ~uint64_t{0}) return Fail(SHMKV_EINVAL, "ttl is negative");
  if (ttl_ms > kMaxTtlMs)
    return Fail(SHMKV_EINVAL, "ttl of " + std::to_string(ttl_ms) +
                                  " ms is above the limit of 2^40 ms (about 35 years)");
  return 0;
}

int CheckThrottle(Ctx& c, uint64_t rate, uint64_t period_ms, uint64_t burst, ThrottleArgs* a) {
  if (rate == 0 || period_ms == 0 || burst == 0)
    return Fail(SHMKV_EINVAL, "rate, period_ms and burst must each be at least 1");
  // Every quantity stays below 2^62 ns (146 years), so that TAT + interval
  // cannot overflow.
  constexpr uint64_t kMaxNs = uint64_t{1} << 62;
  if (period_ms > kMaxNs / 1'000'000)
    return Fail(SHMKV_EINVAL, "period_ms is too large (at most 146 years)");
  a->interval_ns = period_ms * 1'000'000 / rate;
  if (a->interval_ns < 1000)
    return Fail(SHMKV_EINVAL, "rate is too high: at most one request per microsecond");
  if (__builtin_mul_overflow(a->interval_ns, burst, &a->tolerance_ns) || a->tolerance_ns > kMaxNs)
    return Fail(SHMKV_EINVAL, "burst x (period_ms / rate) is too large (at most 146 years)");
  // The operation's clock first: an entry that expired by it (OpThrottle
  // drops it) expired before now_ns too.
  c.Now();
  a->now_ns = SegmentNowNs(c.kv->v.epoch_ns);
  if (a->now_ns > kMaxNs) return Fail(SHMKV_EBADSEG, "bad segment: clock out of range");
  return 0;
}

// The participant of the calling thread when the inline entry (handle.h)
// did not have it: first call of this thread or after a fork.
int EnterSlow(shmkv_t* kv, Ctx* c) {
  int rc = 0;
  c->p = CurrentParticipant(kv, &rc);
  return c->p == nullptr ? rc : 0;
}

}  // namespace shmkv::internal
