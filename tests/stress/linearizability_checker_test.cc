// Property: the linearizability checker accepts exactly the linearizable
// histories: it passes hand-built linearizable histories (pending
// operations included, with or without effect), rejects stale reads, lost
// or duplicated increments, values never written and double adds, and
// stays fast on long random linearizable histories.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "stress/linearizability.h"

namespace shmkv::stress {
namespace {

Operation Op(OpKind kind, int64_t call, int64_t ret, int process = 0) {
  Operation op;
  op.key = "k";
  op.kind = kind;
  op.call_ns = call;
  op.return_ns = ret;
  op.process = process;
  return op;
}

Operation Set(std::string v, int64_t call, int64_t ret, int process = 0) {
  Operation op = Op(OpKind::kSet, call, ret, process);
  op.value = std::move(v);
  return op;
}

Operation Add(std::string v, Outcome outcome, int64_t call, int64_t ret, int process = 0) {
  Operation op = Op(OpKind::kAdd, call, ret, process);
  op.value = std::move(v);
  op.outcome = outcome;
  return op;
}

Operation Replace(std::string v, Outcome outcome, int64_t call, int64_t ret) {
  Operation op = Op(OpKind::kReplace, call, ret);
  op.value = std::move(v);
  op.outcome = outcome;
  return op;
}

Operation Del(Outcome outcome, int64_t call, int64_t ret, int process = 0) {
  Operation op = Op(OpKind::kDelete, call, ret, process);
  op.outcome = outcome;
  return op;
}

Operation Get(std::optional<std::string> v, int64_t call, int64_t ret, int process = 0) {
  Operation op = Op(OpKind::kGet, call, ret, process);
  if (v) {
    op.result = *v;
  } else {
    op.outcome = Outcome::kNotFound;
  }
  return op;
}

Operation Incr(int64_t delta, int64_t initial, Outcome outcome, int64_t number, int64_t call,
               int64_t ret, int process = 0) {
  Operation op = Op(OpKind::kIncr, call, ret, process);
  op.delta = delta;
  op.initial = initial;
  op.outcome = outcome;
  op.number = number;
  return op;
}

Operation Pending(Operation op) {
  op.pending = true;
  op.return_ns = 0;
  return op;
}

TEST(LinearizabilityCheckerTest, EmptyHistoryIsLinearizable) { EXPECT_TRUE(CheckHistory({}).ok); }

TEST(LinearizabilityCheckerTest, SequentialHistoryPasses) {
  std::vector<Operation> h = {
      Get(std::nullopt, 0, 1),
      Set("a", 2, 3),
      Get("a", 4, 5),
      Add("b", Outcome::kExists, 6, 7),
      Replace("c", Outcome::kOk, 8, 9),
      Get("c", 10, 11),
      Del(Outcome::kOk, 12, 13),
      Del(Outcome::kNotFound, 14, 15),
      Replace("d", Outcome::kNotFound, 16, 17),
      Add("e", Outcome::kOk, 18, 19),
      Get("e", 20, 21),
  };
  CheckResult r = CheckHistory(h);
  EXPECT_TRUE(r.ok) << r.explanation;
  EXPECT_EQ(r.ops_checked, h.size());
}

TEST(LinearizabilityCheckerTest, ConcurrentReadMaySeeOldOrNewValue) {
  for (const char* seen : {"old", "new"}) {
    std::vector<Operation> h = {Set("old", 0, 1), Set("new", 10, 20, 1), Get(seen, 12, 18, 2)};
    CheckResult r = CheckHistory(h);
    EXPECT_TRUE(r.ok) << seen << ": " << r.explanation;
  }
}

TEST(LinearizabilityCheckerTest, OrderIsFoundAmongOverlappingWrites) {
  // Two overlapping writes; the reads fix their order as b then a.
  std::vector<Operation> h = {Set("a", 0, 100, 0), Set("b", 1, 99, 1), Get("b", 2, 3, 2),
                              Get("a", 4, 5, 2), Get("a", 101, 102, 2)};
  CheckResult r = CheckHistory(h);
  EXPECT_TRUE(r.ok) << r.explanation;
}

TEST(LinearizabilityCheckerTest, StaleReadAfterCompletedWriteFails) {
  std::vector<Operation> h = {Set("old", 0, 1), Set("new", 2, 3, 1), Get("old", 4, 5, 2)};
  CheckResult r = CheckHistory(h);
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.inconclusive);
  EXPECT_EQ(r.key, "k");
  EXPECT_NE(r.explanation.find("not linearizable"), std::string::npos) << r.explanation;
}

TEST(LinearizabilityCheckerTest, ReadGoingBackInTimeFails) {
  // Concurrent with the write, the reader sees new then old: not allowed.
  std::vector<Operation> h = {Set("old", 0, 1), Set("new", 10, 100, 1), Get("new", 11, 12, 2),
                              Get("old", 13, 14, 2)};
  EXPECT_FALSE(CheckHistory(h).ok);
}

TEST(LinearizabilityCheckerTest, MissAfterCompletedWriteFails) {
  std::vector<Operation> h = {Set("a", 0, 1), Get(std::nullopt, 2, 3, 1)};
  EXPECT_FALSE(CheckHistory(h).ok);
}

TEST(LinearizabilityCheckerTest, ValueNeverWrittenFails) {
  std::vector<Operation> h = {Set("a", 0, 10), Set("b", 0, 10, 1), Get("ab", 5, 6, 2)};
  EXPECT_FALSE(CheckHistory(h).ok);
}

TEST(LinearizabilityCheckerTest, TwoSuccessfulConcurrentAddsFail) {
  std::vector<Operation> h = {Add("a", Outcome::kOk, 0, 10, 0), Add("b", Outcome::kOk, 1, 9, 1)};
  EXPECT_FALSE(CheckHistory(h).ok);
  h[1].outcome = Outcome::kExists;
  EXPECT_TRUE(CheckHistory(h).ok);
}

TEST(LinearizabilityCheckerTest, DeleteMakesLaterReadsMiss) {
  std::vector<Operation> h = {Set("a", 0, 1), Del(Outcome::kOk, 2, 3), Get("a", 4, 5, 1)};
  EXPECT_FALSE(CheckHistory(h).ok);
  h[2] = Get(std::nullopt, 4, 5, 1);
  EXPECT_TRUE(CheckHistory(h).ok);
}

TEST(LinearizabilityCheckerTest, PendingWriteMayBeVisible) {
  std::vector<Operation> h = {Set("old", 0, 1), Pending(Set("new", 2, 0, 1)), Get("new", 50, 51, 2),
                              Get("new", 60, 61, 2)};
  CheckResult r = CheckHistory(h);
  EXPECT_TRUE(r.ok) << r.explanation;
}

TEST(LinearizabilityCheckerTest, PendingWriteMayNeverTakeEffect) {
  std::vector<Operation> h = {Set("old", 0, 1), Pending(Set("new", 2, 0, 1)), Get("old", 50, 51, 2),
                              Get("old", 60, 61, 2)};
  CheckResult r = CheckHistory(h);
  EXPECT_TRUE(r.ok) << r.explanation;
}

TEST(LinearizabilityCheckerTest, PendingWriteMayTakeEffectLate) {
  // Invisible at first, visible much later (e.g. a dead inserter's claim
  // promoted by a helper).
  std::vector<Operation> h = {Set("old", 0, 1), Pending(Set("new", 2, 0, 1)), Get("old", 50, 51, 2),
                              Get("new", 60, 61, 2)};
  CheckResult r = CheckHistory(h);
  EXPECT_TRUE(r.ok) << r.explanation;
}

TEST(LinearizabilityCheckerTest, PendingWriteCannotBeUndone) {
  std::vector<Operation> h = {Set("old", 0, 1), Pending(Set("new", 2, 0, 1)), Get("new", 50, 51, 2),
                              Get("old", 60, 61, 2)};
  EXPECT_FALSE(CheckHistory(h).ok);
}

TEST(LinearizabilityCheckerTest, PendingWriteCannotTakeEffectBeforeItsCall) {
  std::vector<Operation> h = {Set("old", 0, 1), Get("new", 2, 3, 2), Pending(Set("new", 10, 0, 1))};
  EXPECT_FALSE(CheckHistory(h).ok);
}

TEST(LinearizabilityCheckerTest, PendingOperationAcceptsAnyResult) {
  Operation pending_get = Pending(Get("garbage that was never written", 2, 0, 1));
  std::vector<Operation> h = {Set("a", 0, 1), pending_get, Get("a", 5, 6)};
  EXPECT_TRUE(CheckHistory(h).ok);
}

TEST(LinearizabilityCheckerTest, IncrementsCreateThenCount) {
  std::vector<Operation> h = {
      Incr(1, 10, Outcome::kOk, 10, 0, 1),  // created holding `initial`
      Incr(1, 10, Outcome::kOk, 11, 2, 3),  // then += delta
      Get("11", 4, 5),
      Incr(-5, 0, Outcome::kOk, 6, 6, 7),
  };
  CheckResult r = CheckHistory(h);
  EXPECT_TRUE(r.ok) << r.explanation;
}

TEST(LinearizabilityCheckerTest, ConcurrentIncrementsCommute) {
  std::vector<Operation> h = {Set("5", 0, 1), Incr(1, 0, Outcome::kOk, 7, 2, 10, 0),
                              Incr(1, 0, Outcome::kOk, 6, 3, 9, 1),
                              Incr(1, 0, Outcome::kOk, 8, 4, 11, 2), Get("8", 12, 13)};
  CheckResult r = CheckHistory(h);
  EXPECT_TRUE(r.ok) << r.explanation;
}

TEST(LinearizabilityCheckerTest, LostIncrementFails) {
  std::vector<Operation> h = {Set("5", 0, 1), Incr(1, 0, Outcome::kOk, 6, 2, 10, 0),
                              Incr(1, 0, Outcome::kOk, 6, 3, 9, 1)};
  EXPECT_FALSE(CheckHistory(h).ok);
}

TEST(LinearizabilityCheckerTest, IncrOnTextIsNotNum) {
  std::vector<Operation> h = {
      Set("abc", 0, 1),  Incr(1, 0, Outcome::kNotNum, 0, 2, 3), Get("abc", 4, 5),
      Set("0042", 6, 7), Incr(1, 0, Outcome::kOk, 43, 8, 9),    Get("43", 10, 11)};
  CheckResult r = CheckHistory(h);
  EXPECT_TRUE(r.ok) << r.explanation;
  h[1].outcome = Outcome::kOk;
  h[1].number = 1;
  EXPECT_FALSE(CheckHistory(h).ok);
}

TEST(LinearizabilityCheckerTest, IncrOverflowLeavesValueUnchanged) {
  std::vector<Operation> h = {Set("9223372036854775807", 0, 1),
                              Incr(1, 0, Outcome::kOverflow, 0, 2, 3),
                              Get("9223372036854775807", 4, 5)};
  CheckResult r = CheckHistory(h);
  EXPECT_TRUE(r.ok) << r.explanation;
}

TEST(LinearizabilityCheckerTest, KeysAreCheckedIndependentlyAndTheBadOneIsNamed) {
  std::vector<Operation> h = {Set("a", 0, 1), Get("a", 2, 3)};
  Operation x = Set("x", 0, 1);
  x.key = "other";
  Operation y = Get("y", 2, 3);
  y.key = "other";
  h.push_back(x);
  h.push_back(y);
  CheckResult r = CheckHistory(h);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.key, "other");
  EXPECT_EQ(r.keys_checked, 2u);
}

// A random linearizable history: each process runs ops back to back; each
// op takes effect at a random instant inside its interval, and its result
// is computed by applying the ops in that order to a register.
std::vector<Operation> RandomHistory(uint32_t seed, int processes, int ops_per_process, int keys,
                                     int pending_every) {
  std::mt19937_64 rng(seed);
  struct Planned {
    Operation op;
    int64_t point;
  };
  std::vector<Planned> planned;
  int value_seq = 0;
  for (int p = 0; p < processes; ++p) {
    int64_t t = static_cast<int64_t>(rng() % 100);
    for (int i = 0; i < ops_per_process; ++i) {
      Operation op;
      op.process = p;
      op.key = "key" + std::to_string(rng() % keys);
      op.kind = static_cast<OpKind>(rng() % 6);
      op.value =
          (rng() % 3 == 0) ? std::to_string(rng() % 1000) : "v" + std::to_string(value_seq++);
      op.delta = static_cast<int64_t>(rng() % 5) - 2;
      op.initial = static_cast<int64_t>(rng() % 100);
      op.call_ns = t + static_cast<int64_t>(rng() % 50);
      op.return_ns = op.call_ns + 1 + static_cast<int64_t>(rng() % 300);
      int64_t point = op.call_ns + static_cast<int64_t>(rng() % (op.return_ns - op.call_ns + 1));
      t = op.return_ns;
      planned.push_back({op, point});
    }
  }
  std::stable_sort(planned.begin(), planned.end(),
                   [](const Planned& a, const Planned& b) { return a.point < b.point; });
  std::vector<std::optional<std::string>> state(keys);
  std::vector<Operation> out;
  int count = 0;
  for (Planned& pl : planned) {
    Operation& op = pl.op;
    std::optional<std::string>& s = state[std::stoi(op.key.substr(3))];
    std::optional<std::string> next;
    ModelResult m = ApplyModel(s, op, &next);
    op.outcome = m.outcome;
    op.result = m.result;
    op.number = m.number;
    s = next;
    if (pending_every > 0 && ++count % pending_every == 0) op.pending = true;
    out.push_back(op);
  }
  return out;
}

TEST(LinearizabilityCheckerTest, LongRandomLinearizableHistoriesPassQuickly) {
  for (uint32_t seed = 1; seed <= 5; ++seed) {
    std::vector<Operation> h = RandomHistory(seed, 4, 5000, 4, 0);
    CheckResult r = CheckHistory(h);
    EXPECT_TRUE(r.ok) << "seed " << seed << ": " << r.explanation;
    EXPECT_EQ(r.ops_checked, h.size());
  }
}

TEST(LinearizabilityCheckerTest, RandomHistoriesWithPendingOpsPass) {
  for (uint32_t seed = 10; seed <= 14; ++seed) {
    std::vector<Operation> h = RandomHistory(seed, 4, 2000, 3, 997);
    CheckResult r = CheckHistory(h);
    EXPECT_TRUE(r.ok) << "seed " << seed << ": " << r.explanation;
  }
}

TEST(LinearizabilityCheckerTest, CorruptedReadInRandomHistoryIsCaught) {
  for (uint32_t seed = 20; seed <= 24; ++seed) {
    std::vector<Operation> h = RandomHistory(seed, 4, 3000, 4, 0);
    auto it = std::find_if(
        h.begin() + static_cast<std::ptrdiff_t>(h.size() / 2), h.end(),
        [](const Operation& op) { return op.kind == OpKind::kGet && op.outcome == Outcome::kOk; });
    ASSERT_NE(it, h.end());
    it->result = "never written";
    CheckResult r = CheckHistory(h);
    EXPECT_FALSE(r.ok) << "seed " << seed;
    EXPECT_FALSE(r.inconclusive);
    EXPECT_EQ(r.key, it->key);
  }
}

}  // namespace
}  // namespace shmkv::stress
