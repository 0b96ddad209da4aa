// Wing–Gong/Lowe linearizability search, per key. See linearizability.h.
#include "stress/linearizability.h"

#include <algorithm>
#include <cstddef>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <unordered_set>
#include <utility>

#include "stress/stress_util.h"

namespace shmkv::stress {
namespace {

const char* KindName(OpKind kind) {
  switch (kind) {
    case OpKind::kGet:
      return "get";
    case OpKind::kSet:
      return "set";
    case OpKind::kAdd:
      return "add";
    case OpKind::kReplace:
      return "replace";
    case OpKind::kDelete:
      return "delete";
    case OpKind::kIncr:
      return "incr";
  }
  return "?";
}

const char* OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kOk:
      return "ok";
    case Outcome::kNotFound:
      return "notfound";
    case Outcome::kExists:
      return "exists";
    case Outcome::kNotNum:
      return "notnum";
    case Outcome::kOverflow:
      return "overflow";
  }
  return "?";
}

std::string Abbreviate(const std::string& s) {
  constexpr size_t kMax = 48;
  if (s.size() <= kMax) return s;
  return s.substr(0, kMax) + "...(" + std::to_string(s.size()) + " bytes)";
}

std::string DescribeState(const std::optional<std::string>& state) {
  return state ? "\"" + Abbreviate(*state) + "\"" : std::string("<absent>");
}

// The memo key: which operations are linearized, and the model state.
// Linearized = every index below `watermark` except those in `holes`.
struct MemoKey {
  uint32_t watermark = 0;
  std::vector<uint32_t> holes;  // sorted
  std::optional<std::string> state;
  bool operator==(const MemoKey& o) const {
    return watermark == o.watermark && holes == o.holes && state == o.state;
  }
};

struct MemoKeyHash {
  size_t operator()(const MemoKey& k) const {
    size_t h = std::hash<uint32_t>()(k.watermark);
    for (uint32_t x : k.holes) h = h * 1000003u ^ std::hash<uint32_t>()(x);
    h = h * 1000003u ^ (k.state ? std::hash<std::string>()(*k.state) : 0x9e3779b9u);
    return h;
  }
};

}  // namespace

std::string Describe(const Operation& op) {
  std::ostringstream o;
  o << "p" << op.process << " " << KindName(op.kind) << "(" << Abbreviate(op.key);
  if (op.kind == OpKind::kSet || op.kind == OpKind::kAdd || op.kind == OpKind::kReplace) {
    o << ", \"" << Abbreviate(op.value) << "\"";
  } else if (op.kind == OpKind::kIncr) {
    o << ", delta=" << op.delta << ", initial=" << op.initial;
  }
  o << ") [" << op.call_ns << ", ";
  if (op.pending) {
    o << "pending]";
    return o.str();
  }
  o << op.return_ns << "] -> " << OutcomeName(op.outcome);
  if (op.kind == OpKind::kGet && op.outcome == Outcome::kOk) {
    o << " \"" << Abbreviate(op.result) << "\"";
  } else if (op.kind == OpKind::kIncr && op.outcome == Outcome::kOk) {
    o << " " << op.number;
  }
  return o.str();
}

ModelResult ApplyModel(const std::optional<std::string>& state, const Operation& op,
                       std::optional<std::string>* next) {
  ModelResult m;
  Outcome& outcome = m.outcome;
  std::string& result = m.result;
  int64_t& number = m.number;
  *next = state;
  switch (op.kind) {
    case OpKind::kGet:
      if (state) {
        result = *state;
      } else {
        outcome = Outcome::kNotFound;
      }
      break;
    case OpKind::kSet:
      *next = op.value;
      break;
    case OpKind::kAdd:
      if (state) {
        outcome = Outcome::kExists;
      } else {
        *next = op.value;
      }
      break;
    case OpKind::kReplace:
      if (state) {
        *next = op.value;
      } else {
        outcome = Outcome::kNotFound;
      }
      break;
    case OpKind::kDelete:
      if (state) {
        next->reset();
      } else {
        outcome = Outcome::kNotFound;
      }
      break;
    case OpKind::kIncr: {
      if (!state) {
        number = op.initial;
        *next = std::to_string(number);
        break;
      }
      int64_t current = 0;
      if (!ParseDecimal(*state, &current)) {
        outcome = Outcome::kNotNum;
        break;
      }
      if (__builtin_add_overflow(current, op.delta, &number)) {
        outcome = Outcome::kOverflow;
        break;
      }
      *next = std::to_string(number);
      break;
    }
  }
  return m;
}

bool StepModel(const std::optional<std::string>& state, const Operation& op,
               std::optional<std::string>* next) {
  ModelResult m = ApplyModel(state, op, next);
  if (op.pending) return true;
  if (op.outcome != m.outcome) return false;
  if (op.kind == OpKind::kGet && m.outcome == Outcome::kOk && op.result != m.result) return false;
  if (op.kind == OpKind::kIncr && m.outcome == Outcome::kOk && op.number != m.number) return false;
  return true;
}

CheckResult CheckKeyHistory(const std::vector<Operation>& input, const CheckOptions& options) {
  CheckResult res;
  res.keys_checked = 1;
  res.ops_checked = input.size();
  if (input.empty()) return res;
  res.key = input[0].key;

  // Operations in call order: their index is what the memo key records.
  std::vector<const Operation*> ops;
  ops.reserve(input.size());
  for (const Operation& op : input) ops.push_back(&op);
  std::stable_sort(ops.begin(), ops.end(),
                   [](const Operation* a, const Operation* b) { return a->call_ns < b->call_ns; });
  const size_t n = ops.size();
  constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
  auto return_time = [&](size_t i) { return ops[i]->pending ? kNever : ops[i]->return_ns; };

  // Events: node 0 is the list head; node 1 + 2i is op i's call, 2 + 2i its
  // return. At equal times calls come first, which treats touching
  // operations as concurrent (the permissive reading).
  struct Event {
    int64_t time;
    bool is_call;
    uint32_t op;
  };
  std::vector<Event> events;
  events.reserve(2 * n);
  for (uint32_t i = 0; i < n; ++i) {
    events.push_back({ops[i]->call_ns, true, i});
    events.push_back({return_time(i), false, i});
  }
  std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    if (a.time != b.time) return a.time < b.time;
    return a.is_call && !b.is_call;
  });
  const size_t nodes = 2 * n + 1;
  constexpr uint32_t kNil = std::numeric_limits<uint32_t>::max();
  std::vector<uint32_t> prev(nodes, kNil), next(nodes, kNil), node_op(nodes, 0);
  std::vector<bool> node_is_call(nodes, false);
  std::vector<uint32_t> return_node(n, kNil);
  {
    uint32_t last = 0;
    for (size_t e = 0; e < events.size(); ++e) {
      uint32_t node = static_cast<uint32_t>(e + 1);
      node_op[node] = events[e].op;
      node_is_call[node] = events[e].is_call;
      if (!events[e].is_call) return_node[events[e].op] = node;
      prev[node] = last;
      next[last] = node;
      last = node;
    }
  }
  auto lift = [&](uint32_t call) {
    uint32_t ret = return_node[node_op[call]];
    next[prev[call]] = next[call];
    if (next[call] != kNil) prev[next[call]] = prev[call];
    next[prev[ret]] = next[ret];
    if (next[ret] != kNil) prev[next[ret]] = prev[ret];
  };
  auto unlift = [&](uint32_t call) {
    uint32_t ret = return_node[node_op[call]];
    next[prev[ret]] = ret;
    if (next[ret] != kNil) prev[next[ret]] = ret;
    next[prev[call]] = call;
    if (next[call] != kNil) prev[next[call]] = call;
  };

  struct Frame {
    uint32_t call_node;
    std::optional<std::string> state;
    uint32_t watermark;
    std::vector<uint32_t> holes;
  };
  std::vector<Frame> stack;
  std::unordered_set<MemoKey, MemoKeyHash> memo;
  std::optional<std::string> state;
  uint32_t watermark = 0;
  std::vector<uint32_t> holes;

  // The deepest point reached, for the explanation.
  size_t best_depth = 0;
  std::optional<std::string> best_state;
  std::vector<uint32_t> best_candidates;
  auto record_depth = [&] {
    if (stack.size() < best_depth && !best_candidates.empty()) return;
    best_depth = stack.size();
    best_state = state;
    best_candidates.clear();
    for (uint32_t e = next[0]; e != kNil; e = next[e]) {
      if (!node_is_call[e]) break;  // an unlinearized op's return: nothing later can go first
      best_candidates.push_back(node_op[e]);
    }
  };

  uint32_t entry = next[0];
  record_depth();
  while (next[0] != kNil) {
    if (++res.steps > options.max_steps_per_key) {
      res.ok = false;
      res.inconclusive = true;
      res.explanation = "search step bound hit after " + std::to_string(res.steps) + " steps";
      return res;
    }
    if (entry == kNil) break;  // cannot happen: the list always ends with a return
    if (node_is_call[entry]) {
      const uint32_t i = node_op[entry];
      std::optional<std::string> next_state;
      if (StepModel(state, *ops[i], &next_state)) {
        MemoKey key;
        if (i >= watermark) {
          key.holes = holes;
          for (uint32_t h = watermark; h < i; ++h) key.holes.push_back(h);
          key.watermark = i + 1;
        } else {
          key.holes.reserve(holes.size());
          for (uint32_t h : holes) {
            if (h != i) key.holes.push_back(h);
          }
          key.watermark = watermark;
        }
        key.state = next_state;
        auto [it, inserted] = memo.insert(std::move(key));
        if (inserted) {
          stack.push_back({entry, std::move(state), watermark, std::move(holes)});
          state = std::move(next_state);
          watermark = it->watermark;
          holes = it->holes;
          lift(entry);
          if (stack.size() >= best_depth) record_depth();
          entry = next[0];
          continue;
        }
      }
      entry = next[entry];
    } else {
      if (stack.empty()) {
        res.ok = false;
        std::ostringstream o;
        o << "key \"" << Abbreviate(res.key) << "\" is not linearizable: after linearizing "
          << best_depth << " of " << n << " operations (state " << DescribeState(best_state)
          << "), none of these can take effect next:\n";
        for (uint32_t c : best_candidates) o << "  " << Describe(*ops[c]) << "\n";
        // The operations just before them in call order, for context.
        if (!best_candidates.empty()) {
          uint32_t first = *std::min_element(best_candidates.begin(), best_candidates.end());
          uint32_t from = first >= 12 ? first - 12 : 0;
          o << "preceding operations (by call time):\n";
          for (uint32_t c = from; c < first; ++c) o << "  " << Describe(*ops[c]) << "\n";
        }
        res.explanation = o.str();
        return res;
      }
      Frame frame = std::move(stack.back());
      stack.pop_back();
      state = std::move(frame.state);
      watermark = frame.watermark;
      holes = std::move(frame.holes);
      unlift(frame.call_node);
      entry = next[frame.call_node];
    }
  }
  return res;
}

CheckResult CheckHistory(const std::vector<Operation>& ops, const CheckOptions& options) {
  std::map<std::string, std::vector<Operation>> by_key;
  for (const Operation& op : ops) by_key[op.key].push_back(op);
  CheckResult total;
  for (auto& [key, sub] : by_key) {
    CheckResult r = CheckKeyHistory(sub, options);
    total.keys_checked += 1;
    total.ops_checked += r.ops_checked;
    total.steps += r.steps;
    if (!r.ok) {
      total.ok = false;
      total.inconclusive = r.inconclusive;
      total.key = key;
      total.explanation = r.explanation;
      return total;
    }
  }
  return total;
}

}  // namespace shmkv::stress
