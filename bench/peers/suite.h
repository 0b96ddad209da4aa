// Types shared by the driver (bench_peers.cc), the report (report.cc) and the
// side measurements (extras.cc: memory per item, callgrind, memory latency).
#ifndef SHMKV_BENCH_PEERS_SUITE_H_
#define SHMKV_BENCH_PEERS_SUITE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "measure.h"

namespace peers {

struct Options {
  bool smoke = false;
  std::string redis_sock, redis_evict_sock;
  std::string memcached_sock, memcached_evict_sock;
  std::string out_dir = "bench/results";
  std::string commit = "unknown";
  std::string peers = "all";  // comma-separated subset of the peer names
  // shmkv-huge: shmkv with its segments in this directory, a tmpfs mounted
  // with huge=within_size (2-MiB pages); empty: that peer does not run.
  std::string huge_dir;
  int reps = 3;
  double run_s = 0.3;   // measured time of one run
  double warm_s = 0.1;  // warm-up before it, in the same process
  uint64_t keys = 100'000;
  uint64_t big_keys = 10'000'000;  // 0: no big run
  std::vector<uint64_t> memory_items = {100'000, 1'000'000};
  uint64_t callgrind_ops = 100'000;  // 0: no callgrind
  int stall_stops = 10;
  int stall_stop_ms = 50;
  // The stall test's victim reads its scheduling counters every this many
  // ops (and after every slow op); 0: never. 512: ~0.5 % of its time (see
  // SchedProbe in bench_peers.cc).
  int stall_sample_every = 512;
  std::string only;  // "stall": only the stall test; "main:W,...": those workloads alone
  std::vector<std::string> only_workloads;  // the W of "main:W,..." (parsed from only)
  // Internal: the driver runs itself under callgrind with these.
  std::string callgrind_op;
  uint64_t callgrind_keys = 0;
};

// Whether --peers asks for the peer `name` ("all": every peer).
bool PeerWanted(const Options& opt, const std::string& name);

// One measured result, the median of the repetitions (Stats: ops/s and
// latencies per op).
struct Row : Stats {
  std::string scenario;  // "100k × 64 B"
  uint64_t keys = 0;
  uint32_t value_len = 0;
  std::string workload;  // "get_hit"
  int procs = 1;
  std::string peer;         // "shmkv", "redis-p16", ...
  uint64_t unexpected = 0;  // outcomes the workload rules out (a miss in get_hit...)
  int reps = 0;             // repetitions that ran
  std::string note;         // why it did not run, or a check that failed
};

// A victim op of the stall test slower than 100 µs, and what the victim's
// scheduling counters, read just before and just after it (the bracket; see
// SchedProbe in bench_peers.cc), say about it.
struct SlowOpInfo {
  bool during_stop = false, get = false;
  double ns = 0;                               // as timed
  bool bracketed = false;                      // the counters were read around it
  double bracket_ns = 0;                       // from the reading before it to the one after
  double run_delay_ns = 0;                     // time runnable but not running, over the bracket
  uint64_t nivcsw = 0, nvcsw = 0, yields = 0;  // over the bracket
  double waited_ns = 0;                        // runqueue wait that certainly fell inside the op
  double on_cpu_ns = 0;  // ns - waited_ns: at most this long on a CPU or blocked
  // The bracket shows an involuntary switch (preempted in or near the op;
  // not told when the victim yielded in it).
  bool preempted = false;
};

struct StallResult {
  std::string peer;
  int stops = 0, stop_ms = 0;
  uint64_t victim_ops = 0;
  double p50 = 0, p999 = 0, max_ns = 0;
  // Victim ops slower than 100 µs, by whether they overlap a stop: as
  // timed, and less the runqueue wait that certainly fell inside them
  // (on_cpu: the time the victim was on a CPU or blocked of its own accord).
  double during_get_max = 0, during_set_max = 0, outside_max = 0;
  double during_on_cpu_max = 0, outside_on_cpu_max = 0;
  SlowOpInfo during_worst, during_worst_on_cpu;  // the ops behind the two maxima
  uint64_t during_over_1ms = 0, outside_over_1ms = 0;
  uint64_t during_over_1ms_on_cpu = 0, outside_over_1ms_on_cpu = 0;
  uint64_t during_slow = 0, during_slow_preempted = 0;  // ops > 100 µs
  uint64_t outside_slow = 0, outside_slow_preempted = 0;
  double rate_during = 0, rate_outside = 0;  // victim ops/s while stopped / not
  int stops_over_1ms = 0;                    // stops during which some victim op took > 1 ms
  int stops_over_1ms_on_cpu = 0;             // the same, less runqueue wait
  // The ops during a stop > 1 ms as timed, and those > 100 µs that were
  // not preempted, in order (32 at most).
  std::vector<SlowOpInfo> listed;
  bool slow_truncated = false;  // the worker's list of slow ops filled up
  // The sampling of the victim's scheduling counters.
  std::string sched_source;  // what was read; empty: nothing
  int sample_every = 0;
  uint64_t samples = 0, samples_long = 0;  // readings; those interrupted
  double sample_ns = 0;                    // a reading's time, on average (not interrupted)
  double sample_cost = 0;                  // sample_ns × samples over the victim's run
  double run_delay_ns = 0;                 // over the whole run
  uint64_t nivcsw = 0, nvcsw = 0, yields = 0;
  std::string note;
};

struct MemoryResult {
  std::string peer;
  uint64_t items = 0;
  double bytes_per_item = 0;
  std::string how;  // what was measured
};

struct CallgrindResult {
  std::string op;
  uint64_t ops = 0;
  double ir_per_op = 0;
  std::string note;
};

struct Report {
  Options opt;
  std::string date, machine, mode;
  std::string main_scenario, big_scenario;  // labels of the 64-B scenarios
  double total_s = 0;
  std::vector<std::string> peers;  // column order
  std::vector<Row> rows;
  std::vector<StallResult> stalls;
  std::vector<MemoryResult> memory;
  std::vector<CallgrindResult> callgrind;
  double chase_ns = 0;  // memory-latency floor, 0 = not measured
  uint64_t chase_bytes = 0;
  // The same probe over buffers of growing size (bytes, ns per load), and
  // what a GET of the main scenario's shmkv store reaches into: its index
  // and its blocks (bytes), measured after the main scenario's runs.
  std::vector<std::pair<uint64_t, double>> chase_by_size;
  uint64_t shmkv_index_bytes = 0, shmkv_block_bytes = 0;
  double handoff_ns = 0;  // one cache line moved between the two cores; 0 = not measured
  std::vector<std::string> messages;  // skipped peers and runs, and why
};

// extras.cc
std::vector<MemoryResult> MeasureMemory(const Options& opt, std::vector<std::string>* messages);
std::vector<CallgrindResult> MeasureCallgrind(const Options& opt,
                                              std::vector<std::string>* messages);
int CallgrindChild(const Options& opt);  // the program run under valgrind
double PointerChaseNs(uint64_t bytes);
uint64_t MemAvailableBytes();

// report.cc
void WriteReport(const Report& r, std::string* markdown);

}  // namespace peers

#endif  // SHMKV_BENCH_PEERS_SUITE_H_
