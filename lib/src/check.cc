// The consistency checker (shmkv_check, and TakeCensus for tests): the
// invariants of table.h and design-notes §9.4, read-only, and safe on a
// corrupted segment (every offset and length is checked before use).
//
// On a live segment, an entry can change while it is being checked; each
// slot is read, checked and re-read, and a slot that changed is re-checked
// (or skipped after a few tries), so that only definite violations are
// reported. Offline (nobody else attached) every block is accounted for.
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "handle.h"
#include "testing.h"

namespace shmkv::internal {
namespace {

struct Checker {
  const View& v;
  bool offline;
  Census census;
  uint64_t problems = 0;
  uint64_t leaked = 0;
  std::string first;
  // Where a block, or a LIVE key, was seen first: the slot and its word.
  struct Seen {
    uint64_t slot;
    SlotWord w;
  };
  std::unordered_map<uint64_t, Seen> refs;  // block offset/64
  std::unordered_map<std::string, Seen> keys;

  void Problem(const std::string& what) {
    if (problems++ == 0) first = what;
  }

  internal::Slot* SlotAt(uint64_t i) const { return &v.buckets[i / 4].slot[i % 4]; }

  // True if slot i still holds the link it held when w was read (the
  // version changes with every change of a slot, so an unchanged version
  // means it held that link all along).
  bool Holds(uint64_t i, const SlotWord& w) const {
    const SlotWord now = LoadSlot(SlotAt(i));
    return meta::Version(now.meta) == meta::Version(w.meta) &&
           ref::WithoutR(now.ref) == ref::WithoutR(w.ref);
  }

  // Slot i (word w) references something (a block, a key) that an earlier
  // slot referenced when it was read. On a live segment the earlier slot
  // may have changed since: then the record moves to slot i and nothing is
  // wrong. It is a violation only if the earlier slot still holds its link
  // after slot i is known to hold its own: both at once.
  template <typename K>
  bool SeenTwice(std::unordered_map<K, Seen>& seen, const K& what, uint64_t i, const SlotWord& w) {
    auto [it, inserted] = seen.try_emplace(what, Seen{i, w});
    if (inserted) return false;
    ReadFence();
    if (it->second.slot != i && Holds(it->second.slot, it->second.w) && Holds(i, w)) return true;
    it->second = Seen{i, w};
    return false;
  }

  // Checks one slot; false if it changed while being checked.
  bool Slot(uint64_t i) {
    internal::Slot* s = SlotAt(i);
    const SlotWord w = LoadSlot(s);
    const uint64_t st = ref::State(w.ref);
    if (st == kEmpty) return true;
    const std::string where = "slot " + std::to_string(i);
    if (st != kLive && st != kPending) {
      Problem(where + ": invalid state " + std::to_string(st));
      ++census.bad_slots;
      return true;
    }
    const uint32_t cls = static_cast<uint32_t>(ref::Class(w.ref));
    unsigned char* blk = v.BlockAt(ref::OffUnits(w.ref), cls);
    if (blk == nullptr) {
      Problem(where + ": block offset outside the data area or not a block of class " +
              std::to_string(cls));
      ++census.bad_slots;
      return true;
    }
    const uint64_t page = v.PageOf(blk);
    const uint64_t pw = LoadAcquire(&v.ptab[page]);
    const uint64_t bs = LoadAcquire(reinterpret_cast<const uint64_t*>(blk));
    // A COUNTER block keeps its lengths and kx further on, and nothing
    // after its key (layout.h).
    const bool counter = IsCounter(WordAt(blk, boff::kCas));
    const uint64_t lens = WordAt(blk, counter ? boff::kCounterLens : boff::kLens);
    const uint16_t klen = kx::KeyLen(WordAt(blk, counter ? boff::kCounterKx : boff::kKx));
    const uint32_t vlen = counter ? 0 : static_cast<uint32_t>(lens);
    const uint32_t key_off = counter ? kCounterHeaderSize : kBlockHeaderSize;
    std::string key;
    const bool sane =
        klen >= 1 && klen <= v.max_key_len && uint64_t{key_off} + klen + vlen <= v.class_size[cls];
    if (sane) {
      key.resize(klen);
      CopyOut(key.data(), blk, key_off, klen);
    }
    // Re-read: everything above must belong to one link of this slot.
    ReadFence();
    const SlotWord w2 = LoadSlot(s);
    if (meta::Version(w2.meta) != meta::Version(w.meta) ||
        ref::WithoutR(w2.ref) != ref::WithoutR(w.ref))
      return false;

    if (st == kLive) ++census.slots_live;
    if (st == kPending) ++census.slots_pending;
    if (pword::Cls1(pw) != cls + 1 ||
        (pword::St(pw) != pword::kNormal && pword::St(pw) != pword::kDraining)) {
      Problem(where + ": its block's page does not serve class " + std::to_string(cls));
      ++census.bad_slots;
      return true;
    }
    const uint64_t bst = bstate::St(bs);
    if (st == kLive && bst != kLinked) {
      Problem(where + ": LIVE slot, block state " + std::to_string(bst) + " (not LINKED)");
      ++census.bad_slots;
    }
    if (st == kPending && bst != kAlloc && bst != kLinked && bst != kKilled) {
      Problem(where + ": PENDING slot on a FREE block");
      ++census.bad_slots;
    }
    if (SeenTwice(refs, ref::OffUnits(w.ref), i, w)) {
      Problem(where + ": its block is referenced by another slot too");
      ++census.referenced_twice;
    }
    if (!sane) {
      Problem(where + ": block lengths out of range (key " + std::to_string(klen) + ", value " +
              std::to_string(vlen) + ")");
      ++census.bad_slots;
      return true;
    }
    const KeyHash kh = HashKey(v, key.data(), key.size());
    uint64_t b1, b2;
    BucketsOf(v, kh, &b1, &b2);
    if (kh.tag() != ref::Tag(w.ref) || (i / 4 != b1 && i / 4 != b2)) {
      Problem(where + ": key does not hash to this slot's bucket pair and tag");
      ++census.bad_slots;
    }
    if (st == kLive && SeenTwice(keys, key, i, w)) {
      Problem(where + ": a second LIVE entry for one key");
      ++census.duplicate_keys;
    }
    return true;
  }

  void Pages() {
    for (uint64_t page = 0; page < v.n_pages; ++page) {
      const uint64_t pw = LoadAcquire(&v.ptab[page]);
      const uint64_t cls1 = pword::Cls1(pw);
      if (cls1 == 0) continue;
      if (cls1 > v.n_classes) {
        Problem("page " + std::to_string(page) + ": invalid class " + std::to_string(cls1 - 1));
        continue;
      }
      const uint32_t cls = static_cast<uint32_t>(cls1 - 1);
      const uint64_t pst = pword::St(pw);
      if (pst == pword::kContinuation) {
        const uint64_t d = pword::Owner(pw);
        const uint64_t hw = d != 0 && d <= page ? LoadAcquire(&v.ptab[page - d]) : 0;
        if (d == 0 || d >= v.class_pages[cls] || pword::Cls1(hw) != cls1) {
          Problem("page " + std::to_string(page) + ": continuation without its run head");
          if (offline) ++leaked;
        }
        continue;
      }
      if (pst == pword::kFormatting || (offline && pst == pword::kDraining)) {
        if (offline) {
          Problem("page " + std::to_string(page) + ": left half formatted or drained");
          ++leaked;
        }
        continue;
      }
      if (page + v.class_pages[cls] > v.n_pages) {
        Problem("page " + std::to_string(page) + ": run crosses the end of the data area");
        continue;
      }
      for (uint64_t i = 0; i < v.class_bpp[cls]; ++i) {
        unsigned char* blk = v.data + (page << v.page_shift) + i * v.class_size[cls];
        const uint64_t bs = LoadAcquire(reinterpret_cast<const uint64_t*>(blk));
        const uint64_t off_units = static_cast<uint64_t>(blk - v.base) / kBlockUnit;
        switch (bstate::St(bs)) {
          case kFree:
            ++census.blocks_free;
            if (v.class_pages[cls] == 1 && (LoadRelaxed(&v.BitmapOf(page)[i / 64]) >> (i % 64)) & 1)
              ++census.free_hidden;
            break;
          case kAlloc:
            ++census.blocks_alloc;
            if (offline && !refs.count(off_units)) ++leaked;
            break;
          case kLinked:
            ++census.blocks_linked;
            if (!refs.count(off_units)) {
              ++census.linked_unreferenced;
              if (offline) ++leaked;
            }
            break;
          case kKilled:
            ++census.blocks_killed;
            if (offline && !refs.count(off_units)) ++leaked;
            break;
          default:
            Problem("page " + std::to_string(page) + ": block " + std::to_string(i) +
                    " has an invalid state");
        }
        if (bstate::St(bs) != kFree && bstate::Owner(bs) >= v.n_parts)
          Problem("page " + std::to_string(page) + ": block owner out of range");
      }
    }
  }
};

}  // namespace

void RunCheck(shmkv_t* kv, bool offline, Census* census, uint64_t* problems, uint64_t* leaked,
              std::string* first) {
  Checker ck{kv->v, offline, {}, 0, 0, {}, {}, {}};
  const uint64_t total = kv->v.n_buckets * 4;
  for (uint64_t i = 0; i < total; ++i) {
    for (int tries = 0; tries < 16 && !ck.Slot(i); ++tries) {
    }
  }
  ck.Pages();
  if (offline) {
    // FREE blocks hinted "in use" that no participant of ours holds for
    // reuse: nobody else is attached, so nobody will take them back until
    // hints are rebuilt (recovery, the janitor).
    uint64_t held = 0;
    {
      std::lock_guard<std::mutex> g(kv->mu);
      for (const auto& p : kv->parts) {
        for (uint32_t cls = 0; cls < kv->v.n_classes; ++cls) held += p->reuse[cls] != 0;
      }
    }
    if (ck.census.free_hidden > held) {
      ck.Problem(std::to_string(ck.census.free_hidden - held) +
                 " free blocks are hinted in use and held by nobody (hints not rebuilt)");
      ck.leaked += ck.census.free_hidden - held;
    }
  }
  if (offline && ck.leaked != 0)
    ck.Problem(std::to_string(ck.leaked) + " blocks or pages are neither free nor referenced");
  if (offline) {
    shmkv_stats_t s{};
    s.struct_size = sizeof(s);
    SumStats(kv, &s);
    // A process killed between an insert's or unlink's CAS and its counter
    // update leaves the counter off by one: exact only if none ever died.
    if (s.recovered_processes == 0 && s.items != ck.census.slots_live)
      ck.Problem("item counter says " + std::to_string(s.items) + ", the index holds " +
                 std::to_string(ck.census.slots_live));
  }
  *census = ck.census;
  *problems = ck.problems;
  *leaked = ck.leaked;
  *first = ck.first;
}

int TakeCensus(shmkv_t* kv, Census* out) {
  uint64_t problems, leaked;
  std::string first;
  RunCheck(kv, false, out, &problems, &leaked, &first);
  return 0;
}

}  // namespace shmkv::internal
