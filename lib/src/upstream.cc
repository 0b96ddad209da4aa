// The near-cache state in the segment header (shmkv_upstream_*): published
// by the daemon that holds the upstream's invalidation stream, read by the
// near-cache clients on every operation. No network code here: the core
// library only keeps the state (DESIGN.md §10).
//
// upstream_state is one word, generation << 2 | state, changed by CAS, so
// that a client that reads it before and after a step knows whether the
// daemon lost (or regained) the stream in between. The heartbeat only
// grows. url and prefixes are written under a seqlock (upstream_config_seq
// odd while they change) as relaxed 8-byte words, and read the same way.
#include <algorithm>
#include <cstring>
#include <string>

#include "handle.h"
#include "shmkv/shmkv.h"

namespace shmkv::internal {
namespace {

constexpr uint64_t kStateMask = 3;

void CopyWordsIn(char* dst, const std::string& src, size_t cap) {
  char buf[512] = {};
  std::memcpy(buf, src.data(), std::min(src.size(), cap - 1));
  for (size_t w = 0; w < cap / 8; ++w) {
    uint64_t word;
    std::memcpy(&word, buf + w * 8, 8);
    StoreRelaxed(reinterpret_cast<uint64_t*>(dst) + w, word);
  }
}

void CopyWordsOut(char* dst, const char* src, size_t cap) {
  for (size_t w = 0; w < cap / 8; ++w) {
    const uint64_t word = LoadRelaxed(reinterpret_cast<const uint64_t*>(src) + w);
    std::memcpy(dst + w * 8, &word, 8);
  }
  dst[cap - 1] = '\0';
}

// Effective state: UP only while the heartbeat is within the lag bound.
uint32_t Effective(const Header* h, uint64_t word, uint64_t now_ms, uint64_t* age_ms) {
  const uint64_t beat = LoadAcquire(&h->upstream_heartbeat_ms);
  *age_ms = beat == 0 ? ~uint64_t{0} : (now_ms > beat ? now_ms - beat : 0);
  const uint32_t published = static_cast<uint32_t>(word & kStateMask);
  if (published != SHMKV_UPSTREAM_UP) return published;
  return *age_ms <= LoadRelaxed(&h->upstream_max_lag_ms) ? SHMKV_UPSTREAM_UP : SHMKV_UPSTREAM_DOWN;
}

int EnterDaemon(shmkv_t* kv) {
  ClearError();
  if (kv == nullptr) return Fail(SHMKV_EINVAL, "handle is NULL");
  if (kv->read_only) return Fail(SHMKV_EREADONLY, "the handle is read-only");
  return 0;
}

// The clock the heartbeat is kept in: precise segment time in ms.
uint64_t NowMs(const shmkv_t* kv) { return SegmentNowMs(kv->v.epoch_ns, true); }

}  // namespace
}  // namespace shmkv::internal

using shmkv::internal::Fail;

extern "C" {

int shmkv_upstream_state(shmkv_t* kv, uint32_t* state, uint64_t* generation) {
  shmkv::internal::ClearError();
  if (kv == nullptr || state == nullptr) return Fail(SHMKV_EINVAL, "handle or state is NULL");
  const shmkv::internal::Header* h = kv->v.hdr;
  // acquire: pairs with the daemon's release CAS; what it deleted before
  // publishing UP is gone for whoever sees UP.
  const uint64_t word = shmkv::internal::LoadAcquire(&h->upstream_state);
  uint64_t age = 0;
  *state = shmkv::internal::Effective(h, word, shmkv::internal::NowMs(kv), &age);
  if (generation != nullptr) *generation = word >> 2;
  return 0;
}

int shmkv_upstream_get(shmkv_t* kv, shmkv_upstream_t* out) {
  shmkv::internal::ClearError();
  if (kv == nullptr || out == nullptr) return Fail(SHMKV_EINVAL, "handle or out is NULL");
  if (out->struct_size < sizeof(*out))
    return Fail(SHMKV_EINVAL, "upstream.struct_size is not sizeof(shmkv_upstream_t)");
  shmkv::internal::Header* h = kv->v.hdr;
  shmkv_upstream_t r{};
  r.struct_size = sizeof(r);
  // Bounded: a daemon killed in the middle of configure leaves the seq odd
  // until the next configure.
  for (int spins = 0;; ++spins) {
    if (spins == 1'000'000)
      return Fail(SHMKV_EBUSY, "the upstream configuration is being changed; retry");
    const uint64_t seq = shmkv::internal::LoadAcquire(&h->upstream_config_seq);
    if (seq & 1) {
      shmkv::internal::CpuRelax();
      continue;
    }
    shmkv::internal::CopyWordsOut(r.url, h->upstream_url, sizeof(r.url));
    shmkv::internal::CopyWordsOut(r.prefixes, h->upstream_prefixes, sizeof(r.prefixes));
    r.max_lag_ms = shmkv::internal::LoadRelaxed(&h->upstream_max_lag_ms);
    shmkv::internal::ReadFence();
    if (shmkv::internal::LoadRelaxed(&h->upstream_config_seq) == seq) break;
  }
  const uint64_t word = shmkv::internal::LoadAcquire(&h->upstream_state);
  r.state = shmkv::internal::Effective(h, word, shmkv::internal::NowMs(kv), &r.heartbeat_age_ms);
  r.generation = word >> 2;
  std::memcpy(out, &r, sizeof(r));
  return 0;
}

int shmkv_upstream_configure(shmkv_t* kv, const char* url, const char* prefixes,
                             uint64_t max_lag_ms) {
  if (int rc = shmkv::internal::EnterDaemon(kv)) return rc;
  if (url == nullptr || url[0] == '\0') return Fail(SHMKV_EINVAL, "url is empty");
  const std::string u(url), p(prefixes == nullptr ? "" : prefixes);
  if (u.size() >= sizeof(shmkv_upstream_t::url))
    return Fail(SHMKV_EINVAL, "url is longer than 255 bytes");
  if (p.size() >= sizeof(shmkv_upstream_t::prefixes))
    return Fail(SHMKV_EINVAL, "prefixes are longer than 511 bytes together");
  if (max_lag_ms == 0) return Fail(SHMKV_EINVAL, "max_lag_ms must be at least 1");
  shmkv::internal::Header* h = kv->v.hdr;
  // DOWN first: nobody may serve local copies under a configuration that
  // is being changed.
  if (int rc = shmkv_upstream_set_state(kv, SHMKV_UPSTREAM_DOWN)) return rc;
  const uint64_t seq = shmkv::internal::LoadRelaxed(&h->upstream_config_seq);
  shmkv::internal::StoreRelaxed(&h->upstream_config_seq, seq | 1);
  std::atomic_thread_fence(std::memory_order_release);
  shmkv::internal::CopyWordsIn(h->upstream_url, u, sizeof(h->upstream_url));
  shmkv::internal::CopyWordsIn(h->upstream_prefixes, p, sizeof(h->upstream_prefixes));
  shmkv::internal::StoreRelaxed(&h->upstream_max_lag_ms, max_lag_ms);
  // release: publishes the words above to readers that see the even seq.
  shmkv::internal::StoreRelease(&h->upstream_config_seq, (seq | 1) + 1);
  return 0;
}

int shmkv_upstream_set_state(shmkv_t* kv, uint32_t state) {
  if (int rc = shmkv::internal::EnterDaemon(kv)) return rc;
  if (state > SHMKV_UPSTREAM_DOWN) return Fail(SHMKV_EINVAL, "state is not NONE, UP or DOWN");
  uint64_t* word = &kv->v.hdr->upstream_state;
  uint64_t cur = shmkv::internal::LoadAcquire(word);
  // release (CasWord is seq_cst): the deletions that precede UP are
  // visible to a client that sees UP.
  while (!shmkv::internal::CasWord(word, cur, (((cur >> 2) + 1) << 2) | state)) {
  }
  return 0;
}

int shmkv_upstream_heartbeat(shmkv_t* kv, uint64_t confirmed_age_ms) {
  if (int rc = shmkv::internal::EnterDaemon(kv)) return rc;
  const uint64_t now = shmkv::internal::NowMs(kv);
  const uint64_t beat = now > confirmed_age_ms ? now - confirmed_age_ms : 1;
  uint64_t* p = &kv->v.hdr->upstream_heartbeat_ms;
  uint64_t cur = shmkv::internal::LoadAcquire(p);
  while (cur < beat && !shmkv::internal::CasWord(p, cur, beat)) {
  }
  return 0;
}

}  // extern "C"
