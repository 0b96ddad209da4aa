// Test hooks (testing.h). Empty unless SHMKV_TESTING.
#include "testing.h"

#if defined(SHMKV_TESTING)
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "clock.h"
#include "handle.h"

namespace shmkv::testing {
namespace {

const char* const kCrashPoints[] = {
    "alloc.claimed",      // block state ALLOC(me), nothing else done
    "counter.sealed",     // counter block sealed, replacement not linked yet
    "incr.in_place",      // counter read, fresh token taken, P not changed yet
    "update.linked",      // new block LINKED, slot not swapped yet
    "update.swapped",     // slot swapped, old block not freed yet
    "unlink.intent",      // intent written, unlinking CAS not done
    "unlink.cas",         // slot emptied, block not freed yet
    "insert.claimed",     // PENDING claim published, nothing decided
    "insert.killed",      // higher claims killed, lowest not linked yet
    "insert.decided",     // claim LINKED, slot still PENDING
    "free.state",         // block FREE, bitmap hint not cleared (or held: on purpose)
    "alloc.reclaimed",    // held block taken back: ALLOC(me), hint bit not re-checked
    "drain.started",      // page DRAINING(me), nothing reserved or evicted yet
    "drain.reserved",     // every block of the page reserved, page not released
    "assign.formatting",  // page FORMATTING(me), block states half rewritten
    "run.formatting",     // run pages all FORMATTING(me), head not formatted
    "run.head_released",  // drained run head unassigned, continuations not yet
    nullptr,
};

std::atomic<bool> g_skip_validation{
    std::getenv("SHMKV_TEST_SKIP_READ_VALIDATION") != nullptr &&
    std::strcmp(std::getenv("SHMKV_TEST_SKIP_READ_VALIDATION"), "1") == 0};

std::atomic<StepHook> g_step_hook{nullptr};

struct Armed {
  std::string name;
  std::atomic<uint64_t> remaining{0};
  Armed() {
    if (const char* n = std::getenv("SHMKV_TEST_CRASH_AT")) {
      name = n;
      const char* c = std::getenv("SHMKV_TEST_CRASH_COUNT");
      remaining = c ? std::strtoull(c, nullptr, 10) : 1;
    }
  }
};
Armed& Crash() {
  static Armed a;
  return a;
}

}  // namespace

void SetFakeNowMs(int64_t now_ms) {
  internal::g_fake_now_ms.store(now_ms, std::memory_order_relaxed);
}

void SetSkipReadValidation(bool on) { g_skip_validation.store(on, std::memory_order_relaxed); }
bool SkipReadValidation() { return g_skip_validation.load(std::memory_order_relaxed); }

void ArmCrashPoint(const char* name, uint64_t nth) {
  Crash().name = name ? name : "";
  Crash().remaining = nth;
}

const char* const* CrashPoints() { return kCrashPoints; }

int LiveCopies(shmkv_t* kv, const void* key, size_t len, std::string* why) {
  return internal::ProbeLiveCopies(kv->v, {static_cast<const char*>(key), len}, why);
}

void SetStepHook(StepHook hook) { g_step_hook.store(hook, std::memory_order_release); }

void Step(const char* name) {
  if (StepHook hook = g_step_hook.load(std::memory_order_acquire)) hook(name);
}

void CrashPoint(const char* name) {
  Step(name);
  Armed& a = Crash();
  if (a.remaining.load(std::memory_order_relaxed) == 0 || a.name != name) return;
  if (a.remaining.fetch_sub(1) == 1) ::kill(::getpid(), SIGKILL);
}

}  // namespace shmkv::testing
#endif
