// The results file (bench/results/latest.md), its CSV twin, and the data
// files the gnuplot script (charts.gp) draws.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "format.h"
#include "results.h"
#include "suite.h"

namespace peers {
namespace {

using Key = std::tuple<std::string, std::string, int>;  // scenario, workload, procs

struct Index {
  std::vector<Key> order;
  std::map<Key, std::map<std::string, const Row*>> at;

  explicit Index(const std::vector<Row>& rows) {
    for (const Row& r : rows) {
      const Key k{r.scenario, r.workload, r.procs};
      if (!at.count(k)) order.push_back(k);
      at[k][r.peer] = &r;
    }
  }
  const Row* Find(const std::string& sc, const std::string& wl, int procs,
                  const std::string& peer) const {
    auto it = at.find(Key{sc, wl, procs});
    if (it == at.end()) return nullptr;
    auto p = it->second.find(peer);
    return p == it->second.end() || p->second->reps == 0 ? nullptr : p->second;
  }
  // shmkv ops/s over the peer's, in the same scenario, workload and process count.
  double Ratio(const Row& r) const {
    const Row* s = Find(r.scenario, r.workload, r.procs, "shmkv");
    if (s == nullptr || r.reps == 0) return 0;
    return peers::Ratio(s->ops_per_s, r.ops_per_s);
  }
};

// A stall-test time, with enough digits to tell 1.04 ms from 1 ms.
std::string FmtStallNs(double v) { return v >= 1e6 ? Fmt("%.3f ms", v / 1e6) : FmtNs(v); }

// What the victim's scheduling counters say about one slow op.
std::string SchedOf(const SlowOpInfo& a) {
  if (!a.bracketed) return "scheduling not read";
  const std::string sw = std::to_string(a.nivcsw) + " involuntary / " + std::to_string(a.nvcsw) +
                         " voluntary switches";
  if (a.yields > 0) {
    return "yielded " + std::to_string(a.yields) + "× in its bracket, so nothing subtracted; " + sw;
  }
  const std::string what = a.preempted ? "preempted" : "not preempted";
  if (a.run_delay_ns <= 0) return what + ", no runqueue wait in its bracket (" + sw + ")";
  return what + ": " + FmtStallNs(a.run_delay_ns) + " on a runqueue in its " +
         FmtStallNs(a.bracket_ns) + " bracket, " + FmtStallNs(a.waited_ns) +
         " of it inside the op; " + sw;
}

void Targets(const Report& r, const Index& ix, std::ostream& out) {
  const std::string& sc = r.main_scenario;
  out << "## Targets (DESIGN.md §9, issue 6)\n\n"
      << "| target | measured | met |\n|---|---|---|\n";
  auto row = [&](const std::string& what, const std::string& got, int met) {
    out << "| " << what << " | " << got << " | "
        << (met < 0 ? "not measured"
            : met   ? "yes"
                    : "**no**")
        << " |\n";
  };
  const Row* g1 = ix.Find(sc, "get_hit", 1, "shmkv");
  std::string floor;  // two dependent loads into the store's working set
  {
    const uint64_t ws = r.shmkv_index_bytes + r.shmkv_block_bytes;
    const std::pair<uint64_t, double>*below = nullptr, *above = nullptr;
    for (const auto& c : r.chase_by_size) {
      if (c.first <= ws) below = &c;
      if (c.first >= ws && above == nullptr) above = &c;
    }
    auto at = [](const std::pair<uint64_t, double>& c) {
      return Fmt("%.0f", c.second) + " ns (" +
             Fmt("%.0f", static_cast<double>(c.first) / (1 << 20)) + " MiB)";
    };
    if (below != nullptr && above != nullptr) {
      floor = "; one GET alone makes 2 dependent loads into " +
              Fmt("%.0f", static_cast<double>(ws) / (1 << 20)) + " MiB, each between " +
              at(*below) + " and " + at(*above) + " here (Memory-latency floor below)";
    }
  }
  // The same op with the segment on 2-MiB pages (shmkv-huge, README "Huge
  // pages"), given beside the default; the default decides "met".
  auto on_huge = [&](const std::string& wl, int procs, bool p50) -> std::string {
    const Row* h = ix.Find(sc, wl, procs, "shmkv-huge");
    if (h == nullptr) return "";
    return "; on huge pages: " + (p50 ? FmtNs(h->p50) : FmtOps(h->ops_per_s) + " ops/s");
  };
  row("GET hit, 1 process: p50 < 100 ns",
      g1 ? FmtNs(g1->p50) + " (batch of 16 / 16)" + on_huge("get_hit", 1, true) + floor : "–",
      g1 ? g1->p50 < 100 : -1);
  row("GET hit, 1 process: ≥ 10 M ops/s on one core",
      g1 ? FmtOps(g1->ops_per_s) + " ops/s" + on_huge("get_hit", 1, false) : "–",
      g1 ? g1->ops_per_s >= 10e6 : -1);
  const Row* s1 = ix.Find(sc, "set_update", 1, "shmkv");
  row("SET update, 1 process: p50 < 150 ns",
      s1 ? FmtNs(s1->p50) + on_huge("set_update", 1, true) : "–", s1 ? s1->p50 < 150 : -1);
  auto ratio_target = [&](const std::string& what, const std::string& wl, int procs,
                          const std::string& peer, double need) {
    const Row* p = ix.Find(sc, wl, procs, peer);
    const double q = p ? ix.Ratio(*p) : 0;
    const Row* h = ix.Find(sc, wl, procs, "shmkv-huge");
    const std::string huge = h && p && p->ops_per_s > 0
                                 ? "; on huge pages: " + FmtRatio(h->ops_per_s / p->ops_per_s)
                                 : "";
    row(what, q > 0 ? FmtRatio(q) + huge : "–", q > 0 ? q >= need : -1);
  };
  ratio_target("GET, 2 processes: ≥ 3× boost-ipc", "get_hit", 2, "boost-ipc", 3);
  ratio_target("YCSB B (95/5) uniform, 2 processes: ≥ 5× boost-ipc", "ycsb_b_uniform", 2,
               "boost-ipc", 5);
  ratio_target("YCSB B (95/5) Zipf 0.99, 2 processes: ≥ 5× boost-ipc", "ycsb_b_zipf", 2,
               "boost-ipc", 5);
  ratio_target("GET vs Redis, 1 client, no pipelining: ≥ 50×", "get_hit", 1, "redis", 50);
  ratio_target("GET vs Redis pipelined 16: ≥ 5×", "get_hit", 1, "redis-p16", 5);
  const Row* inc = ix.Find(sc, "incr_hot", 2, "shmkv");
  const std::string handoff =
      r.handoff_ns > 0 ? "; each increment is one 16-byte CAS on the counter's block, in "
                         "place: its cache line moves to the other core, which takes " +
                             Fmt("%.0f", r.handoff_ns) + " ns here"
                       : "";
  row("INCR one hot key, 2 processes: ≥ 5 M ops/s total, exact count",
      inc ? FmtOps(inc->ops_per_s) + " ops/s, " +
                (inc->unexpected == 0 ? "count exact" : "**count wrong**: " + inc->note) + handoff
          : "–",
      inc ? inc->ops_per_s >= 5e6 && inc->unexpected == 0 : -1);
  {
    const Row* s = ix.Find(r.big_scenario, "get_hit", 1, "shmkv");
    const Row* b = ix.Find(r.big_scenario, "get_hit", 1, "shmkv-mget16");
    const Row* m = ix.Find(r.big_scenario, "get_hit", 1, "std-umap");
    std::string got = "–";
    int met = -1;
    if (b && m) {
      const double slower = m->ops_per_s / b->ops_per_s;
      got = "mget of 16 " + FmtOps(b->ops_per_s) + " keys/s vs " + FmtOps(m->ops_per_s) +
            ": shmkv takes " + Fmt("%.2f×", slower) + " the time per key";
      if (s) got += " (single gets: " + FmtOps(s->ops_per_s) + " ops/s)";
      met = slower <= 2;
    }
    row("10 M keys: mget of 16 within 2× of std::unordered_map per key", got, met);
  }
  {
    const MemoryResult* m = nullptr;
    for (const auto& x : r.memory) {
      if (x.peer == "shmkv" && (!m || x.items < m->items)) m = &x;
    }
    row("memory per item (16-B keys, 64-B values, index included): ≤ 150 B",
        m ? Fmt("%.0f B", m->bytes_per_item) + " (smallest segment, " + std::to_string(m->items) +
                " items)"
          : "–",
        m ? m->bytes_per_item <= 150 : -1);
  }
  {
    const StallResult* s = nullptr;
    for (const auto& x : r.stalls) {
      if (x.peer == "shmkv" && x.note.empty()) s = &x;
    }
    // Met on the worst op less the time the victim waited on a runqueue
    // (preempted by the OS, not delayed by the writer); the op as timed is
    // given too. Without the counters nothing is subtracted.
    std::string got = "–";
    if (s) {
      auto or_none = [](double ns) { return ns > 0 ? FmtStallNs(ns) : "none > 100 µs"; };
      got = "worst op during a stop, less the victim's runqueue wait: " +
            or_none(s->during_on_cpu_max);
      if (s->during_on_cpu_max > 0) {
        const SlowOpInfo& c = s->during_worst_on_cpu;
        got += std::string(" (") + (c.get ? "get" : "set") + ", " +
               (c.preempted ? "preempted" : "not preempted") + ", " + FmtStallNs(c.ns) +
               " as timed)";
      }
      got += "; as timed: " + or_none(s->during_worst.ns);
      if (s->during_worst.ns > 0) {
        got += " (" + std::string(s->during_worst.get ? "get" : "set") + ", " +
               SchedOf(s->during_worst) + ")";
      }
      if (s->sched_source.empty()) got += " (scheduling counters not read)";
      got += "; outside stops " + or_none(s->outside_max) + " as timed, " +
             or_none(s->outside_on_cpu_max) + " less runqueue wait";
    }
    row("a SIGSTOPped writer delays the other process ≤ 1 ms", got,
        s ? s->during_on_cpu_max <= 1e6 : -1);
  }
  out << "\nThe PHP targets (the native extension and FFI vs APCu) are measured by "
         "scripts/bench_php.sh: bench/results/php.md.\n\n";
}

// One table: a row per (scenario, workload, procs), a column per peer, the
// cell of a row that ran given by cell(); "–" for one that did not.
template <typename Cell>
void PeerTable(const Report& r, const Index& ix, std::ostream& out, Cell cell) {
  out << "| scenario | workload | procs |";
  for (const auto& p : r.peers) out << " " << p << " |";
  out << "\n|---|---|---|";
  for (size_t i = 0; i < r.peers.size(); ++i) out << "---|";
  out << "\n";
  for (const Key& k : ix.order) {
    const auto& [sc, wl, procs] = k;
    out << "| " << sc << " | " << wl << " | " << procs << " |";
    for (const auto& p : r.peers) {
      auto it = ix.at.at(k).find(p);
      if (it == ix.at.at(k).end() || it->second->reps == 0) {
        out << " – |";
        continue;
      }
      out << " " << cell(p, *it->second) << " |";
    }
    out << "\n";
  }
}

void Tables(const Report& r, const Index& ix, std::ostream& out) {
  out << "## Throughput: ops/s (shmkv ÷ peer)\n\n"
      << "Median of " << r.opt.reps
      << " interleaved repetitions. A ratio above 1 means shmkv did more ops/s. "
         "The 2-process rows add both processes' ops/s; redis and memcached with 2 "
         "processes are 2 clients. p16 rows compare with shmkv in 1 process.\n\n";
  PeerTable(r, ix, out, [&](const std::string& p, const Row& row) {
    std::string cell = FmtOps(row.ops_per_s);
    if (p != "shmkv") {
      const double q = ix.Ratio(row);
      if (q > 0) cell += " (" + FmtRatio(q) + ")";
    }
    if (row.unexpected > 0) cell += " ⚠";
    return cell;
  });
  out << "\n## Latency per op: p50 / p99 / p99.9\n\n"
      << "In-process and shared-memory stores are timed in batches of 16 ops and a "
         "p16 pipeline as one batch: their latency is the batch's time / 16. An "
         "unpipelined server op is timed on its own (one round trip).\n\n";
  PeerTable(r, ix, out, [](const std::string&, const Row& row) {
    return FmtNs(row.p50) + " / " + FmtNs(row.p99) + " / " + FmtNs(row.p999);
  });
  out << "\n";
}

void Checks(const Report& r, std::ostream& out) {
  out << "## Checks\n\n";
  int bad = 0;
  for (const Row& row : r.rows) {
    if (row.unexpected == 0 && (row.note.empty() || row.note == "n/a")) continue;
    if (row.note == "n/a") continue;
    ++bad;
    out << "- ⚠ " << row.scenario << " " << row.workload << " " << row.peer << " ×" << row.procs
        << ": " << row.unexpected << " unexpected outcomes"
        << (row.note.empty() ? "" : " (" + row.note + ")") << "\n";
  }
  if (bad == 0) {
    out << "Every run's outcomes were as the workload requires: every get_hit and YCSB get "
           "hit, every get_miss missed, every delete found its key, every set succeeded, "
           "and every incr_hot count was exact (hot counter = increments issued).\n";
  }
  for (const auto& m : r.messages) out << "- " << m << "\n";
  out << "\n";
}

void Extras(const Report& r, std::ostream& out) {
  out << "## Stall test\n\n"
      << "Two processes on the 100k × 64 B store: one writes Zipf-hot keys without pause and "
         "is SIGSTOPped "
      << r.opt.stall_stops << " times for " << r.opt.stall_stop_ms
      << " ms each (almost always inside a write: it does nothing else); the other runs YCSB A "
         "(50/50) on the same hot keys, every op timed on its own.\n\n"
      << "Two measures, because this machine is shared and a pinned process is still "
         "preempted now and then: the victim's throughput while the writer was stopped and "
         "while it was not (a writer that blocks others shows as a collapse while stopped), "
         "and its ops slower than 100 µs, split by whether they overlap a stop (those outside "
         "are the machine's own noise).\n\n"
      << "Each slow op is also given less the time the victim waited on a runqueue inside it "
         "(runnable, but the OS ran something else: preempted, not delayed by the writer). The "
         "victim reads its run_delay (/proc/thread-self/schedstat) and context switches "
         "(getrusage) between ops, never inside one: every "
      << r.opt.stall_sample_every
      << " ops and right after each slow op, "
         "so a slow op lies between two readings (its bracket); of the bracket's runqueue wait, "
         "only what cannot lie outside the op (the wait less the bracket's time outside the "
         "op) is subtracted, and nothing when the victim yielded in the bracket. Blocking of "
         "the victim's own accord (asleep on a lock: boost-ipc) is not runqueue wait and stays "
         "in the op's time; time the hypervisor takes the virtual CPU away is not seen and "
         "stays too. \"less wait\" is thus an upper bound on the op's time on a CPU or "
         "blocked. An op is \"preempted\" when its bracket shows an involuntary switch; runqueue "
         "wait without one is the wait for a CPU after sleeping (woken when the lock is "
         "released), also subtracted.\n\n"
      << "| store | stops | stops that delayed an op > 1 ms: as timed / less wait | victim ops | "
         "victim ops/s while stopped | while not | p50 | p99.9 | worst get during a stop | "
         "worst set during a stop | worst op during a stop, less wait | ops > 100 µs during "
         "stops (preempted) | ops > 1 ms during stops: as timed / less wait | worst op outside "
         "stops: as timed / less wait | ops > 100 µs outside (preempted) | ops > 1 ms outside: "
         "as timed / less wait | note |\n"
      << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& s : r.stalls) {
    std::string note = s.note;
    if (s.slow_truncated) {
      note += std::string(note.empty() ? "" : "; ") + "slow-op list full: later ones not seen";
    }
    out << "| " << s.peer << " | " << s.stops << " × " << s.stop_ms << " ms | " << s.stops_over_1ms
        << " / " << s.stops_over_1ms_on_cpu << " | " << s.victim_ops << " | "
        << FmtOps(s.rate_during) << " | " << FmtOps(s.rate_outside) << " | " << FmtNs(s.p50)
        << " | " << FmtNs(s.p999) << " | " << FmtStallNs(s.during_get_max) << " | "
        << FmtStallNs(s.during_set_max) << " | " << FmtStallNs(s.during_on_cpu_max) << " | "
        << s.during_slow << " (" << s.during_slow_preempted << ") | " << s.during_over_1ms << " / "
        << s.during_over_1ms_on_cpu << " | " << FmtStallNs(s.outside_max) << " / "
        << FmtStallNs(s.outside_on_cpu_max) << " | " << s.outside_slow << " ("
        << s.outside_slow_preempted << ") | " << s.outside_over_1ms << " / "
        << s.outside_over_1ms_on_cpu << " | " << note << " |\n";
  }
  out << "\nThe victim's scheduling over its whole run, and what reading it cost: the "
         "readings' time over the victim's run (outside the timed ops), a reading that took "
         "over 20 µs (interrupted) counted as a typical one.\n\n"
      << "| store | counters | read every | readings (interrupted) | a reading | cost | runqueue "
         "wait | involuntary / voluntary switches | yields |\n"
         "|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& s : r.stalls) {
    if (s.sched_source.empty()) {
      out << "| " << s.peer << " | not read | – | – | – | – | – | – | – |\n";
      continue;
    }
    out << "| " << s.peer << " | " << s.sched_source << " | " << s.sample_every << " ops | "
        << s.samples << " (" << s.samples_long << ") | " << FmtNs(s.sample_ns) << " | "
        << Fmt("%.2f %%", s.sample_cost * 100) << " | " << FmtStallNs(s.run_delay_ns) << " | "
        << s.nivcsw << " / " << s.nvcsw << " | " << s.yields << " |\n";
  }
  bool any = false;
  for (const auto& s : r.stalls) any |= !s.listed.empty();
  if (any) {
    out << "\nThe victim's ops during a stop over 1 ms as timed, and those over 100 µs that "
           "were not preempted:\n\n"
        << "| store | when | op | as timed | less wait | scheduling in its bracket |\n"
        << "|---|---|---|---|---|---|\n";
    for (const auto& s : r.stalls) {
      for (const auto& a : s.listed) {
        out << "| " << s.peer << " | " << (a.during_stop ? "during a stop" : "outside stops")
            << " | " << (a.get ? "get" : "set") << " | " << FmtStallNs(a.ns) << " | "
            << FmtStallNs(a.on_cpu_ns) << " | " << SchedOf(a) << " |\n";
      }
    }
  }
  out << "\n## Memory per item (16-B keys, 64-B values)\n\n"
      << "| store | items | bytes per item | what was measured |\n|---|---|---|---|\n";
  for (const auto& m : r.memory) {
    out << "| " << m.peer << " | " << m.items << " | " << Fmt("%.1f", m.bytes_per_item) << " | "
        << m.how << " |\n";
  }
  out << "\n## Instructions per op (callgrind)\n\n"
      << "shmkv C API, " << r.opt.keys
      << " keys of 16 B with 64-B values; Ir of a run with N ops minus Ir of the same run "
         "with 0 ops, / N (a few Ir of the driver's loop included). Hardware counters are "
         "not available here; instruction counts do not drift with the machine's noise, so "
         "a regression shows here first.\n\n"
      << "| op | ops | Ir per op | note |\n|---|---|---|---|\n";
  for (const auto& c : r.callgrind) {
    out << "| " << c.op << " | " << c.ops << " | " << Fmt("%.0f", c.ir_per_op) << " | " << c.note
        << " |\n";
  }
  if (r.chase_ns > 0 || !r.chase_by_size.empty()) out << "\n## Memory-latency floor\n\n";
  if (r.chase_ns > 0) {
    out << "A dependent load from a random cache line of a "
        << Fmt("%.0f", static_cast<double>(r.chase_bytes) / (1 << 20))
        << " MiB buffer (pointer chase): " << Fmt("%.1f", r.chase_ns)
        << " ns. A lookup at 10 M keys that misses the caches pays this at least once for the "
           "index and once for the value.\n";
  }
  if (!r.chase_by_size.empty()) {
    const double ws = static_cast<double>(r.shmkv_index_bytes + r.shmkv_block_bytes) / (1 << 20);
    out << "\nThe same probe by buffer size (one load at a time, each depending on the last):\n\n"
        << "| buffer | ns per dependent load |\n|---|---|\n";
    for (const auto& [bytes, ns] : r.chase_by_size) {
      out << "| " << Fmt("%.0f", static_cast<double>(bytes) / (1 << 20)) << " MiB | "
          << Fmt("%.1f", ns) << " |\n";
    }
    out << "\nA GET hit in the main scenario makes two dependent loads into the shmkv store: "
           "its bucket pair in the index ("
        << Fmt("%.1f", static_cast<double>(r.shmkv_index_bytes) / (1 << 20))
        << " MiB, sized for 3 × the items so that no key is evicted), then the entry's block ("
        << Fmt("%.1f", static_cast<double>(r.shmkv_block_bytes) / (1 << 20))
        << " MiB of blocks in all): a working set of " << Fmt("%.1f", ws)
        << " MiB, after the load of the key itself from the driver's key table. At the "
           "latencies above, one GET alone cannot take less than two such loads; only GETs "
           "that overlap (the batches of 16 here, or shmkv_mget) go below that.\n";
  }
  out << "\n";
}

void WriteDat(const Report& r, const Index& ix, const std::string& dir) {
  auto peers_with = [&](int procs) {
    std::vector<std::string> out;
    for (const auto& p : r.peers) {
      for (const Row& row : r.rows) {
        if (row.peer == p && row.procs == procs && row.reps > 0) {
          out.push_back(p);
          break;
        }
      }
    }
    return out;
  };
  auto per_workload = [&](const std::string& file, int procs, bool latency) {
    std::ofstream f(dir + "/" + file);
    const auto ps = peers_with(procs);
    f << "workload";
    for (const auto& p : ps) f << " " << p;
    f << "\n";
    for (const Key& k : ix.order) {
      const auto& [sc, wl, pr] = k;
      if (sc != r.main_scenario || pr != procs) continue;
      f << wl;
      for (const auto& p : ps) {
        const Row* row = ix.Find(sc, wl, procs, p);
        if (row == nullptr) {
          f << " -";
        } else {
          f << " " << (latency ? row->p50 : row->ops_per_s / 1e6);
        }
      }
      f << "\n";
    }
  };
  per_workload("throughput_1p.dat", 1, false);
  per_workload("throughput_2p.dat", 2, false);
  per_workload("latency_p50_1p.dat", 1, true);
  std::ofstream f(dir + "/value_size.dat");
  const auto ps = peers_with(1);
  f << "value_bytes";
  for (const auto& p : ps) f << " " << p;
  f << "\n";
  std::map<uint32_t, std::string> sizes;
  for (const Row& row : r.rows) {
    if (row.keys == r.opt.keys && row.workload == "get_hit") sizes[row.value_len] = row.scenario;
  }
  for (const auto& [v, sc] : sizes) {
    f << v;
    for (const auto& p : ps) {
      const Row* row = ix.Find(sc, "get_hit", 1, p);
      if (row == nullptr) {
        f << " -";
      } else {
        f << " " << row->ops_per_s / 1e6;
      }
    }
    f << "\n";
  }
}

}  // namespace

void WriteReport(const Report& r, std::string* markdown) {
  const Index ix(r.rows);
  std::ostringstream out;
  out << "# shmkv and its peers, side by side\n\n"
      << "- date: " << r.date << "\n"
      << "- machine: " << r.machine << "\n"
      << "- commit: " << r.opt.commit << "\n"
      << "- run: " << bench::RunLabel(r.opt.smoke) << ", " << r.opt.reps << " repetition(s), "
      << Fmt("%.0f", r.opt.run_s * 1000) << " ms per run after " << Fmt("%.0f", r.opt.warm_s * 1000)
      << " ms of warm-up, " << Fmt("%.0f", r.total_s) << " s in all\n"
      << "- method: every peer runs in the same run on the same data; worker processes are "
         "forked, pinned to distinct cores and attach or connect on their own; ops are timed "
         "with a calibrated rdtsc; ops/s counts the time inside timed batches only. The "
         "machine is shared and noisy: trust the ratios more than the absolute numbers.\n\n"
      << "- reading it: a server round trip (redis, memcached, unpipelined) takes ~5 µs when the "
         "server's core is awake and ~40–50 µs when it must wake an idle virtual CPU; both "
         "happen on this VM, so a server's p50 tells which one a run got, and its ratios move "
         "by up to 10× between runs. With 2 clients, 2 pinned clients and the server share 2 "
         "cores. The shared-memory and in-process stores are timed in batches of 16 ops (their "
         "per-op latency is a batch's time / 16).\n\n"
      << "![throughput, 1 process](throughput_1p.png)\n"
      << "![throughput, 2 processes](throughput_2p.png)\n\n";
  Targets(r, ix, out);
  Tables(r, ix, out);
  Extras(r, out);
  Checks(r, out);
  *markdown = out.str();

  const std::string& dir = r.opt.out_dir;
  std::ostringstream csv;
  csv << "scenario,workload,procs,peer,ops_per_s,p50_ns,p99_ns,p999_ns,max_ns,shmkv_ratio,"
         "unexpected,reps,note\n";
  for (const Row& row : r.rows) {
    csv << '"' << row.scenario << "\"," << row.workload << "," << row.procs << "," << row.peer
        << "," << row.ops_per_s << "," << row.p50 << "," << row.p99 << "," << row.p999 << ","
        << row.max_ns << "," << ix.Ratio(row) << "," << row.unexpected << "," << row.reps << ",\""
        << row.note << "\"\n";
  }
  WriteDat(r, ix, dir);
  std::string err = bench::WriteFile(dir + "/latest.md", *markdown);
  if (err.empty()) err = bench::WriteFile(dir + "/latest.csv", csv.str());
  if (!err.empty()) std::cerr << "bench_peers: could not write the results into " << dir << "\n";
}

}  // namespace peers
