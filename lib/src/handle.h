// The handle behind shmkv_t and shmkv::Cache, and the per-operation
// context. Process-local: nothing here lives in shared memory.
#ifndef SHMKV_SRC_HANDLE_H_
#define SHMKV_SRC_HANDLE_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "atomics.h"
#include "clock.h"
#include "layout.h"
#include "segment.h"
#include "shmkv/shmkv.h"
#include "table.h"

namespace shmkv::internal {

// Process-local state of one participant (a thread of this process using
// this handle).
struct PartLocal {
  uint32_t index = 0;
  ParticipantRecord* rec = nullptr;
  uint64_t cas_next = 0, cas_end = 0;   // reserved range of cas tokens
  uint32_t cur_page[kMaxClasses] = {};  // page + 1 we allocate from; 0 = none
  uint32_t rotor[kMaxClasses] = {};     // bitmap word to start at
  uint32_t scan_pos[kMaxClasses] = {};  // page + 1 where the next page search starts
  // (page + 1) << 32 | block index of the block this participant freed last
  // in each class, held for its next allocation with its hint bit set;
  // 0 = none (the block may still be taken meanwhile: its state decides).
  uint64_t reuse[kMaxClasses] = {};
  uint64_t rng = 0;

  // Stats have one writer (this participant): relaxed load + store, no RMW.
  void Stat(StatIndex i, int64_t d = 1) {
    uint64_t* w = &rec->stats[i];
    StoreRelaxed(w, LoadRelaxed(w) + static_cast<uint64_t>(d));
  }
  uint64_t Random() {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  }
};

}  // namespace shmkv::internal

struct shmkv_handle {
  std::unique_ptr<shmkv::internal::Segment> seg;
  shmkv::internal::View v;
  bool read_only = false;
  bool precise = false;
  uint64_t serial = 0;  // unique per open in this process

  // shmkv_info's huge_page_bytes, measured on the first call that asks for
  // it: it reads a byte of every 2 MiB and parses /proc/self/smaps, too much
  // for callers that poll shmkv_info (shmkv top), and the pages under a
  // segment are chosen when it is created.
  std::once_flag huge_once;
  uint64_t huge_bytes = 0;

  std::mutex mu;  // guards the registration fields below
  pid_t pid = 0;  // the process that holds proc_index
  int64_t proc_index = -1;
  std::vector<std::unique_ptr<shmkv::internal::PartLocal>> parts;
};

namespace shmkv::internal {

// Per-operation context.
struct Ctx {
  shmkv_t* kv;
  const View& v;
  PartLocal* p;  // nullptr on read-only handles
  // Segment time in ms, read from the clock by the first Now() of the
  // operation (0 until then): a GET of an entry without an expiry, or a
  // SET that replaces one, never reads the clock. Read it through Now()
  // only, so that no path can take an unread 0 for the time.
  uint64_t clock_ms;

  uint64_t Now() {
    if (clock_ms == 0) [[unlikely]]
      clock_ms = SegmentNowMs(kv->v.epoch_ns, kv->precise);
    return clock_ms;
  }
  void Stat(StatIndex i, int64_t d = 1) {
    if (p) p->Stat(i, d);
  }
};

// The inline entry of every operation (registry.cc keeps it): the
// participant this thread used last (handle serial, pid: a fork child or
// another handle misses and takes the full path), and whether the thread
// has an error message set, so that clearing it costs nothing otherwise.
struct ThreadFast {
  uint64_t serial;
  pid_t pid;
  PartLocal* part;
  bool has_error;
  // The last error's detail when it is a string literal (FailStatic): a
  // hot path such as a miss copies nothing into the thread's std::string.
  const char* static_error;
};
extern __thread ThreadFast t_fast __attribute__((tls_model("initial-exec")));
extern std::atomic<pid_t> g_pid;  // this process (refreshed at fork)

// Thread-local detail of the last error (shmkv_last_error).
void SetError(std::string_view msg);
void ClearErrorSlow();
inline void ClearError() {
  if (t_fast.has_error) ClearErrorSlow();
}
int Fail(int rc, std::string_view msg);       // SetError(msg), return rc
int FailStatic(int rc, const char* literal);  // the same for a string literal, without a copy
inline int FailNotFound() { return FailStatic(SHMKV_ENOTFOUND, "key not found"); }

// shmkv_throttle, with the arguments turned into nanoseconds of segment
// time by CheckThrottle: interval = period / rate, tolerance = burst x
// interval, both and now_ns < 2^62.
struct ThrottleArgs {
  uint64_t interval_ns;
  uint64_t tolerance_ns;
  uint64_t now_ns;
};
struct ThrottleResult {
  bool allowed;
  uint64_t retry_after_ns;
  uint64_t remaining;
};

// checks.cc: argument checks (error code + message) and the entry of
// every operation (participant, clock).
int CheckKeySlow(const shmkv_t* kv, const void* key, size_t len);
inline int CheckKey(const shmkv_t* kv, const void* key, size_t len) {
  if (key != nullptr && len != 0 && len <= kv->v.max_key_len) [[likely]]
    return 0;
  return CheckKeySlow(kv, key, len);
}
int CheckValueSlow(const shmkv_t* kv, const void* val, size_t len);
inline int CheckValue(const shmkv_t* kv, const void* val, size_t len) {
  if ((val != nullptr || len == 0) && len <= kv->v.max_value_len) [[likely]]
    return 0;
  return CheckValueSlow(kv, val, len);
}
int CheckTtlSlow(uint64_t ttl_ms);
inline int CheckTtl(uint64_t ttl_ms) {
  if (ttl_ms <= kMaxTtlMs) [[likely]]
    return 0;
  return CheckTtlSlow(ttl_ms);
}
// Validates shmkv_throttle's arguments and fills *a (now_ns: now, read
// after the operation's clock, c.Now()).
int CheckThrottle(Ctx& c, uint64_t rate, uint64_t period_ms, uint64_t burst, ThrottleArgs* a);
int EnterSlow(shmkv_t* kv, Ctx* c);  // c->p: the participant, registering if needed
// The entry of every operation: the participant this thread uses (none on
// a read-only handle). c->clock_ms stays 0: Ctx::Now reads the clock when
// the operation first needs it.
inline int Enter(shmkv_t* kv, bool write, Ctx* c) {
  ClearError();
  c->clock_ms = 0;
  c->p = nullptr;
  if (kv->read_only) {
    if (write) [[unlikely]]
      return Fail(SHMKV_EREADONLY, "the handle is read-only");
    return 0;
  }
  // t_fast by name: bound to a reference here, the ASan+UBSan build (GCC
  // 12) reported "member access within null pointer" for it.
  if (t_fast.serial == kv->serial && t_fast.pid == g_pid.load(std::memory_order_relaxed))
      [[likely]] {
    c->p = t_fast.part;
    return 0;
  }
  return EnterSlow(kv, c);
}

// registry.cc
const char* LastError();
void TrackHandle(shmkv_t* kv);
int RegisterProcess(shmkv_t* kv);
// The calling thread's participant, registering (again, after fork) if
// needed. nullptr with *rc set on failure.
PartLocal* CurrentParticipant(shmkv_t* kv, int* rc);
void DetachHandle(shmkv_t* kv);
int RecoverDead(shmkv_t* kv, uint32_t* recovered);
void SumStats(shmkv_t* kv, shmkv_stats_t* out);
size_t ListProcesses(shmkv_t* kv, shmkv_process_info_t* out, size_t cap);
uint64_t NextCas(Ctx& c);

// check.cc: the consistency checker behind shmkv_check and TakeCensus.
struct Census;
void RunCheck(shmkv_t* kv, bool offline, Census* census, uint64_t* problems, uint64_t* leaked,
              std::string* first);

// alloc.cc
int ClassFor(const View& v, uint64_t bytes);  // -1 if too big
unsigned char* Alloc(Ctx& c, uint32_t cls, uint64_t* gen, int* rc);
// Frees blk (one CAS on its state, Invariant 4). With a participant p and
// hold, a single-page block is held for p's next allocation of its class
// (its hint bit stays set; see ClaimReused in alloc.cc), letting go of the
// one held before.
void FreeBlock(const View& v, PartLocal* p, unsigned char* blk, uint32_t cls, uint64_t gen,
               bool hold = true);
// Lets go of a block held by FreeBlock (held: PartLocal::reuse's word):
// clears its hint bit.
void ReleaseHeld(const View& v, uint32_t cls, uint64_t held);
void RebuildHints(const View& v);
void RebuildHints(const View& v, uint64_t first_page, uint64_t pages);
// Blocks of page `page` (class cls) that the hints say are free.
uint64_t FreeHints(const View& v, uint64_t page, uint32_t cls);

// table.cc: the verbs (arguments already validated by the caller).
int OpGet(Ctx& c, std::string_view key, void* buf, size_t buf_len, size_t* val_len,
          shmkv_item_info_t* info);
int OpGetString(Ctx& c, std::string_view key, std::string* out, shmkv_item_info_t* info);
// Batch get (shmkv_mget): keys[i] (valid, checked by the caller) into
// bufs[i]; per-key results in rcs[i].
void OpMGet(Ctx& c, size_t n, const std::string_view* keys, void* const* bufs,
            const size_t* buf_lens, size_t* val_lens, int* rcs, shmkv_item_info_t* infos);
int OpStore(Ctx& c, std::string_view key, std::string_view val, const shmkv_write_opts_t& o,
            uint64_t* new_cas);
int OpDelete(Ctx& c, std::string_view key, uint64_t expect_cas);
int OpIncr(Ctx& c, std::string_view key, int64_t delta, int64_t initial, uint64_t ttl_ms,
           int64_t* result);
int OpTouch(Ctx& c, std::string_view key, uint64_t ttl_ms);
int OpThrottle(Ctx& c, std::string_view key, const ThrottleArgs& a, ThrottleResult* out);
// shmkv_get_stale: OpGet that also returns an expired entry still present.
int OpGetStale(Ctx& c, std::string_view key, void* buf, size_t buf_len, size_t* val_len,
               shmkv_item_info_t* info, uint64_t* expired_ms);
int OpTtl(Ctx& c, std::string_view key, int64_t* ttl_ms);
int OpClear(Ctx& c);
int OpScan(Ctx& c, uint64_t* cursor, std::string_view prefix, size_t limit, shmkv_scan_fn fn,
           void* ctx);
// Reclaims provably expired LIVE entries in slots [first, first + count)
// (the janitor's sweep); returns the number reclaimed.
uint64_t SweepExpired(Ctx& c, uint64_t first, uint64_t count);
// Evicts from a size class by its CLOCK hand until `want` blocks were
// freed or two revolutions passed; returns the number freed.
uint64_t EvictClass(Ctx& c, uint32_t cls, uint64_t want, uint64_t* last_page);

// The LIVE slot that links block blk in state st, validated (false if none,
// or if the block or slot changed meanwhile).
bool FindLiveReference(const View& v, unsigned char* blk, uint32_t cls, uint64_t st, Slot** slot,
                       SlotWord* w);
// Unlinks slot word w (LIVE, linking blk at gen) and frees the block.
bool UnlinkBlock(Ctx& c, Slot* s, const SlotWord& w, unsigned char* blk, uint32_t cls,
                 uint64_t gen);

// Frees or promotes what dead participants left: `dead` has one flag per
// participant index. Used by RecoverDead.
void RecoverParticipants(Ctx& c, const std::vector<bool>& dead);

}  // namespace shmkv::internal

#if defined(SHMKV_TESTING)
namespace shmkv::testing {
void CrashPoint(const char* name);
void Step(const char* name);
bool SkipReadValidation();
}  // namespace shmkv::testing
#define SHMKV_CRASHPOINT(name) ::shmkv::testing::CrashPoint(name)
// A point a test can pause a thread at (SetStepHook), but not crash at:
// a crash there leaves what an earlier crash point leaves.
#define SHMKV_STEP(name) ::shmkv::testing::Step(name)
#else
#define SHMKV_CRASHPOINT(name) ((void)0)
#define SHMKV_STEP(name) ((void)0)
#endif

#endif  // SHMKV_SRC_HANDLE_H_
