// Every structure that lives in the shared segment, and nothing else.
// Offsets, never pointers; plain integers reached through std::atomic_ref
// (atomics.h); no constructors run in shared memory. Any change to this file
// bumps kLayoutVersion: a segment of another layout is refused at attach.
#ifndef SHMKV_SRC_LAYOUT_H_
#define SHMKV_SRC_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shmkv::internal {

inline constexpr uint64_t kMagic = 0x01564B4D48530143ull;  // "C\x01SHMKV\x01"
inline constexpr uint32_t kLayoutVersion = 4;
inline constexpr size_t kCacheLine = 64;
inline constexpr size_t kHeaderSize = 4096;
inline constexpr uint32_t kMaxClasses = 64;
// A block starts on a kBlockUnit boundary, and class sizes are multiples
// of it; a slot holds a block's offset in these units.
inline constexpr uint64_t kBlockUnit = 16;
inline constexpr uint32_t kBlockHeaderSize = 32;    // a BYTES block's key starts here
inline constexpr uint32_t kCounterHeaderSize = 48;  // a COUNTER block's key starts here
inline constexpr uint32_t kMaxKeyLenLimit = 4096;
inline constexpr uint64_t kMaxTtlMs = 1ull << 40;
inline constexpr uint64_t kMaxParticipants = 65535;  // owner field is 16 bits

// OFD lock bytes of the segment file (locks may lie beyond EOF).
inline constexpr off_t kInitLockByte = 0;                  // held by whoever initialises
inline constexpr off_t kJanitorLockByte = 1;               // held by the janitor daemon
inline constexpr off_t kProcLockBase = 64;                 // + process record index
inline constexpr off_t kRecoverLockBase = off_t{1} << 24;  // + record being recovered

enum InitState : uint32_t { kUninit = 0, kInitializing = 1, kReady = 2, kSuperseded = 3 };

// The header, at offset 0. Written only at initialisation, except the
// words marked "shared", each on its own cache line.
struct Header {
  uint64_t magic;
  uint32_t layout_version;
  uint32_t init_state;  // shared: InitState; release on kReady, pairs with attach's acquire
  uint64_t abi_fingerprint;
  uint64_t total_size;

  // Geometry: every region is [off, off + size) inside total_size.
  uint64_t proc_off, n_procs;     // ProcRecord[n_procs]
  uint64_t part_off, n_parts;     // ParticipantRecord[n_parts]
  uint64_t ptab_off;              // page table: uint64_t[n_pages]
  uint64_t bitmap_off;            // uint64_t[n_pages * bitmap_words]
  uint64_t bitmap_words;          // per page
  uint64_t index_off, n_buckets;  // Bucket[n_buckets]
  uint64_t data_off, n_pages;     // pages of page_size bytes
  uint32_t page_shift;
  uint32_t n_classes;
  uint32_t class_size[kMaxClasses];  // bytes, multiples of kBlockUnit, >= 64, increasing

  // Limits and policy.
  uint64_t max_items;
  uint32_t max_key_len, max_value_len;
  uint32_t evict_policy;
  uint32_t mode;

  // Hashing and time.
  uint64_t hash_seed;
  uint64_t epoch_ns;  // CLOCK_MONOTONIC at creation; segment time = now - epoch
  char boot_id[40];   // /proc/sys/kernel/random/boot_id at creation
  uint64_t created_realtime_ns;
  uint32_t creator_pid;
  uint32_t reserved0;

  alignas(kCacheLine) uint64_t cas_next;                 // shared: cas token ranges (fetch_add)
  alignas(kCacheLine) uint64_t recovered;                // shared: processes recovered so far
  alignas(kCacheLine) uint64_t retired[16];              // shared: stats of departed participants
  alignas(kCacheLine) uint64_t class_hand[kMaxClasses];  // shared: CLOCK hands
  alignas(kCacheLine) uint64_t janitor_pid;              // shared: pid of the janitor, 0 = none

  // Near cache of an upstream Redis (DESIGN.md §10), written by the daemon
  // that holds the invalidation stream (shmkvd --upstream), read by the
  // near-cache clients. All zero: not a near cache.
  //   upstream_state: generation (62) | state (2), one word so that a
  //     client can tell whether any change happened between two reads;
  //   upstream_heartbeat_ms: segment time up to which every invalidation
  //     of an acknowledged write has been applied (the send time of the
  //     last ping whose answer came back on the stream); never decreases;
  //   upstream_config_seq: seqlock over the rest (odd while written).
  alignas(kCacheLine) uint64_t upstream_state;  // shared
  uint64_t upstream_heartbeat_ms;               // shared
  uint64_t upstream_max_lag_ms;
  uint64_t upstream_config_seq;
  char upstream_url[256];
  char upstream_prefixes[512];
};
static_assert(sizeof(Header) <= kHeaderSize);
static_assert(offsetof(Header, magic) == 0);
static_assert(offsetof(Header, init_state) == 12);
static_assert(offsetof(Header, cas_next) % kCacheLine == 0);
static_assert(offsetof(Header, retired) % kCacheLine == 0);

// ---- Index ---------------------------------------------------------------
// A slot is two words changed together by a 16-byte CAS (Invariant V: every
// change of state, offset or tag bumps the version; only R may change alone).
//   ref : tag(16) | state(2) | R(1) | N(1) | class(6) | block offset/16 (38)
//   meta: version(32) | coarse expiry (32): seconds since epoch, rounded up,
//         0 = none
struct alignas(16) Slot {
  uint64_t ref;
  uint64_t meta;
};
struct alignas(kCacheLine) Bucket {
  Slot slot[4];
};
static_assert(sizeof(Slot) == 16 && alignof(Slot) == 16);
static_assert(sizeof(Bucket) == 64 && alignof(Bucket) == 64);

enum SlotState : uint64_t { kEmpty = 0, kPending = 1, kLive = 2 };

namespace ref {
inline constexpr int kTagShift = 48, kStateShift = 46, kRShift = 45, kNShift = 44, kClassShift = 38;
inline constexpr uint64_t kOffMask = (1ull << 38) - 1;
inline constexpr uint64_t kRBit = 1ull << kRShift;
inline constexpr uint64_t kNBit = 1ull << kNShift;
constexpr uint64_t Make(uint64_t tag, uint64_t state, bool r, bool n, uint64_t cls,
                        uint64_t off_units) {
  return (tag << kTagShift) | (state << kStateShift) | (uint64_t{r} << kRShift) |
         (uint64_t{n} << kNShift) | (cls << kClassShift) | (off_units & kOffMask);
}
constexpr uint64_t Tag(uint64_t r) { return r >> kTagShift; }
constexpr uint64_t State(uint64_t r) { return (r >> kStateShift) & 3; }
constexpr bool R(uint64_t r) { return (r & kRBit) != 0; }
constexpr bool N(uint64_t r) { return (r & kNBit) != 0; }
constexpr uint64_t Class(uint64_t r) { return (r >> kClassShift) & 63; }
constexpr uint64_t OffUnits(uint64_t r) { return r & kOffMask; }  // offset / kBlockUnit
constexpr uint64_t WithoutR(uint64_t r) { return r & ~kRBit; }
}  // namespace ref

namespace meta {
constexpr uint64_t Make(uint32_t version, uint32_t coarse_exp) {
  return (uint64_t{version} << 32) | coarse_exp;
}
constexpr uint32_t Version(uint64_t m) { return static_cast<uint32_t>(m >> 32); }
constexpr uint32_t CoarseExp(uint64_t m) { return static_cast<uint32_t>(m); }
}  // namespace meta

// ---- Blocks --------------------------------------------------------------
// A block is a class-sized piece of a page, 16-byte aligned (kBlockUnit).
// A BYTES block:
//   +0  state : st(8) | owner participant(16) | gen(40)   (CAS only)
//   +8  cas token (user-visible version of this value; bit 63 clear)
//   +16 value_len (low 32) | user_flags (high 32)
//   +24 kx: expiry, ms of segment time (low 48; 0 = none) | key_len (13) |
//       flags (3)
//   +32 key bytes, then value bytes
// A BYTES block is immutable while linked (Invariant B): readers rely on it.
// It stores no hash: whoever needs it (recovery, the CLOCK sweep) hashes
// the key, and readers compare the key itself once the slot's tag matched.
// A 16-byte key with a 64-byte value takes 112 bytes.
//
// A COUNTER block (what incr and throttle write) holds an int64 that incr
// changes in place. Its value is shown as decimal text:
//   +0  state, as above
//   +8  kCounterMark (bit 63: how a reader tells the two kinds apart)
//   +16 the pair P, 16-byte aligned, changed only by a 16-byte CAS:
//   +16   cas token of the current value (bit 63: sealed)
//   +24   the value (int64)
//   +32 0 (low 32: the text's length is computed) | user_flags (high 32)
//   +40 kx, as above
//   +48 key bytes, and nothing after them (a 16-byte key fills 64 bytes)
// Every increment takes a fresh cas token, never used before, so a P read
// while the block was linked can only be matched again by this block: a
// 16-byte CAS that lands after the block was freed fails, as the bytes there
// are another counter's P (a fresh token) or a BYTES block's lengths and kx
// (its expiry to the millisecond, never a user's bytes when the page kept
// its class grid). A writer that replaces a counter block on the strength of
// what it read (a cas-checked store or delete, touch, the copy-on-write of
// throttle) first seals it: P's token gets bit 63, which no increment
// expects, so the block is immutable from then on, like a BYTES block.
// Increments that land between an unlink and the free are ordered before
// the unlink (design-notes §4.6).
enum BlockState : uint64_t { kFree = 0, kAlloc = 1, kLinked = 2, kKilled = 3 };
inline constexpr uint64_t kBlockFlagNoEvict = 1;
inline constexpr uint64_t kCounterSealBit = uint64_t{1} << 63;
inline constexpr uint64_t kMaxExpiry = (uint64_t{1} << 48) - 1;
// The kx word (boff::kKx) and its fields (an expiry past kMaxExpiry, some
// 8 900 years of segment time, is kept as kMaxExpiry).
namespace kx {
constexpr uint64_t Make(uint64_t expiry, uint64_t klen, uint64_t flags) {
  return (expiry < kMaxExpiry ? expiry : kMaxExpiry) | (klen << 48) | (flags << 61);
}
constexpr uint64_t Expiry(uint64_t w) { return w & kMaxExpiry; }
constexpr uint16_t KeyLen(uint64_t w) { return static_cast<uint16_t>((w >> 48) & 0x1fff); }
constexpr uint8_t Flags(uint64_t w) { return static_cast<uint8_t>(w >> 61); }
}  // namespace kx
static_assert(kMaxKeyLenLimit < 0x2000, "key_len has 13 bits in kx");
inline constexpr uint64_t kCounterMark = uint64_t{1} << 63;
// Whether the word at boff::kCas is a COUNTER block's; the cas token of
// P's token word (the seal bit off).
constexpr bool IsCounter(uint64_t word8) { return (word8 & kCounterMark) != 0; }
constexpr uint64_t CounterCas(uint64_t token) { return token & ~kCounterSealBit; }

namespace bstate {
constexpr uint64_t Make(uint64_t st, uint64_t owner, uint64_t gen) {
  return (gen << 24) | (owner << 8) | st;
}
constexpr uint64_t St(uint64_t s) { return s & 0xff; }
constexpr uint64_t Owner(uint64_t s) { return (s >> 8) & 0xffff; }
constexpr uint64_t Gen(uint64_t s) { return s >> 24; }
inline constexpr uint64_t kGenMask = (1ull << 40) - 1;
}  // namespace bstate

namespace boff {
inline constexpr uint32_t kState = 0, kCas = 8, kLens = 16, kKx = 24;
// COUNTER blocks
inline constexpr uint32_t kPairToken = 16, kPairValue = 24, kCounterLens = 32, kCounterKx = 40;
static_assert(kPairToken % 16 == 0 && kBlockUnit % 16 == 0, "P is 16-byte aligned");
}  // namespace boff

// ---- Page table ----------------------------------------------------------
// One word per page: class + 1 (8; 0 = unassigned) | state (8) | owner
// participant (16, while draining or formatting) | epoch (32, +1 each time
// the page is drained back to unassigned). A page serves one size class
// until it is drained: its blocks are then all reserved by the drainer, so
// no other participant can touch a block word of the old class grid, and
// the page goes back to unassigned. Assigning a page that was used before
// formats its block states with generations from its new epoch.
// Page bitmaps: bit set = block probably in use (hint only; the block state
// word is the truth). A zero page is all free, so a fresh page needs no
// formatting.
namespace pword {
// kContinuation: a page of a run (a block larger than a page spans a run of
// contiguous pages; the first is the head, the owner field of the others
// is their distance to it).
enum : uint64_t { kNormal = 0, kDraining = 1, kFormatting = 2, kContinuation = 3 };
constexpr uint64_t Make(uint64_t cls1, uint64_t st, uint64_t owner, uint64_t epoch) {
  return (epoch << 32) | (owner << 16) | (st << 8) | cls1;
}
constexpr uint64_t Cls1(uint64_t w) { return w & 0xff; }
constexpr uint64_t St(uint64_t w) { return (w >> 8) & 0xff; }
constexpr uint64_t Owner(uint64_t w) { return (w >> 16) & 0xffff; }
constexpr uint64_t Epoch(uint64_t w) { return w >> 32; }
constexpr bool UsableFor(uint64_t w, uint32_t cls) {
  return Cls1(w) == cls + 1 && St(w) == kNormal;
}
// First block generation of a page formatted in this epoch.
constexpr uint64_t GenBase(uint64_t epoch) { return (epoch << 24) & ((1ull << 40) - 1); }
}  // namespace pword

// ---- Registry ------------------------------------------------------------
// Process record: state word st(8) | janitor-of-recovery(16) | inc(40).
// A process holds the OFD write lock on byte kProcLockBase + index while it
// is attached; the kernel drops it on death, which is how death is seen.
enum ProcState : uint64_t { kProcFree = 0, kProcActive = 1, kProcRecovering = 2 };
struct alignas(kCacheLine) ProcRecord {
  uint64_t state;
  uint64_t pid;
  uint64_t attach_realtime_ns;
  uint64_t reserved[5];
};
static_assert(sizeof(ProcRecord) == 64);

// Participant record: one per (process, thread, handle). Owner ids in block
// states are participant indexes.
enum PartState : uint64_t { kPartFree = 0, kPartActive = 1 };
enum StatIndex : uint32_t {
  kStatGets,
  kStatHits,
  kStatMisses,
  kStatSets,
  kStatDeletes,
  kStatIncrs,
  kStatCasFailures,
  kStatEvictions,
  kStatExpirations,
  kStatItems /* signed delta */,
  kStatMemUsed /* signed delta */,
  kStatCount
};
struct alignas(kCacheLine) ParticipantRecord {
  uint64_t state;  // st(8) | proc index(24) | inc(32)
  // Intent (design-notes §6.1 R3): the block this participant is unlinking
  // and will free, so that recovery can free it if the owner dies between
  // the unlink and the free. Written before the unlinking CAS.
  uint64_t inflight_off;  // block offset / kBlockUnit, + 1 (0 = none)
  uint64_t inflight_gen;
  uint64_t reserved0[5];
  alignas(kCacheLine) uint64_t stats[16];  // single writer: its owner thread
};
static_assert(sizeof(ParticipantRecord) == 192);
static_assert(kStatCount <= 16);

static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<uint32_t>::is_always_lock_free);

// Changes whenever anything above changes shape.
constexpr uint64_t AbiFingerprint() {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
  mix(0x01020304);  // endianness marker
  mix(sizeof(void*));
  mix(kCacheLine);
  mix(sizeof(Header));
  mix(sizeof(Slot));
  mix(sizeof(Bucket));
  mix(sizeof(ProcRecord));
  mix(sizeof(ParticipantRecord));
  mix(kBlockHeaderSize);
  mix(kCounterHeaderSize);
  mix(kBlockUnit);
  mix(kLayoutVersion);
  mix(3);  // hash algorithm id: XXH3-128
  return h;
}

}  // namespace shmkv::internal

#endif  // SHMKV_SRC_LAYOUT_H_
