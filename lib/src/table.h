// The index and its protocols.
//
// OVERVIEW. One segment holds a set-associative index and a data area of
// blocks. Every key hashes (XXH3-128, seeded per segment) to two buckets;
// a bucket is one cache line of four 16-byte slots, so a key lives in one of
// 8 candidate slots and never moves: no probe chains, no tombstones, no
// rehash. A slot points to a block that holds the key, the value and its
// metadata. Processes read and write the segment directly; no operation
// waits for another process (DESIGN.md §3.1).
//
// LAYOUT (offsets from the segment base; details in layout.h)
//   Header        4 KiB: magic, layout version, ABI fingerprint, geometry,
//                 hash seed, clock epoch, boot id; cas ranges, CLOCK hands
//   ProcRecord    [n_procs]  64 B: one per attached process (OFD lock byte)
//   Participant   [n_parts] 192 B: one per thread of a process; owner id of
//                 blocks, unlink intent, stats counters (single writer)
//   Bucket        [n_buckets] 64 B = Slot[4]; slot = ref | meta (16 B)
//   Page table    [n_pages] class of each page, assigned once by CAS
//   Page bitmaps  one bit a block: "probably in use" (hint only)
//   Data          [n_pages] pages carved into one size class each
//
// READ (get). Load meta then ref of each candidate (acquire); if LIVE with
// the key's tag, copy the block (relaxed atomic loads; any byte may be
// garbage if the block is being recycled, so every length is clamped to the
// class size first), then fence and re-load the slot: the copy is valid iff
// the slot is unchanged (Invariant 1 + 3). Readers write nothing to shared
// memory, except setting a cleared CLOCK bit once per revolution.
//
// COUNTERS (incr). incr writes a COUNTER block (layout.h) once, then adds
// in place: one 16-byte CAS on the block's pair {cas token, value}, from
// the pair read inside a validated window to {fresh token, sum}; the slot
// is not touched, so a hot counter moves one cache line per increment.
// Readers read the pair as token, value, token. A writer that replaces a
// counter on the strength of what it read seals it first (token bit 63),
// after which it is as immutable as any block; increments landing between
// an unlink and its free are ordered before the unlink.
//
// UPDATE (set of a present key, delete, evict, expire, touch). Write a
// whole new block (copy-on-write), mark it LINKED, record the old block in
// the participant's intent word, then one 16-byte CAS swaps the slot and
// bumps its version; whoever unlinked a block frees it (CAS on its state).
// An update's freed block is held for the writer's next allocation of its
// class: its page-bitmap hint stays "in use", so taking it back is one CAS
// on its state and neither side writes the bitmap (alloc.cc, ClaimReused);
// closing, thread exit and recovery let held blocks go.
//
// INSERT of an absent key (insert_new, design-notes §4.4). Claim an EMPTY
// candidate as PENDING (invisible to readers, block complete), then decide
// among all PENDING claims for the key with a CAS on each claim's *block*
// state: ALLOC -> LINKED wins, ALLOC -> KILLED loses. The lowest canonical
// position wins; a decider kills every higher claim before linking the
// lowest; anyone can finish either outcome (promote PENDING -> LIVE, or
// empty a KILLED claim), so a stopped or dead inserter blocks nobody.
//
// INVARIANTS (cited in the code as "Invariant (n)")
//  (1) A slot's state, tag and block offset change only by a 16-byte CAS
//      that increments its version. Only the CLOCK bit R changes alone.
//  (2) A LIVE slot points to a LINKED block of the slot's class whose key
//      hashes to this slot's bucket pair; at most one LIVE slot per key.
//  (3) A linked block is never written (its bytes are immutable until the
//      unlink that bumps the slot version), so a validated copy is exact;
//      the one exception is a COUNTER block's pair, changed only by a
//      16-byte CAS and read as one (token, value, token).
//  (4) A block is freed only after the CAS that made it unreachable, by the
//      participant that did that CAS (or by recovery, if it died: its
//      intent word names the block). free is a CAS on (state, gen), so it
//      happens once; gen changes on every reuse, so stale frees fail.
//  (5) Ownership is recorded in the same CAS that acquires a block (owner
//      id in the state word), so every block a dead process held is found
//      by scanning block states for its participant ids.
//  (6) PENDING slots are never returned, evicted or counted as items.
//  (7) Every offset and length read from shared memory is bounds-checked
//      before use (a corrupted segment gives wrong answers or EBADSEG,
//      never an out-of-bounds access).
//
// DEAD PROCESSES. A process holds an OFD lock on its byte of the segment
// file; the kernel drops it on death. shmkv_recover (any process; later the
// janitor) finds records whose lock is gone and, for each participant of
// the dead process: frees the block of its unlink intent if nothing
// references it; for each block it owns (full scan of block states): an
// undecided PENDING claim is killed and emptied, a decided one promoted,
// an unreferenced ALLOC/LINKED/KILLED block freed; then folds its stats
// into the retired counters and frees the records. Every step is an
// idempotent CAS, so two recoverers or a recoverer that dies are harmless.
//
// PAGES. A page serves one size class until it is drained. When a class
// has no free block and no unassigned page is left, a writer takes, in
// order: an empty page of another class; a page of another class whose
// sampled entries are all older (by cas token, which orders writes) than
// the oldest it samples of its own class; its own CLOCK victim; any page
// the policy lets go. Taking a page drains it (evicting what the policy
// allows, reserving every block as ALLOC(me) so that no one else can
// touch a word of the old grid), hands it back unassigned, and formats it
// for its class with block generations from the page's new epoch. A drainer
// or formatter that dies is undone by recovery (alloc.cc). A block larger
// than a page occupies a run of contiguous pages (head + continuations),
// taken from unassigned pages or by draining the least used window.
//
// TRADE-OFFS. Copy-on-write makes every write but an increment allocate,
// in exchange for one validation rule for every read and a cas token that
// changes on every write. A bucket
// pair at load 0.75 loses about 0.3 % of inserts to premature eviction
// (design-notes §3.3). Capacity is fixed at creation. Pages are at most
// 1/16 of the data area, so that trading them between classes evicts
// little at a time; values are capped at a quarter of the data area.
//
// RESIDUAL RISK. Every CAS on a block state word re-checks the page's grid
// (class, epoch) between reading the word and the CAS. A participant
// stalled exactly between that check and its CAS, for as long as it takes
// to drain, reassign, format and fill the page, could still match its
// stale word against new contents: that needs the exact 64-bit word at
// that address, the order of the slot version wrap (design-notes §6.5).
// Likewise an increment stalled between its validated read of a counter's
// pair and its CAS lands only on the same 16 bytes: its token is unique, so
// after the block is reused that needs another block's 64-bit hash (or, once
// the page serves another class, value bytes) equal to that token.
// A stopped drainer or formatter pins its page (or run) until it resumes
// or dies: bounded capacity, never a wait.
//
// VERSIONING. Any change to layout.h bumps kLayoutVersion; segments of
// another version, ABI fingerprint or size are refused with SHMKV_EBADSEG.
#ifndef SHMKV_SRC_TABLE_H_
#define SHMKV_SRC_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "atomics.h"
#include "layout.h"
#include "shmkv/shmkv.h"

namespace shmkv::internal {

// Process-local view of a mapped, validated segment.
struct View {
  unsigned char* base = nullptr;
  Header* hdr = nullptr;
  Bucket* buckets = nullptr;
  uint64_t n_buckets = 0;
  uint64_t* ptab = nullptr;
  uint64_t* bitmaps = nullptr;
  uint64_t bitmap_words = 0;
  unsigned char* data = nullptr;
  uint64_t data_off = 0;
  uint64_t n_pages = 0;
  uint32_t page_shift = 0;
  uint64_t page_size = 0;
  uint32_t n_classes = 0;
  uint32_t class_size[kMaxClasses] = {};
  uint32_t class_bpp[kMaxClasses] = {};    // blocks per page (1 for runs)
  uint32_t class_pages[kMaxClasses] = {};  // pages per block run (1: not a run)
  uint64_t class_inv[kMaxClasses] = {};    // 2^40 / (class size in kBlockUnit units) + 1
  // ClassFor's answer for block sizes up to kClassLookupUnits * kBlockUnit
  // bytes, by size in units (class sizes are multiples of it); 0xff: none.
  static constexpr uint32_t kClassLookupUnits = 4096;
  uint8_t class_of_units[kClassLookupUnits + 1] = {};
  ProcRecord* procs = nullptr;
  uint64_t n_procs = 0;
  ParticipantRecord* parts = nullptr;
  uint64_t n_parts = 0;
  uint64_t seed = 0;
  uint64_t epoch_ns = 0;
  uint32_t max_key_len = 0, max_value_len = 0, evict_policy = 0;

  void Init(unsigned char* segment_base);

  // Block at an offset in kBlockUnit units from the segment base, or
  // nullptr if the offset is not the start of a block of class cls inside
  // the data area (Invariant 7).
  unsigned char* BlockAt(uint64_t off_units, uint64_t cls) const {
    if (cls >= n_classes) return nullptr;
    const uint64_t off = off_units * kBlockUnit;
    if (off < data_off) return nullptr;
    const uint64_t rel = off - data_off;
    const uint64_t page = rel >> page_shift;
    if (page >= n_pages) return nullptr;
    const uint64_t unit = (rel & (page_size - 1)) / kBlockUnit;
    if (class_pages[cls] > 1) {  // a run: one block, at the start of its head page
      if (unit != 0 || page + class_pages[cls] > n_pages) return nullptr;
      return base + off;
    }
    // unit / class size without a division: fixed point with 40 fractional
    // bits, exact for unit < 2^20 (page_shift <= 24) and any class of up to
    // a page (2^20 units: unit x (class_inv x d - 2^40) < 2^40; every unit
    // of every class of the page sizes a segment is created with is checked
    // by block_layout_test): the quotient is p >> 40, and the remainder is 0
    // iff p's fraction is below the factor.
    const uint64_t p = unit * class_inv[cls];
    if ((p & ((uint64_t{1} << 40) - 1)) >= class_inv[cls] || (p >> 40) >= class_bpp[cls])
      return nullptr;
    return base + off;
  }
  uint64_t PageOf(const unsigned char* block) const {
    return static_cast<uint64_t>(block - data) >> page_shift;
  }
  // The index in its page of a block of class cls (0 for the head of a run),
  // by the reciprocal BlockAt uses: exact, since the offset is a multiple of
  // the class size.
  uint64_t IndexInPage(const unsigned char* block, uint32_t cls) const {
    const uint64_t unit = (static_cast<uint64_t>(block - data) & (page_size - 1)) / kBlockUnit;
    return (unit * class_inv[cls]) >> 40;
  }
  uint64_t* BitmapOf(uint64_t page) const { return bitmaps + page * bitmap_words; }
};

struct KeyHash {
  uint64_t lo;  // the low half: its halves pick the buckets
  uint64_t hi;  // the high half: its top 16 bits are the tag
  uint64_t tag() const { return hi >> 48; }
};

KeyHash HashKey(const View& v, const void* key, size_t len);
// The two candidate buckets of a hash (distinct when n_buckets > 1).
void BucketsOf(const View& v, const KeyHash& h, uint64_t* b1, uint64_t* b2);

#if defined(SHMKV_TESTING)
int ProbeLiveCopies(const View& v, std::string_view key, std::string* why);
#endif

}  // namespace shmkv::internal

#endif  // SHMKV_SRC_TABLE_H_
