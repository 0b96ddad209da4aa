// A per-key linearizability checker for recorded shmkv histories.
//
// Property: a history of get/set/add/replace/delete/incr operations,
// each with an invoke and a return timestamp, is linearizable iff there is
// a total order of its operations that respects real time (an operation
// that returned before another was invoked comes first) and in which every
// result is the one a single sequential register would give.
//
// Algorithm: Wing & Gong's search with Lowe's memoization (the one
// Porcupine implements), run separately on each key's sub-history:
// linearizability is P-compositional, so the whole history is linearizable
// iff every key's sub-history is. The memo key is the set of linearized
// operations plus the model state; the set is stored as a watermark plus
// the few operations below it that are not yet linearized, which stays
// small because it is bounded by the number of overlapping operations.
//
// Pending operations (their process was killed before they returned) have
// no return: they may take effect at any instant after their invocation,
// or never. The checker gives them an infinite return time and accepts any
// result from them, which is exactly that.
#ifndef SHMKV_TESTS_STRESS_LINEARIZABILITY_H_
#define SHMKV_TESTS_STRESS_LINEARIZABILITY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shmkv::stress {

enum class OpKind : uint8_t { kGet, kSet, kAdd, kReplace, kDelete, kIncr };

enum class Outcome : uint8_t {
  kOk,        // get: hit; add/replace/delete: done; incr: `number` is the new value
  kNotFound,  // get: miss; replace/delete on an absent key
  kExists,    // add on a present key
  kNotNum,    // incr on a value that is not a decimal int64
  kOverflow,  // incr would overflow
};

struct Operation {
  std::string key;
  OpKind kind = OpKind::kGet;
  int process = 0;        // for diagnostics only
  int64_t call_ns = 0;    // invoke timestamp
  int64_t return_ns = 0;  // return timestamp; ignored when pending
  bool pending = false;   // never returned: any effect or none, any result
  std::string value;      // set/add/replace: the value written
  int64_t delta = 0;      // incr
  int64_t initial = 0;    // incr: the value of a created key
  Outcome outcome = Outcome::kOk;
  std::string result;  // get with kOk: the value read
  int64_t number = 0;  // incr with kOk: the value returned
};

struct CheckOptions {
  // Bound on search steps per key; beyond it the result is "inconclusive"
  // (ok == false, inconclusive == true). Histories from the stress tests
  // need a small multiple of their length.
  uint64_t max_steps_per_key = 200'000'000;
};

struct CheckResult {
  bool ok = true;
  bool inconclusive = false;  // the step bound was hit
  std::string key;            // the first key that failed
  std::string explanation;    // what failed, with the operations around it
  uint64_t keys_checked = 0;
  uint64_t ops_checked = 0;
  uint64_t steps = 0;
};

// The sequential model: one register per key. What `op` returns when
// applied to `state`, and the state it leaves in `*next`.
struct ModelResult {
  Outcome outcome = Outcome::kOk;
  std::string result;  // get with kOk
  int64_t number = 0;  // incr with kOk
};
ModelResult ApplyModel(const std::optional<std::string>& state, const Operation& op,
                       std::optional<std::string>* next);

// Returns false when `op`
// cannot have produced its recorded result from `state`; otherwise sets
// `*next`. A pending operation accepts any result.
bool StepModel(const std::optional<std::string>& state, const Operation& op,
               std::optional<std::string>* next);

// Checks one key's history (every operation must have the same key).
CheckResult CheckKeyHistory(const std::vector<Operation>& ops, const CheckOptions& options = {});

// Partitions by key and checks each sub-history; stops at the first failure.
CheckResult CheckHistory(const std::vector<Operation>& ops, const CheckOptions& options = {});

std::string Describe(const Operation& op);

}  // namespace shmkv::stress

#endif  // SHMKV_TESTS_STRESS_LINEARIZABILITY_H_
