// The only place that touches shared words. Every access names its memory
// order here, so the protocols in table.cc read as named steps.
//
// Cross-process atomicity needs truly lock-free instructions: libatomic's
// fallback lock is private to one process. 8-byte accesses go through
// std::atomic_ref<uint64_t> (static_assert'ed lock-free in layout.h); the
// 16-byte slot CAS is __sync_bool_compare_and_swap on unsigned __int128,
// which -mcx16 compiles to an inline `lock cmpxchg16b` (a test fails the
// build if the library references any __atomic_* function).
#ifndef SHMKV_SRC_ATOMICS_H_
#define SHMKV_SRC_ATOMICS_H_

#include <atomic>
#include <cstdint>
#include <cstring>

#include "layout.h"

#if !defined(__x86_64__)
#error "shmkv needs x86-64 with cmpxchg16b"
#endif
#if !defined(__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16)
#error "compile with -mcx16: the 16-byte slot CAS must be inline cmpxchg16b"
#endif

namespace shmkv::internal {

// The builtins std::atomic_ref is made of, called directly for the plain
// loads and stores: GCC 12's atomic_ref<T>::load goes through a stack
// temporary that it does not always optimise away (a spill per word in the
// copy loops).
inline uint64_t LoadAcquire(const uint64_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
inline uint64_t LoadRelaxed(const uint64_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline void StoreRelaxed(uint64_t* p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
inline void StoreRelease(uint64_t* p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
inline uint32_t LoadAcquire32(const uint32_t* p) {
  return std::atomic_ref<uint32_t>(*const_cast<uint32_t*>(p)).load(std::memory_order_acquire);
}
inline void StoreRelease32(uint32_t* p, uint32_t v) {
  std::atomic_ref<uint32_t>(*p).store(v, std::memory_order_release);
}
inline bool Cas32(uint32_t* p, uint32_t expected, uint32_t desired) {
  return std::atomic_ref<uint32_t>(*p).compare_exchange_strong(expected, desired,
                                                               std::memory_order_seq_cst);
}
// Protocol CASes on block states and records are seq_cst: the insert
// protocol's "claim, then scan" reasoning is Dekker-style (design-notes §6.6).
inline bool CasWord(uint64_t* p, uint64_t& expected, uint64_t desired) {
  return std::atomic_ref<uint64_t>(*p).compare_exchange_strong(expected, desired,
                                                               std::memory_order_seq_cst);
}
inline uint64_t FetchAdd(uint64_t* p, uint64_t v) {
  return std::atomic_ref<uint64_t>(*p).fetch_add(v, std::memory_order_relaxed);
}
inline uint64_t FetchOr(uint64_t* p, uint64_t v) {
  return std::atomic_ref<uint64_t>(*p).fetch_or(v, std::memory_order_acq_rel);
}
inline uint64_t FetchAnd(uint64_t* p, uint64_t v) {
  return std::atomic_ref<uint64_t>(*p).fetch_and(v, std::memory_order_release);
}

// A consistent view of one slot.
struct SlotWord {
  uint64_t ref;
  uint64_t meta;
  bool operator==(const SlotWord& o) const { return ref == o.ref && meta == o.meta; }
};

// 16-byte CAS on a slot: a full barrier on x86 (lock prefix), so it also
// releases the block contents it publishes; pairs with the acquire loads
// in LoadSlot().
inline bool CasSlot(Slot* s, const SlotWord& expected, const SlotWord& desired) {
  __extension__ typedef unsigned __int128 U128;
  const U128 e = (U128{expected.meta} << 64) | expected.ref;
  const U128 d = (U128{desired.meta} << 64) | desired.ref;
  return __sync_bool_compare_and_swap(reinterpret_cast<U128*>(s), e, d);
}

// 16-byte CAS on the pair {lo, hi} at a 16-byte aligned address (a
// counter block's P, layout.h); a full barrier like CasSlot.
inline bool CasPair(uint64_t* at, uint64_t lo, uint64_t hi, uint64_t new_lo, uint64_t new_hi) {
  __extension__ typedef unsigned __int128 U128;
  const U128 e = (U128{hi} << 64) | lo;
  const U128 d = (U128{new_hi} << 64) | new_lo;
  return __sync_bool_compare_and_swap(reinterpret_cast<U128*>(at), e, d);
}

// Loads a slot as two 8-byte acquire loads and retries until both halves
// belong to one version (a 16-byte load is never needed, design-notes
// §6.6). R may change alone; that is harmless to every caller.
inline SlotWord LoadSlot(const Slot* s) {
  for (;;) {
    const uint64_t m1 = LoadAcquire(&s->meta);
    const uint64_t r = LoadAcquire(&s->ref);
    const uint64_t m2 = LoadAcquire(&s->meta);
    if (m1 == m2) return {r, m1};
  }
}

// Reader-side fence before re-checking a slot version (seqlock pattern,
// Boehm): pairs with the release fence after a block is claimed in
// Allocator::Alloc(). TSan does not model fences; there the re-check loads
// are acquire loads instead (see LoadSlotRecheck).
inline void ReadFence() {
#if !defined(SHMKV_TSAN)
  std::atomic_thread_fence(std::memory_order_acquire);
#endif
}
inline void ClaimFence() {
#if !defined(SHMKV_TSAN)
  std::atomic_thread_fence(std::memory_order_release);
#endif
}

// A block's 8-byte word at offset w, read or written relaxed: header fields
// and racy copies. Racy copies of block bytes load the aligned words
// covering [from, from + len). Blocks are 16-byte multiples inside a mapped
// page, so the covering words are in bounds. Results are only used after
// the slot version is re-checked.
inline uint64_t WordAt(const unsigned char* block, size_t w) {
  return LoadRelaxed(reinterpret_cast<const uint64_t*>(block + w));
}
inline void StoreWordAt(unsigned char* block, size_t w, uint64_t v) {
  StoreRelaxed(reinterpret_cast<uint64_t*>(block + w), v);
}

// A word of the caller's buffer, which may be unaligned and alias anything.
typedef uint64_t __attribute__((may_alias, aligned(1))) UnalignedWord;

// Not inlined: in the flattened read path, register pressure made the copy
// loop spill every word through the stack.
[[gnu::noinline]] inline void CopyOut(void* dst, const unsigned char* block, size_t from,
                                      size_t len) {
  if (len == 0) return;  // dst may be NULL then
  auto* out = static_cast<unsigned char*>(dst);
  size_t w = from & ~size_t{7};
  const size_t skip = from - w;
  if (skip != 0 && len > 0) {  // leading partial word
    const uint64_t v = WordAt(block, w);
    const size_t n = (8 - skip) < len ? (8 - skip) : len;
    std::memcpy(out, reinterpret_cast<const unsigned char*>(&v) + skip, n);
    out += n;
    len -= n;
    w += 8;
  }
  // Plain unaligned stores (memcpy from a local spilled every word to the
  // stack), unrolled for the common case.
  for (; len >= 32; len -= 32, w += 32, out += 32) {
    const uint64_t v0 = WordAt(block, w), v1 = WordAt(block, w + 8);
    const uint64_t v2 = WordAt(block, w + 16), v3 = WordAt(block, w + 24);
    reinterpret_cast<UnalignedWord*>(out)[0] = v0;
    reinterpret_cast<UnalignedWord*>(out)[1] = v1;
    reinterpret_cast<UnalignedWord*>(out)[2] = v2;
    reinterpret_cast<UnalignedWord*>(out)[3] = v3;
  }
  for (; len >= 8; len -= 8, w += 8, out += 8) {
    *reinterpret_cast<UnalignedWord*>(out) = WordAt(block, w);
  }
  if (len > 0) {
    const uint64_t v = WordAt(block, w);
    std::memcpy(out, &v, len);
  }
}

// Compares block bytes with src, racily (as CopyOut).
inline bool EqualRelaxed(const unsigned char* block, size_t from, const void* src, size_t len) {
  const auto* in = static_cast<const unsigned char*>(src);
  size_t w = from & ~size_t{7};
  const size_t skip = from - w;
  if (skip != 0 && len > 0) {
    const uint64_t v = WordAt(block, w);
    const size_t n = (8 - skip) < len ? (8 - skip) : len;
    if (std::memcmp(in, reinterpret_cast<const unsigned char*>(&v) + skip, n) != 0) return false;
    in += n;
    len -= n;
    w += 8;
  }
  for (; len >= 8; len -= 8, w += 8, in += 8) {
    uint64_t x;
    std::memcpy(&x, in, 8);
    if (x != WordAt(block, w)) return false;
  }
  if (len > 0) {
    uint64_t x = 0, v = WordAt(block, w);
    std::memcpy(&x, in, len);
    const uint64_t mask = (len == 8) ? ~0ull : ((1ull << (len * 8)) - 1);
    if (x != (v & mask)) return false;
  }
  return true;
}

// Writes bytes into a block this participant owns (unpublished). A racing
// reader of a recycled block may see any mix of old and new bytes and
// discards its copy (the slot version changed), so plain stores are enough
// (design-notes §6, "writer: block content stores: relaxed / plain"): one
// memcpy, which stores 16 or 32 bytes at a time. Under TSan, relaxed atomic
// stores word by word instead, so that the threads-only tests see no data
// race; partial words are merged with what is there.
inline void CopyIn(unsigned char* block, size_t to, const void* src, size_t len) {
#if !defined(SHMKV_TSAN)
  if (len != 0) std::memcpy(block + to, src, len);
#else
  const auto* in = static_cast<const unsigned char*>(src);
  size_t w = to & ~size_t{7};
  size_t skip = to - w;
  if (skip == 0) {  // whole words first, unrolled (the common case: aligned)
    const auto* words = reinterpret_cast<const UnalignedWord*>(in);
    auto* out = reinterpret_cast<uint64_t*>(block + w);
    size_t i = 0;
    for (; (i + 4) * 8 <= len; i += 4) {
      StoreRelaxed(out + i, words[i]);
      StoreRelaxed(out + i + 1, words[i + 1]);
      StoreRelaxed(out + i + 2, words[i + 2]);
      StoreRelaxed(out + i + 3, words[i + 3]);
    }
    for (; (i + 1) * 8 <= len; ++i) StoreRelaxed(out + i, words[i]);
    in += i * 8;
    len -= i * 8;
    w += i * 8;
  }
  while (len > 0) {
    auto* word = reinterpret_cast<uint64_t*>(block + w);
    uint64_t v;
    if (skip == 0 && len >= 8) {
      std::memcpy(&v, in, 8);
      StoreRelaxed(word, v);
      in += 8;
      len -= 8;
      w += 8;
      continue;
    }
    const size_t n = (8 - skip) < len ? (8 - skip) : len;
    v = LoadRelaxed(word);
    std::memcpy(reinterpret_cast<unsigned char*>(&v) + skip, in, n);
    StoreRelaxed(word, v);
    in += n;
    len -= n;
    w += 8;
    skip = 0;
  }
#endif
}

inline void CpuRelax() { __builtin_ia32_pause(); }

}  // namespace shmkv::internal

#endif  // SHMKV_SRC_ATOMICS_H_
