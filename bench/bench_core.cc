// bench_core: the cost of one shmkv operation, single process, against an
// in-process std::unordered_map<std::string, std::string> on the same data.
//
// Data (DESIGN.md section 9): 100 000 keys of 16 bytes, 64-byte values,
// uniform random key order, pre-generated so that no key is formatted and no
// random number is drawn inside a timed loop. Each iteration is one
// operation (delete + re-insert counts as one), so Time is ns/op.
//
// Workloads:
//   shmkv/get_hit          Get of a present key into a reused std::string
//   shmkv/get_hit_c        the same through the C API into a fixed buffer
//   shmkv/mget16_c         shmkv_mget of 16 random keys; time is per key
//   shmkv/get_miss         Get of a key that was never stored
//   shmkv/set_update       Set of a present key (new 64-byte value)
//   shmkv/set_new          Set of fresh keys into a smaller segment, which
//                          fills up and then evicts on every insert
//   shmkv/incr             Incr of one of 100 000 existing counters
//   shmkv/delete_reinsert  Delete of a present key, then Set of it again
//   map/get_hit            unordered_map find + copy of the value out
//   map/get_miss           unordered_map find of an absent key
//   map/set_update         unordered_map find + assign of the value
//
// At the end it prints one line per pair with the ratio shmkv / map.
// Segments are unlinked as soon as they are created (the mapping stays
// valid), so nothing is left in /dev/shm even if the run is interrupted.
//
//   build/bench/bench_core [--benchmark_filter=get] [--benchmark_repetitions=5]
//   build/bench/bench_core --benchmark_format=json   (ratios go to stderr)
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "flags.h"
#include "flat_data.h"
#include "shmkv/cache.h"

namespace {

constexpr size_t kKeys = 100'000;
constexpr size_t kKeyLen = 16;
constexpr size_t kValueLen = 64;
constexpr size_t kOrder = size_t{1} << 20;  // random indices, cycled
constexpr size_t kFresh = size_t{1} << 20;  // keys for set_new, cycled

// Keys and values live in flat buffers; a key is a view into one.
class Data {
 public:
  Data()
      : keys_(bench::FlatKeys("key:%012zu", kKeyLen, kKeys)),
        miss_keys_(bench::FlatKeys("miss:%011zu", kKeyLen, kKeys)),
        counter_keys_(bench::FlatKeys("ctr:%012zu", kKeyLen, kKeys)),
        fresh_keys_(bench::FlatKeys("new:%012zu", kKeyLen, kFresh)),
        values_(bench::FlatValues('a', kValueLen, kKeys)),
        other_values_(bench::FlatValues('A', kValueLen, kKeys)),
        order_(bench::UniformOrder(kKeys, kOrder)) {}

  std::string_view key(size_t i) const { return {&keys_[i * kKeyLen], kKeyLen}; }
  std::string_view miss_key(size_t i) const { return {&miss_keys_[i * kKeyLen], kKeyLen}; }
  std::string_view counter_key(size_t i) const { return {&counter_keys_[i * kKeyLen], kKeyLen}; }
  std::string_view fresh_key(size_t i) const { return {&fresh_keys_[i * kKeyLen], kKeyLen}; }
  std::string_view value(size_t i) const { return {&values_[i * kValueLen], kValueLen}; }
  std::string_view other_value(size_t i) const {
    return {&other_values_[i * kValueLen], kValueLen};
  }
  // The i-th key index of the uniform random sequence.
  size_t at(size_t i) const { return order_[i & (kOrder - 1)]; }

 private:
  std::vector<char> keys_, miss_keys_, counter_keys_, fresh_keys_, values_, other_values_;
  std::vector<uint32_t> order_;
};

struct TransparentHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using Map = std::unordered_map<std::string, std::string, TransparentHash, std::equal_to<>>;

struct Env {
  Data data;
  std::unique_ptr<shmkv::Cache> main;      // the 100 000 keys
  std::unique_ptr<shmkv::Cache> fresh;     // set_new: fills up, then evicts
  std::unique_ptr<shmkv::Cache> counters;  // the 100 000 counters
  Map map;
};
Env* env = nullptr;  // set up by SetUp(), after benchmark::Initialize()

// A failure while setting up: Main() lets it through, main() reports it.
[[noreturn]] void Fail(const std::string& what, std::error_code ec) {
  throw std::runtime_error(what + ": " + ec.message() + " (" + shmkv_last_error() + ")");
}

std::unique_ptr<shmkv::Cache> CreateSegment(const std::string& suffix, uint64_t memory_bytes,
                                            uint64_t max_items) {
  const std::string name = "shmkv-bench-" + std::to_string(getpid()) + "-" + suffix;
  shmkv::Options options;
  options.memory_bytes = memory_bytes;
  options.max_items = max_items;
  options.create = true;
  options.exclusive = true;
  auto cache = shmkv::Cache::Open(name, options);
  if (!cache) Fail("create segment " + name, cache.error());
  // Only this process uses it: drop the name now, the mapping stays valid.
  if (std::error_code ec = shmkv::Cache::Unlink(name)) Fail("unlink " + name, ec);
  return std::make_unique<shmkv::Cache>(std::move(cache).value());
}

std::unique_ptr<Env> SetUp() {
  auto owned = std::make_unique<Env>();
  env = owned.get();
  const Data& d = env->data;
  // Room to spare (max_items 2.6x the keys), so that nothing is evicted and
  // every get_hit is a hit.
  env->main = CreateSegment("main", 64ull << 20, 262'144);
  env->counters = CreateSegment("counters", 32ull << 20, 262'144);
  // Small on purpose: set_new fills it within ~65 000 inserts.
  env->fresh = CreateSegment("fresh", 16ull << 20, 65'536);
  for (size_t i = 0; i < kKeys; ++i) {
    if (std::error_code ec = env->main->Set(d.key(i), d.value(i))) Fail("populate", ec);
    if (auto r = env->counters->Incr(d.counter_key(i), 1, 0); !r) Fail("populate", r.error());
    env->map.emplace(d.key(i), d.value(i));
  }
  std::string out;
  for (size_t i = 0; i < kKeys; ++i) {
    if (std::error_code ec = env->main->Get(d.key(i), &out)) Fail("check populated key", ec);
  }
  auto stats = env->main->Stats();
  if (!stats) Fail("stats", stats.error());
  if (stats->items != kKeys) {
    throw std::runtime_error("expected " + std::to_string(kKeys) + " items, the segment has " +
                             std::to_string(stats->items));
  }
  return owned;
}

void Skip(benchmark::State& state, const char* what, std::error_code ec) {
  state.SkipWithError((std::string(what) + ": " + ec.message()).c_str());
}

void BM_ShmkvGetHit(benchmark::State& state) {
  const Data& d = env->data;
  std::string out;
  size_t i = 0;
  for (auto _ : state) {
    if (std::error_code ec = env->main->Get(d.key(d.at(i++)), &out)) {
      Skip(state, "get", ec);
      break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_ShmkvGetHitC(benchmark::State& state) {
  const Data& d = env->data;
  shmkv_t* kv = env->main->c_handle();
  char buf[kValueLen];
  size_t len = 0;
  size_t i = 0;
  for (auto _ : state) {
    const std::string_view k = d.key(d.at(i++));
    if (int rc = shmkv_get(kv, k.data(), k.size(), buf, sizeof(buf), &len, nullptr)) {
      Skip(state, "shmkv_get", shmkv::MakeErrorCode(rc));
      break;
    }
    benchmark::DoNotOptimize(buf);
  }
  state.SetItemsProcessed(state.iterations());
}

// 16 keys per shmkv_mget call; an iteration is one key (KeepRunningBatch).
void BM_ShmkvMGet16C(benchmark::State& state) {
  constexpr size_t kBatch = 16;
  const Data& d = env->data;
  shmkv_t* kv = env->main->c_handle();
  char bufs[kBatch][kValueLen];
  void* bp[kBatch];
  const void* kp[kBatch];
  size_t kl[kBatch], caps[kBatch], lens[kBatch];
  int rcs[kBatch];
  for (size_t j = 0; j < kBatch; ++j) {
    bp[j] = bufs[j];
    caps[j] = kValueLen;
  }
  size_t i = 0;
  while (state.KeepRunningBatch(kBatch)) {
    for (size_t j = 0; j < kBatch; ++j) {
      const std::string_view k = d.key(d.at(i++));
      kp[j] = k.data();
      kl[j] = k.size();
    }
    if (int rc = shmkv_mget(kv, kBatch, kp, kl, bp, caps, lens, rcs, nullptr)) {
      Skip(state, "shmkv_mget", shmkv::MakeErrorCode(rc));
      break;
    }
    if (rcs[0] != 0 || rcs[kBatch - 1] != 0) {
      Skip(state, "shmkv_mget", shmkv::MakeErrorCode(rcs[0] ? rcs[0] : rcs[kBatch - 1]));
      break;
    }
    benchmark::DoNotOptimize(bufs);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_ShmkvGetMiss(benchmark::State& state) {
  const Data& d = env->data;
  std::string out;
  size_t i = 0;
  for (auto _ : state) {
    std::error_code ec = env->main->Get(d.miss_key(d.at(i++)), &out);
    if (ec != shmkv::Errc::kNotFound) {
      Skip(state, "get miss", ec);
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_ShmkvSetUpdate(benchmark::State& state) {
  const Data& d = env->data;
  size_t i = 0;
  for (auto _ : state) {
    const size_t k = d.at(i++);
    // Alternate between two values per key so that every set changes it.
    const std::string_view v = (i & 1) ? d.other_value(k) : d.value(k);
    if (std::error_code ec = env->main->Set(d.key(k), v)) {
      Skip(state, "set", ec);
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_ShmkvSetNew(benchmark::State& state) {
  const Data& d = env->data;
  static size_t next = 0;  // across runs: keys stay fresh
  for (auto _ : state) {
    const size_t k = next++;
    if (std::error_code ec = env->fresh->Set(d.fresh_key(k % kFresh), d.value(k % kKeys))) {
      Skip(state, "set new", ec);
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  if (auto st = env->fresh->Stats()) {
    state.counters["evictions"] = static_cast<double>(st->evictions);
    state.counters["items"] = static_cast<double>(st->items);
  }
}

void BM_ShmkvIncr(benchmark::State& state) {
  const Data& d = env->data;
  size_t i = 0;
  for (auto _ : state) {
    auto r = env->counters->Incr(d.counter_key(d.at(i++)), 1, 0);
    if (!r) {
      Skip(state, "incr", r.error());
      break;
    }
    benchmark::DoNotOptimize(*r);
  }
  state.SetItemsProcessed(state.iterations());
}

// An admitted request: a limiter per key, with a rate no loop can reach,
// so every call is the write path (read TAT, publish the next).
void BM_ShmkvThrottle(benchmark::State& state) {
  const Data& d = env->data;
  size_t i = 0;
  for (auto _ : state) {
    auto r = env->counters->Throttle(d.counter_key(d.at(i++)), 1'000'000, std::chrono::seconds(1),
                                     uint64_t{1} << 30);
    if (!r) {
      Skip(state, "throttle", r.error());
      break;
    }
    benchmark::DoNotOptimize(r->allowed);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_ShmkvDeleteReinsert(benchmark::State& state) {
  const Data& d = env->data;
  size_t i = 0;
  for (auto _ : state) {
    const size_t k = d.at(i++);
    if (std::error_code ec = env->main->Delete(d.key(k))) {
      Skip(state, "delete", ec);
      break;
    }
    if (std::error_code ec = env->main->Set(d.key(k), d.value(k))) {
      Skip(state, "re-insert", ec);
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_MapGetHit(benchmark::State& state) {
  const Data& d = env->data;
  std::string out;
  size_t i = 0;
  for (auto _ : state) {
    auto it = env->map.find(d.key(d.at(i++)));
    out.assign(it->second);  // shmkv copies values out; so does the reference
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_MapGetMiss(benchmark::State& state) {
  const Data& d = env->data;
  size_t i = 0;
  for (auto _ : state) {
    auto it = env->map.find(d.miss_key(d.at(i++)));
    benchmark::DoNotOptimize(it);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_MapSetUpdate(benchmark::State& state) {
  const Data& d = env->data;
  size_t i = 0;
  for (auto _ : state) {
    const size_t k = d.at(i++);
    const std::string_view v = (i & 1) ? d.other_value(k) : d.value(k);
    env->map.find(d.key(k))->second.assign(v);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_ShmkvGetHit)->Name("shmkv/get_hit");
BENCHMARK(BM_ShmkvGetHitC)->Name("shmkv/get_hit_c");
BENCHMARK(BM_ShmkvMGet16C)->Name("shmkv/mget16_c");
BENCHMARK(BM_ShmkvGetMiss)->Name("shmkv/get_miss");
BENCHMARK(BM_ShmkvSetUpdate)->Name("shmkv/set_update");
BENCHMARK(BM_ShmkvSetNew)->Name("shmkv/set_new");
BENCHMARK(BM_ShmkvIncr)->Name("shmkv/incr");
BENCHMARK(BM_ShmkvThrottle)->Name("shmkv/throttle");
BENCHMARK(BM_ShmkvDeleteReinsert)->Name("shmkv/delete_reinsert");
BENCHMARK(BM_MapGetHit)->Name("map/get_hit");
BENCHMARK(BM_MapGetMiss)->Name("map/get_miss");
BENCHMARK(BM_MapSetUpdate)->Name("map/set_update");

// Records ns/op of every run (the median when there are repetitions) for
// the ratio lines, then reports as its base class would.
template <typename Base>
class Recording : public Base {
 public:
  void ReportRuns(const std::vector<benchmark::BenchmarkReporter::Run>& runs) override {
    for (const auto& run : runs) {
      if (run.error_occurred) continue;
      const bool median = run.run_type == benchmark::BenchmarkReporter::Run::RT_Aggregate &&
                          run.aggregate_name == "median";
      if (run.run_type != benchmark::BenchmarkReporter::Run::RT_Iteration && !median) continue;
      const std::string name = run.run_name.function_name;
      if (median || !has_median_.count(name)) ns_per_op_[name] = run.GetAdjustedRealTime();
      if (median) has_median_[name] = true;
    }
    Base::ReportRuns(runs);
  }
  const std::map<std::string, double>& ns_per_op() const { return ns_per_op_; }

 private:
  std::map<std::string, double> ns_per_op_;
  std::map<std::string, bool> has_median_;
};

template <typename Reporter>
void RunAndSummarize(Reporter& reporter, std::ostream& out) {
  benchmark::RunSpecifiedBenchmarks(&reporter);
  const auto& ns = reporter.ns_per_op();
  out << "\nshmkv vs in-process std::unordered_map (" << kKeys << " keys of " << kKeyLen << " B, "
      << kValueLen << "-B values, 1 process):\n";
  for (const char* op : {"get_hit", "get_miss", "set_update"}) {
    auto s = ns.find(std::string("shmkv/") + op);
    auto m = ns.find(std::string("map/") + op);
    if (s == ns.end() || m == ns.end()) continue;
    char line[160];
    std::snprintf(line, sizeof(line),
                  "  %-11s shmkv %8.1f ns/op   map %8.1f ns/op   ratio %5.2fx\n", op, s->second,
                  m->second, s->second / m->second);
    out << line;
  }
}

int Main(int argc, char** argv) {
  // The display format is read here because a custom reporter replaces the
  // one --benchmark_format would choose.
  std::string format = "console";
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a.substr(0, 19) == "--benchmark_format=") format = std::string(a.substr(19));
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (format != "console" && format != "json") {
    std::cerr << "bench_core: --benchmark_format must be console or json\n";
    return 1;
  }
  const std::unique_ptr<Env> owned = SetUp();
  if (format == "json") {
    Recording<benchmark::JSONReporter> reporter;
    RunAndSummarize(reporter, std::cerr);
  } else {
    Recording<benchmark::ConsoleReporter> reporter;
    RunAndSummarize(reporter, std::cout);
  }
  benchmark::Shutdown();
  return 0;  // owned closes the (already unlinked) segments
}

}  // namespace

int main(int argc, char** argv) { return bench::RunMain("bench_core", Main, argc, argv); }
