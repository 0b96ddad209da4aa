// Large values across processes: two children each overwrite their own
// large key (200 KiB..1 MiB, random sizes) while a third reads both keys
// continuously; every value a reader gets is whole (never torn, never the
// other key's, never older than one it already saw). Children use the
// inherited handle and report through their exit status; the parent
// synchronises with pipes, a shared flag and waitpid, never with sleeps.
// Not under ThreadSanitizer (forks).
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"
#include "testing.h"

namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kMagic = 0x4C56464F524B3031ull;  // "LVFORK01"
constexpr int kWrites = 200;
constexpr size_t kHeader = 32;  // magic, writer id, seq, length
constexpr size_t kTrailer = 8;  // checksum

uint64_t Fnv(const unsigned char* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// Value `seq` of writer `id`: header, a body depending on (id, seq, len),
// and a checksum of all that.
std::string MakeValue(uint64_t id, uint64_t seq, size_t len) {
  std::string s(len, '\0');
  unsigned char* p = reinterpret_cast<unsigned char*>(s.data());
  const uint64_t len64 = len;
  std::memcpy(p, &kMagic, 8);
  std::memcpy(p + 8, &id, 8);
  std::memcpy(p + 16, &seq, 8);
  std::memcpy(p + 24, &len64, 8);
  uint64_t x = (id << 40) ^ (seq << 20) ^ len64;
  for (size_t i = kHeader; i + kTrailer < len; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    p[i] = static_cast<unsigned char>(x >> 56);
  }
  const uint64_t sum = Fnv(p, len - kTrailer);
  std::memcpy(p + len - kTrailer, &sum, 8);
  return s;
}

// 0 if `v` is a whole value of writer `id`, with its seq in *seq; else a
// reason code.
int CheckValue(const unsigned char* p, size_t len, uint64_t id, uint64_t* seq) {
  if (len < kHeader + kTrailer) return 1;
  uint64_t magic, got_id, got_len, sum;
  std::memcpy(&magic, p, 8);
  std::memcpy(&got_id, p + 8, 8);
  std::memcpy(seq, p + 16, 8);
  std::memcpy(&got_len, p + 24, 8);
  std::memcpy(&sum, p + len - kTrailer, 8);
  if (magic != kMagic) return 2;
  if (got_id != id) return 3;  // the other key's value
  if (got_len != len) return 4;
  if (Fnv(p, len - kTrailer) != sum) return 5;  // torn
  return 0;
}

std::string KeyOf(uint64_t id) { return "fork-key-" + std::to_string(id); }

struct Shared {
  std::atomic<int> done;
  std::atomic<uint64_t> reads_ok[2];
  std::atomic<uint64_t> reads_missing[2];  // ENOTFOUND after the key was seen
};

int WaitForChild(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  if (!WIFEXITED(status)) return -2;
  return WEXITSTATUS(status);
}

// Child: overwrite KeyOf(id) kWrites times. Exit 0, or 10 + failing step.
int Writer(shmkv_t* kv, uint64_t id) {
  std::mt19937_64 rng(1000 + id);
  const std::string k = KeyOf(id);
  for (int seq = 1; seq <= kWrites; ++seq) {
    const size_t len = 200 * kKiB + rng() % (kMiB - 200 * kKiB + 1);
    const std::string v = MakeValue(id, static_cast<uint64_t>(seq), len);
    if (shmkv_set(kv, k.data(), k.size(), v.data(), v.size(), 0) != 0) return 10;
  }
  return 0;
}

// Child: read both keys until done. Exit 0, or 20 + reason.
int Reader(shmkv_t* kv, Shared* sh) {
  uint64_t last_seq[2] = {0, 0};
  for (;;) {
    const bool last_round = sh->done.load() != 0;
    for (uint64_t id = 0; id < 2; ++id) {
      const std::string k = KeyOf(id);
      void* p = nullptr;
      size_t len = 0;
      const int rc = shmkv_get_alloc(kv, k.data(), k.size(), &p, &len, nullptr);
      if (rc == SHMKV_ENOTFOUND) {
        // Missing after it was seen: evicted (the default policy may).
        if (last_seq[id] != 0) sh->reads_missing[id].fetch_add(1);
        continue;
      }
      if (rc != 0) return 20;
      uint64_t seq = 0;
      const int bad = CheckValue(static_cast<const unsigned char*>(p), len, id, &seq);
      shmkv_free(p);
      if (bad != 0) return 20 + bad;
      if (seq < last_seq[id]) return 30;  // an overwritten value came back
      last_seq[id] = seq;
      sh->reads_ok[id].fetch_add(1);
    }
    if (last_round) return 0;
  }
}

TEST(LargeValuesForkTest, WritersOverwriteLargeValuesWhileAReaderChecksThem) {
  ScopedSegmentName seg("large-fork");
  shmkv_options_t o = SmallOptions(8 * kMiB);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0) << shmkv_last_error();
  // Fail fast (and clearly) if the segment does not take 1 MiB values.
  {
    const std::string probe = MakeValue(9, 0, kMiB);
    ASSERT_EQ(shmkv_set(kv, "probe", 5, probe.data(), probe.size(), 0), 0) << shmkv_last_error();
    ASSERT_EQ(shmkv_delete(kv, "probe", 5, 0), 0);
  }

  void* mem =
      ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  Shared* sh = new (mem) Shared();

  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t reader = ::fork();
  ASSERT_GE(reader, 0);
  if (reader == 0) {
    ::close(ready[0]);
    // First call registers the child; then tell the parent we are running.
    size_t len = 0;
    shmkv_get(kv, "x", 1, nullptr, 0, &len, nullptr);
    const char c = 'r';
    if (::write(ready[1], &c, 1) != 1) ::_exit(2);
    const int code = Reader(kv, sh);
    ::_exit(code != 0 ? code : (shmkv_close(kv) == 0 ? 0 : 3));
  }
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);

  pid_t writers[2];
  for (uint64_t id = 0; id < 2; ++id) {
    writers[id] = ::fork();
    ASSERT_GE(writers[id], 0);
    if (writers[id] == 0) {
      const int code = Writer(kv, id);
      ::_exit(code != 0 ? code : (shmkv_close(kv) == 0 ? 0 : 3));
    }
  }
  EXPECT_EQ(WaitForChild(writers[0]), 0);
  EXPECT_EQ(WaitForChild(writers[1]), 0);
  sh->done.store(1);
  EXPECT_EQ(WaitForChild(reader), 0)
      << "20+n: value not whole (1 short, 2 magic, 3 other key, 4 length, 5 checksum); "
         "30: older value after a newer one";
  std::printf(
      "reader: key0 %llu whole, %llu missing after seen; key1 %llu whole, %llu missing after "
      "seen\n",
      static_cast<unsigned long long>(sh->reads_ok[0].load()),
      static_cast<unsigned long long>(sh->reads_missing[0].load()),
      static_cast<unsigned long long>(sh->reads_ok[1].load()),
      static_cast<unsigned long long>(sh->reads_missing[1].load()));
  EXPECT_GT(sh->reads_ok[0].load() + sh->reads_ok[1].load(), 0u) << "the reader checked nothing";

  // Whatever is left of each key is its writer's last value, whole (the
  // default policy may have evicted it; it may not have kept an older one).
  for (uint64_t id = 0; id < 2; ++id) {
    const std::string k = KeyOf(id);
    void* p = nullptr;
    size_t len = 0;
    const int rc = shmkv_get_alloc(kv, k.data(), k.size(), &p, &len, nullptr);
    if (rc == SHMKV_ENOTFOUND) continue;
    ASSERT_EQ(rc, 0) << k;
    uint64_t seq = 0;
    EXPECT_EQ(CheckValue(static_cast<const unsigned char*>(p), len, id, &seq), 0) << k;
    EXPECT_EQ(seq, static_cast<uint64_t>(kWrites)) << k;
    shmkv_free(p);
  }

  uint32_t recovered = 99;
  EXPECT_EQ(shmkv_recover(kv, &recovered), 0);
  shmkv::internal::Census census;
  ASSERT_EQ(shmkv::internal::TakeCensus(kv, &census), 0);
  shmkv::test::ExpectCleanCensus(census);
  EXPECT_EQ(census.slots_live, census.blocks_linked);
  EXPECT_LE(census.slots_live, 2u);
  shmkv_close(kv);
  sh->~Shared();
  ::munmap(mem, sizeof(Shared));
}

}  // namespace
