// fuzz_segment: a libFuzzer target for corrupted segments (issue 4,
// "Corrupted segments"; table.h Invariant 7).
//
// Once per process: creates a small file-backed segment under /dev/shm (a
// unique name, removed at exit), fills it with keys of several sizes (one
// value spans a run of pages, one key is expired but still linked, one is a
// counter), closes it and snapshots its bytes.
//
// Per input: restores the snapshot, applies the input as a list of
// mutations aimed at the segment's regions (header, process and participant
// records, slots, page table, bitmaps, block headers, raw bytes), then opens
// the segment and, if it opened, runs every verb on present and absent keys,
// a full scan, the checker in both modes, stats, recovery and clear. The
// library must neither crash nor read out of bounds; errors must be error
// codes (SHMKV_EBADSEG or ordinary results).
//
// Input format: records of kRecordSize bytes (a trailing partial record is
// ignored), at most kMaxRecords of them:
//   [0]    region (modulo the number of regions, see Region)
//   [1..2] element index in the region (little endian, modulo its count)
//   [3]    byte offset in the element (modulo the element size)
//   [4]    operation (low 3 bits, see Apply) and length (bits 3..5)
//   [5..12] payload
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "layout.h"
#include "shmkv/shmkv.h"

namespace {

using namespace shmkv::internal;

constexpr size_t kRecordSize = 13;
constexpr size_t kMaxRecords = 64;
constexpr uint64_t kSegmentBytes = 1 << 20;
constexpr size_t kLargeBuf = 1 << 18;

struct Region {
  uint64_t base;   // segment offset of element 0, or UINT64_MAX for lists
  uint64_t count;  // elements
  uint64_t size;   // bytes per element
  const std::vector<uint64_t>* list = nullptr;  // element offsets, if a list
};

struct State {
  std::string path;
  int fd = -1;
  unsigned char* map = nullptr;  // MAP_SHARED view of the segment file
  std::vector<unsigned char> snapshot;
  std::vector<Region> regions;
  std::vector<uint64_t> live_slots;   // offsets of LIVE slots
  std::vector<uint64_t> live_blocks;  // offsets of their blocks
  std::vector<uint64_t> interesting;  // values for the "set" operations
  std::vector<std::string> present;   // keys stored at setup
  uint32_t max_key_len = 0;
};

State* g = nullptr;
const void* volatile g_sink = nullptr;  // keeps the memchr calls

[[noreturn]] void Die(const char* what, int rc) {
  std::fprintf(stderr, "fuzz_segment setup: %s: %d %s (%s)\n", what, rc, shmkv_strerror(rc),
               shmkv_last_error());
  std::abort();
}

void RemoveSegment() {
  if (g != nullptr && !g->path.empty()) ::unlink(g->path.c_str());
}

void Store(shmkv_t* kv, const std::string& key, const std::string& val, uint64_t ttl) {
  if (int rc = shmkv_set(kv, key.data(), key.size(), val.data(), val.size(), ttl))
    Die(("set " + key).c_str(), rc);
  g->present.push_back(key);
}

void Populate(shmkv_t* kv, const Header& h) {
  const uint64_t page = 1ull << h.page_shift;
  const size_t sizes[] = {0, 1, 7, 40, 100, 300, 900, 2000, 5000, 12000, 30000};
  int n = 0;
  for (size_t s : sizes) {
    std::string v(s, '\0');
    for (size_t i = 0; i < s; ++i) v[i] = static_cast<char>('a' + (i * 7 + s) % 26);
    Store(kv, "key" + std::to_string(n++), v, 0);
  }
  // A value spanning a run of pages, if the geometry allows one.
  const uint64_t big = std::min<uint64_t>(h.max_value_len, 2 * page + page / 2);
  if (big > page) Store(kv, "big", std::string(big, 'B'), 0);
  Store(kv, "ttl-long", "lives an hour", 3600 * 1000);
  Store(kv, std::string("bin\0key\xff", 8), std::string("\0\1\2\3", 4), 0);
  int64_t r = 0;
  if (int rc = shmkv_incr(kv, "counter", 7, 1, 42, 0, &r)) Die("incr", rc);
  g->present.push_back("counter");
  Store(kv, "numeric", "-17", 0);
  // Expired but still linked (nobody reclaimed it yet).
  if (int rc = shmkv_set(kv, "ttl-short", 9, "x", 1, 1)) Die("set ttl-short", rc);
  ::usleep(3000);
  // Freed blocks with old contents.
  Store(kv, "gone", std::string(500, 'g'), 0);
  if (int rc = shmkv_delete(kv, "gone", 4, 0)) Die("delete", rc);
  g->present.pop_back();
  Store(kv, "key1", "replaced", 0);  // the old block of key1 is freed
  g->present.pop_back();
}

void CollectGeometry(const Header& h) {
  const uint64_t page = 1ull << h.page_shift;
  const uint64_t size = h.total_size;
  for (uint64_t i = 0; i < h.n_buckets * 4; ++i) {
    const uint64_t off = h.index_off + i * sizeof(Slot);
    Slot s;
    std::memcpy(&s, g->snapshot.data() + off, sizeof(s));
    if (ref::State(s.ref) == kEmpty) continue;
    g->live_slots.push_back(off);
    g->live_blocks.push_back(ref::OffUnits(s.ref) * kBlockUnit);
    g->interesting.push_back(s.ref);
    g->interesting.push_back(s.meta);
    g->interesting.push_back(ref::OffUnits(s.ref));
    g->interesting.push_back(ref::OffUnits(s.ref) + 1);
    g->interesting.push_back(ref::OffUnits(s.ref) + page / kBlockUnit);
    const uint64_t blk = ref::OffUnits(s.ref) * kBlockUnit;
    if (blk + 48 <= size) {
      uint64_t w[6];
      std::memcpy(w, g->snapshot.data() + blk, sizeof(w));
      for (uint64_t x : w) g->interesting.push_back(x);
    }
  }
  for (uint64_t p = 0; p < h.n_pages; ++p) {
    uint64_t w;
    std::memcpy(&w, g->snapshot.data() + h.ptab_off + p * 8, 8);
    g->interesting.push_back(w);
  }
  for (uint64_t cls1 = 0; cls1 <= h.n_classes + 1; cls1 += 1)
    for (uint64_t st = 0; st < 4; ++st) g->interesting.push_back(pword::Make(cls1, st, 1, 0));
  for (uint64_t st = 0; st < 4; ++st)
    for (uint64_t owner : {0ull, 1ull, 0xffffull})
      g->interesting.push_back(bstate::Make(st, owner, 1));
  for (uint32_t c = 0; c < h.n_classes; ++c) {
    g->interesting.push_back(h.class_size[c]);
    g->interesting.push_back(h.class_size[c] - kBlockHeaderSize);
    g->interesting.push_back(h.class_size[c] - kBlockHeaderSize + 1);
    g->interesting.push_back(h.class_size[c] - kCounterHeaderSize);
  }
  const uint64_t geometry[] = {size,
                               size / kBlockUnit,
                               size - 1,
                               size + 64,
                               h.data_off,
                               h.data_off / kBlockUnit,
                               h.data_off / kBlockUnit - 1,
                               (h.data_off + h.n_pages * page) / kBlockUnit,
                               (h.data_off + h.n_pages * page) / kBlockUnit - 1,
                               page,
                               page - kBlockHeaderSize,
                               h.n_pages,
                               h.n_pages + 1,
                               h.n_buckets,
                               h.n_buckets * 4,
                               h.n_parts,
                               h.n_procs,
                               h.max_key_len,
                               h.max_value_len,
                               h.index_off,
                               h.ptab_off,
                               h.bitmap_off,
                               h.proc_off,
                               h.part_off,
                               h.page_shift,
                               h.n_classes,
                               kMaxClasses,
                               kMaxParticipants,
                               ref::kOffMask,
                               kMaxKeyLenLimit,
                               kMaxTtlMs};
  for (uint64_t v : geometry) g->interesting.push_back(v);
  const uint64_t plain[] = {0,
                            1,
                            2,
                            3,
                            4,
                            7,
                            8,
                            15,
                            16,
                            31,
                            32,
                            48,
                            63,
                            64,
                            127,
                            128,
                            255,
                            256,
                            0x7fff,
                            0x8000,
                            0xffff,
                            0x10000,
                            0x7fffffff,
                            0x80000000,
                            0xffffffff,
                            1ull << 32,
                            1ull << 40,
                            0x7fffffffffffffffull,
                            0x8000000000000000ull,
                            ~0ull,
                            ~0ull - 1};
  for (uint64_t v : plain) g->interesting.push_back(v);

  auto add = [](uint64_t base, uint64_t count, uint64_t elem) {
    g->regions.push_back({base, std::max<uint64_t>(count, 1), elem, nullptr});
  };
  add(0, (sizeof(Header) + 63) / 64, 64);                                           // 0 header
  add(h.proc_off, std::min<uint64_t>(h.n_procs, 4), sizeof(ProcRecord));            // 1 procs
  add(h.part_off, std::min<uint64_t>(h.n_parts, 4), sizeof(ParticipantRecord));     // 2 parts
  g->regions.push_back({0, g->live_slots.size(), sizeof(Slot), &g->live_slots});    // 3 live slots
  add(h.index_off, h.n_buckets * 4, sizeof(Slot));                                  // 4 all slots
  add(h.ptab_off, h.n_pages, 8);                                                    // 5 page table
  add(h.bitmap_off, h.n_pages, h.bitmap_words * 8);                                 // 6 bitmaps
  g->regions.push_back({0, g->live_blocks.size(), 64, &g->live_blocks});            // 7 live blocks
  add(h.data_off, h.n_pages, 128);                                                  // 8 page starts
  add(0, size / 256, 256);                                                          // 9 raw
  add(offsetof(Header, cas_next), 1, sizeof(Header) - offsetof(Header, cas_next));  // 10 shared
}

// Segments of earlier runs killed before their atexit (libFuzzer's -fork
// mode kills a job on a timeout): removed if their process is gone.
void RemoveStaleSegments() {
  DIR* d = ::opendir("/dev/shm");
  if (d == nullptr) return;
  while (const dirent* e = ::readdir(d)) {
    const char* prefix = "shmkv-fuzz-";
    if (std::strncmp(e->d_name, prefix, std::strlen(prefix)) != 0) continue;
    const long pid = std::strtol(e->d_name + std::strlen(prefix), nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
      ::unlink((std::string("/dev/shm/") + e->d_name).c_str());
  }
  ::closedir(d);
}

void Setup() {
  RemoveStaleSegments();
  g = new State();
  g->path = "/dev/shm/shmkv-fuzz-" + std::to_string(::getpid());
  ::unlink(g->path.c_str());
  std::atexit(RemoveSegment);
  shmkv_options_t o;
  shmkv_options_init(&o);
  o.memory_bytes = kSegmentBytes;
  o.max_items = 256;
  o.flags = SHMKV_OPEN_CREATE | SHMKV_OPEN_EXCL;
  shmkv_t* kv = nullptr;
  if (int rc = shmkv_open(g->path.c_str(), &o, &kv)) Die("create", rc);
  g->fd = ::open(g->path.c_str(), O_RDWR | O_CLOEXEC);
  struct stat st;
  if (g->fd < 0 || ::fstat(g->fd, &st) != 0) Die("open", errno);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd, 0);
  if (m == MAP_FAILED) Die("mmap", errno);
  g->map = static_cast<unsigned char*>(m);
  Header h;
  std::memcpy(&h, g->map, sizeof(h));
  g->max_key_len = h.max_key_len;
  Populate(kv, h);
  shmkv_check_report_t rep{};
  rep.struct_size = sizeof(rep);
  shmkv_close(kv);
  if (int rc = shmkv_open(g->path.c_str(), nullptr, &kv)) Die("reopen", rc);
  if (int rc = shmkv_check(kv, SHMKV_CHECK_OFFLINE, &rep)) Die("check", rc);
  if (rep.problems != 0) {
    std::fprintf(stderr, "fuzz_segment setup: the fresh segment is not clean: %s\n",
                 rep.first_problem);
    std::abort();
  }
  shmkv_close(kv);
  g->snapshot.assign(g->map, g->map + size);
  CollectGeometry(h);
  std::fprintf(stderr,
               "fuzz_segment: %s, %llu bytes, %llu pages of %llu, %llu buckets, %zu live slots, "
               "%zu keys\n",
               g->path.c_str(), static_cast<unsigned long long>(size),
               static_cast<unsigned long long>(h.n_pages),
               static_cast<unsigned long long>(1ull << h.page_shift),
               static_cast<unsigned long long>(h.n_buckets), g->live_slots.size(),
               g->present.size());
}

// Writes n bytes at segment offset off, clipped to the segment.
void Put(uint64_t off, const void* src, size_t n) {
  const uint64_t size = g->snapshot.size();
  if (off >= size) return;
  n = static_cast<size_t>(std::min<uint64_t>(n, size - off));
  std::memcpy(g->map + off, src, n);
}

void Apply(const uint8_t* r) {
  const Region& reg = g->regions[r[0] % g->regions.size()];
  if (reg.count == 0) return;
  const uint64_t idx = (r[1] | (uint64_t{r[2]} << 8)) % reg.count;
  const uint64_t elem = reg.list ? (*reg.list)[idx] : reg.base + idx * reg.size;
  const uint64_t in = r[3] % reg.size;
  const uint64_t off = elem + in;
  const uint8_t op = r[4] & 7;
  const size_t n = 1 + ((r[4] >> 3) & 7);
  const uint8_t* p = r + 5;
  const uint64_t size = g->snapshot.size();
  const uint64_t pick = g->interesting[(p[0] | (uint64_t{p[1]} << 8)) % g->interesting.size()];
  switch (op) {
    case 0:  // overwrite n bytes
      Put(off, p, n);
      break;
    case 1: {  // flip bits in n bytes
      for (size_t i = 0; i < n && off + i < size; ++i) g->map[off + i] ^= p[i];
      break;
    }
    case 2: {  // add a small signed delta to an aligned word
      const uint64_t a = off & ~uint64_t{7};
      if (a + 8 > size) break;
      uint64_t w;
      std::memcpy(&w, g->map + a, 8);
      w += static_cast<uint64_t>(static_cast<int64_t>(static_cast<int8_t>(p[2])));
      Put(a, &w, 8);
      break;
    }
    case 3: {  // an interesting 64-bit word
      Put(off & ~uint64_t{7}, &pick, 8);
      break;
    }
    case 4: {  // an interesting 32-bit word
      const uint32_t v = static_cast<uint32_t>(pick >> (p[2] & 1 ? 32 : 0));
      Put(off & ~uint64_t{3}, &v, 4);
      break;
    }
    case 5: {  // copy 16 bytes from another element of the region (same offset)
      const uint64_t j = (p[2] | (uint64_t{p[3]} << 8)) % reg.count;
      const uint64_t from = (reg.list ? (*reg.list)[j] : reg.base + j * reg.size) + in;
      unsigned char tmp[16];
      if (from + sizeof(tmp) > size) break;
      std::memcpy(tmp, g->map + from, sizeof(tmp));
      Put(off, tmp, sizeof(tmp));
      break;
    }
    case 6: {  // an interesting 16-bit word
      const uint16_t v = static_cast<uint16_t>(pick >> (16 * (p[2] & 3)));
      Put(off & ~uint64_t{1}, &v, 2);
      break;
    }
    default:  // 8 payload bytes at an aligned word
      Put(off & ~uint64_t{7}, p, 8);
      break;
  }
}

void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_segment: contract violated: %s (last error: %s)\n", what,
                 shmkv_last_error());
    std::abort();
  }
}

// An error code of shmkv.h, or an errno.
bool KnownCode(int rc) { return rc == 0 || (rc <= -1001 && rc >= -1015) || (rc > 0 && rc < 4096); }

struct ScanCtx {
  uint64_t seen = 0;
  uint32_t max_key_len;
};

int OnEntry(const void* key, size_t key_len, const shmkv_item_info_t* info, void* ctx) {
  auto* s = static_cast<ScanCtx*>(ctx);
  Require(key_len >= 1 && key_len <= s->max_key_len, "scan gave a key length out of range");
  Require(info != nullptr, "scan gave no info");
  // Touch every byte (memchr is intercepted: ASan checks the whole range).
  g_sink = std::memchr(key, 0xA5, key_len);
  ++s->seen;
  return 0;
}

void Get(shmkv_t* kv, const std::string& key, size_t cap, bool alloc) {
  // Heap buffers of exactly cap bytes: ASan sees a write past the end. The
  // large one is allocated once.
  static std::vector<unsigned char>* large = new std::vector<unsigned char>(kLargeBuf);
  std::vector<unsigned char> small(cap == kLargeBuf ? 0 : cap);
  unsigned char* buf = cap == kLargeBuf ? large->data() : small.data();
  size_t len = 0;
  shmkv_item_info_t info{};
  info.struct_size = sizeof(info);
  const int rc = shmkv_get(kv, key.data(), key.size(), cap ? buf : nullptr, cap, &len, &info);
  Require(KnownCode(rc), "get returned an unknown code");
  if (rc == 0) Require(len <= cap, "get claims more bytes than the buffer holds");
  if (!alloc) return;
  void* val = nullptr;
  size_t vlen = 0;
  const int rc2 = shmkv_get_alloc(kv, key.data(), key.size(), &val, &vlen, &info);
  Require(KnownCode(rc2), "get_alloc returned an unknown code");
  // memchr is intercepted: ASan checks [val, val + vlen) in one go.
  if (rc2 == 0) g_sink = std::memchr(val, 0xA5, vlen);
  shmkv_free(val);
}

void Check(shmkv_t* kv) {
  for (uint32_t flags : {0u, uint32_t{SHMKV_CHECK_OFFLINE}}) {
    shmkv_check_report_t rep{};
    rep.struct_size = sizeof(rep);
    const int rc = shmkv_check(kv, flags, &rep);
    Require(KnownCode(rc), "check returned an unknown code");
    Require(std::memchr(rep.first_problem, 0, sizeof(rep.first_problem)) != nullptr,
            "check report is not NUL-terminated");
  }
}

void Scan(shmkv_t* kv, const char* prefix, size_t prefix_len) {
  ScanCtx sc;
  sc.max_key_len = g->max_key_len;
  uint64_t cursor = 0;
  // Every call examines at most `limit` slots: a full pass needs at most
  // slots / limit calls (bounded by the file size: 16 bytes a slot).
  const uint64_t max_calls = g->snapshot.size() / 16 / 13 + 2;
  for (uint64_t calls = 0;; ++calls) {
    Require(calls <= max_calls, "scan does not terminate");
    const int rc = shmkv_scan(kv, &cursor, prefix, prefix_len, 13, OnEntry, &sc);
    Require(KnownCode(rc), "scan returned an unknown code");
    if (rc != 0 || cursor == 0) break;
  }
}

void Exercise(shmkv_t* kv, const uint8_t* data, size_t size) {
  std::vector<std::string> keys = g->present;
  keys.push_back("absent");
  keys.push_back("key999");
  // A key from the input too (its tail), to reach other buckets.
  if (size > 0) {
    const size_t n = std::min<size_t>(size % 17 + 1, size);
    keys.emplace_back(reinterpret_cast<const char*>(data + size - n), n);
  }
  for (const std::string& k : keys) {
    Get(kv, k, 0, false);
    Get(kv, k, 16, false);
    Get(kv, k, kLargeBuf, true);
    int64_t ttl = 0;
    Require(KnownCode(shmkv_ttl(kv, k.data(), k.size(), &ttl)), "ttl");
  }
  Scan(kv, nullptr, 0);
  Scan(kv, "key", 3);
  Check(kv);
  shmkv_stats_t st{};
  st.struct_size = sizeof(st);
  Require(KnownCode(shmkv_stats(kv, &st)), "stats");

  // Writes. They may allocate (and so drain, evict, format pages).
  int64_t r = 0;
  Require(KnownCode(shmkv_incr(kv, "counter", 7, 5, 0, 0, &r)), "incr counter");
  Require(KnownCode(shmkv_incr(kv, "key3", 4, 1, 0, 0, &r)), "incr non-numeric");
  Require(KnownCode(shmkv_incr(kv, "fresh-counter", 13, 1, 9, 1000, &r)), "incr absent");
  Require(KnownCode(shmkv_touch(kv, "key5", 4, 60000)), "touch");
  Require(KnownCode(shmkv_touch(kv, "ttl-long", 8, 0)), "touch persist");
  Require(KnownCode(shmkv_touch(kv, "absent", 6, 10)), "touch absent");
  Require(KnownCode(shmkv_delete(kv, "key2", 4, 0)), "delete");
  Require(KnownCode(shmkv_delete(kv, "ttl-short", 9, 0)), "delete expired");
  Require(KnownCode(shmkv_delete(kv, "absent", 6, 0)), "delete absent");
  Require(KnownCode(shmkv_set(kv, "key4", 4, "new value", 9, 0)), "set present");
  Require(KnownCode(shmkv_set(kv, "new-key", 7, "v", 1, 5000)), "set absent");
  static const std::string* mid = new std::string(3000, 'm');
  Require(KnownCode(shmkv_set(kv, "key6", 4, mid->data(), mid->size(), 0)), "set other class");
  shmkv_write_opts_t wo;
  shmkv_write_opts_init(&wo);
  wo.mode = SHMKV_ADD;
  Require(KnownCode(shmkv_store(kv, "key0", 4, "a", 1, &wo, nullptr)), "add present");
  wo.mode = SHMKV_REPLACE;
  wo.flags = SHMKV_WRITE_KEEPTTL;
  Require(KnownCode(shmkv_store(kv, "ttl-long", 8, "b", 1, &wo, nullptr)), "replace");
  // A large value: runs of pages, taken by draining others.
  static const std::string* large = new std::string(1 << 17, 'L');
  Require(KnownCode(shmkv_set(kv, "big2", 4, large->data(), large->size(), 0)), "set large");
  Get(kv, "big2", kLargeBuf, false);
  Get(kv, "key4", 64, true);
  Scan(kv, nullptr, 0);
  Check(kv);
  uint32_t recovered = 0;
  Require(KnownCode(shmkv_recover(kv, &recovered)), "recover");
  Check(kv);
  Require(KnownCode(shmkv_clear(kv)), "clear");
  Scan(kv, nullptr, 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (g == nullptr) Setup();
  std::memcpy(g->map, g->snapshot.data(), g->snapshot.size());
  const size_t records = std::min(size / kRecordSize, kMaxRecords);
  for (size_t i = 0; i < records; ++i) Apply(data + i * kRecordSize);
  // An init_state other than READY or SUPERSEDED makes an attacher wait
  // (2 s) for a creator: a timeout, not a finding. Keep it attachable.
  Header* h = reinterpret_cast<Header*>(g->map);
  h->init_state = (h->init_state & 1) ? kSuperseded : kReady;

  shmkv_t* kv = nullptr;
  const int rc = shmkv_open(g->path.c_str(), nullptr, &kv);
  Require(KnownCode(rc), "open returned an unknown code");
  if (rc != 0) {
    Require(kv == nullptr, "failed open returned a handle");
    return 0;
  }
  Exercise(kv, data, size);
  shmkv_close(kv);
  return 0;
}
