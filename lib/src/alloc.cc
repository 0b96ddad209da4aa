// Pages, size classes and blocks (design-notes §3.4, §4.9).
//
// A page is assigned to a size class once, by a CAS on its page-table word
// (0 -> class + 1). A block is claimed by one CAS on its state word that
// also records the owner (Invariant 5): FREE(gen) -> ALLOC(me, gen + 1).
// The per-page bitmaps only hint at which blocks are free; the state word
// is the truth, so a crash can only leave a stale hint, which recovery
// rebuilds (RebuildHints).
#include <algorithm>
#include <thread>
#include <vector>

#include "handle.h"

namespace shmkv::internal {

int ClassFor(const View& v, uint64_t bytes) {
  if (bytes <= uint64_t{View::kClassLookupUnits} * kBlockUnit) {
    const uint8_t c = v.class_of_units[(bytes + kBlockUnit - 1) / kBlockUnit];
    return c == 0xff ? -1 : c;
  }
  // Larger: classes are few (<= 64) and sorted, a binary search.
  const uint32_t* end = v.class_size + v.n_classes;
  const uint32_t* it = std::lower_bound(v.class_size, end, bytes);
  if (it == end) return -1;
  return static_cast<int>(it - v.class_size);
}

namespace {

uint64_t* StateOf(unsigned char* blk) { return reinterpret_cast<uint64_t*>(blk); }

// The hint bit of block idx of page `page` says "probably free" again.
void ClearHint(const View& v, uint64_t page, uint64_t idx) {
  FetchAnd(&v.BitmapOf(page)[idx / 64], ~(1ull << (idx % 64)));
}

// PartLocal::reuse's word for block idx of page `page` (0 is none), and
// back: false if it is out of range for class cls.
uint64_t HeldWord(uint64_t page, uint64_t idx) { return ((page + 1) << 32) | idx; }
bool HeldAt(const View& v, uint32_t cls, uint64_t held, uint64_t* page, uint64_t* idx) {
  *page = (held >> 32) - 1;
  *idx = held & 0xffffffffu;
  return *page < v.n_pages && *idx < v.class_bpp[cls];
}

// Claims block idx of page `page` (class cls) by one CAS on its state, if
// it is free. Sets *page_changed (and returns nullptr) if the page no
// longer has the grid of word pw. The caller has dealt with the hint bit.
unsigned char* ClaimBlock(Ctx& c, uint64_t page, uint64_t pw, uint32_t cls, uint64_t idx,
                          uint64_t* gen, bool* page_changed) {
  const View& v = c.v;
  unsigned char* blk = v.data + (page << v.page_shift) + idx * v.class_size[cls];
  uint64_t st = LoadAcquire(StateOf(blk));
  // The page must still have this grid when we act on the word we read
  // (else the word may be another class's data): after this check, only
  // an exact recurrence of the 64-bit word could fool the CAS.
  if (LoadAcquire(&v.ptab[page]) != pw) {
    *page_changed = true;
    return nullptr;
  }
  if (bstate::St(st) != kFree) return nullptr;  // taken: a set hint bit is right
  const uint64_t g = (bstate::Gen(st) + 1) & bstate::kGenMask;
  if (!CasWord(StateOf(blk), st, bstate::Make(kAlloc, c.p->index, g))) return nullptr;
  // release fence: orders "claimed after it was freed" before our content
  // stores; pairs with ReadFence() in readers of the block's old link.
  ClaimFence();
  SHMKV_CRASHPOINT("alloc.claimed");
  c.p->Stat(kStatMemUsed, v.class_size[cls]);
  *gen = g;
  return blk;
}

// Claims block wi * 64 + j of page `page` (class cls) if it is free: first
// its hint bit, then the block (ClaimBlock).
unsigned char* ClaimAt(Ctx& c, uint64_t page, uint64_t pw, uint32_t cls, uint64_t wi, int j,
                       uint64_t* gen, bool* page_changed) {
  const uint64_t bit = 1ull << j;
  if (FetchOr(&c.v.BitmapOf(page)[wi], bit) & bit) return nullptr;  // another allocator took it
  return ClaimBlock(c, page, pw, cls, wi * 64 + static_cast<uint64_t>(j), gen, page_changed);
}

// Claims a free block of page `page` (class cls), starting at the
// participant's rotor. nullptr if the page looks full.
unsigned char* ClaimInPage(Ctx& c, uint64_t page, uint64_t pw, uint32_t cls, uint64_t* gen) {
  const View& v = c.v;
  const uint64_t bpp = v.class_bpp[cls];
  const uint64_t words = (bpp + 63) / 64;
  uint64_t* bm = v.BitmapOf(page);
  const uint64_t start = c.p->rotor[cls] % words;
  for (uint64_t k = 0; k < words; ++k) {
    const uint64_t wi = (start + k) % words;
    uint64_t avail = ~LoadRelaxed(&bm[wi]);
    if (wi == words - 1 && bpp % 64 != 0) avail &= (1ull << (bpp % 64)) - 1;
    while (avail != 0) {
      const int j = __builtin_ctzll(avail);
      avail &= avail - 1;
      bool page_changed = false;
      if (unsigned char* blk = ClaimAt(c, page, pw, cls, wi, j, gen, &page_changed)) {
        c.p->rotor[cls] = static_cast<uint32_t>(wi);
        return blk;
      }
      if (page_changed) return nullptr;
    }
  }
  return nullptr;
}

// The block this participant freed last in class cls, if it is still free:
// an update frees the block of the value it replaced, and the next update
// takes it back here instead of searching the pages for one. The block is
// held: FreeBlock left its hint bit set ("in use"), so other allocators
// pass it by, and taking it back is one CAS on its state word, with no
// bitmap write on either side (two locked operations fewer per update, one
// of them on a random page's bitmap). The state word still decides: a
// drainer, or an allocator after the janitor's RebuildHints cleared the
// bit, may take the block first; then the CAS fails and nothing is lost.
unsigned char* ClaimReused(Ctx& c, uint32_t cls, uint64_t* gen) {
  const uint64_t r = c.p->reuse[cls];
  if (r == 0) return nullptr;
  c.p->reuse[cls] = 0;
  const View& v = c.v;
  uint64_t page, idx;
  if (!HeldAt(v, cls, r, &page, &idx)) return nullptr;
  const uint64_t pw = LoadAcquire(&v.ptab[page]);
  bool page_changed = !pword::UsableFor(pw, cls);
  unsigned char* blk =
      page_changed ? nullptr : ClaimBlock(c, page, pw, cls, idx, gen, &page_changed);
  if (blk == nullptr) {
    // Draining or formatting now: let the hint go, so that a drain that
    // gives the page back does not leave the block hidden (ReleaseHeld
    // leaves another grid's bitmap alone). Else it was taken: the bit is
    // right.
    if (page_changed) ReleaseHeld(v, cls, r);
    return nullptr;
  }
  SHMKV_CRASHPOINT("alloc.reclaimed");
  // A janitor's RebuildHints may have cleared the bit meanwhile: set it
  // again only then (a plain read first: no locked write in the common case).
  uint64_t* bm = &v.BitmapOf(page)[idx / 64];
  const uint64_t bit = 1ull << (idx % 64);
  if (!(LoadRelaxed(bm) & bit)) FetchOr(bm, bit);
  // The page may have started draining meanwhile: then give the block back
  // (the drainer waits for it).
  if (LoadAcquire(&v.ptab[page]) == pw) return blk;
  FreeBlock(v, c.p, blk, cls, *gen, /*hold=*/false);
  return nullptr;
}

bool PageMayHaveFree(const View& v, uint64_t page, uint32_t cls) {
  const uint64_t bpp = v.class_bpp[cls];
  const uint64_t words = (bpp + 63) / 64;
  const uint64_t* bm = v.BitmapOf(page);
  for (uint64_t wi = 0; wi < words; ++wi) {
    uint64_t avail = ~LoadRelaxed(&bm[wi]);
    if (wi == words - 1 && bpp % 64 != 0) avail &= (1ull << (bpp % 64)) - 1;
    if (avail != 0) return true;
  }
  return false;
}

}  // namespace

namespace {

unsigned char* BlockOf(const View& v, uint64_t page, uint32_t cls, uint64_t i) {
  return v.data + (page << v.page_shift) + i * v.class_size[cls];
}

// Takes an unassigned page for class cls. A page used before is formatted
// first: its old class grid's words are rewritten as FREE block states of
// the new grid, with generations from the page's new epoch, and its bitmap
// is cleared. A formatter that dies leaves kFormatting, which recovery
// turns back into unassigned.
bool AssignPage(Ctx& c, uint64_t page, uint32_t cls) {
  const View& v = c.v;
  uint64_t w = LoadAcquire(&v.ptab[page]);
  if (pword::Cls1(w) != 0) return false;
  const uint64_t epoch = pword::Epoch(w);
  if (epoch == 0) {  // never used: all zero, which is all free
    return CasWord(&v.ptab[page], w, pword::Make(cls + 1, pword::kNormal, 0, 0));
  }
  if (!CasWord(&v.ptab[page], w, pword::Make(cls + 1, pword::kFormatting, c.p->index, epoch)))
    return false;
  SHMKV_CRASHPOINT("assign.formatting");
  const uint64_t gen = pword::GenBase(epoch);
  for (uint64_t i = 0; i < v.class_bpp[cls]; ++i)
    StoreRelaxed(StateOf(BlockOf(v, page, cls, i)), bstate::Make(kFree, 0, gen));
  uint64_t* bm = v.BitmapOf(page);
  for (uint64_t k = 0; k < v.bitmap_words; ++k) StoreRelaxed(&bm[k], 0);
  uint64_t expect = pword::Make(cls + 1, pword::kFormatting, c.p->index, epoch);
  // release (CAS): the formatted words are visible before the page is usable.
  return CasWord(&v.ptab[page], expect, pword::Make(cls + 1, pword::kNormal, 0, epoch));
}

void RollbackRun(const View& v, uint64_t start, uint64_t claimed, uint32_t cls, uint64_t me) {
  for (uint64_t j = 0; j < claimed; ++j) {
    uint64_t w = LoadAcquire(&v.ptab[start + j]);
    if (w == pword::Make(cls + 1, pword::kFormatting, me, pword::Epoch(w)))
      CasWord(&v.ptab[start + j], w, pword::Make(0, pword::kNormal, 0, pword::Epoch(w)));
  }
}

// Takes the run of unassigned pages [start, start + k) for a class of
// k-page blocks: every page is claimed as kFormatting(me) in order (a lost
// race rolls the claimed ones back), the head block is formatted, the
// others become kContinuation, and the head becomes usable last. A
// formatter that dies leaves kFormatting pages, which recovery hands back.
bool AssignRun(Ctx& c, uint64_t start, uint32_t cls) {
  const View& v = c.v;
  const uint64_t k = v.class_pages[cls];
  const uint64_t me = c.p->index;
  if (start + k > v.n_pages) return false;
  for (uint64_t j = 0; j < k; ++j) {
    uint64_t w = LoadAcquire(&v.ptab[start + j]);
    if (pword::Cls1(w) != 0 ||
        !CasWord(&v.ptab[start + j], w,
                 pword::Make(cls + 1, pword::kFormatting, me, pword::Epoch(w)))) {
      RollbackRun(v, start, j, cls, me);
      return false;
    }
  }
  SHMKV_CRASHPOINT("run.formatting");
  const uint64_t head_epoch = pword::Epoch(LoadAcquire(&v.ptab[start]));
  StoreRelaxed(StateOf(BlockOf(v, start, cls, 0)),
               bstate::Make(kFree, 0, pword::GenBase(head_epoch)));
  uint64_t* bm = v.BitmapOf(start);
  for (uint64_t i = 0; i < v.bitmap_words; ++i) StoreRelaxed(&bm[i], 0);
  for (uint64_t j = 1; j < k; ++j) {
    uint64_t w = LoadAcquire(&v.ptab[start + j]);
    CasWord(&v.ptab[start + j], w, pword::Make(cls + 1, pword::kContinuation, j, pword::Epoch(w)));
  }
  uint64_t expect = pword::Make(cls + 1, pword::kFormatting, me, head_epoch);
  // release (CAS): the run is formatted before its head is usable.
  return CasWord(&v.ptab[start], expect, pword::Make(cls + 1, pword::kNormal, 0, head_epoch));
}

// The continuation words of the run at `head`, read while the head is
// DRAINING(me) (nobody else can change them then), so that releasing them
// later compares exact words: a page released and reused meanwhile has a
// newer epoch and is left alone.
std::vector<uint64_t> SnapshotContinuations(const View& v, uint64_t head, uint32_t cls) {
  std::vector<uint64_t> words;
  for (uint64_t j = 1; j < v.class_pages[cls] && head + j < v.n_pages; ++j) {
    const uint64_t w = LoadAcquire(&v.ptab[head + j]);
    words.push_back(w == pword::Make(cls + 1, pword::kContinuation, j, pword::Epoch(w)) ? w : 0);
  }
  return words;
}

void ReleaseContinuations(const View& v, uint64_t head, const std::vector<uint64_t>& words) {
  for (size_t j = 0; j < words.size(); ++j) {
    uint64_t w = words[j];
    if (w != 0)
      CasWord(&v.ptab[head + 1 + j], w, pword::Make(0, pword::kNormal, 0, pword::Epoch(w) + 1));
  }
}

// Can this LIVE entry be evicted to drain its page?
bool Evictable(const View& v, const SlotWord& w, uint64_t now_ms) {
  const uint32_t cexp = meta::CoarseExp(w.meta);
  if (cexp != 0 && cexp <= now_ms / 1000) return true;  // expired: always
  if (v.evict_policy == SHMKV_EVICT_NONE || ref::N(w.ref)) return false;
  return v.evict_policy != SHMKV_EVICT_VOLATILE || cexp != 0;
}

// Empties page `page` of class `cls` and hands it back unassigned, for a
// class that has no room (design-notes §3.4: "drain, reassign"). Every
// block is evicted or reserved by us (ALLOC(me)); once we hold them all, no
// other participant can touch a block word of the old grid (allocators only
// claim FREE blocks; frees are generation-checked), so the page can be
// reformatted. Gives up, restoring the page, if an entry may not be evicted
// or another participant keeps holding a block.
bool DrainPage(Ctx& c, uint64_t page, uint32_t cls) {
  const View& v = c.v;
  const uint64_t me = c.p->index;
  uint64_t w = LoadAcquire(&v.ptab[page]);
  if (!pword::UsableFor(w, cls)) return false;
  const uint64_t epoch = pword::Epoch(w);
  if (!CasWord(&v.ptab[page], w, pword::Make(cls + 1, pword::kDraining, me, epoch))) return false;
  SHMKV_CRASHPOINT("drain.started");
  // The exact state word of each block we reserved (0: none). A block that
  // is ALLOC under our participant index but not in here is not ours: a
  // dead predecessor's, left by a recovery that gave up on it.
  std::vector<uint64_t> mine(v.class_bpp[cls], 0);
  bool all_mine = false;
  bool blocked = false;
  for (int round = 0; round < 8 && !all_mine && !blocked; ++round) {
    all_mine = true;
    for (uint64_t i = 0; i < v.class_bpp[cls] && !blocked; ++i) {
      unsigned char* blk = BlockOf(v, page, cls, i);
      uint64_t st = LoadAcquire(StateOf(blk));
      if (mine[i] != 0 && st == mine[i]) continue;  // reserved
      if (bstate::St(st) == kFree) {
        const uint64_t g = (bstate::Gen(st) + 1) & bstate::kGenMask;
        if (CasWord(StateOf(blk), st, bstate::Make(kAlloc, me, g))) {
          mine[i] = bstate::Make(kAlloc, me, g);
          c.p->Stat(kStatMemUsed, v.class_size[cls]);  // reserved = in use, for recovery's sake
        } else {
          all_mine = false;
        }
        continue;
      }
      all_mine = false;
      if (bstate::St(st) != kLinked) continue;  // someone's write in flight
      Slot* s = nullptr;
      SlotWord sw{};
      if (!FindLiveReference(v, blk, cls, st, &s, &sw)) continue;  // being unlinked
      if (!Evictable(v, sw, c.Now())) {
        blocked = true;
        break;
      }
      if (UnlinkBlock(c, s, sw, blk, cls, bstate::Gen(st))) c.p->Stat(kStatEvictions);
    }
    if (!all_mine && !blocked) std::this_thread::yield();
  }
  if (!all_mine || blocked) {
    // Give the page back to its class: release our reservations.
    for (uint64_t i = 0; i < v.class_bpp[cls]; ++i) {
      unsigned char* blk = BlockOf(v, page, cls, i);
      uint64_t st = mine[i];
      if (st != 0 && CasWord(StateOf(blk), st, bstate::Make(kFree, 0, bstate::Gen(st)))) {
        ClearHint(v, page, i);
        c.p->Stat(kStatMemUsed, -static_cast<int64_t>(v.class_size[cls]));
      }
    }
    uint64_t expect = pword::Make(cls + 1, pword::kDraining, me, epoch);
    CasWord(&v.ptab[page], expect, pword::Make(cls + 1, pword::kNormal, 0, epoch));
    return false;
  }
  SHMKV_CRASHPOINT("drain.reserved");
  const std::vector<uint64_t> continuations = SnapshotContinuations(v, page, cls);
  uint64_t expect = pword::Make(cls + 1, pword::kDraining, me, epoch);
  if (!CasWord(&v.ptab[page], expect, pword::Make(0, pword::kNormal, 0, epoch + 1))) return false;
  c.p->Stat(kStatMemUsed, -static_cast<int64_t>(v.class_size[cls] * v.class_bpp[cls]));
  if (!continuations.empty()) {
    SHMKV_CRASHPOINT("run.head_released");
    ReleaseContinuations(v, page, continuations);
  }
  return true;
}

}  // namespace

uint64_t FreeHints(const View& v, uint64_t page, uint32_t cls) {
  const uint64_t bpp = v.class_bpp[cls];
  const uint64_t* bm = v.BitmapOf(page);
  uint64_t used = 0;
  for (uint64_t wi = 0; wi < (bpp + 63) / 64; ++wi)
    used += __builtin_popcountll(LoadRelaxed(&bm[wi]));
  return used >= bpp ? 0 : bpp - used;
}

namespace {

constexpr uint64_t kNoCas = ~uint64_t{0};

// Calls f(cas) for up to 8 linked blocks spread over a page (cas tokens come
// from one almost monotonic counter, so they order writes by age).
template <typename F>
void ForSampledCas(const View& v, uint64_t page, uint32_t cls, F&& f) {
  const uint64_t bpp = v.class_bpp[cls];
  const uint64_t step = std::max<uint64_t>(1, bpp / 8);
  for (uint64_t i = 0; i < bpp; i += step) {
    unsigned char* blk = BlockOf(v, page, cls, i);
    const uint64_t st = LoadAcquire(StateOf(blk));
    if (bstate::St(st) != kLinked) continue;
    // A counter's latest write is its pair's token (layout.h).
    const uint64_t w8 = WordAt(blk, boff::kCas);
    const uint64_t cas = IsCounter(w8) ? CounterCas(WordAt(blk, boff::kPairToken)) : w8;
    if (LoadAcquire(StateOf(blk)) == st) f(cas);
  }
}

// The newest sampled write of a page; 0 if no sampled block holds an entry.
uint64_t PageNewestCas(const View& v, uint64_t page, uint32_t cls) {
  uint64_t newest = 0;
  ForSampledCas(v, page, cls, [&](uint64_t cas) { newest = std::max(newest, cas); });
  return newest;
}

// Roughly the oldest write the class would evict of its own: the oldest
// sampled entry in a few of its pages. kNoCas if it holds nothing.
uint64_t ClassOldestCas(Ctx& c, uint32_t cls) {
  const View& v = c.v;
  uint64_t oldest = kNoCas;
  const uint64_t start = c.p->Random() % v.n_pages;
  int sampled = 0;
  for (uint64_t k = 0; k < v.n_pages && sampled < 4; ++k) {
    const uint64_t p = (start + k) % v.n_pages;
    if (!pword::UsableFor(LoadRelaxed(&v.ptab[p]), cls)) continue;
    ++sampled;
    ForSampledCas(v, p, cls, [&](uint64_t cas) { oldest = std::min(oldest, cas); });
  }
  return oldest;
}

// Which pages of other classes a class may take: only empty ones, or also
// pages whose every sampled entry was written before `older_than`.
struct StealRule {
  bool only_free;
  uint64_t older_than;
  // Cost of taking page p (of class oc, normal state): 0 if empty, 1 if
  // the rule allows draining it, >= 1e6 if not.
  double Cost(const View& v, uint64_t p, uint32_t oc) const {
    if (FreeHints(v, p, oc) == v.class_bpp[oc]) return 0;
    if (only_free) return 1e6;
    return PageNewestCas(v, p, oc) < older_than ? 1 : 1e6;
  }
};

// A page for class cls taken from another class: the page whose class has
// the most pages, preferring the emptiest of them.
bool StealPage(Ctx& c, uint32_t cls, const StealRule& rule, uint64_t* got) {
  const View& v = c.v;
  for (int attempt = 0; attempt < 4; ++attempt) {
    uint64_t pages_of[kMaxClasses] = {};
    for (uint64_t p = 0; p < v.n_pages; ++p) {
      const uint64_t w = LoadRelaxed(&v.ptab[p]);
      if (pword::Cls1(w) != 0 && pword::Cls1(w) <= v.n_classes) ++pages_of[pword::Cls1(w) - 1];
    }
    // Among the pages the rule allows: empty ones first, then the class with
    // the most pages, then the emptiest page. At most 64 pages are weighed.
    int64_t best = -1;
    uint32_t best_class = 0;
    double best_score = -1;
    const uint64_t start = c.p->Random() % v.n_pages;
    int weighed = 0;
    for (uint64_t k = 0; k < v.n_pages && weighed < 64; ++k) {
      const uint64_t p = (start + k) % v.n_pages;
      const uint64_t w = LoadRelaxed(&v.ptab[p]);
      const uint64_t c1 = pword::Cls1(w);
      if (c1 == 0 || c1 > v.n_classes || c1 == cls + 1 || pword::St(w) != pword::kNormal) continue;
      const uint32_t oc = static_cast<uint32_t>(c1 - 1);
      ++weighed;
      const double cost = rule.Cost(v, p, oc);
      if (cost >= 1e6) continue;
      const double score = (cost == 0 ? 1e9 : 0) + static_cast<double>(pages_of[oc]) +
                           static_cast<double>(FreeHints(v, p, oc)) / v.class_bpp[oc];
      if (score > best_score) {
        best_score = score;
        best = static_cast<int64_t>(p);
        best_class = oc;  // as weighed: the page may change class meanwhile
      }
    }
    if (best < 0) return false;
    const uint64_t p = static_cast<uint64_t>(best);
    if (DrainPage(c, p, best_class) && AssignPage(c, p, cls)) {
      *got = p;
      return true;
    }
  }
  return false;
}

// Empties whatever holds page p (its own class's page, or the whole run it
// belongs to) so that p becomes unassigned. True if it is unassigned now.
bool EmptyPage(Ctx& c, uint64_t p) {
  const View& v = c.v;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const uint64_t w = LoadAcquire(&v.ptab[p]);
    const uint64_t c1 = pword::Cls1(w);
    if (c1 == 0) return true;
    if (c1 > v.n_classes) return false;
    uint64_t head = p;
    if (pword::St(w) == pword::kContinuation) {
      if (pword::Owner(w) > p) return false;
      head = p - pword::Owner(w);
    } else if (pword::St(w) != pword::kNormal) {
      return false;  // someone else is draining or formatting it
    }
    if (!DrainPage(c, head, static_cast<uint32_t>(c1 - 1))) return false;
  }
  return pword::Cls1(LoadAcquire(&v.ptab[p])) == 0;
}

// k contiguous pages for a run class, taken from other classes: the window
// whose pages look the least used (unassigned pages cost nothing, pages of
// small classes their share of used blocks, run pages a whole page).
bool StealRun(Ctx& c, uint32_t cls, const StealRule& rule, uint64_t* got) {
  const View& v = c.v;
  const uint64_t k = v.class_pages[cls];
  if (k > v.n_pages) return false;
  std::vector<double> cost(v.n_pages);
  std::vector<bool> stuck(v.n_pages, false);  // pages we failed to empty
  for (int attempt = 0; attempt < 8; ++attempt) {
    for (uint64_t p = 0; p < v.n_pages; ++p) {
      const uint64_t w = LoadRelaxed(&v.ptab[p]);
      const uint64_t c1 = pword::Cls1(w);
      if (stuck[p]) {
        cost[p] = 1e9;  // holds entries that may not be evicted, or is busy
      } else if (c1 == 0) {
        cost[p] = 0;
      } else if (c1 > v.n_classes ||
                 (pword::St(w) != pword::kNormal && pword::St(w) != pword::kContinuation)) {
        cost[p] = 1e9;  // busy: avoid
      } else if (c1 == cls + 1) {
        cost[p] = 1e6;  // our own class: evicting it gains nothing
      } else if (pword::St(w) == pword::kContinuation) {
        // Costs what its head costs (heads come first: already computed,
        // unless the head lies before this window's scan start).
        const uint64_t d = pword::Owner(w);
        cost[p] = d != 0 && d <= p ? cost[p - d] : 1e9;
      } else {
        cost[p] = rule.Cost(v, p, static_cast<uint32_t>(c1 - 1));
      }
    }
    double sum = 0, best = 1e300;
    uint64_t best_start = 0;
    const uint64_t offset = c.p->Random() % (v.n_pages - k + 1);
    for (uint64_t i = 0; i < v.n_pages; ++i) {
      sum += cost[i];
      if (i >= k) sum -= cost[i - k];
      if (i + 1 < k) continue;
      const uint64_t start = i + 1 - k;
      // Ties go to a random window, so that processes do not all pick one.
      const double score = sum + ((start + v.n_pages - offset) % v.n_pages) * 1e-9;
      if (score < best) {
        best = score;
        best_start = start;
      }
    }
    if (best >= 1e6) return false;  // every window holds our own or busy pages
    bool emptied = true;
    for (uint64_t j = 0; j < k && emptied; ++j) {
      emptied = EmptyPage(c, best_start + j);
      if (!emptied) stuck[best_start + j] = true;
    }
    if (emptied && AssignRun(c, best_start, cls)) {
      *got = best_start;
      return true;
    }
  }
  return false;
}

// Whether retrying can help: under allkeys every page can be drained
// eventually (unless it holds no-evict entries, which a bounded retry
// then reports as ENOSPC).
bool PolicyMayFree(const View& v) { return v.evict_policy == SHMKV_EVICT_ALLKEYS; }

}  // namespace

unsigned char* Alloc(Ctx& c, uint32_t cls, uint64_t* gen, int* rc) {
  const View& v = c.v;
  uint32_t& cur = c.p->cur_page[cls];
  if (unsigned char* b = ClaimReused(c, cls, gen)) return b;
  // Bounded, but generous: under contention other writers take the pages
  // freed for us; ENOSPC only once nothing the policy lets go is left.
  for (int attempt = 0; attempt < 256; ++attempt) {
    if (attempt >= 16) std::this_thread::yield();
    if (attempt % 64 == 32) {
      // Pages may be pinned by processes that died draining or formatting
      // them: recover them here rather than fail (any process may).
      uint32_t recovered = 0;
      RecoverDead(c.kv, &recovered);
    }
    if (cur != 0) {
      const uint64_t pw = LoadAcquire(&v.ptab[cur - 1]);
      if (pword::UsableFor(pw, cls)) {
        if (unsigned char* b = ClaimInPage(c, cur - 1, pw, cls, gen)) {
          // The page may have started draining meanwhile: then give the
          // block back (the drainer waits for it).
          if (LoadAcquire(&v.ptab[cur - 1]) == pw) return b;
          FreeBlock(v, c.p, b, cls, *gen, /*hold=*/false);
        }
      }
    }
    // Another page of this class with free blocks. The search goes on
    // from where this participant's last one stopped (it started at a
    // random page, so that processes spread out): successive searches do
    // not walk the same full pages again.
    uint32_t& pos = c.p->scan_pos[cls];
    if (pos == 0) pos = static_cast<uint32_t>(c.p->Random() % v.n_pages) + 1;
    const uint64_t start = (pos - 1) % v.n_pages;
    bool found = false;
    for (uint64_t k = 0; k < v.n_pages && !found; ++k) {
      const uint64_t p = (start + k) % v.n_pages;
      if (pword::UsableFor(LoadRelaxed(&v.ptab[p]), cls) && PageMayHaveFree(v, p, cls)) {
        cur = static_cast<uint32_t>(p + 1);
        pos = static_cast<uint32_t>((p + 1) % v.n_pages) + 1;
        found = true;
      }
    }
    if (found) continue;
    // An unassigned page (or run of pages).
    const uint64_t k = v.class_pages[cls];
    for (uint64_t p = 0, free_run = 0; p < v.n_pages && !found; ++p) {
      free_run = pword::Cls1(LoadRelaxed(&v.ptab[p])) == 0 ? free_run + 1 : 0;
      if (free_run < k) continue;
      const uint64_t head = p + 1 - k;
      if (k == 1 ? AssignPage(c, head, cls) : AssignRun(c, head, cls)) {
        cur = static_cast<uint32_t>(head + 1);
        found = true;
      }
      free_run = 0;
    }
    if (found) continue;
    // Full. In order: an empty page of another class; a page of another
    // class whose data is all older than what this class would evict of
    // its own (so that memory follows demand, roughly LRU across
    // classes); this class's own CLOCK victim; any page the policy lets go.
    uint64_t page = 0;
    auto steal = [&](const StealRule& rule) {
      return k == 1 ? StealPage(c, cls, rule, &page) : StealRun(c, cls, rule, &page);
    };
    const uint64_t own_oldest = ClassOldestCas(c, cls);
    if (!steal({true, 0}) && !(own_oldest != kNoCas && steal({false, own_oldest})) &&
        EvictClass(c, cls, 1, &page) == 0 && !steal({false, kNoCas})) {
      if (!PolicyMayFree(v)) break;  // nothing evictable will appear by retrying
      continue;                      // pages were busy (draining, formatting): again
    }
    cur = static_cast<uint32_t>(page + 1);
  }
  *rc = Fail(SHMKV_ENOSPC, v.evict_policy == SHMKV_EVICT_ALLKEYS
                               ? "no memory: no block of this size can be freed (entries "
                                 "stored with SHMKV_WRITE_NOEVICT hold it)"
                               : "no memory: nothing may be evicted under this policy");
  return nullptr;
}

void ReleaseHeld(const View& v, uint32_t cls, uint64_t held) {
  uint64_t page, idx;
  if (!HeldAt(v, cls, held, &page, &idx)) return;
  // Only while the page still serves the class: formatting for another
  // class zeroed the bitmap, and its bit idx now belongs to another block
  // (clearing it could make a page that is in use look empty to a steal).
  if (pword::Cls1(LoadAcquire(&v.ptab[page])) != cls + 1) return;
  ClearHint(v, page, idx);
}

void FreeBlock(const View& v, PartLocal* p, unsigned char* blk, uint32_t cls, uint64_t gen,
               bool hold) {
  uint64_t* sw = StateOf(blk);
  for (;;) {
    uint64_t st = LoadAcquire(sw);
    // Already freed, maybe reused: not ours to free (Invariant 4).
    if (bstate::Gen(st) != gen || bstate::St(st) == kFree) return;
    if (CasWord(sw, st, bstate::Make(kFree, 0, gen))) break;
  }
  SHMKV_CRASHPOINT("free.state");
  const uint64_t page = v.PageOf(blk);
  const uint64_t idx = v.IndexInPage(blk, cls);
  if (hold && p != nullptr && v.class_pages[cls] == 1) {
    // Held for p's next allocation of the class (ClaimReused): the hint bit
    // stays set. The block held before, if any, is let go: its bit cleared.
    const uint64_t prev = p->reuse[cls];
    p->reuse[cls] = HeldWord(page, idx);
    if (prev != 0) ReleaseHeld(v, cls, prev);
  } else {
    ClearHint(v, page, idx);
  }
  const uint64_t minus = static_cast<uint64_t>(-static_cast<int64_t>(v.class_size[cls]));
  if (p != nullptr)
    p->Stat(kStatMemUsed, -static_cast<int64_t>(v.class_size[cls]));
  else
    FetchAdd(&v.hdr->retired[kStatMemUsed], minus);  // recovery has no participant
}

void RebuildHints(const View& v) { RebuildHints(v, 0, v.n_pages); }

void RebuildHints(const View& v, uint64_t first, uint64_t count) {
  for (uint64_t page = first; page < v.n_pages && page < first + count; ++page) {
    const uint64_t pw = LoadAcquire(&v.ptab[page]);
    const uint64_t cls1 = pword::Cls1(pw);
    if (cls1 == 0 || cls1 > v.n_classes || pword::St(pw) == pword::kFormatting ||
        pword::St(pw) == pword::kContinuation)
      continue;
    const uint32_t cls = static_cast<uint32_t>(cls1 - 1);
    uint64_t* bm = v.BitmapOf(page);
    for (uint64_t i = 0; i < v.class_bpp[cls]; ++i) {
      unsigned char* blk = v.data + (page << v.page_shift) + i * v.class_size[cls];
      const uint64_t bit = 1ull << (i % 64);
      // A FREE block whose bit says "used" is invisible to allocators: clear
      // the bit. Racing a claim is harmless: the state CAS decides.
      if (bstate::St(LoadAcquire(StateOf(blk))) == kFree && (LoadRelaxed(&bm[i / 64]) & bit))
        FetchAnd(&bm[i / 64], ~bit);
    }
  }
}

}  // namespace shmkv::internal
