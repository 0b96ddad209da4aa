// Hooks for tests, compiled only into the static shmkv_testing library
// (SHMKV_TESTING). The installed library has none of them.
#ifndef SHMKV_SRC_TESTING_H_
#define SHMKV_SRC_TESTING_H_

#include <cstdint>
#include <string>

#include "shmkv/shmkv.h"

namespace shmkv::internal {

// Accounting of every block and slot of a segment, for leak and
// consistency assertions. Read-only; exact only when no write is in flight.
struct Census {
  uint64_t slots_live = 0;
  uint64_t slots_pending = 0;
  uint64_t blocks_free = 0;
  uint64_t blocks_alloc = 0;         // owned, not published
  uint64_t blocks_linked = 0;        // published (or decided)
  uint64_t blocks_killed = 0;        // losing insert claims not yet reclaimed
  uint64_t linked_unreferenced = 0;  // LINKED blocks no slot points to: a leak
  uint64_t referenced_twice = 0;     // blocks two slots point to: corruption
  uint64_t duplicate_keys = 0;       // keys with more than one LIVE slot
  uint64_t bad_slots = 0;            // slots whose block is out of range or not LINKED
  // FREE blocks whose hint bit says "in use": held by a participant for its
  // next allocation (FreeBlock), or left by a dead one until recovery.
  uint64_t free_hidden = 0;
};
int TakeCensus(shmkv_t* kv, Census* out);

}  // namespace shmkv::internal

#if defined(SHMKV_TESTING)
namespace shmkv::testing {

// Segment time used by every handle of this process instead of the real
// clock, in ms since the segment epoch; a negative value restores the real
// clock. Lets property tests step over TTL edges deterministically.
void SetFakeNowMs(int64_t now_ms);

// Planted bug for checking the checkers: when on, reads skip the re-check
// of the slot version after copying a value (design-notes §4.1). Also set
// by the environment variable SHMKV_TEST_SKIP_READ_VALIDATION=1.
void SetSkipReadValidation(bool on);

// Crash points: when the armed crash point is reached for the n-th time
// (1-based) in this process, the process kills itself with SIGKILL. The
// environment variables SHMKV_TEST_CRASH_AT=<name> and
// SHMKV_TEST_CRASH_COUNT=<n> arm it too. Names are listed by CrashPoints().
void ArmCrashPoint(const char* name, uint64_t nth);
const char* const* CrashPoints();  // NULL-terminated list

// Called, when set, at every crash point and step point of every thread,
// with its name, before the crash check: a test pauses a thread there to
// replay an interleaving deterministically. nullptr removes it.
using StepHook = void (*)(const char* point);
void SetStepHook(StepHook hook);

// Invariant 2 probe: how many LIVE entries key has, from two identical
// reads of its 8 candidate slots (so they all held at one moment); -1 if
// the slots kept changing. *why (may be NULL) describes the entries.
int LiveCopies(shmkv_t* kv, const void* key, size_t len, std::string* why);

}  // namespace shmkv::testing
#endif

#endif  // SHMKV_SRC_TESTING_H_
