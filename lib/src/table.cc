#include "table.h"

// The hash is inlined (XXH_INLINE_ALL): for short keys the call into
// libxxhash cost as much as the hashing. Same algorithm, same values.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>
#include <limits>
#include <thread>

#include "handle.h"

namespace shmkv::internal {

void View::Init(unsigned char* segment_base) {
  base = segment_base;
  hdr = reinterpret_cast<Header*>(base);
  buckets = reinterpret_cast<Bucket*>(base + hdr->index_off);
  n_buckets = hdr->n_buckets;
  ptab = reinterpret_cast<uint64_t*>(base + hdr->ptab_off);
  bitmaps = reinterpret_cast<uint64_t*>(base + hdr->bitmap_off);
  bitmap_words = hdr->bitmap_words;
  data = base + hdr->data_off;
  data_off = hdr->data_off;
  n_pages = hdr->n_pages;
  page_shift = hdr->page_shift;
  page_size = 1ull << page_shift;
  n_classes = hdr->n_classes;
  for (uint32_t c = 0; c < n_classes; ++c) {
    class_size[c] = hdr->class_size[c];
    const bool run = class_size[c] > page_size;
    class_bpp[c] = run ? 1 : static_cast<uint32_t>(page_size / class_size[c]);
    class_pages[c] = run ? static_cast<uint32_t>(class_size[c] / page_size) : 1;
    class_inv[c] = (uint64_t{1} << 40) / (class_size[c] / kBlockUnit) + 1;
  }
  for (uint32_t units = 0, c = 0; units <= kClassLookupUnits; ++units) {
    while (c < n_classes && class_size[c] < uint64_t{units} * kBlockUnit) ++c;
    class_of_units[units] = c < n_classes ? static_cast<uint8_t>(c) : 0xff;
  }
  procs = reinterpret_cast<ProcRecord*>(base + hdr->proc_off);
  n_procs = hdr->n_procs;
  parts = reinterpret_cast<ParticipantRecord*>(base + hdr->part_off);
  n_parts = hdr->n_parts;
  seed = hdr->hash_seed;
  epoch_ns = hdr->epoch_ns;
  max_key_len = hdr->max_key_len;
  max_value_len = hdr->max_value_len;
  evict_policy = hdr->evict_policy;
}

// Flattened: XXH3's dispatch for short keys is otherwise a call chain that
// doubled the hash's cost in the callers that do not inline it (a SET: 114
// instructions against 51 in the flattened OpGet).
[[gnu::flatten]] KeyHash HashKey(const View& v, const void* key, size_t len) {
  const XXH128_hash_t h = XXH3_128bits_withSeed(key, len, v.seed);
  return {h.low64, h.high64};
}

void BucketsOf(const View& v, const KeyHash& h, uint64_t* b1, uint64_t* b2) {
  // Lemire's multiply-shift range reduction: any bucket count works.
  *b1 = ((h.lo & 0xffffffffull) * v.n_buckets) >> 32;
  *b2 = ((h.lo >> 32) * v.n_buckets) >> 32;
  if (*b2 == *b1) *b2 = (*b1 + 1) % v.n_buckets;
}

namespace {

constexpr int kAttempts = 64;  // bounded retries before EBUSY on the insert path
// Retries of a write that keep failing for no reason a live segment can
// have (every retry is caused by another process's completed step, which
// cannot happen this many times in a row on one key): the segment is corrupt.
constexpr int kCorruptRetries = 1 << 16;

// The 8 candidate slots of a key: its two buckets, 4 slots each.
struct Cands {
  Bucket* b[2];
  Slot* s(int i) const { return &b[i >> 2]->slot[i & 3]; }
};

[[gnu::always_inline]] inline Cands CandidatesOf(const View& v, const KeyHash& h) {
  uint64_t b1, b2;
  BucketsOf(v, h, &b1, &b2);
  // Both lines now: a key in b2 (or a miss) needs them both, and the two
  // fetches then overlap instead of queueing behind each other.
  __builtin_prefetch(&v.buckets[b1]);
  __builtin_prefetch(&v.buckets[b2]);
  return {{&v.buckets[b1], &v.buckets[b2]}};
}

uint64_t* StateWord(unsigned char* blk) { return reinterpret_cast<uint64_t*>(blk); }

// Block header fields, read racily (validated by the caller). For a
// COUNTER block (layout.h) vlen is the length of its decimal text and cas
// the token of P without the seal bit.
struct BlockMeta {
  uint64_t cas, expiry;
  uint32_t user_flags, vlen;
  uint16_t klen;
  uint16_t key_off;  // where the key starts: kBlockHeaderSize or kCounterHeaderSize
  uint8_t flags;
  bool counter;
  uint32_t stored;  // bytes after the key: vlen, or 0 for a COUNTER block
  uint64_t ptok;    // COUNTER: P's token as read (seal bit included)
  int64_t number;   // COUNTER: P's value
};

uint32_t DecimalLen(int64_t n) {
  char text[24];
  return static_cast<uint32_t>(std::to_chars(text, text + sizeof(text), n).ptr - text);
}

uint64_t* PairOf(unsigned char* blk) { return reinterpret_cast<uint64_t*>(blk + boff::kPairToken); }

// The lengths word and kx of a block, wherever its kind keeps them.
void ReadLensKx(uint64_t lens, uint64_t kxw, BlockMeta* m) {
  m->vlen = static_cast<uint32_t>(lens);
  m->user_flags = static_cast<uint32_t>(lens >> 32);
  m->klen = kx::KeyLen(kxw);
  m->flags = kx::Flags(kxw);
  m->expiry = kx::Expiry(kxw);
}

// P of a counter block as one pair: its token, its value, then the token
// again. A token is never used twice, so the same token on both sides
// means no CAS came between the loads (which stay in order).
[[gnu::noinline]] void ReadCounter(const unsigned char* blk, BlockMeta* m) {
  ReadLensKx(WordAt(blk, boff::kCounterLens), WordAt(blk, boff::kCounterKx), m);
  const auto* tok = reinterpret_cast<const uint64_t*>(blk + boff::kPairToken);
  const auto* val = reinterpret_cast<const uint64_t*>(blk + boff::kPairValue);
  uint64_t t, n;
  for (;;) {
    t = LoadAcquire(tok);
    n = LoadAcquire(val);
    if (LoadAcquire(tok) == t) break;
    CpuRelax();  // an increment landed meanwhile: it made progress
  }
  m->counter = true;
  m->ptok = t;
  m->cas = CounterCas(t);
  m->number = static_cast<int64_t>(n);
  m->vlen = DecimalLen(m->number);
  m->stored = 0;
  m->key_off = kCounterHeaderSize;
}

[[gnu::always_inline]] inline BlockMeta ReadMeta(const unsigned char* blk) {
  BlockMeta m;
  const uint64_t w8 = WordAt(blk, boff::kCas);
  if (__builtin_expect(IsCounter(w8), 0)) {
    ReadCounter(blk, &m);
    return m;
  }
  ReadLensKx(WordAt(blk, boff::kLens), WordAt(blk, boff::kKx), &m);
  m.counter = false;
  m.stored = m.vlen;
  m.key_off = kBlockHeaderSize;
  m.ptok = 0;
  m.number = 0;
  m.cas = w8;
  return m;
}

// Asks for the lines of a block of class size `size` after its first (the
// first 256 bytes: a small entry whole) at once: the value's address
// depends on the key length in the first line, so without this, a value
// that reaches into another line would be fetched only once the first
// arrived, one more miss in a row.
[[gnu::always_inline]] inline void PrefetchBlock(const unsigned char* blk, uint32_t size) {
  __builtin_prefetch(blk + 64);
  if (size > 128) [[unlikely]] {
    __builtin_prefetch(blk + 128);
    if (size > 192) __builtin_prefetch(blk + 192);
  }
  __builtin_prefetch(blk + std::min<uint32_t>(size, 256) - 1);
}

// Whether the block's key (and, for a BYTES block, its value) lies inside
// a block of class cls: a racy read must not copy past it.
[[gnu::always_inline]] inline bool Fits(const View& v, uint32_t cls, const BlockMeta& m) {
  return uint64_t{m.key_off} + m.klen + m.stored <= v.class_size[cls];
}

// Whether a block's key length is one a key can have, and its key (and
// value) lie inside the block: its key bytes may be copied out.
[[gnu::always_inline]] inline bool SaneKey(const View& v, uint32_t cls, const BlockMeta& m) {
  return m.klen >= 1 && m.klen <= v.max_key_len && Fits(v, cls, m);
}

// Whether a block's racily read key is key (its length and bytes).
[[gnu::always_inline]] inline bool KeyEquals(const View& v, const unsigned char* blk, uint32_t cls,
                                             const BlockMeta& m, std::string_view key) {
  return m.klen == key.size() && Fits(v, cls, m) &&  // clamp before any copy
         EqualRelaxed(blk, m.key_off, key.data(), key.size());
}

// The value of a block: its bytes, or a counter's decimal text (n bytes).
[[gnu::always_inline]] inline void CopyValue(void* buf, const unsigned char* blk,
                                             const BlockMeta& m) {
  if (__builtin_expect(m.counter, 0)) {
    char text[24];
    std::to_chars(text, text + sizeof(text), m.number);
    std::memcpy(buf, text, m.vlen);
  } else {
    CopyOut(buf, blk, m.key_off + m.klen, m.vlen);
  }
}

// The hash of the key a block holds, from its key bytes read racily (the
// caller validates). False if its lengths are not sane.
bool BlockKeyHash(const View& v, const unsigned char* blk, uint32_t cls, const BlockMeta& m,
                  KeyHash* h) {
  if (!SaneKey(v, cls, m)) return false;
  char key[kMaxKeyLenLimit];
  CopyOut(key, blk, m.key_off, m.klen);
  *h = HashKey(v, key, m.klen);
  return true;
}

void WriteMeta(unsigned char* blk, uint64_t cas, uint32_t user_flags, uint32_t vlen, uint16_t klen,
               uint8_t flags, uint64_t expiry) {
  StoreWordAt(blk, boff::kCas, cas);
  StoreWordAt(blk, boff::kLens, vlen | (uint64_t{user_flags} << 32));
  StoreWordAt(blk, boff::kKx, kx::Make(expiry, klen, flags));
}

// The expiry of a BYTES block not yet published (its key length and flags
// stay).
void SetExpiry(unsigned char* blk, uint64_t expiry) {
  const uint64_t old = WordAt(blk, boff::kKx);
  StoreWordAt(blk, boff::kKx, kx::Make(expiry, kx::KeyLen(old), kx::Flags(old)));
}

// Reads the clock only for an entry with an expiry.
bool Expired(Ctx& c, uint64_t expiry) { return expiry != 0 && expiry <= c.Now(); }

// Re-reads a slot after a racy block read. True iff the slot still holds
// the same link (version and ref, the CLOCK bit aside): then the block was
// linked to it for the whole read (Invariant 1, 3, 4).
[[gnu::always_inline]] inline bool Unchanged(const Slot* s, const SlotWord& w) {
#if defined(SHMKV_TESTING)
  if (shmkv::testing::SkipReadValidation()) return true;
#endif
  ReadFence();
#if defined(SHMKV_TSAN)
  const uint64_t r2 = LoadAcquire(&s->ref);
  const uint64_t m2 = LoadAcquire(&s->meta);
#else
  const uint64_t r2 = LoadRelaxed(&s->ref);
  const uint64_t m2 = LoadRelaxed(&s->meta);
#endif
  return meta::Version(m2) == meta::Version(w.meta) && ref::WithoutR(r2) == ref::WithoutR(w.ref);
}

// A validated look at one LIVE slot.
// Only slot is set by construction (nullptr: nothing found); the rest is
// filled by a hit.
struct Found {
  Slot* slot = nullptr;
  SlotWord w;
  unsigned char* blk;
  uint32_t cls;
  uint64_t gen;
  BlockMeta m;
  bool copied;  // value copied into the caller's buffer
};

enum class Read { kMiss, kHit, kRetry };

// A COUNTER block that increments may still change in place: not sealed
// (Seal) as m read it.
inline bool OpenCounter(const BlockMeta& m) { return m.counter && (m.ptok & kCounterSealBit) == 0; }

// What a reader wants copied out of a COUNTER block: its decimal text (a
// get), or nothing (incr and throttle, which take f->m.number).
enum class CounterText { kRender, kSkip };

// design-notes §4.1: snapshot, racy copy, re-check.
[[gnu::always_inline]] inline Read ReadCandidate(const View& v, Slot* s, std::string_view key,
                                                 const KeyHash& h, void* buf, size_t cap, Found* f,
                                                 CounterText ct) {
  const SlotWord w = LoadSlot(s);  // acquire: pairs with the publishing slot CAS
  if (ref::State(w.ref) != kLive || ref::Tag(w.ref) != h.tag()) return Read::kMiss;
  const uint32_t cls = static_cast<uint32_t>(ref::Class(w.ref));
  unsigned char* blk = v.BlockAt(ref::OffUnits(w.ref), cls);
  if (blk == nullptr) return Read::kMiss;  // Invariant (7): corrupt slot
  PrefetchBlock(blk, v.class_size[cls]);
  const BlockMeta m = ReadMeta(blk);
  const uint64_t st = LoadRelaxed(StateWord(blk));
  const bool eq = KeyEquals(v, blk, cls, m, key);
  bool copied = false;
  if (eq && m.vlen <= cap && (buf != nullptr || m.vlen == 0) &&
      (ct == CounterText::kRender || !m.counter)) {
    if (buf != nullptr) CopyValue(buf, blk, m);
    copied = true;
  }
  if (!Unchanged(s, w)) return Read::kRetry;
  if (!eq) return Read::kMiss;
  f->slot = s;
  f->w = w;
  f->blk = blk;
  f->cls = cls;
  f->gen = bstate::Gen(st);
  f->m = m;
  f->copied = copied;
  return Read::kHit;
}

// The state and tag bits of a ref word, and what they are in a LIVE slot
// that may hold the key of h: one AND and one compare filter a candidate.
inline constexpr uint64_t kLiveTagMask =
    (uint64_t{0xffff} << ref::kTagShift) | (uint64_t{3} << ref::kStateShift);
inline uint64_t LiveTagOf(const KeyHash& h) {
  return (h.tag() << ref::kTagShift) | (uint64_t{kLive} << ref::kStateShift);
}

// Finds the LIVE entry of key (expired ones included), copying its value
// into buf when it fits.
// One load of each candidate's ref word first filters on state and tag, so
// that only a slot that may hold the key is read in full (a 16-bit tag:
// about one candidate in 8 000 passes the filter without holding the key).
bool FindLive(Ctx& c, std::string_view key, const KeyHash& h, const Cands& cs, void* buf,
              size_t cap, Found* f, CounterText ct = CounterText::kRender) {
  const uint64_t want = LiveTagOf(h);
  for (int i = 0; i < 8; ++i) {
    Slot* s = cs.s(i);
    if ((LoadAcquire(&s->ref) & kLiveTagMask) != want) continue;
    for (;;) {
      const Read r = ReadCandidate(c.v, s, key, h, buf, cap, f, ct);
      if (r == Read::kHit) return true;
      if (r == Read::kMiss) break;
      CpuRelax();  // a writer changed this slot meanwhile: it made progress
    }
  }
  return false;
}

// Unlinks a LIVE slot (exactly the word w) and frees its block: delete,
// eviction, expiry. Invariant (4): the intent word covers the gap between
// the unlinking CAS and the free.
bool Unlink(Ctx& c, Slot* s, const SlotWord& w, unsigned char* blk, uint32_t cls, uint64_t gen) {
  ParticipantRecord* rec = c.p->rec;
  const uint64_t off_units = ref::OffUnits(w.ref);
  StoreRelease(&rec->inflight_gen, gen);
  // release: the intent is visible before the unlink; recovery reads it.
  StoreRelease(&rec->inflight_off, off_units + 1);
  SHMKV_CRASHPOINT("unlink.intent");
  const bool ok = CasSlot(s, w, {0, meta::Make(meta::Version(w.meta) + 1, 0)});
  if (ok) {
    SHMKV_CRASHPOINT("unlink.cas");
    // Not held (hold = false): an unlink frees room (eviction, expiry,
    // delete) that the next allocation of anyone, this one included, must
    // find through the bitmap; only an update's block is held.
    FreeBlock(c.v, c.p, blk, cls, gen, /*hold=*/false);
    c.Stat(kStatItems, -1);
  }
  StoreRelease(&rec->inflight_off, 0);
  return ok;
}

// Lazily reclaims an expired entry found by a reader (design-notes §4.7).
void ReclaimExpired(Ctx& c, const Found& f) {
  if (c.p == nullptr) return;  // read-only handles never write
  if (Unlink(c, f.slot, f.w, f.blk, f.cls, f.gen)) c.Stat(kStatExpirations);
}

void FillInfo(Ctx& c, const BlockMeta& m, shmkv_item_info_t* info) {
  if (info == nullptr) return;
  info->cas = m.cas;
  info->ttl_ms = m.expiry == 0 ? -1 : static_cast<int64_t>(m.expiry - c.Now());
  info->user_flags = m.user_flags;
  info->value_len = m.vlen;
  if (info->struct_size >= offsetof(shmkv_item_info_t, write_flags) + sizeof(info->write_flags))
    info->write_flags = (m.flags & kBlockFlagNoEvict) ? SHMKV_WRITE_NOEVICT : 0;
}

// Sets the CLOCK bit of a slot a reader hit (no version bump, Invariant 1).
void Reference(Ctx& c, const Found& f) {
  if (c.p == nullptr || ref::R(f.w.ref)) return;
  CasSlot(f.slot, f.w, {f.w.ref | ref::kRBit, f.w.meta});  // failure: someone else changed it
}

// ---- insert_new (design-notes §4.4) --------------------------------------

enum class Ins { kInserted, kExists, kBusy, kNoSpace, kCorrupt };

// Validated "does slot word w hold key?"; also returns the block state read
// inside the validated window. 1 yes, 0 no, -1 the slot changed.
int KeyIs(const View& v, Slot* s, const SlotWord& w, std::string_view key, const KeyHash& h,
          unsigned char** blk_out, uint64_t* state_out) {
  if (ref::Tag(w.ref) != h.tag()) return 0;
  const uint32_t cls = static_cast<uint32_t>(ref::Class(w.ref));
  unsigned char* blk = v.BlockAt(ref::OffUnits(w.ref), cls);
  if (blk == nullptr) return 0;
  const BlockMeta m = ReadMeta(blk);
  // The same rule as ReadCandidate: an entry readers cannot see must not
  // count as present for inserts either (a corrupt block is no match).
  const bool eq = KeyEquals(v, blk, cls, m, key);
  *state_out = LoadAcquire(StateWord(blk));
  *blk_out = blk;
  if (!Unchanged(s, w)) return -1;
  return eq ? 1 : 0;
}

// PENDING -> LIVE. Whoever's CAS makes the entry visible counts the item
// (exactly once per insert, whoever finishes it).
bool HelpPromote(Ctx& c, Slot* s, const SlotWord& w) {
  const uint64_t r = ref::Make(ref::Tag(w.ref), kLive, true, ref::N(w.ref), ref::Class(w.ref),
                               ref::OffUnits(w.ref));
  if (!CasSlot(s, w, {r, meta::Make(meta::Version(w.meta) + 1, meta::CoarseExp(w.meta))}))
    return false;
  if (c.p != nullptr)
    c.Stat(kStatItems);
  else
    FetchAdd(&c.v.hdr->retired[kStatItems], 1);  // recovery has no participant
  return true;
}

bool HelpEmpty(Slot* s, const SlotWord& w) {
  return CasSlot(s, w, {0, meta::Make(meta::Version(w.meta) + 1, 0)});
}

// ChooseVictim's answers when it picks no candidate.
constexpr int kNoRoom = -1;      // none evictable, and none EMPTY or PENDING
constexpr int kNotAllLive = -2;  // none evictable, but some candidate was
                                 // PENDING (being inserted into) or EMPTY
                                 // (emptied since the caller looked)

// Picks a LIVE candidate to evict for room in the bucket pair
// (design-notes §4.8): expired first, then an 8-sample CLOCK among what the
// policy allows; *expired says which. Or kNoRoom, or kNotAllLive.
int ChooseVictim(Ctx& c, const Cands& cs, SlotWord* w_out, bool* expired) {
  const uint32_t now_s = static_cast<uint32_t>(c.Now() / 1000);
  const uint32_t policy = c.v.evict_policy;
  SlotWord w[8];
  int evictable = -1, unreferenced = -1;
  bool all_live = true;
  *expired = false;
  const int start = static_cast<int>(c.p->Random() & 7);
  for (int k = 0; k < 8; ++k) {
    const int i = (start + k) & 7;
    w[i] = LoadSlot(cs.s(i));
    if (ref::State(w[i].ref) != kLive) {
      // EMPTY or PENDING: the pair is changing. (State 3 is a corrupt
      // slot: no room there, as for an unevictable entry.)
      if (ref::State(w[i].ref) != 3) all_live = false;
      continue;
    }
    const uint32_t cexp = meta::CoarseExp(w[i].meta);
    if (cexp != 0 && cexp <= now_s) {  // provably expired: any policy
      *w_out = w[i];
      *expired = true;
      return i;
    }
    if (policy == SHMKV_EVICT_NONE || ref::N(w[i].ref)) continue;
    if (policy == SHMKV_EVICT_VOLATILE && cexp == 0) continue;
    if (evictable < 0) evictable = i;
    if (!ref::R(w[i].ref) && unreferenced < 0) unreferenced = i;
  }
  if (unreferenced >= 0) {
    *w_out = w[unreferenced];
    return unreferenced;
  }
  if (evictable < 0) return all_live ? kNoRoom : kNotAllLive;
  // Every evictable candidate was referenced: second chance for all, then
  // the first evictable one, exactly as we cleared it (if it changed since,
  // the unlinking CAS fails and the caller retries).
  for (int i = 0; i < 8; ++i) {
    if (ref::State(w[i].ref) == kLive && ref::R(w[i].ref))
      CasSlot(cs.s(i), w[i], {w[i].ref & ~ref::kRBit, w[i].meta});
  }
  *w_out = {w[evictable].ref & ~ref::kRBit, w[evictable].meta};
  return evictable;
}

// Evicts the LIVE slot word w if it still holds it.
bool EvictSlot(Ctx& c, Slot* s, const SlotWord& w, bool expired) {
  if (ref::State(w.ref) != kLive) return false;
  const uint32_t cls = static_cast<uint32_t>(ref::Class(w.ref));
  unsigned char* blk = c.v.BlockAt(ref::OffUnits(w.ref), cls);
  if (blk == nullptr) return false;
  const uint64_t st = LoadAcquire(StateWord(blk));
  if (!Unchanged(s, w) || bstate::St(st) != kLinked) return false;
  if (!Unlink(c, s, w, blk, cls, bstate::Gen(st))) return false;
  c.Stat(expired ? kStatExpirations : kStatEvictions);
  return true;
}

Ins InsertNew(Ctx& c, std::string_view key, const KeyHash& h, const Cands& cs, unsigned char* blk,
              uint32_t cls, uint64_t* gen, bool noevict, uint64_t expiry) {
  const uint64_t me = c.p->index;
  uint64_t* my_state = StateWord(blk);
  const uint64_t my_off = static_cast<uint64_t>(blk - c.v.base) / kBlockUnit;
  int mys = -1;
  SlotWord myw{};
  int tries = 0;
  int rounds = 0;

pre:
  // Existing LIVE entry, or decided pending claims to finish first.
  for (int i = 0; i < 8; ++i) {
    const SlotWord w = LoadSlot(cs.s(i));
    const uint64_t st = ref::State(w.ref);
    if (st != kLive && st != kPending) continue;
    unsigned char* b;
    uint64_t bs;
    const int k = KeyIs(c.v, cs.s(i), w, key, h, &b, &bs);
    if (k < 0) goto pre;
    if (k == 0) continue;
    if (st == kLive) return Ins::kExists;
    if (bstate::St(bs) == kLinked) {
      HelpPromote(c, cs.s(i), w);
      goto pre;
    }
    if (bstate::St(bs) == kKilled) HelpEmpty(cs.s(i), w);
  }

  // claim:
  for (;;) {
    // Power of two choices: claim in the less loaded of the two buckets
    // (0.3 % premature evictions at load 0.75 instead of several %).
    SlotWord sw[8];
    int used[2] = {0, 0};
    for (int i = 0; i < 8; ++i) {
      sw[i] = LoadSlot(cs.s(i));
      used[i / 4] += ref::State(sw[i].ref) != kEmpty;
    }
    const int first = used[1] < used[0] ? 4 : 0;
    int empty = -1;
    for (int k = 0; k < 8 && empty < 0; ++k) {
      const int i = (first + k) & 7;
      if (ref::State(sw[i].ref) == kEmpty) empty = i;
    }
    const SlotWord ew = empty >= 0 ? sw[empty] : SlotWord{};
    if (empty >= 0) {
      const SlotWord mine{ref::Make(h.tag(), kPending, false, noevict, cls, my_off),
                          meta::Make(meta::Version(ew.meta) + 1, CoarseExpiry(expiry))};
      if (!CasSlot(cs.s(empty), ew, mine)) goto pre;
      mys = empty;
      myw = mine;
      SHMKV_CRASHPOINT("insert.claimed");
      break;
    }
    SHMKV_STEP("insert.full_seen");  // no candidate was EMPTY
    SlotWord vw;
    bool expired = false;
    const int victim = ChooseVictim(c, cs, &vw, &expired);
    if (victim >= 0) {
      EvictSlot(c, cs.s(victim), vw, expired);
      if (++tries > kAttempts * 4) return Ins::kBusy;
      goto pre;
    }
    // No room only on one scan that saw all 8 LIVE and unevictable: the
    // candidates may have changed since the scan above found none empty
    // (another writer deleted or evicted them; a process stopped here may
    // resume to find the pair empty).
    if (victim == kNoRoom) return Ins::kNoSpace;
    if (++tries > kAttempts) return Ins::kBusy;
    std::this_thread::yield();  // concurrent inserts into this pair: back off
    goto pre;
  }

decide : {
  // Every rescan follows another participant's step on these 8 slots; a
  // segment that keeps sending us back without end is corrupt.
  if (++rounds > kCorruptRetries) return Ins::kCorrupt;
  struct Claim {
    int pos;
    SlotWord w;
    unsigned char* blk;
    uint64_t gen;
  };
  Claim list[8];
  int n = 0;
  bool mine_listed = false;
  for (int i = 0; i < 8; ++i) {
    const SlotWord w = LoadSlot(cs.s(i));
    const uint64_t st = ref::State(w.ref);
    if (st != kLive && st != kPending) continue;
    unsigned char* b;
    uint64_t bs;
    const int k = KeyIs(c.v, cs.s(i), w, key, h, &b, &bs);
    if (k < 0) goto decide;
    if (k == 0) continue;
    if (st == kLive) {
      if (b == blk) return Ins::kInserted;  // someone promoted our claim
      goto withdraw;
    }
    switch (bstate::St(bs)) {
      case kLinked:
        HelpPromote(c, cs.s(i), w);
        if (b == blk) return Ins::kInserted;
        goto withdraw;
      case kKilled:
        HelpEmpty(cs.s(i), w);
        if (b == blk) {
          if (bs == bstate::Make(kKilled, me, *gen)) goto reclaim;
          return Ins::kInserted;  // not our incarnation any more: we were linked
        }
        continue;
      case kAlloc:
        list[n++] = {i, w, b, bstate::Gen(bs)};
        mine_listed |= b == blk;
        continue;
      default:
        continue;  // a FREE block under a PENDING slot: corrupt, ignore
    }
  }
  if (!mine_listed) {  // our claim is gone: our block state says why
    const uint64_t bs = LoadAcquire(my_state);
    if (bs == bstate::Make(kAlloc, me, *gen)) goto decide;
    if (bs == bstate::Make(kKilled, me, *gen)) goto reclaim;
    // Anything else means we were linked: promoted, then maybe already
    // overwritten and freed (even reused) by others. Never touch it again.
    return Ins::kInserted;
  }
  // The lowest position wins; kill every higher claim first. A higher
  // claim is not always a later one (claims go to the less loaded bucket,
  // and a slot below may empty meanwhile), so it may be decided while we
  // kill it: if it is LINKED after our kill attempt, it won, whatever our
  // CAS saw; linking ours too would make two LIVE entries (Invariant 2).
  for (int j = 1; j < n; ++j) {
    uint64_t* xs = StateWord(list[j].blk);
    uint64_t cur = LoadAcquire(xs);
    if (bstate::St(cur) == kLinked && bstate::Gen(cur) == list[j].gen) goto decide;
    SHMKV_STEP("insert.kill_loaded");
    if (bstate::St(cur) == kAlloc && bstate::Gen(cur) == list[j].gen)
      CasWord(xs, cur, bstate::Make(kKilled, bstate::Owner(cur), list[j].gen));
    cur = LoadAcquire(xs);
    if (bstate::St(cur) == kLinked && bstate::Gen(cur) == list[j].gen) goto decide;
    if (bstate::St(cur) == kKilled && bstate::Gen(cur) == list[j].gen)
      HelpEmpty(cs.s(list[j].pos), list[j].w);
  }
  SHMKV_CRASHPOINT("insert.killed");
  {
    uint64_t* ms = StateWord(list[0].blk);
    uint64_t cur = LoadAcquire(ms);
    if (bstate::St(cur) == kAlloc && bstate::Gen(cur) == list[0].gen &&
        CasWord(ms, cur, bstate::Make(kLinked, bstate::Owner(cur), list[0].gen))) {
      SHMKV_CRASHPOINT("insert.decided");
      HelpPromote(c, cs.s(list[0].pos), list[0].w);
    }
  }
  goto decide;
}

withdraw : {  // another claim won, unless ours was decided meanwhile
  uint64_t expect = bstate::Make(kAlloc, me, *gen);
  CasWord(my_state, expect, bstate::Make(kKilled, me, *gen));
  // Our exact state word is the authority on the outcome (design-notes
  // §4.4, bug 4): not KILLED(me, gen) means we were linked, and the block
  // may since have been overwritten, freed or reused by others.
  if (LoadAcquire(my_state) != bstate::Make(kKilled, me, *gen)) return Ins::kInserted;
  HelpEmpty(cs.s(mys), myw);
  uint64_t killed = bstate::Make(kKilled, me, *gen);
  *gen = (*gen + 1) & bstate::kGenMask;
  CasWord(my_state, killed, bstate::Make(kAlloc, me, *gen));
  return Ins::kExists;
}

reclaim : {  // we were killed: keep the block and try again
  HelpEmpty(cs.s(mys), myw);
  uint64_t killed = bstate::Make(kKilled, me, *gen);
  *gen = (*gen + 1) & bstate::kGenMask;
  CasWord(my_state, killed, bstate::Make(kAlloc, me, *gen));
  mys = -1;
  if (++tries > kAttempts * 4) return Ins::kBusy;
  goto pre;
}
}

// ---- the update path (design-notes §4.3) ---------------------------------

// Seals the counter block f found, exactly as it was read (layout.h): from
// then on no increment lands in it. True if it is sealed with the value f
// holds (or is no counter block); false if an increment came first.
bool Seal(const Found& f) {
  if (!OpenCounter(f.m)) return true;
  const auto n = static_cast<uint64_t>(f.m.number);
  if (!CasPair(PairOf(f.blk), f.m.ptok, n, f.m.ptok | kCounterSealBit, n)) return false;
  SHMKV_CRASHPOINT("counter.sealed");
  return true;
}

// What a replacement was decided on: kBlind, nothing an increment changes
// (a plain store: increments that land in the old counter before it is
// freed are ordered before the store); kRead, the value or cas token f
// read, which a counter must then keep until the swap: it is sealed first.
enum class Decided { kBlind, kRead };

// Swaps our new block for the one f found. True on success (the old block
// is freed); false if the slot changed (our block is ALLOC again) or, with
// kRead, an increment landed in f's counter since f was read.
bool Replace(Ctx& c, const Found& f, unsigned char* blk, uint32_t cls, uint64_t gen,
             const KeyHash& h, bool noevict, uint64_t expiry, Decided decided) {
  if (decided == Decided::kRead && !Seal(f)) return false;
  ParticipantRecord* rec = c.p->rec;
  uint64_t* st = StateWord(blk);
  const uint64_t me = c.p->index;
  uint64_t expect = bstate::Make(kAlloc, me, gen);
  // Our block is ALLOC(me, gen) here by construction; never publish one
  // that is not (Invariant 2).
  if (!CasWord(st, expect, bstate::Make(kLinked, me, gen))) {
    assert(false && "Replace: our block is not ALLOC(me, gen)");
    return false;
  }
  SHMKV_CRASHPOINT("update.linked");
  StoreRelease(&rec->inflight_gen, f.gen);
  StoreRelease(&rec->inflight_off, ref::OffUnits(f.w.ref) + 1);  // release: intent before unlink
  const uint64_t off_units = static_cast<uint64_t>(blk - c.v.base) / kBlockUnit;
  const SlotWord nw{ref::Make(h.tag(), kLive, true, noevict, cls, off_units),
                    meta::Make(meta::Version(f.w.meta) + 1, CoarseExpiry(expiry))};
  const bool ok = CasSlot(f.slot, f.w, nw);
  if (ok) {
    SHMKV_CRASHPOINT("update.swapped");
    FreeBlock(c.v, c.p, f.blk, f.cls, f.gen);
  } else {
    expect = bstate::Make(kLinked, me, gen);
    CasWord(st, expect, bstate::Make(kAlloc, me, gen));
  }
  StoreRelease(&rec->inflight_off, 0);
  return ok;
}

struct NewBlock {
  unsigned char* blk = nullptr;
  uint32_t cls = 0;
  uint64_t gen = 0;
};

int MakeBlock(Ctx& c, std::string_view key, std::string_view val, uint32_t user_flags, bool noevict,
              uint64_t expiry, NewBlock* nb, uint64_t* cas) {
  const int cls = ClassFor(c.v, uint64_t{kBlockHeaderSize} + key.size() + val.size());
  if (cls < 0) return Fail(SHMKV_EVALTOOBIG, "value does not fit the largest size class");
  int rc = 0;
  nb->blk = Alloc(c, static_cast<uint32_t>(cls), &nb->gen, &rc);
  if (nb->blk == nullptr) return rc;
  nb->cls = static_cast<uint32_t>(cls);
  *cas = NextCas(c);
  WriteMeta(nb->blk, *cas, user_flags, static_cast<uint32_t>(val.size()),
            static_cast<uint16_t>(key.size()), noevict ? kBlockFlagNoEvict : 0, expiry);
  CopyIn(nb->blk, kBlockHeaderSize, key.data(), key.size());
  CopyIn(nb->blk, kBlockHeaderSize + key.size(), val.data(), val.size());
  return 0;
}

// A COUNTER block holding number (layout.h): P = {cas, number}.
int MakeCounterBlock(Ctx& c, std::string_view key, int64_t number, uint32_t user_flags,
                     bool noevict, uint64_t expiry, NewBlock* nb, uint64_t* cas) {
  const int cls = ClassFor(c.v, uint64_t{kCounterHeaderSize} + key.size());
  if (cls < 0) return Fail(SHMKV_EVALTOOBIG, "counter does not fit the largest size class");
  int rc = 0;
  nb->blk = Alloc(c, static_cast<uint32_t>(cls), &nb->gen, &rc);
  if (nb->blk == nullptr) return rc;
  nb->cls = static_cast<uint32_t>(cls);
  *cas = NextCas(c);
  const uint64_t flags = noevict ? kBlockFlagNoEvict : 0;
  StoreWordAt(nb->blk, boff::kCas, kCounterMark);
  StoreWordAt(nb->blk, boff::kPairToken, *cas);
  StoreWordAt(nb->blk, boff::kPairValue, static_cast<uint64_t>(number));
  StoreWordAt(nb->blk, boff::kCounterLens, uint64_t{user_flags} << 32);
  StoreWordAt(nb->blk, boff::kCounterKx, kx::Make(expiry, key.size(), flags));
  CopyIn(nb->blk, kCounterHeaderSize, key.data(), key.size());
  return 0;
}

void Discard(Ctx& c, const NewBlock& nb) { FreeBlock(c.v, c.p, nb.blk, nb.cls, nb.gen); }

int InsertResult(Ins r) {
  if (r == Ins::kCorrupt)
    return Fail(SHMKV_EBADSEG, "bad segment: the insert protocol cannot settle (corrupt slots)");
  if (r == Ins::kNoSpace)
    return Fail(SHMKV_ENOSPC,
                "no room: every candidate slot holds an entry that may not be evicted");
  return Fail(SHMKV_EBUSY,
              "the key's candidate slots are being inserted into or emptied concurrently; retry");
}

// Formats and parses the decimal values of incr.
bool ParseDecimal(const char* p, size_t n, int64_t* out) {
  if (n == 0 || n > 20) return false;
  size_t i = 0;
  const bool neg = p[0] == '-';
  if (neg) ++i;
  const size_t digits = n - i;
  if (digits == 0 || digits > 19) return false;
  // Accumulate negatively so that INT64_MIN parses.
  int64_t v = 0;
  for (; i < n; ++i) {
    if (p[i] < '0' || p[i] > '9') return false;
    const int d = p[i] - '0';
    if (v < (std::numeric_limits<int64_t>::min() + d) / 10) return false;
    v = v * 10 - d;
  }
  if (!neg) {
    if (v == std::numeric_limits<int64_t>::min()) return false;
    v = -v;
  }
  *out = v;
  return true;
}

}  // namespace

// ---- verbs ---------------------------------------------------------------

namespace {

// OpGet with the hash and candidates already computed. Reads the clock
// only for an entry with an expiry (Expired).
int GetHashed(Ctx& c, std::string_view key, const KeyHash& h, const Cands& cs, void* buf,
              size_t buf_len, size_t* val_len, shmkv_item_info_t* info) {
  Found f;
  c.Stat(kStatGets);
  const bool found = FindLive(c, key, h, cs, buf, buf_len, &f);
  if (!found || Expired(c, f.m.expiry)) {
    if (found) ReclaimExpired(c, f);
    c.Stat(kStatMisses);
    return SHMKV_ENOTFOUND;
  }
  c.Stat(kStatHits);
  Reference(c, f);
  *val_len = f.m.vlen;
  FillInfo(c, f.m, info);
  if (!f.copied) return SHMKV_ETOOSMALL;
  return 0;
}

}  // namespace

// Flattened: the whole read path in one function (each call level cost
// about 10 instructions of a ~300-instruction get).
[[gnu::flatten]] int OpGet(Ctx& c, std::string_view key, void* buf, size_t buf_len, size_t* val_len,
                           shmkv_item_info_t* info) {
  const KeyHash h = HashKey(c.v, key.data(), key.size());
  return GetHashed(c, key, h, CandidatesOf(c.v, h), buf, buf_len, val_len, info);
}

// design-notes §4.2: a batch goes in groups; each group first hashes every
// key and prefetches its bucket pair, then looks at the ref words of those
// buckets (now arriving together) and prefetches the block of the first
// LIVE slot whose tag matches (the key's, but for a tag collision), and only
// then reads and validates each key as OpGet does. The misses of a group
// overlap instead of queueing one key after the other. The prefetches are
// hints: correctness is GetHashed's. An empty key (one the caller found
// invalid) is skipped, rcs[i] untouched.
void OpMGet(Ctx& c, size_t n, const std::string_view* keys, void* const* bufs,
            const size_t* buf_lens, size_t* val_lens, int* rcs, shmkv_item_info_t* infos) {
  constexpr size_t kGroup = 16;
  KeyHash h[kGroup];
  Cands cs[kGroup];
  for (size_t base = 0; base < n; base += kGroup) {
    const size_t m = std::min(kGroup, n - base);
    for (size_t i = 0; i < m; ++i) {
      if (keys[base + i].empty()) continue;
      h[i] = HashKey(c.v, keys[base + i].data(), keys[base + i].size());
      cs[i] = CandidatesOf(c.v, h[i]);  // prefetches both buckets
    }
    for (size_t i = 0; i < m; ++i) {
      if (keys[base + i].empty()) continue;
      const uint64_t want = LiveTagOf(h[i]);
      for (int j = 0; j < 8; ++j) {
        // relaxed: only a prefetch hint; GetHashed reads the slot properly.
        const uint64_t r = LoadRelaxed(&cs[i].s(j)->ref);
        if ((r & kLiveTagMask) != want) continue;
        const unsigned char* blk =
            c.v.BlockAt(ref::OffUnits(r), static_cast<uint32_t>(ref::Class(r)));
        if (blk != nullptr) {
          __builtin_prefetch(blk);
          PrefetchBlock(blk, c.v.class_size[ref::Class(r)]);
        }
        break;  // the key's slot, but for a tag collision (1 in 65 536 a slot)
      }
    }
    for (size_t i = 0; i < m; ++i) {
      const size_t k = base + i;
      if (keys[k].empty()) continue;
      rcs[k] = GetHashed(c, keys[k], h[i], cs[i], bufs[k], buf_lens[k], &val_lens[k],
                         infos ? &infos[k] : nullptr);
    }
  }
}

int OpGetString(Ctx& c, std::string_view key, std::string* out, shmkv_item_info_t* info) {
  const KeyHash h = HashKey(c.v, key.data(), key.size());
  const Cands cs = CandidatesOf(c.v, h);
  c.Stat(kStatGets);
  for (;;) {
    Found f;
    if (out->capacity() == 0) out->reserve(64);
    out->resize(out->capacity());
    if (!FindLive(c, key, h, cs, out->data(), out->size(), &f) || Expired(c, f.m.expiry)) {
      if (f.slot != nullptr && Expired(c, f.m.expiry)) ReclaimExpired(c, f);
      out->clear();
      c.Stat(kStatMisses);
      return SHMKV_ENOTFOUND;
    }
    if (!f.copied) {
      out->resize(f.m.vlen);  // too small: grow and read again
      continue;
    }
    out->resize(f.m.vlen);
    c.Stat(kStatHits);
    Reference(c, f);
    FillInfo(c, f.m, info);
    return 0;
  }
}

[[gnu::flatten]] int OpStore(Ctx& c, std::string_view key, std::string_view val,
                             const shmkv_write_opts_t& o, uint64_t* new_cas) {
  const KeyHash h = HashKey(c.v, key.data(), key.size());
  const Cands cs = CandidatesOf(c.v, h);
  const bool noevict = o.flags & SHMKV_WRITE_NOEVICT;
  const bool keepttl = o.flags & SHMKV_WRITE_KEEPTTL;
  uint64_t expiry = (!keepttl && o.ttl_ms) ? c.Now() + o.ttl_ms : 0;
  NewBlock nb;
  uint64_t cas = 0;
  if (int rc = MakeBlock(c, key, val, o.user_flags, noevict, expiry, &nb, &cas)) return rc;
  uint64_t block_expiry = expiry;  // what nb's header holds
  auto expire_at = [&](uint64_t e) {
    if (e != block_expiry) SetExpiry(nb.blk, e);
    block_expiry = e;
  };
  for (int attempt = 0;; ++attempt) {
    if (attempt == kCorruptRetries) {
      Discard(c, nb);
      return Fail(SHMKV_EBADSEG, "bad segment: an entry of this key is not readable (corrupt)");
    }
    Found f;
    bool live = FindLive(c, key, h, cs, nullptr, 0, &f);
    if (live && Expired(c, f.m.expiry)) {
      if (o.mode == SHMKV_REPLACE || o.expect_cas != 0) {
        ReclaimExpired(c, f);
        live = false;
      }
    }
    if (live && !Expired(c, f.m.expiry)) {
      if (o.mode == SHMKV_ADD) {
        Discard(c, nb);
        return Fail(SHMKV_EEXIST, "key exists (ADD)");
      }
      if (o.expect_cas != 0 && f.m.cas != o.expect_cas) {
        Discard(c, nb);
        c.Stat(kStatCasFailures);
        return Fail(SHMKV_ECAS, "cas token mismatch: the key changed");
      }
    }
    if (live) {  // update path (an expired entry is replaced in place too)
      const uint64_t e = keepttl && !Expired(c, f.m.expiry) ? f.m.expiry : expiry;
      expire_at(e);
      const Decided d = o.expect_cas != 0 ? Decided::kRead : Decided::kBlind;
      if (Replace(c, f, nb.blk, nb.cls, nb.gen, h, noevict, e, d)) {
        if (Expired(c, f.m.expiry)) c.Stat(kStatExpirations);
        c.Stat(kStatSets);
        if (new_cas) *new_cas = cas;
        return 0;
      }
      continue;
    }
    if (o.mode == SHMKV_REPLACE || o.expect_cas != 0) {
      Discard(c, nb);
      return FailNotFound();
    }
    expire_at(expiry);
    const Ins r = InsertNew(c, key, h, cs, nb.blk, nb.cls, &nb.gen, noevict, expiry);
    if (r == Ins::kInserted) {
      c.Stat(kStatSets);
      if (new_cas) *new_cas = cas;
      return 0;
    }
    if (r == Ins::kExists) continue;  // a concurrent insert won: update it (or EEXIST)
    Discard(c, nb);
    return InsertResult(r);
  }
}

int OpDelete(Ctx& c, std::string_view key, uint64_t expect_cas) {
  const KeyHash h = HashKey(c.v, key.data(), key.size());
  const Cands cs = CandidatesOf(c.v, h);
  for (;;) {
    Found f;
    if (!FindLive(c, key, h, cs, nullptr, 0, &f)) return FailNotFound();
    if (Expired(c, f.m.expiry)) {
      ReclaimExpired(c, f);
      return FailNotFound();
    }
    if (expect_cas != 0 && f.m.cas != expect_cas) {
      c.Stat(kStatCasFailures);
      return Fail(SHMKV_ECAS, "cas token mismatch: the key changed");
    }
    // The token decided: a counter must keep it until the unlink.
    if (expect_cas != 0 && !Seal(f)) continue;
    if (Unlink(c, f.slot, f.w, f.blk, f.cls, f.gen)) {
      c.Stat(kStatDeletes);
      return 0;
    }
  }
}

namespace {

// The decimal entry that incr and throttle read, once per attempt.
struct NumberEntry {
  Found f;
  bool found = false;    // an entry of the key, expired or not
  bool live = false;     // found and not expired
  bool numeric = false;  // live, and its value is a decimal int64: value
  int64_t value = 0;
};

NumberEntry ReadNumber(Ctx& c, std::string_view key, const KeyHash& h, const Cands& cs) {
  NumberEntry e;
  char cur[24];
  // A counter's number is in e.f.m: its decimal text is not rendered.
  e.found = FindLive(c, key, h, cs, cur, 20, &e.f, CounterText::kSkip);
  e.live = e.found && !Expired(c, e.f.m.expiry);
  if (e.live && e.f.m.counter) {
    e.numeric = true;
    e.value = e.f.m.number;
  } else {
    e.numeric = e.live && e.f.copied && ParseDecimal(cur, e.f.m.vlen, &e.value);
  }
  return e;
}

// The write step of incr and throttle when there is no counter block to
// increment in place: publishes `number` in a new COUNTER block, replacing
// the entry read (e) with one slot CAS, or inserting it; a live entry keeps
// its user flags and NOEVICT (noevict: set it in any case). 1: done;
// 0: lost a race (read again); < 0: error.
int PublishNumber(Ctx& c, std::string_view key, const KeyHash& h, const Cands& cs,
                  const NumberEntry& e, int64_t number, uint64_t expiry, bool noevict) {
  const uint32_t user_flags = e.live ? e.f.m.user_flags : 0;
  noevict = noevict || (e.live && (e.f.m.flags & kBlockFlagNoEvict));
  NewBlock nb;
  uint64_t cas;
  if (int rc = MakeCounterBlock(c, key, number, user_flags, noevict, expiry, &nb, &cas)) return rc;
  if (e.found) {
    if (Replace(c, e.f, nb.blk, nb.cls, nb.gen, h, noevict, expiry, Decided::kRead)) {
      if (!e.live) c.Stat(kStatExpirations);
      return 1;
    }
    Discard(c, nb);
    return 0;
  }
  const Ins r = InsertNew(c, key, h, cs, nb.blk, nb.cls, &nb.gen, noevict, expiry);
  if (r == Ins::kInserted) return 1;
  Discard(c, nb);
  if (r == Ins::kNoSpace || r == Ins::kCorrupt) return InsertResult(r);
  if (r == Ins::kBusy) std::this_thread::yield();  // incr and throttle never return EBUSY
  return 0;
}

}  // namespace

int OpIncr(Ctx& c, std::string_view key, int64_t delta, int64_t initial, uint64_t ttl_ms,
           int64_t* result) {
  const KeyHash h = HashKey(c.v, key.data(), key.size());
  const Cands cs = CandidatesOf(c.v, h);
  c.Stat(kStatIncrs);
  for (int attempt = 0;; ++attempt) {
    if (attempt == kCorruptRetries)
      return Fail(SHMKV_EBADSEG, "bad segment: an entry of this key is not readable (corrupt)");
    const NumberEntry e = ReadNumber(c, key, h, cs);
    int64_t next = initial;
    uint64_t expiry = ttl_ms ? c.Now() + ttl_ms : 0;
    if (e.live) {
      if (!e.numeric) return Fail(SHMKV_ENOTNUM, "value is not a decimal 64-bit integer");
      if (__builtin_add_overflow(e.value, delta, &next))
        return Fail(SHMKV_EOVERFLOW, "incr would overflow a signed 64-bit integer");
      expiry = e.f.m.expiry;
      if (OpenCounter(e.f.m)) {
        // In place (design-notes §4.6): one 16-byte CAS on P, from exactly
        // the pair read inside the validated window to a fresh token and
        // the sum; the slot is not touched (but for its CLOCK bit, set as
        // a reader sets it: a counter in use is not cold). Lost to another
        // increment (or a seal): read again.
        const uint64_t cas = NextCas(c);
        SHMKV_CRASHPOINT("incr.in_place");
        if (!CasPair(PairOf(e.f.blk), e.f.m.ptok, static_cast<uint64_t>(e.value), cas,
                     static_cast<uint64_t>(next))) {
          attempt = -1;  // contention, not corruption: every failure is another's success
          continue;
        }
        Reference(c, e.f);
        if (result) *result = next;
        return 0;
      }
    }
    const int rc = PublishNumber(c, key, h, cs, e, next, expiry, false);
    if (rc < 0) return rc;
    if (rc == 0) continue;
    if (result) *result = next;
    return 0;
  }
}

// GCRA (design-notes §4.6): the key holds the theoretical arrival time TAT
// (ns of segment time). A request at `now` is allowed iff
// max(TAT, now) + interval - now <= tolerance (tolerance = burst x
// interval); if allowed, TAT becomes max(TAT, now) + interval, published
// with one slot CAS, so concurrent callers serialise on the slot version
// and none is lost. A denied request changes nothing. The entry expires at
// TAT, when the limiter is back to a full burst: dropping it then changes
// no decision.
int OpThrottle(Ctx& c, std::string_view key, const ThrottleArgs& a, ThrottleResult* out) {
  const KeyHash h = HashKey(c.v, key.data(), key.size());
  const Cands cs = CandidatesOf(c.v, h);
  for (int attempt = 0;; ++attempt) {
    if (attempt == kCorruptRetries)
      return Fail(SHMKV_EBADSEG, "bad segment: an entry of this key is not readable (corrupt)");
    const NumberEntry e = ReadNumber(c, key, h, cs);
    uint64_t tat = a.now_ns;
    if (e.live) {
      if (!e.numeric || e.value < 0)
        return Fail(SHMKV_ENOTNUM, "value is not a rate limiter state (decimal nanoseconds)");
      tat = std::max(tat, static_cast<uint64_t>(e.value));
    }
    const uint64_t next = tat + a.interval_ns;  // no overflow: both < 2^63 (checked by caller)
    const uint64_t ahead = next - a.now_ns;
    if (ahead > a.tolerance_ns) {
      out->allowed = false;
      out->retry_after_ns = ahead - a.tolerance_ns;
      out->remaining = 0;
      return 0;
    }
    // Expires just after TAT (segment ms = ns / 10^6 + 1; clock.h), and is
    // never evicted before: an evicted limiter would grant a new burst. It
    // holds memory only while it is limiting (at most burst x interval).
    const uint64_t expiry = next / 1'000'000 + 2;
    const int rc = PublishNumber(c, key, h, cs, e, static_cast<int64_t>(next), expiry, true);
    if (rc < 0) return rc;
    if (rc == 0) continue;
    out->allowed = true;
    out->retry_after_ns = 0;
    out->remaining = (a.tolerance_ns - ahead) / a.interval_ns;
    return 0;
  }
}

int OpGetStale(Ctx& c, std::string_view key, void* buf, size_t buf_len, size_t* val_len,
               shmkv_item_info_t* info, uint64_t* expired_ms) {
  const KeyHash h = HashKey(c.v, key.data(), key.size());
  const Cands cs = CandidatesOf(c.v, h);
  Found f;
  c.Stat(kStatGets);
  if (!FindLive(c, key, h, cs, buf, buf_len, &f)) {
    c.Stat(kStatMisses);
    return SHMKV_ENOTFOUND;
  }
  const bool expired = Expired(c, f.m.expiry);
  if (expired) {
    c.Stat(kStatMisses);
  } else {
    c.Stat(kStatHits);
    Reference(c, f);
  }
  *val_len = f.m.vlen;
  FillInfo(c, f.m, info);
  if (expired && info != nullptr) info->ttl_ms = 0;
  if (expired_ms != nullptr) *expired_ms = expired ? c.Now() - f.m.expiry + 1 : 0;
  if (!f.copied) return SHMKV_ETOOSMALL;
  return 0;
}

int OpTouch(Ctx& c, std::string_view key, uint64_t ttl_ms) {
  const KeyHash h = HashKey(c.v, key.data(), key.size());
  const Cands cs = CandidatesOf(c.v, h);
  std::string val;
  for (;;) {
    Found f;
    val.resize(val.capacity());
    if (!FindLive(c, key, h, cs, val.data(), val.size(), &f)) return FailNotFound();
    if (Expired(c, f.m.expiry)) {
      ReclaimExpired(c, f);
      return FailNotFound();
    }
    if (!f.copied) {
      val.resize(f.m.vlen);
      continue;
    }
    val.resize(f.m.vlen);
    const uint64_t expiry = ttl_ms ? c.Now() + ttl_ms : 0;
    const bool noevict = f.m.flags & kBlockFlagNoEvict;
    NewBlock nb;
    uint64_t cas;
    // A counter stays one (with the value it is sealed with).
    if (int rc = f.m.counter ? MakeCounterBlock(c, key, f.m.number, f.m.user_flags, noevict, expiry,
                                                &nb, &cas)
                             : MakeBlock(c, key, val, f.m.user_flags, noevict, expiry, &nb, &cas))
      return rc;
    // The copy is exact iff the slot is unchanged (and a counter was sealed
    // unchanged), which the swap checks.
    if (Replace(c, f, nb.blk, nb.cls, nb.gen, h, noevict, expiry, Decided::kRead)) return 0;
    Discard(c, nb);
  }
}

int OpTtl(Ctx& c, std::string_view key, int64_t* ttl_ms) {
  const KeyHash h = HashKey(c.v, key.data(), key.size());
  const Cands cs = CandidatesOf(c.v, h);
  Found f;
  if (!FindLive(c, key, h, cs, nullptr, 0, &f)) return FailNotFound();
  if (Expired(c, f.m.expiry)) {
    ReclaimExpired(c, f);
    return FailNotFound();
  }
  *ttl_ms = f.m.expiry == 0 ? -1 : static_cast<int64_t>(f.m.expiry - c.Now());
  return 0;
}

int OpClear(Ctx& c) {
  const uint64_t total = c.v.n_buckets * 4;
  for (uint64_t i = 0; i < total; ++i) {
    Slot* s = &c.v.buckets[i / 4].slot[i % 4];
    for (;;) {
      const SlotWord w = LoadSlot(s);
      if (ref::State(w.ref) != kLive) break;  // PENDING inserts land after the clear
      const uint32_t cls = static_cast<uint32_t>(ref::Class(w.ref));
      unsigned char* blk = c.v.BlockAt(ref::OffUnits(w.ref), cls);
      if (blk == nullptr) break;
      const uint64_t st = LoadAcquire(StateWord(blk));
      if (!Unchanged(s, w)) continue;
      if (Unlink(c, s, w, blk, cls, bstate::Gen(st))) c.Stat(kStatDeletes);
    }
  }
  return 0;
}

int OpScan(Ctx& c, uint64_t* cursor, std::string_view prefix, size_t limit, shmkv_scan_fn fn,
           void* ctx) {
  const uint64_t total = c.v.n_buckets * 4;
  uint64_t i = *cursor;
  if (i >= total) {
    *cursor = 0;
    return 0;
  }
  const uint64_t end = limit >= total - i ? total : i + limit;  // no overflow for huge limits
  std::string key;
  key.resize(c.v.max_key_len);
  for (; i < end; ++i) {
    Slot* s = &c.v.buckets[i / 4].slot[i % 4];
    for (;;) {
      const SlotWord w = LoadSlot(s);
      if (ref::State(w.ref) != kLive) break;
      const uint32_t cls = static_cast<uint32_t>(ref::Class(w.ref));
      unsigned char* blk = c.v.BlockAt(ref::OffUnits(w.ref), cls);
      if (blk == nullptr) break;
      const BlockMeta m = ReadMeta(blk);
      const bool sane = SaneKey(c.v, cls, m);
      if (sane) CopyOut(key.data(), blk, m.key_off, m.klen);
      if (!Unchanged(s, w)) continue;
      if (!sane || Expired(c, m.expiry)) break;
      if (prefix.size() > m.klen ||
          (!prefix.empty() && std::memcmp(key.data(), prefix.data(), prefix.size()) != 0))
        break;
      shmkv_item_info_t info{};
      info.struct_size = sizeof(info);
      FillInfo(c, m, &info);
      // The callback runs on a validated private copy of the key.
      if (fn(key.data(), m.klen, &info, ctx) != 0) {
        *cursor = i + 1 >= total ? 0 : i + 1;
        return 0;
      }
      break;
    }
  }
  *cursor = end >= total ? 0 : end;
  return 0;
}

uint64_t SweepExpired(Ctx& c, uint64_t first, uint64_t count) {
  const uint64_t total = c.v.n_buckets * 4;
  const uint32_t now_s = static_cast<uint32_t>(c.Now() / 1000);
  uint64_t reclaimed = 0;
  for (uint64_t i = first; i < total && i < first + count; ++i) {
    Slot* s = &c.v.buckets[i / 4].slot[i % 4];
    const SlotWord w = LoadSlot(s);
    if (ref::State(w.ref) != kLive) continue;
    const uint32_t cexp = meta::CoarseExp(w.meta);
    if (cexp == 0 || cexp > now_s) continue;  // the index alone proves expiry
    reclaimed += EvictSlot(c, s, w, true);
  }
  return reclaimed;
}

uint64_t EvictClass(Ctx& c, uint32_t cls, uint64_t want, uint64_t* last_page) {
  const View& v = c.v;
  const uint64_t bpp = v.class_bpp[cls];
  const uint32_t now_s = static_cast<uint32_t>(c.Now() / 1000);
  const uint32_t policy = v.evict_policy;
  uint64_t freed = 0;
  // The hand counts batches of up to 32 blocks that never straddle a page,
  // so every block is visited once a revolution.
  constexpr uint64_t kBatch = 32;
  const uint64_t per_page = (bpp + kBatch - 1) / kBatch;
  const uint64_t steps = v.n_pages * per_page;
  for (uint64_t scanned = 0; scanned < 2 * steps && freed < want;) {
    const uint64_t hb = FetchAdd(&v.hdr->class_hand[cls], 1) % steps;
    const uint64_t page = hb / per_page;
    if (!pword::UsableFor(LoadRelaxed(&v.ptab[page]), cls)) {
      // Not this class's page: move the hand past it at once.
      const uint64_t rest = per_page - hb % per_page;
      if (rest > 1) FetchAdd(&v.hdr->class_hand[cls], rest - 1);
      scanned += rest;
      continue;
    }
    ++scanned;
    const uint64_t first = (hb % per_page) * kBatch;
    for (uint64_t pos = first; pos < std::min(first + kBatch, bpp) && freed < want; ++pos) {
      unsigned char* blk = v.data + (page << v.page_shift) + pos * v.class_size[cls];
      const uint64_t st = LoadAcquire(StateWord(blk));
      if (bstate::St(st) != kLinked) continue;
      const BlockMeta m = ReadMeta(blk);
      KeyHash h;
      if (!BlockKeyHash(v, blk, cls, m, &h) || LoadAcquire(StateWord(blk)) != st) continue;
      const Cands cs = CandidatesOf(v, h);
      const uint64_t off_units = static_cast<uint64_t>(blk - v.base) / kBlockUnit;
      for (int i = 0; i < 8; ++i) {
        Slot* s = cs.s(i);
        const SlotWord w = LoadSlot(s);
        if (ref::State(w.ref) != kLive || ref::OffUnits(w.ref) != off_units ||
            ref::Class(w.ref) != cls)
          continue;
        // The slot must still link this incarnation of the block: re-read the
        // state, then re-check the slot (else a relinked block of a newer
        // gen would be unlinked and freed with the old gen: a leak).
        if (LoadAcquire(StateWord(blk)) != st || !Unchanged(s, w)) break;
        const uint32_t cexp = meta::CoarseExp(w.meta);
        const bool expired = (cexp != 0 && cexp <= now_s) || Expired(c, m.expiry);
        if (!expired) {
          if (policy == SHMKV_EVICT_NONE || ref::N(w.ref)) break;
          if (policy == SHMKV_EVICT_VOLATILE && cexp == 0) break;
          if (ref::R(w.ref)) {  // second chance
            CasSlot(s, w, {w.ref & ~ref::kRBit, w.meta});
            break;
          }
        }
        if (Unlink(c, s, w, blk, cls, bstate::Gen(st))) {
          c.Stat(expired ? kStatExpirations : kStatEvictions);
          ++freed;
          *last_page = page;
        }
        break;
      }
    }
  }
  return freed;
}

bool UnlinkBlock(Ctx& c, Slot* s, const SlotWord& w, unsigned char* blk, uint32_t cls,
                 uint64_t gen) {
  return Unlink(c, s, w, blk, cls, gen);
}

bool FindLiveReference(const View& v, unsigned char* blk, uint32_t cls, uint64_t st, Slot** slot,
                       SlotWord* w) {
  const BlockMeta m = ReadMeta(blk);
  KeyHash h;
  if (!BlockKeyHash(v, blk, cls, m, &h) || LoadAcquire(StateWord(blk)) != st) return false;
  const Cands cs = CandidatesOf(v, h);
  const uint64_t off_units = static_cast<uint64_t>(blk - v.base) / kBlockUnit;
  for (int i = 0; i < 8; ++i) {
    Slot* s = cs.s(i);
    const SlotWord x = LoadSlot(s);
    if (ref::State(x.ref) != kLive || ref::OffUnits(x.ref) != off_units) continue;
    if (ref::Class(x.ref) != cls) return false;  // another grid's block at this address
    if (LoadAcquire(StateWord(blk)) != st || !Unchanged(s, x)) return false;
    *slot = s;
    *w = x;
    return true;
  }
  return false;
}

// ---- recovery (design-notes §6.3) ----------------------------------------

namespace {

// Finds the slot that references blk (PENDING or LIVE), if any. A block
// whose lengths are not sane was never published (its owner died while it
// wrote the header; a slot is claimed only for a block written whole): no
// slot.
bool FindReference(const View& v, unsigned char* blk, uint32_t cls, uint64_t st, Slot** slot,
                   SlotWord* w) {
  const BlockMeta m = ReadMeta(blk);
  KeyHash h;
  const bool sane = BlockKeyHash(v, blk, cls, m, &h);
  if (LoadAcquire(StateWord(blk)) != st) return true;  // changed: someone is acting on it
  if (!sane) return false;
  const Cands cs = CandidatesOf(v, h);
  const uint64_t off_units = static_cast<uint64_t>(blk - v.base) / kBlockUnit;
  for (int i = 0; i < 8; ++i) {
    Slot* s = cs.s(i);
    const SlotWord x = LoadSlot(s);
    const uint64_t state = ref::State(x.ref);
    // The class too, as FindLiveReference: a slot of another grid's block
    // at this address does not reference this block.
    if ((state == kLive || state == kPending) && ref::OffUnits(x.ref) == off_units &&
        ref::Class(x.ref) == cls && ref::Tag(x.ref) == h.tag()) {
      *slot = s;
      *w = x;
      return true;
    }
  }
  return false;
}

// The page still has the grid of word pw (class and epoch; it may have
// gone from normal to draining or back).
bool SameGrid(const View& v, uint64_t page, uint64_t pw) {
  const uint64_t now = LoadAcquire(&v.ptab[page]);
  return pword::Cls1(now) == pword::Cls1(pw) && pword::Epoch(now) == pword::Epoch(pw) &&
         (pword::St(now) == pword::kNormal || pword::St(now) == pword::kDraining);
}

// Frees a block from exactly the state st (recovery: never from a state we
// did not see).
void FreeExact(Ctx& c, unsigned char* blk, uint32_t cls, uint64_t st) {
  if (bstate::St(st) == kFree) return;
  if (!CasWord(StateWord(blk), st, bstate::Make(kFree, 0, bstate::Gen(st)))) return;
  const View& v = c.v;
  const uint64_t page = v.PageOf(blk);
  const uint64_t idx =
      static_cast<uint64_t>(blk - (v.data + (page << v.page_shift))) / v.class_size[cls];
  FetchAnd(&v.BitmapOf(page)[idx / 64], ~(1ull << (idx % 64)));
  const uint64_t minus = static_cast<uint64_t>(-static_cast<int64_t>(v.class_size[cls]));
  if (c.p != nullptr)
    c.p->Stat(kStatMemUsed, -static_cast<int64_t>(v.class_size[cls]));
  else
    FetchAdd(&v.hdr->retired[kStatMemUsed], minus);
}

}  // namespace

void RecoverParticipants(Ctx& c, const std::vector<bool>& dead) {
  const View& v = c.v;
  // (a) unlink intents: the block a dead participant unlinked but had not
  // freed. Referenced blocks are left: the unlink never happened.
  for (uint64_t t = 0; t < v.n_parts; ++t) {
    if (!dead[t]) continue;
    ParticipantRecord* rec = &v.parts[t];
    const uint64_t off1 = LoadAcquire(&rec->inflight_off);
    if (off1 == 0) continue;
    const uint64_t gen = LoadAcquire(&rec->inflight_gen);
    const uint64_t off = (off1 - 1) * kBlockUnit;
    if (off < v.data_off || off >= v.data_off + (v.n_pages << v.page_shift)) continue;
    unsigned char* blk = v.base + off;
    const uint64_t page = v.PageOf(blk);
    const uint64_t pw = LoadAcquire(&v.ptab[page]);
    const uint64_t cls1 = pword::Cls1(pw);
    if (cls1 == 0 || cls1 > v.n_classes ||
        (pword::St(pw) != pword::kNormal && pword::St(pw) != pword::kDraining))
      continue;
    const uint32_t cls = static_cast<uint32_t>(cls1 - 1);
    if (v.BlockAt(off1 - 1, cls) == nullptr) continue;
    const uint64_t st = LoadAcquire(StateWord(blk));
    Slot* s;
    SlotWord w;
    if (bstate::Gen(st) == gen && bstate::St(st) != kFree &&
        !FindReference(v, blk, cls, st, &s, &w) && SameGrid(v, page, pw))
      FreeExact(c, blk, cls, st);
    StoreRelease(&rec->inflight_off, 0);
  }
  // (b) every block a dead participant owns (Invariant 5).
  for (uint64_t page = 0; page < v.n_pages; ++page) {
    const uint64_t pw = LoadAcquire(&v.ptab[page]);
    const uint64_t cls1 = pword::Cls1(pw);
    if (cls1 == 0 || cls1 > v.n_classes) continue;
    if (pword::St(pw) == pword::kFormatting) {
      // The formatter died: hand the page back unassigned (the next
      // assigner formats it again).
      if (pword::Owner(pw) < dead.size() && dead[pword::Owner(pw)]) {
        uint64_t expect = pw;
        CasWord(&v.ptab[page], expect, pword::Make(0, pword::kNormal, 0, pword::Epoch(pw)));
      }
      continue;
    }
    if (pword::St(pw) == pword::kContinuation) {
      // A page of a run whose head is gone (its formatter or drainer died
      // half way; heads come first, so they were handled above): free it.
      const uint64_t d = pword::Owner(pw);
      const uint64_t hw = d <= page ? LoadAcquire(&v.ptab[page - d]) : 0;
      const bool head_ok = d != 0 && d <= page && pword::Cls1(hw) == cls1 &&
                           pword::St(hw) != pword::kContinuation &&
                           page - d + v.class_pages[cls1 - 1] > page;
      if (!head_ok) {
        uint64_t expect = pw;
        CasWord(&v.ptab[page], expect, pword::Make(0, pword::kNormal, 0, pword::Epoch(pw) + 1));
      }
      continue;
    }
    const uint32_t cls = static_cast<uint32_t>(cls1 - 1);
    const uint64_t size = v.class_size[cls];
    for (uint64_t i = 0; i < v.class_bpp[cls]; ++i) {
      unsigned char* blk = v.data + (page << v.page_shift) + i * size;
      uint64_t st = LoadAcquire(StateWord(blk));
      if (bstate::St(st) == kFree || bstate::Owner(st) >= dead.size() || !dead[bstate::Owner(st)])
        continue;
      const uint64_t gen = bstate::Gen(st);
      // A live inserter of the same key may be acting on this block at the
      // same time (killing or promoting its claim): retry until the block's
      // state is stable across the reference check.
      bool grid_gone = false;
      for (int round = 0; round < 64; ++round) {
        st = LoadAcquire(StateWord(blk));
        // The page may have been drained and given another grid meanwhile:
        // then this word is not a block state of ours to act on.
        if (!SameGrid(v, page, pw)) {
          grid_gone = true;
          break;
        }
        if (bstate::St(st) == kFree || bstate::Gen(st) != gen) break;
        Slot* s = nullptr;
        SlotWord w{};
        const bool referenced = FindReference(v, blk, cls, st, &s, &w);
        if (referenced && s == nullptr) continue;  // state changed meanwhile
        if (!referenced) {
          FreeExact(c, blk, cls, st);
          break;
        }
        if (ref::State(w.ref) == kLive) break;  // live data: the stale owner id is harmless
        // PENDING claim of a dead owner: kill it if undecided, then finish it.
        if (bstate::St(st) == kAlloc)
          CasWord(StateWord(blk), st, bstate::Make(kKilled, bstate::Owner(st), gen));
        st = LoadAcquire(StateWord(blk));
        if (bstate::St(st) == kLinked && bstate::Gen(st) == gen) HelpPromote(c, s, w);
        if (bstate::St(st) == kKilled && bstate::Gen(st) == gen) HelpEmpty(s, w);
      }
      if (grid_gone) break;
    }
    // A drain whose drainer died: its reservations are freed above; the
    // page serves its class again.
    if (pword::St(pw) == pword::kDraining && pword::Owner(pw) < dead.size() &&
        dead[pword::Owner(pw)]) {
      uint64_t expect = pw;
      CasWord(&v.ptab[page], expect, pword::Make(cls1, pword::kNormal, 0, pword::Epoch(pw)));
    }
  }
}

#if defined(SHMKV_TESTING)
// Invariant 2 probe for stress tests: the LIVE entries of key among its 8
// candidate slots, read twice; the count is only returned when both reads
// agree (then all those slots held those words at once). -1 if the slots
// kept changing. *why describes each LIVE entry found.
int ProbeLiveCopies(const View& v, std::string_view key, std::string* why) {
  const KeyHash h = HashKey(v, key.data(), key.size());
  const Cands cs = CandidatesOf(v, h);
  for (int attempt = 0; attempt < 100; ++attempt) {
    SlotWord w1[8];
    for (int i = 0; i < 8; ++i) w1[i] = LoadSlot(cs.s(i));
    int live = 0;
    std::string d;
    bool stable = true;
    for (int i = 0; i < 8 && stable; ++i) {
      if (ref::State(w1[i].ref) != kLive) continue;
      unsigned char* b = nullptr;
      uint64_t bs = 0;
      const int k = KeyIs(v, cs.s(i), w1[i], key, h, &b, &bs);
      if (k < 0) stable = false;
      if (k != 1) continue;
      ++live;
      const BlockMeta m = ReadMeta(b);
      d += "pos " + std::to_string(i) + " off_units " + std::to_string(ref::OffUnits(w1[i].ref)) +
           " ver " + std::to_string(meta::Version(w1[i].meta)) + " state " +
           std::to_string(bstate::St(bs)) + " owner " + std::to_string(bstate::Owner(bs)) +
           " gen " + std::to_string(bstate::Gen(bs)) + " cas " + std::to_string(m.cas) +
           (m.counter ? " counter" : "") + "; ";
    }
    for (int i = 0; i < 8 && stable; ++i) stable = Unchanged(cs.s(i), w1[i]);
    if (!stable) continue;
    if (why != nullptr) *why = d;
    return live;
  }
  return -1;
}
#endif

}  // namespace shmkv::internal
