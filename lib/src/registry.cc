// Processes, participants, liveness and recovery (design-notes §3.5, §6).
//
// A process registers by taking the OFD write lock on its record's byte of
// the segment file, then CASing the record FREE -> ACTIVE. The lock is the
// liveness signal: the kernel drops it when the process dies, whatever the
// cause, and it is per open file description, so neither PID reuse nor
// another fd of the same file can fake it. Each thread of a process gets a
// participant record on its first call (its id is the owner id in block
// states); a fork child re-registers on its first call.
#include <pthread.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "handle.h"
#include "testing.h"

namespace shmkv::internal {

namespace {

constexpr uint64_t kCasRange = 1ull << 16;

uint64_t ProcWord(uint64_t st, uint64_t recoverer, uint64_t inc) {
  return (inc << 24) | (recoverer << 8) | st;
}
uint64_t ProcSt(uint64_t w) { return w & 0xff; }
uint64_t ProcInc(uint64_t w) { return w >> 24; }

uint64_t PartWord(uint64_t st, uint64_t proc, uint64_t inc) {
  return (inc << 32) | (proc << 8) | st;
}
uint64_t PartSt(uint64_t w) { return w & 0xff; }
uint64_t PartProc(uint64_t w) { return (w >> 8) & 0xffffff; }
uint64_t PartInc(uint64_t w) { return w >> 32; }

}  // namespace

// This process's pid without a system call per operation (glibc does not
// cache getpid()); refreshed in the child by the fork handler below.
std::atomic<pid_t> g_pid{0};
__thread ThreadFast t_fast
    __attribute__((tls_model("initial-exec"))) = {0, 0, nullptr, false, nullptr};

namespace {

pid_t CurrentPid() {
  const pid_t p = g_pid.load(std::memory_order_relaxed);
  return p != 0 ? p : ::getpid();
}

void AtForkChildPid() {
  g_pid.store(::getpid(), std::memory_order_relaxed);
  t_fast.serial = 0;  // the child's only thread: never the parent's participant
}

// Registered when the library is loaded, so that a fork before any handle
// is opened refreshes it too.
[[maybe_unused]] const bool g_pid_handler = [] {
  g_pid.store(::getpid(), std::memory_order_relaxed);
  pthread_atfork(nullptr, nullptr, AtForkChildPid);
  return true;
}();

// Open handles of this process, so that a thread exiting can give back its
// participants of handles that are still open.
std::mutex g_handles_mu;
std::unordered_map<uint64_t, shmkv_t*>& Handles() {
  static auto* m = new std::unordered_map<uint64_t, shmkv_t*>();
  return *m;
}

struct TlsEntry {
  uint64_t serial;
  pid_t pid;
  PartLocal* part;
};

void ReleaseParticipant(shmkv_t* kv, PartLocal* p);

// Per-thread state: the last error message and the thread's participants,
// one per open handle it used. Reached through one initial-exec TLS
// pointer (no __tls_get_addr call on the hot path); freed at thread exit by
// a pthread key destructor, which gives the participants back. Lock order
// everywhere: g_handles_mu, then a handle's mu.
struct ThreadState {
  std::string last_error;
  std::vector<TlsEntry> parts;
};

__thread ThreadState* t_state __attribute__((tls_model("initial-exec"))) = nullptr;

void DestroyThreadState(void* arg) {
  auto* ts = static_cast<ThreadState*>(arg);
  {
    std::lock_guard<std::mutex> g(g_handles_mu);
    for (const TlsEntry& x : ts->parts) {
      auto it = Handles().find(x.serial);
      if (it == Handles().end() || x.pid != CurrentPid()) continue;
      shmkv_t* kv = it->second;
      std::lock_guard<std::mutex> hg(kv->mu);
      for (size_t k = 0; k < kv->parts.size(); ++k) {
        if (kv->parts[k].get() != x.part) continue;
        ReleaseParticipant(kv, x.part);
        kv->parts.erase(kv->parts.begin() + static_cast<long>(k));
        break;
      }
    }
  }
  // A later destructor of this thread that calls us must not find the
  // participants just given back (nor this state).
  t_fast = {0, 0, nullptr, false, nullptr};
  t_state = nullptr;
  delete ts;
}

pthread_key_t g_thread_key;
std::once_flag g_thread_key_once;

ThreadState& State() {
  if (t_state != nullptr) return *t_state;
  std::call_once(g_thread_key_once, [] { pthread_key_create(&g_thread_key, DestroyThreadState); });
  t_state = new ThreadState();
  pthread_setspecific(g_thread_key, t_state);
  return *t_state;
}

// fork(): the child must not inherit held process-local mutexes, nor keep
// the parent's lock fds (which would keep the parent looking alive).
void AtForkPrepare() {
  g_handles_mu.lock();
  for (auto& [serial, kv] : Handles()) kv->mu.lock();
}
void AtForkParent() {
  for (auto& [serial, kv] : Handles()) kv->mu.unlock();
  g_handles_mu.unlock();
}
void AtForkChild() {
  for (auto& [serial, kv] : Handles()) {
    kv->seg->DropLockFd();
    kv->mu.unlock();
  }
  g_handles_mu.unlock();
}

void FoldStats(const View& v, ParticipantRecord* rec) {
  for (uint32_t i = 0; i < kStatCount; ++i) {
    const uint64_t x = LoadRelaxed(&rec->stats[i]);
    if (x != 0) FetchAdd(&v.hdr->retired[i], x);
    StoreRelaxed(&rec->stats[i], 0);
  }
}

void ReleaseParticipant(shmkv_t* kv, PartLocal* p) {
  const View& v = kv->v;
  for (uint32_t cls = 0; cls < v.n_classes; ++cls) {  // let go of the held blocks
    if (p->reuse[cls] != 0) ReleaseHeld(v, cls, p->reuse[cls]);
    p->reuse[cls] = 0;
  }
  FoldStats(v, p->rec);
  StoreRelease(&p->rec->inflight_off, 0);
  StoreRelease(&p->rec->state, PartWord(kPartFree, 0, PartInc(LoadAcquire(&p->rec->state)) + 1));
}

}  // namespace

void SetError(std::string_view msg) {
  State().last_error.assign(msg);
  t_fast.static_error = nullptr;
  t_fast.has_error = true;
}
void ClearErrorSlow() {
  if (t_state != nullptr) t_state->last_error.clear();
  t_fast.static_error = nullptr;
  t_fast.has_error = false;
}
int FailStatic(int rc, const char* literal) {
  t_fast.static_error = literal;
  t_fast.has_error = true;
  return rc;
}
int Fail(int rc, std::string_view msg) {
  SetError(msg);
  return rc;
}
const char* LastError() {
  if (const char* s = t_fast.static_error) return s;
  return State().last_error.c_str();
}

int RecoverDeadLocked(shmkv_t* kv, uint32_t* recovered);

int RegisterProcess(shmkv_t* kv) {
  const View& v = kv->v;
  const int fd = kv->seg->lock_fd();
  for (int round = 0; round < 2; ++round) {
    for (uint64_t i = 0; i < v.n_procs; ++i) {
      ProcRecord* r = &v.procs[i];
      uint64_t w = LoadAcquire(&r->state);
      if (ProcSt(w) != kProcFree) continue;
      if (!TryLockByte(fd, kProcLockBase + static_cast<off_t>(i))) continue;
      // Lock first, then publish ACTIVE: an ACTIVE record is always locked
      // while its process lives.
      if (!CasWord(&r->state, w, ProcWord(kProcActive, 0, ProcInc(w)))) {
        UnlockByte(fd, kProcLockBase + static_cast<off_t>(i));
        continue;
      }
      StoreRelaxed(&r->pid, static_cast<uint64_t>(CurrentPid()));
      timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      StoreRelaxed(&r->attach_realtime_ns,
                   uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec));
      kv->proc_index = static_cast<int64_t>(i);
      kv->pid = CurrentPid();
      return 0;
    }
    // Full: records of dead processes may be waiting for recovery.
    kv->proc_index = -1;
    uint32_t n = 0;
    RecoverDeadLocked(kv, &n);
  }
  return Fail(SHMKV_EBUSY, "too many processes attached: all " + std::to_string(v.n_procs) +
                               " process records are in use");
}

namespace {

PartLocal* AcquireParticipant(shmkv_t* kv, int* rc) {
  const View& v = kv->v;
  const uint64_t start = (static_cast<uint64_t>(kv->proc_index) * 2) % v.n_parts;
  for (uint64_t k = 0; k < v.n_parts; ++k) {
    const uint64_t t = (start + k) % v.n_parts;
    ParticipantRecord* rec = &v.parts[t];
    uint64_t w = LoadAcquire(&rec->state);
    if (PartSt(w) != kPartFree) continue;
    if (!CasWord(&rec->state, w,
                 PartWord(kPartActive, static_cast<uint64_t>(kv->proc_index), PartInc(w))))
      continue;
    StoreRelaxed(&rec->inflight_off, 0);
    for (auto& s : rec->stats) StoreRelaxed(&s, 0);
    auto p = std::make_unique<PartLocal>();
    p->index = static_cast<uint32_t>(t);
    p->rec = rec;
    p->rng = (t + 1) * 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(CurrentPid());
    PartLocal* raw = p.get();
    kv->parts.push_back(std::move(p));
    return raw;
  }
  *rc = Fail(SHMKV_EBUSY, "too many threads attached: all " + std::to_string(v.n_parts) +
                              " participant records are in use");
  return nullptr;
}

}  // namespace

// Registers this process if the handle was inherited through fork().
// Caller holds g_handles_mu and kv->mu.
int EnsureRegisteredLocked(shmkv_t* kv) {
  if (kv->read_only || kv->pid == CurrentPid()) return 0;
  // A fork child: take our own open file description and register anew.
  kv->parts.clear();  // the parent's participants, not ours to release
  if (int e = kv->seg->ReopenLockFd()) return Fail(e, "cannot reopen the segment after fork");
  return RegisterProcess(kv);
}

PartLocal* CurrentParticipant(shmkv_t* kv, int* rc) {
  const pid_t pid = CurrentPid();
  ThreadState& ts = State();
  for (const TlsEntry& x : ts.parts) {
    if (x.serial == kv->serial && x.pid == pid) {
      t_fast = {kv->serial, pid, x.part, t_fast.has_error, t_fast.static_error};
      return x.part;
    }
  }
  std::lock_guard<std::mutex> hg(g_handles_mu);
  std::lock_guard<std::mutex> g(kv->mu);
  if ((*rc = EnsureRegisteredLocked(kv)) != 0) return nullptr;
  PartLocal* p = AcquireParticipant(kv, rc);
  if (p == nullptr) return nullptr;
  // Drop entries of closed handles or of the parent process.
  std::erase_if(ts.parts, [pid](const TlsEntry& x) {
    return x.pid != pid || Handles().count(x.serial) == 0;
  });
  ts.parts.push_back({kv->serial, pid, p});
  t_fast = {kv->serial, pid, p, t_fast.has_error, t_fast.static_error};
  return p;
}

void TrackHandle(shmkv_t* kv) {
  static std::atomic<uint64_t> serial{1};
  static std::once_flag atfork;
  std::call_once(atfork, [] { pthread_atfork(AtForkPrepare, AtForkParent, AtForkChild); });
  kv->serial = serial.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> g(g_handles_mu);
  Handles()[kv->serial] = kv;
}

void DetachHandle(shmkv_t* kv) {
  {
    std::lock_guard<std::mutex> g(g_handles_mu);
    Handles().erase(kv->serial);
  }
  if (kv->read_only || kv->proc_index < 0 || kv->pid != CurrentPid()) return;
  const View& v = kv->v;
  for (auto& p : kv->parts) ReleaseParticipant(kv, p.get());
  kv->parts.clear();
  ProcRecord* r = &v.procs[kv->proc_index];
  const uint64_t w = LoadAcquire(&r->state);
  StoreRelease(&r->state, ProcWord(kProcFree, 0, ProcInc(w) + 1));
  UnlockByte(kv->seg->lock_fd(), kProcLockBase + kv->proc_index);
}

uint64_t NextCas(Ctx& c) {
  PartLocal* p = c.p;
  if (p->cas_next == p->cas_end) {
    // One shared fetch_add per 65536 tokens: unique across processes,
    // almost monotonic (design-notes §3.6).
    p->cas_next = FetchAdd(&c.v.hdr->cas_next, kCasRange);
    if (p->cas_next == 0) p->cas_next = 1;
    p->cas_end = p->cas_next + kCasRange;
  }
  return p->cas_next++;
}

// Recovery proper; the caller is registered (or not attached at all).
// A recoverer holds the OFD lock kRecoverLockBase + i while it recovers
// record i, so there is one recoverer per record at a time, and a
// recoverer that dies releases it for the next one (every step is an
// idempotent CAS, so redoing a half-done recovery is safe).
int RecoverDeadLocked(shmkv_t* kv, uint32_t* recovered) {
  const View& v = kv->v;
  const int fd = kv->seg->lock_fd();
  const bool registered = kv->proc_index >= 0 && kv->pid == CurrentPid();
  *recovered = 0;
  std::vector<bool> dead(v.n_parts, false);
  std::vector<uint64_t> claimed;  // process records we are recovering
  std::vector<uint64_t> incs;
  for (uint64_t i = 0; i < v.n_procs; ++i) {
    if (registered && static_cast<int64_t>(i) == kv->proc_index) continue;
    ProcRecord* r = &v.procs[i];
    if (ProcSt(LoadAcquire(&r->state)) == kProcFree) continue;
    const off_t proc_byte = kProcLockBase + static_cast<off_t>(i);
    if (ByteLockedByOther(fd, proc_byte)) continue;  // alive
    const off_t rec_byte = kRecoverLockBase + static_cast<off_t>(i);
    if (!TryLockByte(fd, rec_byte)) continue;  // someone else is recovering it
    // Re-check under the recovery lock: the record may have been recovered
    // and taken by a new process meanwhile (it locks its byte before it
    // publishes ACTIVE).
    const uint64_t w = LoadAcquire(&r->state);
    uint64_t expect = w;
    if (ProcSt(w) == kProcFree || ByteLockedByOther(fd, proc_byte) ||
        !CasWord(&r->state, expect, ProcWord(kProcRecovering, 0, ProcInc(w)))) {
      UnlockByte(fd, rec_byte);
      continue;
    }
    claimed.push_back(i);
    incs.push_back(ProcInc(w));
  }
  if (claimed.empty()) return 0;
  for (uint64_t t = 0; t < v.n_parts; ++t) {
    const uint64_t w = LoadAcquire(&v.parts[t].state);
    if (PartSt(w) != kPartActive) continue;
    for (uint64_t i : claimed) dead[t] = dead[t] || PartProc(w) == i;
  }
  // No participant of our own: frees by recovery are accounted in the
  // retired counters, so recovery also works before we registered.
  Ctx c{kv, v, nullptr, 0};
  RecoverParticipants(c, dead);
  RebuildHints(v);
  for (uint64_t t = 0; t < v.n_parts; ++t) {
    if (!dead[t]) continue;
    ParticipantRecord* rec = &v.parts[t];
    FoldStats(v, rec);
    uint64_t w = LoadAcquire(&rec->state);
    if (PartSt(w) == kPartActive) CasWord(&rec->state, w, PartWord(kPartFree, 0, PartInc(w) + 1));
  }
  for (size_t k = 0; k < claimed.size(); ++k) {
    ProcRecord* r = &v.procs[claimed[k]];
    uint64_t expect = ProcWord(kProcRecovering, 0, incs[k]);
    CasWord(&r->state, expect, ProcWord(kProcFree, 0, incs[k] + 1));
    UnlockByte(fd, kRecoverLockBase + static_cast<off_t>(claimed[k]));
  }
  FetchAdd(&v.hdr->recovered, claimed.size());
  *recovered = static_cast<uint32_t>(claimed.size());
  return 0;
}

int RecoverDead(shmkv_t* kv, uint32_t* recovered) {
  {
    // A fork child must register first: until then its lock fd is the
    // parent's description, and the parent would look dead to it.
    std::lock_guard<std::mutex> hg(g_handles_mu);
    std::lock_guard<std::mutex> g(kv->mu);
    if (int rc = EnsureRegisteredLocked(kv)) return rc;
  }
  return RecoverDeadLocked(kv, recovered);
}

size_t ListProcesses(shmkv_t* kv, shmkv_process_info_t* out, size_t cap) {
  const View& v = kv->v;
  // Probing liveness needs an fd of the segment: our lock fd, or for a
  // read-only handle nothing (then every record is reported alive).
  const int fd = kv->seg->lock_fd();
  const bool registered = kv->proc_index >= 0 && kv->pid == CurrentPid();
  size_t n = 0;
  for (uint64_t i = 0; i < v.n_procs; ++i) {
    const ProcRecord* r = &v.procs[i];
    if (ProcSt(LoadAcquire(&r->state)) != kProcActive) continue;
    if (n < cap) {
      out[n].pid = static_cast<uint32_t>(LoadRelaxed(&r->pid));
      out[n].attach_realtime_ns = LoadRelaxed(&r->attach_realtime_ns);
      const bool mine = registered && static_cast<int64_t>(i) == kv->proc_index;
      out[n].alive =
          mine || fd < 0 || ByteLockedByOther(fd, kProcLockBase + static_cast<off_t>(i)) ? 1 : 0;
    }
    ++n;
  }
  return n;
}

void SumStats(shmkv_t* kv, shmkv_stats_t* out) {
  const View& v = kv->v;
  uint64_t s[16];
  for (int i = 0; i < 16; ++i) s[i] = LoadRelaxed(&v.hdr->retired[i]);
  for (uint64_t t = 0; t < v.n_parts; ++t) {
    if (PartSt(LoadAcquire(&v.parts[t].state)) != kPartActive) continue;
    for (uint32_t i = 0; i < kStatCount; ++i) s[i] += LoadRelaxed(&v.parts[t].stats[i]);
  }
  uint64_t attached = 0;
  for (uint64_t i = 0; i < v.n_procs; ++i)
    attached += ProcSt(LoadAcquire(&v.procs[i].state)) == kProcActive;
  const uint32_t size = out->struct_size;
  shmkv_stats_t r{};
  r.struct_size = size;
  r.memory_bytes = v.hdr->total_size;
  r.memory_used = static_cast<int64_t>(s[kStatMemUsed]) < 0 ? 0 : s[kStatMemUsed];
  r.items = static_cast<int64_t>(s[kStatItems]) < 0 ? 0 : s[kStatItems];
  r.capacity_items = v.hdr->max_items;
  r.gets = s[kStatGets];
  r.hits = s[kStatHits];
  r.misses = s[kStatMisses];
  r.sets = s[kStatSets];
  r.deletes = s[kStatDeletes];
  r.incrs = s[kStatIncrs];
  r.cas_failures = s[kStatCasFailures];
  r.evictions = s[kStatEvictions];
  r.expirations = s[kStatExpirations];
  r.recovered_processes = LoadRelaxed(&v.hdr->recovered);
  r.attached_processes = attached;
  std::memcpy(out, &r, std::min<size_t>(size, sizeof(r)));
}

}  // namespace shmkv::internal
