// The measurements beside the timed runs: memory per item of each store,
// callgrind instruction counts per shmkv operation (hardware counters are
// unavailable here, and instruction counts do not drift with the machine's
// noise), and the memory-latency floor from a pointer chase.
#include <hiredis/hiredis.h>
#include <malloc.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backend.h"
#include "measure.h"
#include "shmkv/shmkv.h"
#include "suite.h"

namespace peers {

uint64_t MemAvailableBytes() {
  std::ifstream mi("/proc/meminfo");
  for (std::string line; std::getline(mi, line);) {
    if (line.rfind("MemAvailable:", 0) == 0) return std::stoull(line.substr(13)) * 1024;
  }
  return 0;
}

namespace {

constexpr uint32_t kKeyLen = 16;
constexpr uint32_t kValueLen = 64;

void Key(const char* prefix, uint64_t i, char* out) {
  char b[32];
  std::snprintf(b, sizeof(b), "%s%012llu", prefix, static_cast<unsigned long long>(i));
  std::memcpy(out, b, kKeyLen);
}

// Sets n keys of 16 B with 64-B values through a backend; the number that failed.
uint64_t Fill(Backend* b, uint64_t n) {
  constexpr size_t kChunk = 128;
  std::vector<char> keys(kChunk * kKeyLen);
  std::string value(kValueLen, 'v');
  std::vector<char> buf(256);
  Op ops[kChunk];
  Outcome o;
  for (uint64_t i = 0; i < n; i += kChunk) {
    const size_t m = static_cast<size_t>(std::min<uint64_t>(kChunk, n - i));
    for (size_t j = 0; j < m; ++j) {
      Key("key:", i + j, &keys[j * kKeyLen]);
      ops[j] = {OpType::kSet, {&keys[j * kKeyLen], kKeyLen}, value};
    }
    b->Run(ops, m, b->CanPipeline(OpType::kSet), buf.data(), buf.size(), &o);
  }
  return o.errors + o.not_found;
}

// shmkv: fills a segment of mem bytes, with max_items = n, with n items.
// *evictions: how many it evicted; *used: index bytes plus the blocks in
// use, per item held; *held: items it holds. false if it could not run.
bool ShmkvFill(uint64_t mem, uint64_t n, uint64_t* evictions, double* used, uint64_t* held) {
  const std::string name = "/peers-" + std::to_string(getpid()) + "-mem";
  shmkv_options_t o;
  shmkv_options_init(&o);
  o.flags = SHMKV_OPEN_CREATE | SHMKV_OPEN_EXCL;
  o.memory_bytes = mem;
  o.max_items = n;
  o.max_key_len = kKeyLen;
  shmkv_t* kv = nullptr;
  shmkv_unlink(name.c_str());
  if (shmkv_open(name.c_str(), &o, &kv) != 0) return false;
  shmkv_unlink(name.c_str());  // the mapping stays valid
  const std::string value(kValueLen, 'v');
  char key[kKeyLen];
  bool ok = true;
  for (uint64_t i = 0; i < n && ok; ++i) {
    Key("key:", i, key);
    ok = shmkv_set(kv, key, kKeyLen, value.data(), value.size(), 0) == 0;
  }
  shmkv_stats_t st;
  st.struct_size = sizeof(st);
  shmkv_info_t info;
  info.struct_size = sizeof(info);
  if (ok && shmkv_stats(kv, &st) == 0 && shmkv_info(kv, &info) == 0 && st.items > 0) {
    *evictions = st.evictions;
    *held = st.items;
    *used =
        static_cast<double>(info.index_slots * 16 + st.memory_used) / static_cast<double>(st.items);
  } else {
    ok = false;
  }
  shmkv_close(kv);
  return ok;
}

// The smallest segment, with max_items = n (the documented sizing), whose
// data area does not limit it: it evicts about as many keys as a huge one.
// A huge one still evicts some keys, when a key's bucket pair is full (the
// index is sized for load 0.75), and not the same number from run to run
// (0.62-0.68 % of 100 000 in our runs); those are reported. The search
// goes down to 4 KiB, what tmpfs allocates a segment in (0.5 % of the size,
// as before, is 0.8 B an item at 100 000 items: more than the overheads it
// is meant to show).
void MeasureShmkv(uint64_t n, std::vector<MemoryResult>* out, std::vector<std::string>* msgs) {
  constexpr uint64_t kStep = 4096;
  uint64_t base_ev = 0, held = 0;
  double used = 0;
  uint64_t hi = (n * 1024 + kStep - 1) / kStep * kStep;
  if (!ShmkvFill(hi, n, &base_ev, &used, &held)) {
    msgs->push_back("memory: shmkv: could not fill a segment of " + std::to_string(hi) +
                    " bytes with " + std::to_string(n) + " items");
    return;
  }
  uint64_t lo = n * 32 / kStep * kStep;
  while (hi - lo > kStep) {
    const uint64_t mid = (lo + (hi - lo) / 2) / kStep * kStep;  // lo < mid < hi
    uint64_t ev = 0, h = 0;
    double u = 0;
    if (ShmkvFill(mid, n, &ev, &u, &h) && ev <= base_ev + base_ev / 4 + n / 2000) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  uint64_t ev = 0;
  ShmkvFill(hi, n, &ev, &used, &held);
  const double dn = static_cast<double>(held);
  char how[400];
  std::snprintf(how, sizeof(how),
                "smallest segment, to 4 KiB (memory_bytes: header, registry, index, page "
                "tables, data) with "
                "max_items = %llu whose data area does not limit it; it holds %llu (%llu evicted; "
                "a huge segment evicted %llu, by full index buckets at load 0.75)",
                static_cast<unsigned long long>(n), static_cast<unsigned long long>(held),
                static_cast<unsigned long long>(ev), static_cast<unsigned long long>(base_ev));
  out->push_back({"shmkv", n, static_cast<double>(hi) / dn, how});
  out->push_back({"shmkv", n, used,
                  "in that segment: index slots (16 B each) + size-class blocks in use "
                  "(shmkv_info index_slots, shmkv_stats memory_used), per item held"});
}

std::string RedisInfo(redisContext* c, const std::string& field) {
  auto* r = static_cast<redisReply*>(redisCommand(c, "INFO memory"));
  if (r == nullptr) return "";
  std::string text = r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : "";
  freeReplyObject(r);
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) {
      std::string v = line.substr(field.size() + 1);
      while (!v.empty() && (v.back() == '\r' || v.back() == '\n')) v.pop_back();
      return v;
    }
  }
  return "";
}

void MeasureRedis(const Options& opt, uint64_t n, std::vector<MemoryResult>* out,
                  std::vector<std::string>* msgs) {
  auto b = MakeRedis(opt.redis_sock);
  StoreSpec spec;
  spec.items = n;
  if (std::string err = b->Open(spec); !err.empty()) {
    msgs->push_back("memory: " + err);
    return;
  }
  redisContext* c = redisConnectUnix(opt.redis_sock.c_str());
  if (c == nullptr || c->err) {
    msgs->push_back("memory: cannot connect to redis");
    if (c) redisFree(c);
    return;
  }
  usleep(200'000);
  const uint64_t before = std::strtoull(RedisInfo(c, "used_memory").c_str(), nullptr, 10);
  uint64_t failed = 0;
  if (b->Attach().empty()) {
    failed = Fill(b.get(), n);
    b->Detach();
  }
  usleep(300'000);  // let the incremental rehash of the key table finish
  const uint64_t after = std::strtoull(RedisInfo(c, "used_memory").c_str(), nullptr, 10);
  redisFree(c);
  b->Close();
  if (failed > 0 || after <= before) {
    msgs->push_back("memory: redis fill failed");
    return;
  }
  out->push_back({"redis", n, static_cast<double>(after - before) / static_cast<double>(n),
                  "INFO memory used_memory after - before, on an empty instance (jemalloc "
                  "size classes, dict entries and the key table included)"});
}

// memcached's text protocol directly: libmemcached's stats API has no
// "stats slabs".
std::string MemcachedCommand(const std::string& sock, const std::string& cmd) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock.c_str());
  std::string reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      write(fd, cmd.data(), cmd.size()) == static_cast<ssize_t>(cmd.size())) {
    char buf[65536];
    for (;;) {
      const ssize_t r = read(fd, buf, sizeof(buf));
      if (r <= 0) break;
      reply.append(buf, static_cast<size_t>(r));
      if (reply.size() >= 5 && reply.compare(reply.size() - 5, 5, "END\r\n") == 0) break;
    }
  }
  close(fd);
  return reply;
}

void MeasureMemcached(const Options& opt, uint64_t n, std::vector<MemoryResult>* out,
                      std::vector<std::string>* msgs) {
  auto b = MakeMemcached(opt.memcached_sock);
  StoreSpec spec;
  spec.items = n;
  if (std::string err = b->Open(spec); !err.empty()) {
    msgs->push_back("memory: " + err);
    return;
  }
  uint64_t failed = n;
  if (b->Attach().empty()) {
    failed = Fill(b.get(), n);
    b->Detach();
  }
  // The class the items went to: the one with the most chunks in use.
  std::map<std::string, std::map<std::string, uint64_t>> cls;
  std::istringstream slabs(MemcachedCommand(opt.memcached_sock, "stats slabs\r\n"));
  for (std::string line; std::getline(slabs, line);) {
    // "STAT 5:chunk_size 144"
    if (line.rfind("STAT ", 0) != 0) continue;
    const size_t colon = line.find(':'), space = line.rfind(' ');
    if (colon == std::string::npos || space < colon) continue;
    cls[line.substr(5, colon - 5)][line.substr(colon + 1, space - colon - 1)] =
        std::strtoull(line.c_str() + space + 1, nullptr, 10);
  }
  uint64_t chunk = 0, used = 0;
  for (auto& [id, f] : cls) {
    if (f["used_chunks"] > used) {
      used = f["used_chunks"];
      chunk = f["chunk_size"];
    }
  }
  uint64_t hash_bytes = 0;
  std::istringstream stats(MemcachedCommand(opt.memcached_sock, "stats\r\n"));
  for (std::string line; std::getline(stats, line);) {
    if (line.rfind("STAT hash_bytes ", 0) == 0)
      hash_bytes = std::strtoull(line.c_str() + 16, nullptr, 10);
  }
  b->Close();
  if (failed > 0 || chunk == 0) {
    msgs->push_back("memory: memcached fill or stats failed");
    return;
  }
  const double per =
      static_cast<double>(chunk) + static_cast<double>(hash_bytes) / static_cast<double>(n);
  char how[256];
  std::snprintf(how, sizeof(how),
                "chunk of the slab class the items went to (stats slabs chunk_size %llu B) + "
                "hash table (stats hash_bytes %llu / items)",
                static_cast<unsigned long long>(chunk),
                static_cast<unsigned long long>(hash_bytes));
  out->push_back({"memcached", n, per, how});
}

void MeasureBoost(uint64_t n, std::vector<MemoryResult>* out, std::vector<std::string>* msgs) {
  auto b = MakeBoostMap();
  StoreSpec spec;
  spec.name = std::to_string(getpid()) + "-mem-boost";
  spec.items = n;
  std::string err = b->Open(spec);
  if (err.empty()) err = b->Attach();
  if (!err.empty()) {
    msgs->push_back("memory: " + err);
    return;
  }
  const uint64_t failed = Fill(b.get(), n);
  struct stat st {};
  const bool ok = stat(("/dev/shm/peers-" + spec.name).c_str(), &st) == 0;
  b->Detach();
  b->Close();
  if (failed > 0 || !ok) {
    msgs->push_back("memory: boost-ipc fill failed");
    return;
  }
  out->push_back({"boost-ipc", n,
                  static_cast<double>(st.st_blocks) * 512.0 / static_cast<double>(n),
                  "pages of the segment touched (tmpfs st_blocks), buckets reserved for the "
                  "items up front"});
}

void MeasureLocal(const std::string& name, std::unique_ptr<Backend> b, uint64_t n,
                  std::vector<MemoryResult>* out) {
  if (!b) return;
  StoreSpec spec;
  spec.items = n;
  malloc_trim(0);
  const size_t before = mallinfo2().uordblks;
  b->Open(spec);
  const uint64_t failed = Fill(b.get(), n);
  const size_t after = mallinfo2().uordblks;
  b->Close();
  if (failed > 0) return;
  out->push_back({name, n, static_cast<double>(after - before) / static_cast<double>(n),
                  "malloc'd bytes (mallinfo2 uordblks) after - before; buckets reserved up "
                  "front; keys of 16 B do not fit std::string's 15-byte inline buffer"});
}

std::string SelfPath() {
  char b[4096];
  const ssize_t n = readlink("/proc/self/exe", b, sizeof(b) - 1);
  if (n <= 0) return "";
  return std::string(b, static_cast<size_t>(n));
}

// Total Ir of one callgrind run, or 0.
uint64_t CallgrindIr(const std::string& self, const std::string& dir, const std::string& op,
                     uint64_t ops, uint64_t keys, std::string* why) {
  const std::string out = dir + "/cg." + op + "." + std::to_string(ops);
  const std::string cmd = "valgrind --tool=callgrind --callgrind-out-file='" + out + "' '" + self +
                          "' --callgrind-op=" + op + " --callgrind-ops=" + std::to_string(ops) +
                          " --callgrind-keys=" + std::to_string(keys) + " >'" + out + ".log' 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream log(out + ".log");
    std::string line, last;
    while (std::getline(log, line)) {
      if (line.rfind("==", 0) != 0 && !line.empty()) last = line;
    }
    *why = last.empty() ? "valgrind failed" : last;
    return 0;
  }
  std::ifstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("summary:", 0) == 0 || line.rfind("totals:", 0) == 0) {
      return std::strtoull(line.c_str() + line.find(':') + 1, nullptr, 10);
    }
  }
  return 0;
}

}  // namespace

std::vector<MemoryResult> MeasureMemory(const Options& opt, std::vector<std::string>* messages) {
  std::vector<MemoryResult> out;
  for (uint64_t n : opt.memory_items) {
    const auto t0 = std::chrono::steady_clock::now();
    if (PeerWanted(opt, "shmkv")) MeasureShmkv(n, &out, messages);
    if (PeerWanted(opt, "redis") && !opt.redis_sock.empty()) MeasureRedis(opt, n, &out, messages);
    if (PeerWanted(opt, "memcached") && !opt.memcached_sock.empty()) {
      MeasureMemcached(opt, n, &out, messages);
    }
    if (PeerWanted(opt, "boost-ipc")) MeasureBoost(n, &out, messages);
    if (PeerWanted(opt, "std-umap")) MeasureLocal("std-umap", MakeStdMap(), n, &out);
    if (PeerWanted(opt, "absl-flat")) MeasureLocal("absl-flat", MakeFlatMap(), n, &out);
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - t0;
    std::cerr << "bench_peers: memory per item at " << n << " items measured in "
              << static_cast<int>(took.count()) << " s\n";
  }
  return out;
}

std::vector<CallgrindResult> MeasureCallgrind(const Options& opt,
                                              std::vector<std::string>* messages) {
  std::vector<CallgrindResult> out;
  if (opt.callgrind_ops == 0 || !PeerWanted(opt, "shmkv")) return out;
  if (std::system("command -v valgrind >/dev/null 2>&1") != 0) {
    messages->push_back("callgrind: valgrind is not installed; no instruction counts");
    return out;
  }
  char tmpl[] = "/tmp/bench_peers_cg.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return out;
  const std::string dir = tmpl;
  const std::string self = SelfPath();
  const uint64_t keys = opt.keys;
  std::string why;
  const uint64_t base = CallgrindIr(self, dir, "get_hit", 0, keys, &why);
  if (base == 0) {
    messages->push_back("callgrind: the baseline run failed: " + why);
    return out;
  }
  for (const char* op : {"get_hit", "get_miss", "mget16", "set_update", "incr", "delete_set"}) {
    const uint64_t ir = CallgrindIr(self, dir, op, opt.callgrind_ops, keys, &why);
    CallgrindResult r;
    r.op = op;
    r.ops = opt.callgrind_ops;
    if (ir <= base) {
      r.note = "run failed: " + why;
    } else {
      r.ir_per_op = static_cast<double>(ir - base) / static_cast<double>(opt.callgrind_ops);
    }
    out.push_back(r);
    std::cerr << "bench_peers: callgrind " << op << ": " << r.ir_per_op << " Ir/op\n";
  }
  std::system(("rm -rf '" + dir + "'").c_str());
  return out;
}

// Runs under valgrind: the same set-up for every op (a segment with `keys`
// keys and as many counters, all key strings and a random order made up
// front), then `ops` ops of one kind through the C API. The baseline is this
// with 0 ops, so the difference is the ops plus a few instructions of loop.
int CallgrindChild(const Options& opt) {
  const uint64_t keys = opt.callgrind_keys ? opt.callgrind_keys : 100'000;
  const std::string name = "/peers-cg-" + std::to_string(getpid());
  shmkv_options_t o;
  shmkv_options_init(&o);
  o.flags = SHMKV_OPEN_CREATE | SHMKV_OPEN_EXCL;
  o.memory_bytes = std::max<uint64_t>(64ull << 20, keys * 2 * 512);
  // 2 x keys entries at load 0.25: no key is evicted for a full bucket pair.
  o.max_items = keys * 8;
  shmkv_t* kv = nullptr;
  if (int rc = shmkv_open(name.c_str(), &o, &kv)) {
    std::fprintf(stderr, "shmkv_open: %s\n", shmkv_strerror(rc));
    return 1;
  }
  shmkv_unlink(name.c_str());
  std::vector<char> k(keys * kKeyLen), miss(keys * kKeyLen), ctr(keys * kKeyLen);
  for (uint64_t i = 0; i < keys; ++i) {
    Key("key:", i, &k[i * kKeyLen]);
    Key("mis:", i, &miss[i * kKeyLen]);
    Key("ctr:", i, &ctr[i * kKeyLen]);
  }
  const std::string v0(kValueLen, 'a'), v1(kValueLen, 'b');
  for (uint64_t i = 0; i < keys; ++i) {
    shmkv_set(kv, &k[i * kKeyLen], kKeyLen, v0.data(), v0.size(), 0);
    shmkv_set(kv, &ctr[i * kKeyLen], kKeyLen, "0", 1, 0);
  }
  std::vector<uint32_t> order(1 << 16);
  std::mt19937 rng(3);
  for (auto& x : order) x = static_cast<uint32_t>(rng() % keys);
  char buf[256];
  size_t len = 0;
  int64_t result = 0;
  uint64_t bad = 0;
  int first_bad = 0;
  const std::string& op = opt.callgrind_op;
  // mget16: shmkv_mget of the next 16 keys of the order every 16th op (an
  // op is a key).
  constexpr size_t kGroup = 16;
  const void* mkeys[kGroup];
  size_t mkey_lens[kGroup], mbuf_lens[kGroup], mval_lens[kGroup];
  void* mbufs[kGroup];
  int mrcs[kGroup];
  std::vector<char> mbuf(kGroup * sizeof(buf));
  for (size_t g = 0; g < kGroup; ++g) {
    mkey_lens[g] = kKeyLen;
    mbufs[g] = &mbuf[g * sizeof(buf)];
    mbuf_lens[g] = sizeof(buf);
  }
  for (uint64_t i = 0; i < opt.callgrind_ops; ++i) {
    const uint64_t j = order[i & 0xffff];
    const char* key = &k[j * kKeyLen];
    int rc = 0;
    if (op == "get_hit") {
      rc = shmkv_get(kv, key, kKeyLen, buf, sizeof(buf), &len, nullptr);
    } else if (op == "mget16") {
      if (i % kGroup != kGroup - 1) continue;
      for (size_t g = 0; g < kGroup; ++g)
        mkeys[g] = &k[order[(i + 1 - kGroup + g) & 0xffff] * kKeyLen];
      rc = shmkv_mget(kv, kGroup, mkeys, mkey_lens, mbufs, mbuf_lens, mval_lens, mrcs, nullptr);
      for (size_t g = 0; g < kGroup && rc == 0; ++g) rc = mrcs[g];
    } else if (op == "get_miss") {
      rc = shmkv_get(kv, &miss[j * kKeyLen], kKeyLen, buf, sizeof(buf), &len, nullptr);
      rc = rc == SHMKV_ENOTFOUND ? 0 : rc == 0 ? SHMKV_EEXIST : rc;  // a hit is wrong here
    } else if (op == "set_update") {
      const std::string& v = (i & 1) ? v1 : v0;
      rc = shmkv_set(kv, key, kKeyLen, v.data(), v.size(), 0);
    } else if (op == "incr") {
      rc = shmkv_incr(kv, &ctr[j * kKeyLen], kKeyLen, 1, 0, 0, &result);
    } else if (op == "delete_set") {  // a delete, then the set that puts it back
      rc = shmkv_delete(kv, key, kKeyLen, 0);
      if (rc == 0) rc = shmkv_set(kv, key, kKeyLen, v0.data(), v0.size(), 0);
    }
    if (rc != 0 && bad++ == 0) first_bad = rc;
  }
  shmkv_close(kv);
  if (bad > 0) {
    std::fprintf(stderr, "%llu of the %s ops failed, the first with %s\n",
                 static_cast<unsigned long long>(bad), op.c_str(), shmkv_strerror(first_bad));
    return 1;
  }
  return 0;
}

// Average latency of one dependent load from a random cache line of a
// `bytes` buffer: the floor under any lookup that misses the caches and the
// TLB, as a lookup at 10 M keys does.
double PointerChaseNs(uint64_t bytes) {
  const uint64_t lines = bytes / 64;
  if (lines < 2) return 0;
  std::vector<uint64_t> next(lines * 8);  // one 64-byte line per entry
  std::vector<uint32_t> perm(lines);
  for (uint64_t i = 0; i < lines; ++i) perm[i] = static_cast<uint32_t>(i);
  std::mt19937_64 rng(11);
  // Sattolo: one cycle through every line.
  for (uint64_t i = lines - 1; i > 0; --i) {
    std::swap(perm[i], perm[rng() % i]);
  }
  for (uint64_t i = 0; i < lines; ++i) next[perm[i] * 8] = perm[(i + 1) % lines] * 8ull;
  uint64_t p = 0;
  for (int i = 0; i < 100'000; ++i) p = next[p];  // warm the TLB walker's caches a little
  const uint64_t loads = 4'000'000;
  const double ns_per_tick = CalibrateNsPerTick(20);
  const uint64_t t0 = TicksBegin();
  for (uint64_t i = 0; i < loads; ++i) p = next[p];
  const uint64_t t1 = TicksEnd();
  if (p == 1) std::cerr << "";  // keeps the chase
  return static_cast<double>(t1 - t0) * ns_per_tick / static_cast<double>(loads);
}

bool PeerWanted(const Options& opt, const std::string& name) {
  if (opt.peers == "all") return true;
  return ("," + opt.peers + ",").find("," + name + ",") != std::string::npos;
}

}  // namespace peers
