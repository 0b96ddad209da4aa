// Segment life cycle: create, attach, validation of the header (a wrong
// magic, layout version, ABI fingerprint or size is refused with
// SHMKV_EBADSEG and a message naming the mismatch), racing creators, a
// segment from a previous boot, permissions, read-only handles.
#include "segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "layout.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"

namespace shmkv {
namespace {

using internal::Header;

// Maps the segment's file directly, as a corrupting process would.
class RawMapping {
 public:
  explicit RawMapping(const std::string& name) {
    fd_ = shm_open(name.c_str(), O_RDWR, 0);
    struct stat st;
    fstat(fd_, &st);
    size_ = static_cast<size_t>(st.st_size);
    base_ = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  }
  ~RawMapping() {
    munmap(base_, size_);
    close(fd_);
  }
  Header* header() { return static_cast<Header*>(base_); }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  size_t size_ = 0;
  void* base_ = nullptr;
};

int Create(const char* name, uint64_t mem, shmkv_t** kv) {
  shmkv_options_t o = test::SmallOptions(mem);
  return shmkv_open(name, &o, kv);
}

TEST(SegmentTest, CreateThenAttachSeesTheSameData) {
  test::ScopedSegmentName name("attach");
  shmkv_t* a = nullptr;
  ASSERT_EQ(Create(name.c_str(), 4 << 20, &a), 0);
  ASSERT_EQ(shmkv_set(a, "k", 1, "v1", 2, 0), 0);
  shmkv_t* b = nullptr;
  ASSERT_EQ(shmkv_open(name.c_str(), nullptr, &b), 0);
  char buf[8];
  size_t n = 0;
  ASSERT_EQ(shmkv_get(b, "k", 1, buf, sizeof(buf), &n, nullptr), 0);
  EXPECT_EQ(std::string(buf, n), "v1");
  shmkv_close(b);
  shmkv_close(a);
}

TEST(SegmentTest, SlashPrefixNamesTheSameSegment) {
  test::ScopedSegmentName name("slash");
  shmkv_t* a = nullptr;
  ASSERT_EQ(Create(name.c_str(), 2 << 20, &a), 0);
  shmkv_t* b = nullptr;
  EXPECT_EQ(shmkv_open(("/" + name.name()).c_str(), nullptr, &b), 0);
  shmkv_close(b);
  shmkv_close(a);
}

TEST(SegmentTest, ExclusiveCreateOfExistingSegmentIsEexist) {
  test::ScopedSegmentName name("excl");
  shmkv_t* a = nullptr;
  ASSERT_EQ(Create(name.c_str(), 2 << 20, &a), 0);
  shmkv_options_t o = test::SmallOptions(2 << 20);
  o.flags |= SHMKV_OPEN_EXCL;
  shmkv_t* b = nullptr;
  EXPECT_EQ(shmkv_open(name.c_str(), &o, &b), SHMKV_EEXIST);
  EXPECT_EQ(b, nullptr);
  shmkv_close(a);
}

TEST(SegmentTest, CreateOnExistingSegmentKeepsItsGeometry) {
  test::ScopedSegmentName name("geom");
  shmkv_t* a = nullptr;
  ASSERT_EQ(Create(name.c_str(), 2 << 20, &a), 0);
  shmkv_t* b = nullptr;
  ASSERT_EQ(Create(name.c_str(), 8 << 20, &b), 0);
  shmkv_stats_t s{};
  s.struct_size = sizeof(s);
  ASSERT_EQ(shmkv_stats(b, &s), 0);
  EXPECT_EQ(s.memory_bytes, 2u << 20);
  shmkv_close(b);
  shmkv_close(a);
}

TEST(SegmentTest, RacingCreatorsEndWithOneSegment) {
  test::ScopedSegmentName name("race");
  constexpr int kProcs = 6;
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  for (int p = 0; p < kProcs; ++p) {
    if (fork() == 0) {
      char c;
      close(go[1]);
      if (read(go[0], &c, 1) != 0) _exit(9);  // wait for the start signal (EOF)
      shmkv_t* kv = nullptr;
      if (Create(name.c_str(), 4 << 20, &kv) != 0) _exit(1);
      const std::string key = "p" + std::to_string(p);
      if (shmkv_set(kv, key.data(), key.size(), "x", 1, 0) != 0) _exit(2);
      shmkv_close(kv);
      _exit(0);
    }
  }
  close(go[0]);
  close(go[1]);  // all children start together
  for (int p = 0; p < kProcs; ++p) {
    int st = 0;
    wait(&st);
    ASSERT_TRUE(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
  }
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(name.c_str(), nullptr, &kv), 0);
  for (int p = 0; p < kProcs; ++p) {  // every child wrote into the one segment
    const std::string key = "p" + std::to_string(p);
    char buf[4];
    size_t n;
    EXPECT_EQ(shmkv_get(kv, key.data(), key.size(), buf, sizeof(buf), &n, nullptr), 0) << key;
  }
  shmkv_close(kv);
}

struct Corruption {
  const char* what;
  void (*apply)(Header*);
  const char* message_part;
};

class BadHeaderTest : public ::testing::TestWithParam<Corruption> {};

TEST_P(BadHeaderTest, AttachIsRefusedWithAMessageNamingTheMismatch) {
  test::ScopedSegmentName name("bad");
  shmkv_t* a = nullptr;
  ASSERT_EQ(Create(name.c_str(), 2 << 20, &a), 0);
  shmkv_close(a);
  {
    RawMapping raw(name.name());
    GetParam().apply(raw.header());
  }
  shmkv_t* b = nullptr;
  EXPECT_EQ(shmkv_open(name.c_str(), nullptr, &b), SHMKV_EBADSEG);
  EXPECT_EQ(b, nullptr);
  EXPECT_NE(std::string(shmkv_last_error()).find(GetParam().message_part), std::string::npos)
      << shmkv_last_error();
}

INSTANTIATE_TEST_SUITE_P(
    Corruptions, BadHeaderTest,
    ::testing::Values(
        Corruption{"magic", [](Header* h) { h->magic ^= 1; }, "magic"},
        Corruption{"version", [](Header* h) { h->layout_version += 1; }, "layout version"},
        Corruption{"fingerprint", [](Header* h) { h->abi_fingerprint ^= 1; }, "fingerprint"},
        Corruption{"size", [](Header* h) { h->total_size += 4096; }, "bytes"},
        Corruption{"index", [](Header* h) { h->n_buckets = 1ull << 40; }, "index"},
        Corruption{"pages", [](Header* h) { h->n_pages += 1000; }, "out of bounds"},
        Corruption{"classes", [](Header* h) { h->class_size[1] = 7; }, "size class"}),
    [](const ::testing::TestParamInfo<Corruption>& i) { return std::string(i.param.what); });

TEST(SegmentTest, TruncatedSegmentIsBadSegment) {
  test::ScopedSegmentName name("trunc");
  shmkv_t* a = nullptr;
  ASSERT_EQ(Create(name.c_str(), 2 << 20, &a), 0);
  shmkv_close(a);
  {
    RawMapping raw(name.name());
    ASSERT_EQ(ftruncate(raw.fd(), 1 << 20), 0);
  }
  shmkv_t* b = nullptr;
  EXPECT_EQ(shmkv_open(name.c_str(), nullptr, &b), SHMKV_EBADSEG);
}

TEST(SegmentTest, SegmentFromAPreviousBootIsWipedOnAttach) {
  test::ScopedSegmentName name("boot");
  shmkv_t* a = nullptr;
  ASSERT_EQ(Create(name.c_str(), 2 << 20, &a), 0);
  ASSERT_EQ(shmkv_set(a, "old", 3, "data", 4, 0), 0);
  shmkv_close(a);
  {
    RawMapping raw(name.name());
    std::memcpy(raw.header()->boot_id, "00000000-0000-0000-0000-000000000000", 36);
  }
  shmkv_t* b = nullptr;
  ASSERT_EQ(shmkv_open(name.c_str(), nullptr, &b), 0);
  char buf[8];
  size_t n;
  EXPECT_EQ(shmkv_get(b, "old", 3, buf, sizeof(buf), &n, nullptr), SHMKV_ENOTFOUND);
  ASSERT_EQ(shmkv_set(b, "new", 3, "data", 4, 0), 0);
  EXPECT_EQ(shmkv_get(b, "new", 3, buf, sizeof(buf), &n, nullptr), 0);
  shmkv_close(b);
}

TEST(SegmentTest, DefaultModeIs0600AndModeOptionIsHonoured) {
  test::ScopedSegmentName def("mode-default");
  test::ScopedSegmentName grp("mode-group");
  shmkv_t* a = nullptr;
  ASSERT_EQ(Create(def.c_str(), 2 << 20, &a), 0);
  shmkv_options_t o = test::SmallOptions(2 << 20);
  o.mode = 0660;
  shmkv_t* b = nullptr;
  ASSERT_EQ(shmkv_open(grp.c_str(), &o, &b), 0);
  struct stat st;
  ASSERT_EQ(stat(("/dev/shm/" + def.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(stat(("/dev/shm/" + grp.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  shmkv_close(a);
  shmkv_close(b);
}

TEST(SegmentTest, FilePathSegmentWorks) {
  const std::string path = "/dev/shm/" + test::UniqueSegmentName("file") + ".seg";
  shmkv_t* a = nullptr;
  ASSERT_EQ(Create(path.c_str(), 2 << 20, &a), 0);
  ASSERT_EQ(shmkv_set(a, "k", 1, "v", 1, 0), 0);
  shmkv_t* b = nullptr;
  ASSERT_EQ(shmkv_open(path.c_str(), nullptr, &b), 0);
  char buf[4];
  size_t n;
  EXPECT_EQ(shmkv_get(b, "k", 1, buf, sizeof(buf), &n, nullptr), 0);
  shmkv_close(b);
  shmkv_close(a);
  EXPECT_EQ(shmkv_unlink(path.c_str()), 0);
}

// A shared anonymous mapping is shmem, like a segment on tmpfs: with
// MADV_HUGEPAGE (where shmem_enabled allows it) its faults take 2-MiB
// pages; with MADV_NOHUGEPAGE 4-KiB ones. MappedHugeBytes must tell the two.
TEST(SegmentTest, MappedHugeBytesCountsOnlyHugePages) {
  constexpr size_t kHuge = size_t{2} << 20, kLen = 8 * kHuge;
  auto map_aligned = [](int advice) -> unsigned char* {
    void* r = mmap(nullptr, kLen + kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) return nullptr;
    auto at = (reinterpret_cast<uintptr_t>(r) + kHuge - 1) & ~uintptr_t{kHuge - 1};
    void* p = mmap(reinterpret_cast<void*>(at), kLen, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    madvise(p, kLen, advice);
    std::memset(p, 1, kLen);
    return static_cast<unsigned char*>(p);
  };
  unsigned char* small = map_aligned(MADV_NOHUGEPAGE);
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(internal::MappedHugeBytes(small, kLen), 0u);
  unsigned char* huge = map_aligned(MADV_HUGEPAGE);
  ASSERT_NE(huge, nullptr);
  const uint64_t got = internal::MappedHugeBytes(huge, kLen);
  EXPECT_LE(got, kLen);
  // Only the mapping asked about counts, not its neighbours.
  EXPECT_EQ(internal::MappedHugeBytes(small, kLen), 0u);
  munmap(small, kLen);
  munmap(huge, kLen);
  if (got == 0) {
    std::string policy;
    if (FILE* f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re")) {
      char line[256] = {};
      if (fgets(line, sizeof line, f) != nullptr) policy = line;
      fclose(f);
    }
    // The selected policy is the bracketed one.
    if (policy.find("[never]") != std::string::npos || policy.find("[deny]") != std::string::npos ||
        policy.empty())
      GTEST_SKIP() << "this kernel gives shmem no huge pages (shmem_enabled: " << policy << ")";
    ADD_FAILURE() << "shmem_enabled is " << policy << " but no huge page was counted";
  } else {
    EXPECT_GE(got, kHuge);
  }
}

TEST(SegmentTest, UnlinkWhileAttachedRemovesOnlyTheName) {
  test::ScopedSegmentName name("unlink");
  shmkv_t* a = nullptr;
  ASSERT_EQ(Create(name.c_str(), 2 << 20, &a), 0);
  ASSERT_EQ(shmkv_unlink(name.c_str()), 0);
  EXPECT_EQ(shmkv_set(a, "k", 1, "v", 1, 0), 0);  // still usable
  shmkv_t* b = nullptr;
  EXPECT_EQ(shmkv_open(name.c_str(), nullptr, &b), SHMKV_ENOSEG);
  shmkv_close(a);
}

TEST(SegmentTest, SmallSegmentHoldsTenThousandHundredByteItems) {
  test::ScopedSegmentName name("small");
  shmkv_t* kv = nullptr;
  ASSERT_EQ(Create(name.c_str(), 4 << 20, &kv), 0);
  const std::string value(90, 'v');
  for (int i = 0; i < 10000; ++i) {
    char key[16];
    const int n = snprintf(key, sizeof(key), "item:%05d", i);  // 10 B key + 90 B value
    ASSERT_EQ(shmkv_set(kv, key, static_cast<size_t>(n), value.data(), value.size(), 0), 0);
  }
  int present = 0;
  for (int i = 0; i < 10000; ++i) {
    char key[16];
    const int n = snprintf(key, sizeof(key), "item:%05d", i);
    char buf[128];
    size_t len;
    present += shmkv_get(kv, key, static_cast<size_t>(n), buf, sizeof(buf), &len, nullptr) == 0;
  }
  // The data area holds all 10 000 (160-byte blocks: 1.6 MB of a 4-MiB
  // segment). The index is a table of bucket pairs (21 848 slots by
  // default here, load 0.46): now and then a key finds its pair full and
  // evicts one of the pair (design-notes §3.3; 1 item in about 1 run in 40
  // here). Every missing item must be such a counted eviction, and few.
  shmkv_stats_t st{};
  st.struct_size = sizeof(st);
  ASSERT_EQ(shmkv_stats(kv, &st), 0);
  EXPECT_EQ(st.evictions, static_cast<uint64_t>(10000 - present));
  EXPECT_GE(present, 9990);
  shmkv_close(kv);
}

}  // namespace
}  // namespace shmkv
