#include "stale_reads.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <utility>

namespace shmkv::test {
namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
constexpr int64_t kBeginning = std::numeric_limits<int64_t>::min();

bool Completed(const HistoryEvent& e) {
  return e.status == HistoryStatus::kOk || e.status == HistoryStatus::kAbsent;
}

// A failed write may have happened at any time after it started.
int64_t EndOf(const HistoryEvent& e) { return Completed(e) ? e.end_ns : kNever; }

void SortByStart(std::vector<const HistoryEvent*>* events) {
  std::sort(events->begin(), events->end(),
            [](const HistoryEvent* a, const HistoryEvent* b) { return a->start_ns < b->start_ns; });
}

// Completed writes sorted by start, with the smallest end of every suffix:
// the earliest end among the writes that started after a given time.
class EarliestEndAfter {
 public:
  void Add(const HistoryEvent* w) { writes_.push_back(w); }
  void Build() {
    SortByStart(&writes_);
    suffix_.assign(writes_.size() + 1, nullptr);
    for (size_t i = writes_.size(); i-- > 0;) {
      const HistoryEvent* next = suffix_[i + 1];
      suffix_[i] = next != nullptr && next->end_ns <= writes_[i]->end_ns ? next : writes_[i];
    }
  }
  // The write that ended first among those that started after t; null if
  // none did.
  const HistoryEvent* Query(int64_t t) const {
    if (suffix_.empty()) return nullptr;  // not built: no writes
    const auto it =
        std::upper_bound(writes_.begin(), writes_.end(), t,
                         [](int64_t v, const HistoryEvent* w) { return v < w->start_ns; });
    return suffix_[static_cast<size_t>(it - writes_.begin())];
  }

 private:
  std::vector<const HistoryEvent*> writes_;
  std::vector<const HistoryEvent*> suffix_;
};

// The Deletes of one key sorted by start, with the latest end of every
// prefix: the best explanation of an absent read.
class LatestDeleteBefore {
 public:
  void Add(const HistoryEvent* d) { deletes_.push_back(d); }
  void Build() {
    SortByStart(&deletes_);
    prefix_.resize(deletes_.size());
    for (size_t i = 0; i < deletes_.size(); ++i) {
      const HistoryEvent* prev = i > 0 ? prefix_[i - 1] : nullptr;
      prefix_[i] = prev != nullptr && EndOf(*prev) >= EndOf(*deletes_[i]) ? prev : deletes_[i];
    }
  }
  // Among the Deletes that started before t, the one that ended last; null
  // if none did (then the initial state explains an absent read).
  const HistoryEvent* Query(int64_t t) const {
    const auto it =
        std::lower_bound(deletes_.begin(), deletes_.end(), t,
                         [](const HistoryEvent* d, int64_t v) { return d->start_ns < v; });
    const size_t n = static_cast<size_t>(it - deletes_.begin());
    return n == 0 ? nullptr : prefix_[n - 1];
  }

 private:
  std::vector<const HistoryEvent*> deletes_;
  std::vector<const HistoryEvent*> prefix_;
};

struct KeyWrites {
  std::vector<EarliestEndAfter> by_host;     // writes of host h
  std::vector<EarliestEndAfter> other_host;  // writes of every host but h
  EarliestEndAfter all;
  LatestDeleteBefore deletes;
};

std::string Value(const HistoryEvent& e) {
  return "p" + std::to_string(e.writer) + "." + std::to_string(e.seq);
}

}  // namespace

StaleReadReport CheckStaleReads(const std::vector<HistoryEvent>& history, int64_t bound_ns,
                                size_t max_examples) {
  StaleReadReport report;
  size_t hosts = 0;
  int64_t origin = kNever;
  for (const HistoryEvent& e : history) {
    hosts = std::max<size_t>(hosts, e.host + 1u);
    origin = std::min(origin, e.start_ns);
  }
  std::map<uint8_t, KeyWrites> keys;
  std::map<std::pair<uint32_t, uint32_t>, const HistoryEvent*> sets;  // by value
  for (const HistoryEvent& e : history) {
    if (e.op == HistoryOp::kGet) continue;
    KeyWrites& k = keys[e.key];
    k.by_host.resize(hosts);
    k.other_host.resize(hosts);
    if (e.op == HistoryOp::kSet) {
      ++report.sets;
      sets[{e.writer, e.seq}] = &e;
    } else {
      ++report.deletes;
      k.deletes.Add(&e);
    }
    if (!Completed(e)) {
      ++report.failed;
      continue;
    }
    k.all.Add(&e);
    k.by_host[e.host].Add(&e);
    for (size_t h = 0; h < hosts; ++h) {
      if (h != e.host) k.other_host[h].Add(&e);
    }
  }
  for (auto& [key, k] : keys) {
    k.all.Build();
    k.deletes.Build();
    for (EarliestEndAfter& e : k.by_host) e.Build();
    for (EarliestEndAfter& e : k.other_host) e.Build();
  }

  auto us = [&](int64_t t) { return std::to_string((t - origin) / 1000) + " us"; };
  auto describe = [&](const HistoryEvent& r, const char* what) {
    return std::string(what) + ": process " + std::to_string(r.process) + " on host " +
           std::to_string(r.host) + " read key " + std::to_string(r.key) + " [" + us(r.start_ns) +
           ", " + us(r.end_ns) + "] -> " +
           (r.status == HistoryStatus::kAbsent ? std::string("absent") : Value(r));
  };
  auto note = [&](std::string text) {
    if (report.examples.size() < max_examples) report.examples.push_back(std::move(text));
  };

  const KeyWrites no_writes{
      std::vector<EarliestEndAfter>(hosts), std::vector<EarliestEndAfter>(hosts), {}, {}};
  for (const HistoryEvent& r : history) {
    if (r.op != HistoryOp::kGet) continue;
    if (r.status == HistoryStatus::kError) {
      ++report.failed;
      continue;
    }
    ++report.reads;
    const auto found = keys.find(r.key);
    const KeyWrites& k = found == keys.end() ? no_writes : found->second;
    // The end of the write that produced what R returned.
    int64_t produced_end = kBeginning;
    std::string producer = "the initial state";
    if (r.status == HistoryStatus::kAbsent) {
      ++report.absent_reads;
      if (const HistoryEvent* d = k.deletes.Query(r.end_ns)) {
        produced_end = EndOf(*d);
        producer = "a delete [" + us(d->start_ns) + ", " + us(d->end_ns) + "]";
      }
    } else {
      const auto w = sets.find({r.writer, r.seq});
      if (r.status == HistoryStatus::kGarbage || w == sets.end() || w->second->key != r.key) {
        ++report.future_reads;
        note(describe(r, "(1) a value never written to this key"));
        continue;
      }
      if (w->second->start_ns >= r.end_ns) {
        ++report.future_reads;
        note(describe(r, "(1) a value from the future") + ", written [" + us(w->second->start_ns) +
             ", " + us(w->second->end_ns) + "]");
        continue;
      }
      produced_end = EndOf(*w->second);
      producer = "its write [" + us(w->second->start_ns) + ", " + us(w->second->end_ns) + "]";
    }
    if (produced_end == kNever) continue;  // a failed write: it may be the newest
    if (const HistoryEvent* w = k.by_host[r.host].Query(produced_end);
        w != nullptr && w->end_ns < r.start_ns) {
      ++report.same_host_stale;
      note(describe(r, "(2) stale on the host of a newer write") + ", produced by " + producer +
           "; process " + std::to_string(w->process) + " of the same host wrote [" +
           us(w->start_ns) + ", " + us(w->end_ns) + "]");
    }
    if (const HistoryEvent* w = k.all.Query(produced_end);
        w != nullptr && w->end_ns < r.start_ns && r.start_ns - w->end_ns > bound_ns) {
      ++report.beyond_bound;
      note(describe(r, "(3) older than the bound") + ", produced by " + producer + "; process " +
           std::to_string(w->process) + " on host " + std::to_string(w->host) + " wrote [" +
           us(w->start_ns) + ", " + us(w->end_ns) + "], " +
           std::to_string((r.start_ns - w->end_ns) / 1000) + " us before the read");
    }
    if (const HistoryEvent* w = k.other_host[r.host].Query(produced_end);
        w != nullptr && w->end_ns < r.start_ns) {
      ++report.cross_host_stale;
      report.max_cross_host_staleness_ns =
          std::max(report.max_cross_host_staleness_ns, r.start_ns - w->end_ns);
    }
  }
  return report;
}

}  // namespace shmkv::test
