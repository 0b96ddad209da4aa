// Pages, size classes and blocks (design-notes §3.4, §4.9).
//
// A page is assigned to a size class once, by a CAS on its page-table word
// (0 -> class + 1). A block is claimed by one CAS on its state word that
// also records the owner (Invariant 5): FREE(gen) -> ALLOC(me, gen + 1).
// The per-page bitmaps only hint at which blocks are free; the state word
// is the truth, so a crash can only leave a stale hint, which recovery
// rebuilds (RebuildHints).
#include <algorithm>

#include "handle.h"

namespace shmkv::internal {

int ClassFor(const View& v, uint64_t bytes) {
  // Classes are few (<= 64) and sorted: a binary search.
  const uint32_t* end = v.class_size + v.n_classes;
  const uint32_t* it = std::lower_bound(v.class_size, end, bytes);
  if (it == end) return -1;
  return static_cast<int>(it - v.class_size);
}

namespace {

uint64_t* StateOf(unsigned char* blk) { return reinterpret_cast<uint64_t*>(blk); }

// Claims a free block of page `page` (class cls), starting at the
// participant's rotor. nullptr if the page looks full.
unsigned char* ClaimInPage(Ctx& c, uint64_t page, uint32_t cls, uint64_t* gen) {
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
      const uint64_t bit = 1ull << j;
      if (FetchOr(&bm[wi], bit) & bit) continue;  // another allocator took the hint
      unsigned char* blk =
          v.data + (page << v.page_shift) + (wi * 64 + static_cast<uint64_t>(j)) * v.class_size[cls];
      uint64_t st = LoadAcquire(StateOf(blk));
      if (bstate::St(st) != kFree) continue;  // stale hint: the bit is now right
      const uint64_t g = (bstate::Gen(st) + 1) & bstate::kGenMask;
      if (!CasWord(StateOf(blk), st, bstate::Make(kAlloc, c.p->index, g))) continue;
      // release fence: orders "claimed after it was freed" before our content
      // stores; pairs with ReadFence() in readers of the block's old link.
      ClaimFence();
      SHMKV_CRASHPOINT("alloc.claimed");
      c.p->rotor[cls] = static_cast<uint32_t>(wi);
      c.p->Stat(kStatMemUsed, v.class_size[cls]);
      *gen = g;
      return blk;
    }
  }
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

unsigned char* Alloc(Ctx& c, uint32_t cls, uint64_t* gen, int* rc) {
  const View& v = c.v;
  uint32_t& cur = c.p->cur_page[cls];
  for (int attempt = 0; attempt < 16; ++attempt) {
    if (cur != 0 && LoadRelaxed(&v.ptab[cur - 1]) == cls + 1) {
      if (unsigned char* b = ClaimInPage(c, cur - 1, cls, gen)) return b;
    }
    // Another page of this class with free blocks, from a random start so
    // that processes spread out.
    const uint64_t start = c.p->Random() % v.n_pages;
    bool found = false;
    for (uint64_t k = 0; k < v.n_pages && !found; ++k) {
      const uint64_t p = (start + k) % v.n_pages;
      if (LoadRelaxed(&v.ptab[p]) == cls + 1 && PageMayHaveFree(v, p, cls)) {
        cur = static_cast<uint32_t>(p + 1);
        found = true;
      }
    }
    if (found) continue;
    // An unassigned page.
    for (uint64_t p = 0; p < v.n_pages && !found; ++p) {
      uint64_t expect = 0;
      if (LoadRelaxed(&v.ptab[p]) == 0 && CasWord(&v.ptab[p], expect, cls + 1)) {
        cur = static_cast<uint32_t>(p + 1);
        found = true;
      }
    }
    if (found) continue;
    // Full: evict from this class by its CLOCK hand.
    uint64_t page = 0;
    if (EvictClass(c, cls, 1, &page) == 0) break;
    cur = static_cast<uint32_t>(page + 1);
  }
  *rc = Fail(SHMKV_ENOSPC, v.evict_policy == SHMKV_EVICT_ALLKEYS
                               ? "no memory for this value size: no page of its size class "
                                 "can be freed (page classes are fixed once assigned)"
                               : "no memory: nothing may be evicted under this policy");
  return nullptr;
}

void FreeBlock(const View& v, PartLocal* p, unsigned char* blk, uint32_t cls, uint64_t gen) {
  uint64_t* sw = StateOf(blk);
  for (;;) {
    uint64_t st = LoadAcquire(sw);
    // Already freed, maybe reused: not ours to free (Invariant 4).
    if (bstate::Gen(st) != gen || bstate::St(st) == kFree) return;
    if (CasWord(sw, st, bstate::Make(kFree, 0, gen))) break;
  }
  SHMKV_CRASHPOINT("free.state");
  const uint64_t page = v.PageOf(blk);
  const uint64_t idx = static_cast<uint64_t>(blk - (v.data + (page << v.page_shift))) /
                       v.class_size[cls];
  FetchAnd(&v.BitmapOf(page)[idx / 64], ~(1ull << (idx % 64)));
  const uint64_t minus = static_cast<uint64_t>(-static_cast<int64_t>(v.class_size[cls]));
  if (p != nullptr)
    p->Stat(kStatMemUsed, -static_cast<int64_t>(v.class_size[cls]));
  else
    FetchAdd(&v.hdr->retired[kStatMemUsed], minus);  // recovery has no participant
}

void RebuildHints(const View& v) {
  for (uint64_t page = 0; page < v.n_pages; ++page) {
    const uint64_t cls1 = LoadAcquire(&v.ptab[page]);
    if (cls1 == 0 || cls1 > v.n_classes) continue;
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
