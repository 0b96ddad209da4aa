// bench_near: the near cache of an upstream Redis (shmkv::NearCache, with
// shmkvd --upstream holding the invalidation stream; DESIGN.md §10) side by
// side with the Redis behind it, in one run, on the same keys.
//
// It starts its own redis-server (127.0.0.1 on a free port and a unix
// socket in a temporary directory, no persistence) and, for each transport,
// the shmkvd built with it on a segment of its own, as a host would run it:
//   shmkvd --segment shmkv-near-bench-PID-tcp --create --memory 64M
//          --upstream redis://127.0.0.1:PORT --prefix b:
//   shmkvd ... -unix ... --upstream unix:///DIR/redis.sock --prefix b:
// and a third (TCP), "another host", that writes in the invalidation test.
// It waits until each publishes UP, stores --keys keys in Redis (100 000 of
// 16 B with 64-B values, as the peer suite), and reads every key once through
// each segment's NearCache so that every copy is local.
//
// Workloads, per transport (keys in a fixed uniform random order):
//   near_hit   NearCache::Get, every key held locally (checked: each call
//              counts as a local hit, none as a fetch or a bypass)
//   shmkv_get  shmkv_get on the same segment: the core read under it
//   redis_get  hiredis GET of the same keys, 1 client, no pipelining
//   redis_p16  the same with 16 GETs pipelined
//   near_miss  NearCache::Get of a key whose local copy was deleted just
//              before (untimed), as an invalidation does: the fetch path,
//              placeholder ADD, GET + PTTL in one round trip, CAS of the value
// Timing as in the peer suite (bench/peers/measure.h): calibrated rdtsc;
// near_hit and shmkv_get in batches of 16 ops, a p16 pipeline as one batch,
// redis_get and near_miss one op at a time; the histogram gets the per-op
// time, and ops/s counts the time inside timed batches only. Each round runs
// every workload of every transport once before the next round starts; the
// report gives the median of the rounds, and near_hit / redis_get per round.
//
// Invalidation delay, per transport of the reading host: a NearCache on the
// writing host's segment Sets a key whose copy the reading host holds, while
// a thread of the reading host polls its segment with shmkv_get until the
// copy is gone, then calls NearCache::Get until it returns the new value.
// One key per write (--writes); times from the write issued (before Set) and
// from the write acknowledged (Set returned).
//
//   bench_near [--smoke] [--out=DIR] [--commit=ID] [--keys=N] [--rounds=N]
//              [--min-time=S] [--writes=N] [--dir=DIR] [--redis-server=PATH]
//              [--shmkvd=PATH] [Google Benchmark flags]
// Defaults: 100 000 keys, 5 rounds of 400 ms per workload, 2000 writes;
// --smoke: 10 000 keys, 1 round of 50 ms, 200 writes (a few seconds).
// --dir: where redis-server's socket and the logs go (made, then removed;
// default: a new directory in /tmp).
//
// scripts/bench.sh runs it after the peer suite. Results: printed, and the
// "## Near cache" section of OUT/latest.md (replaced where it is, appended
// otherwise; the other sections are kept). redis-server, the shmkvd and the
// segments are removed at exit, on SIGINT, SIGTERM and SIGHUP, and the
// children get SIGTERM if this process dies (PR_SET_PDEATHSIG).
#include <benchmark/benchmark.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "flags.h"
#include "flat_data.h"
#include "format.h"
#include "measure.h"
#include "process.h"
#include "results.h"
#include "shmkv/near_cache.h"
#include "shmkv/shmkv.h"

namespace {

using peers::FmtNs;
using peers::FmtOps;
using peers::FmtRatio;
using peers::Histogram;

constexpr size_t kBatch = 16;  // ops per timed batch (and per pipeline)
constexpr size_t kKeyLen = 16;
constexpr size_t kValueLen = 64;
constexpr size_t kOrder = size_t{1} << 20;  // random key indices, cycled
constexpr const char* kPrefix = "b:";
constexpr const char* kSegmentStem = "shmkv-near-bench-";

struct Options {
  bool smoke = false;
  std::string out_dir;  // empty: print only
  std::string dir;      // for redis's socket and the logs; empty: a new one in /tmp
  std::string commit = "unknown";
  size_t keys = 100'000;
  int rounds = 5;
  double min_time_s = 0.4;
  size_t writes = 2000;
  std::string redis_server = "redis-server";
  std::string shmkvd = SHMKV_BENCH_SHMKVD;
};

double g_ns_per_tick = 1;

double TicksToNs(uint64_t ticks) { return static_cast<double>(ticks) * g_ns_per_tick; }

[[noreturn]] void Fail(const std::string& what) { throw std::runtime_error(what); }

// ------------------------------------------------------------- redis

struct RedisFree {
  void operator()(redisContext* c) const { redisFree(c); }
};
using Redis = std::unique_ptr<redisContext, RedisFree>;

Redis ConnectTcp(int port) {
  const timeval tv{2, 0};
  Redis c(redisConnectWithTimeout("127.0.0.1", port, tv));
  if (c == nullptr || c->err) return nullptr;
  redisSetTimeout(c.get(), tv);
  return c;
}

Redis ConnectUnix(const std::string& path) {
  const timeval tv{2, 0};
  Redis c(redisConnectUnixWithTimeout(path.c_str(), tv));
  if (c == nullptr || c->err) return nullptr;
  redisSetTimeout(c.get(), tv);
  return c;
}

bool Ping(redisContext* c) {
  auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
  const bool ok = r != nullptr && r->type == REDIS_REPLY_STATUS;
  if (r != nullptr) freeReplyObject(r);
  return ok;
}

// ------------------------------------------------------------- data

// Keys and values in flat buffers (views into them), as in bench_core.
class Data {
 public:
  Data(size_t keys, size_t writes)
      : n_(keys),
        writes_(writes),
        keys_(bench::FlatKeys("b:%014zu", kKeyLen, keys)),
        inv_keys_(bench::FlatKeys("b:i:%012zu", kKeyLen, writes)),
        values_(bench::FlatValues('a', kValueLen, keys)),
        inv_old_(bench::FlatValues('o', kValueLen, writes)),
        inv_new_(bench::FlatValues('N', kValueLen, writes)),
        order_(bench::UniformOrder(keys, kOrder)) {}

  size_t size() const { return n_; }
  size_t writes() const { return writes_; }
  std::string_view key(size_t i) const { return {&keys_[i * kKeyLen], kKeyLen}; }
  std::string_view value(size_t i) const { return {&values_[i * kValueLen], kValueLen}; }
  // The keys of the invalidation test, their first and their new value.
  std::string_view inv_key(size_t i) const { return {&inv_keys_[i * kKeyLen], kKeyLen}; }
  std::string_view inv_old(size_t i) const { return {&inv_old_[i * kValueLen], kValueLen}; }
  std::string_view inv_new(size_t i) const { return {&inv_new_[i * kValueLen], kValueLen}; }
  // The i-th key index of the uniform random sequence.
  size_t at(size_t i) const { return order_[i & (kOrder - 1)]; }

 private:
  size_t n_, writes_;
  std::vector<char> keys_, inv_keys_, values_, inv_old_, inv_new_;
  std::vector<uint32_t> order_;
};

// Pipelined SETs, 1000 per round trip.
void StoreAll(redisContext* c, size_t n, std::string_view (Data::*key)(size_t) const,
              std::string_view (Data::*value)(size_t) const, const Data& d) {
  constexpr size_t kChunk = 1000;
  for (size_t base = 0; base < n; base += kChunk) {
    const size_t end = std::min(n, base + kChunk);
    for (size_t i = base; i < end; ++i) {
      const std::string_view k = (d.*key)(i), v = (d.*value)(i);
      const char* argv[3] = {"SET", k.data(), v.data()};
      const size_t len[3] = {3, k.size(), v.size()};
      redisAppendCommandArgv(c, 3, argv, len);
    }
    for (size_t i = base; i < end; ++i) {
      void* r = nullptr;
      if (redisGetReply(c, &r) != REDIS_OK || r == nullptr)
        Fail("redis SET: " + std::string(c->errstr));
      const bool ok = static_cast<redisReply*>(r)->type == REDIS_REPLY_STATUS;
      freeReplyObject(r);
      if (!ok) Fail("redis SET refused");
    }
  }
}

// ------------------------------------------------------------- the hosts

// One "host": a segment with its shmkvd --upstream, a NearCache on it and
// a plain Redis client over the same transport.
struct Host {
  std::string transport;  // "tcp", "unix"
  std::string segment, url, log;
  pid_t shmkvd = -1;
  shmkv_t* raw = nullptr;  // a plain handle on the segment (polls, shmkv_get)
  std::unique_ptr<shmkv::NearCache> nc;
  Redis redis;
  size_t pos = 0;  // where the workloads are in the key order
};

// Everything the run starts, stopped and removed in the destructor.
class Env {
 public:
  explicit Env(const Options& opt) : data(opt.keys, opt.writes), opt_(opt) {}
  ~Env() { Teardown(); }
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  void Start() {
    if (opt_.dir.empty()) {
      char tmpl[] = "/tmp/shmkv-near-bench.XXXXXX";
      if (mkdtemp(tmpl) == nullptr) Fail("mkdtemp: " + std::string(std::strerror(errno)));
      dir_ = tmpl;
    } else {
      if (mkdir(opt_.dir.c_str(), 0700) != 0 && errno != EEXIST)
        Fail("mkdir " + opt_.dir + ": " + std::strerror(errno));
      dir_ = opt_.dir;
    }
    bench::RememberDir(dir_);
    sock_ = dir_ + "/redis.sock";
    bench::RememberPath(sock_);
    bench::RememberPath(dir_ + "/redis.log");
    StartRedis();
    hosts.push_back(StartHost("tcp", "redis://127.0.0.1:" + std::to_string(port_)));
    hosts.push_back(StartHost("unix", "unix://" + sock_));
    writer = StartHost("writer", "redis://127.0.0.1:" + std::to_string(port_));
    for (Host* h : hosts) {
      h->redis = h->transport == "tcp" ? ConnectTcp(port_) : ConnectUnix(sock_);
      if (!h->redis) Fail("redis: cannot connect over " + h->transport);
    }
  }

  // Stores the keys in Redis and reads each through every host once.
  void Fill() {
    Redis c = ConnectUnix(sock_);
    if (!c) Fail("redis: cannot connect to " + sock_);
    StoreAll(c.get(), data.size(), &Data::key, &Data::value, data);
    StoreAll(c.get(), opt_.writes, &Data::inv_key, &Data::inv_old, data);
    for (Host* h : hosts) {
      const shmkv::NearCacheStats before = h->nc->stats();
      for (size_t i = 0; i < data.size(); ++i) {
        auto v = h->nc->Get(data.key(i));
        if (!v) Fail(h->transport + ": NearCache::Get: " + h->nc->last_error());
        if (*v != data.value(i)) Fail(h->transport + ": NearCache::Get returned a wrong value");
      }
      const shmkv::NearCacheStats after = h->nc->stats();
      if (after.fetches - before.fetches != data.size() || after.not_cached != before.not_cached)
        Fail(h->transport + ": not every key was fetched and kept (a bypass or a lost race)");
    }
  }

  void Teardown() {
    for (auto& h : started_) Close(h.get());
    bench::Stop(redis_pid_, 3);
    redis_pid_ = -1;
    bench::RemoveRemembered();
    dir_.clear();
  }

  const Data data;
  std::vector<Host*> hosts;  // the reading hosts, one per transport
  Host* writer = nullptr;    // the writing host of the invalidation test

 private:
  void StartRedis() {
    port_ = bench::FreePort();
    if (port_ == 0) Fail("no free TCP port");
    redis_pid_ = bench::Spawn(
        {opt_.redis_server, "--port", std::to_string(port_), "--bind", "127.0.0.1", "--unixsocket",
         sock_, "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", dir_,
         "--daemonize", "no", "--loglevel", "warning"},
        dir_ + "/redis.log");
    const bool up = bench::WaitFor(
        [&] {
          if (bench::Exited(redis_pid_)) {
            Fail("redis-server exited:\n" + bench::ReadFile(dir_ + "/redis.log"));
          }
          Redis t = ConnectTcp(port_), u = ConnectUnix(sock_);
          return t && u && Ping(t.get()) && Ping(u.get());
        },
        10, 0.01);
    if (!up) Fail("redis-server did not answer:\n" + bench::ReadFile(dir_ + "/redis.log"));
  }

  Host* StartHost(const std::string& name, const std::string& url) {
    Host* h = started_.emplace_back(std::make_unique<Host>()).get();
    h->transport = name;
    h->url = url;
    h->segment = kSegmentStem + std::to_string(getpid()) + "-" + name;
    h->log = dir_ + "/shmkvd-" + name + ".log";
    bench::RememberPath("/dev/shm/" + h->segment);
    bench::RememberPath(h->log);
    h->shmkvd = bench::Spawn({opt_.shmkvd, "--segment", h->segment, "--create", "--memory", "64M",
                              "--upstream", url, "--prefix", kPrefix},
                             h->log);
    const bool up = bench::WaitFor(
        [&] {
          if (bench::Exited(h->shmkvd)) {
            h->shmkvd = -1;  // reaped
            Fail("shmkvd (" + name + ") exited:\n" + bench::ReadFile(h->log));
          }
          if (h->raw == nullptr && shmkv_open(h->segment.c_str(), nullptr, &h->raw) != 0) {
            h->raw = nullptr;
            return false;
          }
          uint32_t state = SHMKV_UPSTREAM_NONE;
          uint64_t generation = 0;
          return shmkv_upstream_state(h->raw, &state, &generation) == 0 &&
                 state == SHMKV_UPSTREAM_UP;
        },
        10, 0.01);
    if (!up) Fail("shmkvd (" + name + ") did not publish UP:\n" + bench::ReadFile(h->log));
    shmkv::NearCacheOptions o;
    // Every copy stays for the whole run (the default caps it at 60 s).
    o.max_local_ttl = std::chrono::hours(1);
    std::string why;
    auto nc = shmkv::NearCache::Open(h->segment, o, &why);
    if (!nc) Fail("NearCache::Open(" + h->segment + "): " + why);
    h->nc = std::make_unique<shmkv::NearCache>(std::move(nc).value());
    return h;
  }

  void Close(Host* h) {
    h->nc.reset();
    bench::Stop(h->shmkvd, 3);
    h->shmkvd = -1;
    if (h->raw != nullptr) shmkv_close(h->raw);
    h->raw = nullptr;
    shmkv_unlink(h->segment.c_str());
  }

  const Options& opt_;
  std::vector<std::unique_ptr<Host>> started_;  // every host, for Teardown
  std::string dir_, sock_;
  int port_ = 0;
  pid_t redis_pid_ = -1;
};

Env* env = nullptr;

// ------------------------------------------------------------- GET workloads

struct Sample : peers::Stats {
  uint64_t ops = 0;
  uint64_t unexpected = 0;  // a hit that was not local, a miss not fetched, a wrong value
};

const std::vector<std::string> kWorkloads = {"near_hit", "shmkv_get", "redis_get", "redis_p16",
                                             "near_miss"};

// (transport, workload) -> one sample per round; the last call of a
// benchmark (the one Google Benchmark reports) wins.
std::map<std::pair<std::string, std::string>, std::vector<Sample>> g_samples;

// Per-op times of one benchmark call.
class Timer {
 public:
  Timer() : hist_(std::make_unique<Histogram>()) { hist_->Clear(); }
  // A batch of n ops that took `ticks`.
  void Add(uint64_t ticks, size_t n) {
    ticks_ += ticks;
    ops_ += n;
    hist_->Record(static_cast<uint64_t>(TicksToNs(ticks) * 10.0 / static_cast<double>(n)));
  }
  void Finish(benchmark::State& state, const std::string& transport, const std::string& workload,
              int round, uint64_t unexpected) {
    Sample s;
    s.ops = ops_;
    s.ops_per_s = peers::OpsPerS(ops_, ticks_, g_ns_per_tick);
    s.SetLatencies(*hist_);
    s.unexpected = unexpected;
    auto& v = g_samples[{transport, workload}];
    if (v.size() <= static_cast<size_t>(round)) v.resize(round + 1);
    v[round] = s;
    state.counters["ops/s"] = s.ops_per_s;
    state.counters["p50_ns"] = s.p50;
    state.counters["p99_ns"] = s.p99;
    if (unexpected > 0) state.counters["unexpected"] = static_cast<double>(unexpected);
  }

 private:
  std::unique_ptr<Histogram> hist_;
  uint64_t ticks_ = 0, ops_ = 0;
};

void NearHit(benchmark::State& state, Host* h, int round) {
  const Data& d = env->data;
  Timer timer;
  const shmkv::NearCacheStats before = h->nc->stats();
  uint64_t wrong = 0;
  while (state.KeepRunningBatch(kBatch)) {
    const uint64_t t0 = peers::TicksBegin();
    for (size_t j = 0; j < kBatch; ++j) {
      auto v = h->nc->Get(d.key(d.at(h->pos++)));
      if (!v || v->size() != kValueLen) ++wrong;
      benchmark::DoNotOptimize(v);
    }
    timer.Add(peers::TicksEnd() - t0, kBatch);
  }
  const shmkv::NearCacheStats after = h->nc->stats();
  const uint64_t local = after.local_hits - before.local_hits;
  const uint64_t ops = state.iterations();
  timer.Finish(state, h->transport, "near_hit", round, wrong + (ops > local ? ops - local : 0));
}

void ShmkvGet(benchmark::State& state, Host* h, int round) {
  const Data& d = env->data;
  shmkv_t* kv = h->raw;
  Timer timer;
  char buf[kValueLen];
  size_t len = 0;
  uint64_t wrong = 0;
  while (state.KeepRunningBatch(kBatch)) {
    const uint64_t t0 = peers::TicksBegin();
    for (size_t j = 0; j < kBatch; ++j) {
      const std::string_view k = d.key(d.at(h->pos++));
      if (shmkv_get(kv, k.data(), k.size(), buf, sizeof(buf), &len, nullptr) != 0) ++wrong;
      benchmark::DoNotOptimize(buf);
    }
    timer.Add(peers::TicksEnd() - t0, kBatch);
  }
  timer.Finish(state, h->transport, "shmkv_get", round, wrong);
}

void AppendGet(redisContext* c, std::string_view key) {
  const char* argv[2] = {"GET", key.data()};
  const size_t len[2] = {3, key.size()};
  redisAppendCommandArgv(c, 2, argv, len);
}

// Reads one GET reply into buf; false if the connection failed.
bool ReadGet(redisContext* c, char* buf, uint64_t* wrong) {
  void* raw = nullptr;
  if (redisGetReply(c, &raw) != REDIS_OK || raw == nullptr) return false;
  auto* r = static_cast<redisReply*>(raw);
  if (r->type == REDIS_REPLY_STRING && r->len == kValueLen) {
    std::memcpy(buf, r->str, kValueLen);
  } else {
    ++*wrong;
  }
  freeReplyObject(r);
  return true;
}

void RedisGet(benchmark::State& state, Host* h, int round, bool pipelined) {
  const Data& d = env->data;
  redisContext* c = h->redis.get();
  Timer timer;
  char buf[kValueLen];
  uint64_t wrong = 0;
  const size_t n = pipelined ? kBatch : 1;
  while (state.KeepRunningBatch(n)) {
    const uint64_t t0 = peers::TicksBegin();
    for (size_t j = 0; j < n; ++j) AppendGet(c, d.key(d.at(h->pos++)));
    for (size_t j = 0; j < n; ++j) {
      if (!ReadGet(c, buf, &wrong)) {
        state.SkipWithError(("redis GET: " + std::string(c->errstr)).c_str());
        return;
      }
    }
    timer.Add(peers::TicksEnd() - t0, n);
    benchmark::DoNotOptimize(buf);
  }
  timer.Finish(state, h->transport, pipelined ? "redis_p16" : "redis_get", round, wrong);
}

void NearMiss(benchmark::State& state, Host* h, int round) {
  const Data& d = env->data;
  Timer timer;
  const shmkv::NearCacheStats before = h->nc->stats();
  uint64_t wrong = 0;
  for (auto _ : state) {
    const size_t i = d.at(h->pos++);
    const std::string_view k = d.key(i);
    if (shmkv_delete(h->raw, k.data(), k.size(), 0) != 0) ++wrong;  // the copy was not there
    const uint64_t t0 = peers::TicksBegin();
    auto v = h->nc->Get(k);
    timer.Add(peers::TicksEnd() - t0, 1);
    if (!v || *v != d.value(i)) ++wrong;
  }
  const shmkv::NearCacheStats after = h->nc->stats();
  const uint64_t fetched = after.fetches - before.fetches;
  const uint64_t kept_not = after.not_cached - before.not_cached;
  const uint64_t ops = state.iterations();
  timer.Finish(state, h->transport, "near_miss", round,
               wrong + (ops > fetched ? ops - fetched : 0) + kept_not);
}

// ------------------------------------------------------------- invalidation

struct Delays {
  std::string transport;
  uint64_t writes = 0;
  Histogram gone;      // write issued -> local copy gone
  Histogram gone_ack;  // write acknowledged -> local copy gone (0 if gone before)
  Histogram fresh;     // write issued -> NearCache::Get returns the new value
  Histogram set;       // the writer's NearCache::Set
  uint64_t gone_before_ack = 0;
  uint64_t stale_reads = 0;  // NearCache::Get returned the old value after the copy was gone
  uint64_t failures = 0;     // gone before the write, timeouts, errors
  std::string note;
};
std::vector<std::unique_ptr<Delays>> g_delays;

// The reading host's side, on its own thread: for each key the writer
// names, make sure the copy is local, say so, poll until it is gone, then
// read until the new value comes. The phase moves writer -> reader:
// kPrepare (key named) -> kArmed (copy local, polling) -> kDone or kFailed,
// and kStop ends the thread whatever it is doing.
class Reader {
 public:
  explicit Reader(Host* h) : h_(h), thread_([this] { Run(); }) {}
  ~Reader() {
    phase_.store(kStop, std::memory_order_release);
    phase_.notify_all();
    thread_.join();
  }
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  // The writer's side of one write: true once the reader polls key i.
  bool Arm(size_t i) {
    index_ = i;
    phase_.store(kPrepare, std::memory_order_release);
    phase_.notify_all();
    return WaitWhile(kPrepare) == kArmed;
  }
  // After the write: true once the reader has seen the new value.
  bool Finish() { return WaitWhile(kArmed) == kDone; }

  // Valid after Finish().
  uint64_t gone = 0, fresh = 0;  // ticks
  uint64_t stale_reads = 0;
  std::string error;

 private:
  enum Phase : int { kIdle, kPrepare, kArmed, kDone, kFailed, kStop };

  int WaitWhile(int p) {
    int now;
    while ((now = phase_.load(std::memory_order_acquire)) == p) phase_.wait(p);
    return now;
  }
  // The reader's moves: never over kStop.
  bool Move(int from, int to) {
    const bool moved = phase_.compare_exchange_strong(from, to, std::memory_order_acq_rel);
    if (moved) phase_.notify_all();
    return moved;
  }
  bool Stopping() const { return phase_.load(std::memory_order_acquire) == kStop; }

  // True once the segment holds a copy of key (a value, not a placeholder).
  bool Local(std::string_view key) {
    char buf[kValueLen];
    size_t len = 0;
    shmkv_item_info_t info{};
    info.struct_size = sizeof(info);
    return shmkv_get(h_->raw, key.data(), key.size(), buf, sizeof(buf), &len, &info) == 0 &&
           info.user_flags != SHMKV_UPSTREAM_PLACEHOLDER;
  }

  // One write; the phase it ends in.
  int Step() {
    const Data& d = env->data;
    const std::string_view key = d.inv_key(index_), want = d.inv_new(index_);
    // The copy, fetched (the first time) or already there.
    for (int attempt = 0; !Local(key); ++attempt) {
      auto v = h_->nc->Get(key);
      if (attempt == 100 || !v) {
        error = "could not get a local copy of " + std::string(key) + ": " + h_->nc->last_error();
        return kFailed;
      }
    }
    if (!Move(kPrepare, kArmed)) return kStop;
    const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    char buf[kValueLen];
    size_t len = 0;
    for (uint32_t spins = 1;; ++spins) {
      const int rc = shmkv_get(h_->raw, key.data(), key.size(), buf, sizeof(buf), &len, nullptr);
      if (rc == SHMKV_ENOTFOUND) {
        gone = peers::TicksEnd();
        break;
      }
      _mm_pause();
      if (spins % 1024 == 0) {
        if (Stopping()) return kStop;
        if (std::chrono::steady_clock::now() > limit) {
          error = "the copy of " + std::string(key) + " was still there 5 s after the write";
          return kFailed;
        }
      }
    }
    for (;;) {
      auto v = h_->nc->Get(key);
      if (v && *v == want) {
        fresh = peers::TicksEnd();
        return kDone;
      }
      if (v) ++stale_reads;
      if (Stopping()) return kStop;
      if (std::chrono::steady_clock::now() > limit) {
        error = "NearCache::Get did not return the new value of " + std::string(key);
        return kFailed;
      }
    }
  }

  void Run() {
    for (;;) {
      int p;
      while ((p = phase_.load(std::memory_order_acquire)) != kPrepare && p != kStop) phase_.wait(p);
      if (p == kStop) return;
      const int end = Step();
      if (end == kStop) return;
      if (!Move(kArmed, end)) Move(kPrepare, end);
    }
  }

  Host* h_;
  size_t index_ = 0;
  std::atomic<int> phase_{kIdle};
  std::thread thread_;
};

void Invalidation(benchmark::State& state, Host* h) {
  const Data& d = env->data;
  shmkv::NearCache& writer = *env->writer->nc;
  auto res = std::make_unique<Delays>();
  res->transport = h->transport;
  for (Histogram* x : {&res->gone, &res->gone_ack, &res->fresh, &res->set}) x->Clear();
  const shmkv::NearCacheStats before = h->nc->stats();
  {
    Reader reader(h);
    size_t next = 0;
    for (auto _ : state) {
      if (next == d.writes()) {  // more iterations than keys (--benchmark_repetitions...)
        state.SkipWithError("no key left for this write");
        break;
      }
      const size_t k = next++;
      if (!reader.Arm(k)) {
        ++res->failures;
        res->note = reader.error;
        state.SetIterationTime(1e-9);
        continue;
      }
      const uint64_t t0 = peers::TicksBegin();
      const std::error_code ec = writer.Set(d.inv_key(k), d.inv_new(k));
      const uint64_t ack = peers::TicksEnd();
      if (ec) {
        state.SkipWithError(("NearCache::Set: " + writer.last_error()).c_str());
        break;
      }
      if (!reader.Finish() || reader.gone < t0) {
        ++res->failures;
        res->note = reader.error.empty() ? "a copy was gone before its write" : reader.error;
        state.SetIterationTime(1e-9);
        continue;
      }
      ++res->writes;
      res->gone.Record(static_cast<uint64_t>(TicksToNs(reader.gone - t0) * 10));
      res->gone_ack.Record(
          reader.gone > ack ? static_cast<uint64_t>(TicksToNs(reader.gone - ack) * 10) : 0);
      if (reader.gone <= ack) ++res->gone_before_ack;
      res->fresh.Record(static_cast<uint64_t>(TicksToNs(reader.fresh - t0) * 10));
      res->set.Record(static_cast<uint64_t>(TicksToNs(ack - t0) * 10));
      state.SetIterationTime(TicksToNs(reader.gone - t0) * 1e-9);
    }
    res->stale_reads = reader.stale_reads;
  }
  const shmkv::NearCacheStats after = h->nc->stats();
  if (after.bypasses != before.bypasses) {
    res->note += (res->note.empty() ? "" : "; ") +
                 std::to_string(after.bypasses - before.bypasses) +
                 " reads bypassed the segment (stream not current)";
  }
  state.counters["p50_us"] = res->gone.PercentileNs(50) / 1e3;
  state.counters["p99_us"] = res->gone.PercentileNs(99) / 1e3;
  state.counters["max_us"] = res->gone.MaxNs() / 1e3;
  state.counters["new_p50_us"] = res->fresh.PercentileNs(50) / 1e3;
  g_delays.push_back(std::move(res));
}

// ------------------------------------------------------------- report

// The median over the rounds that ran.
Sample MedianSample(const std::vector<Sample>& rounds) {
  std::vector<peers::Stats> ran;
  Sample m;
  for (const Sample& s : rounds) {
    if (s.ops == 0) continue;
    ran.push_back(s);
    m.ops += s.ops;
    m.unexpected += s.unexpected;
  }
  static_cast<peers::Stats&>(m) = peers::Medians(ran);
  return m;
}

std::string LoadAverage() {
  std::ifstream f("/proc/loadavg");
  std::string one, five, fifteen;
  f >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

// p50 | p90 | p99 | max; a delay of 0 is "0" (the copy was already gone).
std::string Percentiles(const Histogram& h) {
  if (h.count() == 0) return "– | – | – | –";
  const auto f = [](double ns) { return ns <= 0 ? std::string("0") : FmtNs(ns); };
  return f(h.PercentileNs(50)) + " | " + f(h.PercentileNs(90)) + " | " + f(h.PercentileNs(99)) +
         " | " + f(h.MaxNs());
}

std::string Report(const Options& opt, const std::string& date, const std::string& load_start,
                   double total_s) {
  std::ostringstream out;
  const char* labels[] = {"NearCache::Get, local hit", "shmkv_get on the same segment",
                          "Redis GET, 1 client", "Redis GET, pipelined 16",
                          "NearCache::Get, miss (fetch from Redis)"};
  out << "## Near cache (shmkvd --upstream in front of Redis 7)\n\n"
      << "- date: " << date << "; commit: " << opt.commit << "; run: " << bench::RunLabel(opt.smoke)
      << ", " << opt.rounds << " round(s) of " << peers::Fmt("%.0f", opt.min_time_s * 1000)
      << " ms per workload, " << peers::Fmt("%.0f", total_s) << " s in all\n"
      << "- load average (1, 5, 15 min): " << load_start << " at the start, " << LoadAverage()
      << " at the end, on " << std::thread::hardware_concurrency() << " cores\n"
      << "- setup: `bench/near/bench_near.cc`. One redis-server (127.0.0.1 TCP and a unix "
         "socket), and per transport a segment with its `shmkvd --upstream URL --prefix b:`; "
      << opt.keys
      << " keys of 16 B with 64-B values, stored in Redis and read once through each "
         "segment's NearCache, so that every near_hit is a local copy. One client process; "
         "keys in uniform random order. Timing as in the peer suite: local reads in batches "
         "of 16 (per-op latency = batch / 16), a pipeline of 16 as one batch, an unpipelined "
         "round trip on its own; the median of the rounds.\n\n";

  out << "### GET: near-cache hit vs Redis GET\n\n"
      << "| transport | read | ops/s | p50 | p99 | p99.9 | near-cache hit ÷ this |\n"
      << "|---|---|---|---|---|---|---|\n";
  std::vector<std::string> checks;
  for (const char* t : {"tcp", "unix"}) {
    const auto hit_it = g_samples.find({t, "near_hit"});
    const Sample hit = hit_it == g_samples.end() ? Sample{} : MedianSample(hit_it->second);
    for (size_t w = 0; w < kWorkloads.size(); ++w) {
      const auto it = g_samples.find({t, kWorkloads[w]});
      if (it == g_samples.end()) continue;
      const Sample s = MedianSample(it->second);
      out << "| " << t << " | " << labels[w] << " | " << FmtOps(s.ops_per_s) << " | "
          << FmtNs(s.p50) << " | " << FmtNs(s.p99) << " | " << FmtNs(s.p999) << " | "
          << (w == 0 ? "" : FmtRatio(peers::Ratio(hit.ops_per_s, s.ops_per_s))) << " |\n";
      if (s.unexpected > 0) {
        checks.push_back(std::string(t) + " " + kWorkloads[w] + ": " +
                         std::to_string(s.unexpected) + " of " + std::to_string(s.ops) +
                         " ops were not what the workload requires");
      }
    }
  }
  out << "\nnear-cache hit ÷ Redis GET (1 client), per round:";
  const char* between = " ";
  for (const char* t : {"tcp", "unix"}) {
    const auto h = g_samples.find({t, "near_hit"});
    const auto r = g_samples.find({t, "redis_get"});
    if (h == g_samples.end() || r == g_samples.end()) continue;
    out << between << t;
    between = "; ";
    const char* sep = " ";
    for (size_t i = 0; i < std::min(h->second.size(), r->second.size()); ++i) {
      const double q = peers::Ratio(h->second[i].ops_per_s, r->second[i].ops_per_s);
      if (q <= 0) continue;
      out << sep << FmtRatio(q);
      sep = ", ";
    }
  }
  out << (between[0] == ' ' ? " –" : ".") << "\n\n"
      << "An unpipelined round trip takes a few µs when the server's core is awake and tens of µs "
         "when it must wake an idle virtual CPU, which this VM does; the Redis GET p50 tells "
         "which one a round got, and the ratio moves with it.\n\n";

  out << "### Invalidation delay\n\n"
      << "A NearCache on another segment with its own shmkvd (another host, over TCP) Sets a "
         "key whose copy the reading host holds; a thread of the reading host polls its segment "
         "with `shmkv_get` until the copy is gone, then calls `NearCache::Get` until it returns "
         "the new value. One key per write. The reader polls on one core while Redis, the "
         "daemons and the writer share the other.\n\n"
      << "| reading host's stream | writes | from | to | p50 | p90 | p99 | max |\n"
      << "|---|---|---|---|---|---|---|---|\n";
  for (const auto& dl : g_delays) {
    const std::string head = "| " + dl->transport + " | " + std::to_string(dl->writes) + " | ";
    out << head << "write issued | local copy gone | " << Percentiles(dl->gone) << " |\n"
        << head << "write acknowledged | local copy gone | " << Percentiles(dl->gone_ack) << " |\n"
        << head << "write issued | NearCache::Get returns the new value | "
        << Percentiles(dl->fresh) << " |\n"
        << head << "write issued | write acknowledged (the writer's NearCache::Set) | "
        << Percentiles(dl->set) << " |\n";
  }
  out << "\n";
  for (const auto& dl : g_delays) {
    out << "- " << dl->transport << ": the copy was gone before the writer's Set returned in "
        << dl->gone_before_ack << " of " << dl->writes
        << " writes (counted as 0 from the acknowledgement); reads of the old value after the "
           "copy was gone: "
        << dl->stale_reads << ".\n";
    if (dl->failures > 0 || !dl->note.empty()) {
      checks.push_back(dl->transport + " invalidation: " + std::to_string(dl->failures) +
                       " failed writes" + (dl->note.empty() ? "" : " (" + dl->note + ")"));
    }
    if (dl->stale_reads > 0) {
      checks.push_back(dl->transport + " invalidation: " + std::to_string(dl->stale_reads) +
                       " reads returned the old value after the local copy was gone");
    }
  }
  out << "\n### Checks\n\n";
  if (checks.empty()) {
    out << "Every near_hit was served from the segment (no fetch, no bypass), every near_miss "
           "fetched the right value and kept it, every Redis GET and shmkv_get found its "
           "64-B value, and every write's copy was deleted and then read anew.\n\n";
  } else {
    for (const auto& c : checks) out << "- ⚠ " << c << "\n";
    out << "\n";
  }
  return out.str();
}

// ------------------------------------------------------------- main

// Takes this program's flags out of argv; the rest is Google Benchmark's.
bool ParseArgs(int* argc, char** argv, Options* o) {
  if (bench::Flags::Has(*argc, argv, "--smoke")) {
    o->keys = 10'000;
    o->rounds = 1;
    o->min_time_s = 0.05;
    o->writes = 200;
  }
  const bool parsed = bench::Flags("bench_near")
                          .Switch("--smoke", &o->smoke)
                          .Text("--out", &o->out_dir)
                          .Text("--commit", &o->commit)
                          .Text("--dir", &o->dir)
                          .Count("--keys", &o->keys)
                          .Int("--rounds", &o->rounds)
                          .Number("--min-time", &o->min_time_s)
                          .Count("--writes", &o->writes)
                          .Text("--redis-server", &o->redis_server)
                          .Text("--shmkvd", &o->shmkvd)
                          .Parse(argc, argv, /*keep_others=*/true);
  if (!parsed) return false;
  if (o->keys < 1000 || o->rounds < 1 || o->min_time_s <= 0 || o->writes < 1 ||
      o->writes > o->keys) {
    std::cerr << "bench_near: --keys >= 1000, --rounds >= 1, --min-time > 0 and "
                 "1 <= --writes <= --keys, please\n";
    return false;
  }
  return true;
}

int Main(int argc, char** argv) {
  Options opt;
  if (!ParseArgs(&argc, argv, &opt)) return 2;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;

  const double t0 = peers::NowS();
  const std::string load_start = LoadAverage();
  const std::string date = bench::LocalDate();
  signal(SIGPIPE, SIG_IGN);
  bench::CleanUpOnSignals();

  g_ns_per_tick = peers::CalibrateNsPerTick(opt.smoke ? 20 : 100);
  Env owned(opt);
  env = &owned;
  std::cerr << "bench_near: starting redis-server and shmkvd (" << opt.shmkvd << "), load "
            << load_start << "\n";
  owned.Start();
  std::cerr << "bench_near: storing " << opt.keys << " keys and fetching them into "
            << owned.hosts.size() << " segments\n";
  owned.Fill();

  for (int r = 0; r < opt.rounds; ++r) {
    for (Host* h : owned.hosts) {
      const std::string p = h->transport + "/";
      const std::string round = "/round:" + std::to_string(r);
      // About min_time of wall-clock time each: a round trip is mostly waiting.
      for (auto* b : {
               benchmark::RegisterBenchmark((p + "near_hit" + round).c_str(), NearHit, h, r),
               benchmark::RegisterBenchmark((p + "shmkv_get" + round).c_str(), ShmkvGet, h, r),
               benchmark::RegisterBenchmark((p + "redis_get" + round).c_str(), RedisGet, h, r,
                                            false),
               benchmark::RegisterBenchmark((p + "redis_p16" + round).c_str(), RedisGet, h, r,
                                            true),
               benchmark::RegisterBenchmark((p + "near_miss" + round).c_str(), NearMiss, h, r),
           }) {
        b->MinTime(opt.min_time_s)->UseRealTime();
      }
    }
  }
  for (Host* h : owned.hosts) {
    benchmark::RegisterBenchmark((h->transport + "/invalidation").c_str(), Invalidation, h)
        ->Iterations(static_cast<benchmark::IterationCount>(opt.writes))
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  const std::string section = Report(opt, date, load_start, peers::NowS() - t0);
  std::cout << "\n" << section;
  if (!opt.out_dir.empty()) {
    const std::string err =
        bench::WriteSection(opt.out_dir + "/latest.md", "## Near cache", section);
    if (!err.empty()) Fail(err);
    std::cerr << "bench_near: the Near cache section of " << opt.out_dir << "/latest.md\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return bench::RunMain("bench_near", Main, argc, argv); }
