// The C API of shmkv.h, function by function: documented behaviour and every
// error code (DESIGN.md §5). Each error case also checks that the failed call
// left the segment unchanged (DESIGN.md §3.7): every stored key still reads
// back with the same value and cas.
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"
#include "testing.h"

namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;

constexpr uint64_t kMaxTtl = 1ull << 40;

struct Stored {
  std::string value;
  uint64_t cas = 0;
  uint32_t user_flags = 0;
  bool operator==(const Stored&) const = default;
};
using Snapshot = std::map<std::string, Stored>;

int CollectKey(const void* key, size_t key_len, const shmkv_item_info_t*, void* ctx) {
  static_cast<std::vector<std::string>*>(ctx)->emplace_back(static_cast<const char*>(key), key_len);
  return 0;
}

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Open(SmallOptions(8u << 20))); }
  void TearDown() override { shmkv_close(kv_); }

  void Open(shmkv_options_t o) {
    shmkv_close(kv_);
    kv_ = nullptr;
    ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &kv_), 0) << shmkv_last_error();
    ASSERT_NE(kv_, nullptr);
    // Sentinels that every error case checks are left alone.
    ASSERT_EQ(Set("sentinel:text", "alpha"), 0);
    ASSERT_EQ(Set(std::string("sentinel:\0bin", 13), std::string("\0\1\2\0", 4), 60000), 0);
  }

  int Set(std::string_view key, std::string_view val, uint64_t ttl_ms = 0) {
    return shmkv_set(kv_, key.data(), key.size(), val.data(), val.size(), ttl_ms);
  }
  int Store(std::string_view key, std::string_view val, uint32_t mode, uint64_t expect_cas = 0,
            uint64_t* new_cas = nullptr, uint64_t ttl_ms = 0, uint32_t user_flags = 0,
            uint32_t flags = 0) {
    shmkv_write_opts_t w;
    shmkv_write_opts_init(&w);
    w.mode = mode;
    w.ttl_ms = ttl_ms;
    w.expect_cas = expect_cas;
    w.user_flags = user_flags;
    w.flags = flags;
    return shmkv_store(kv_, key.data(), key.size(), val.data(), val.size(), &w, new_cas);
  }
  // The value, or "<rc>" as text when the get fails.
  std::string Get(std::string_view key, shmkv_item_info_t* info = nullptr) {
    std::string buf(4096, '\0');
    size_t len = 0;
    int rc = shmkv_get(kv_, key.data(), key.size(), buf.data(), buf.size(), &len, info);
    if (rc == SHMKV_ETOOSMALL) {
      buf.resize(len);
      rc = shmkv_get(kv_, key.data(), key.size(), buf.data(), buf.size(), &len, info);
    }
    if (rc != 0) return "<" + std::to_string(rc) + ">";
    buf.resize(len);
    return buf;
  }
  uint64_t Cas(std::string_view key) {
    shmkv_item_info_t info;
    info.struct_size = sizeof(info);
    std::string v = Get(key, &info);
    EXPECT_NE(v.substr(0, 2), "<-") << "get failed for cas";
    return info.cas;
  }
  int64_t Ttl(std::string_view key) {
    int64_t t = -12345;
    EXPECT_EQ(shmkv_ttl(kv_, key.data(), key.size(), &t), 0);
    return t;
  }
  int Incr(std::string_view key, int64_t delta, int64_t initial = 0, uint64_t ttl_ms = 0,
           int64_t* result = nullptr) {
    return shmkv_incr(kv_, key.data(), key.size(), delta, initial, ttl_ms, result);
  }
  shmkv_stats_t Stats() {
    shmkv_stats_t s;
    std::memset(&s, 0, sizeof(s));
    s.struct_size = sizeof(s);
    EXPECT_EQ(shmkv_stats(kv_, &s), 0);
    return s;
  }
  std::vector<std::string> AllKeys(std::string_view prefix = {}, size_t limit = 64) {
    std::vector<std::string> keys;
    uint64_t cursor = 0;
    int calls = 0;
    do {
      int rc = shmkv_scan(kv_, &cursor, prefix.empty() ? nullptr : prefix.data(), prefix.size(),
                          limit, CollectKey, &keys);
      EXPECT_EQ(rc, 0);
      if (rc != 0 || ++calls > 10000000) break;
    } while (cursor != 0);
    return keys;
  }
  // Every key with its value, cas and user flags.
  Snapshot Take() {
    Snapshot snap;
    for (const std::string& k : AllKeys()) {
      shmkv_item_info_t info;
      info.struct_size = sizeof(info);
      Stored s;
      s.value = Get(k, &info);
      s.cas = info.cas;
      s.user_flags = info.user_flags;
      snap[k] = s;
    }
    return snap;
  }

  ScopedSegmentName seg_{"api"};
  shmkv_t* kv_ = nullptr;
};

// Runs `call`, expects it to return `code` and to leave every stored key as
// it was (value, cas, flags) and no key added or removed.
#define EXPECT_ERROR_UNCHANGED(call, code)               \
  do {                                                   \
    const Snapshot before_ = Take();                     \
    ASSERT_GE(before_.size(), 2u);                       \
    EXPECT_EQ((call), (code)) << shmkv_last_error();     \
    EXPECT_TRUE(Take() == before_) << "segment changed"; \
  } while (0)

// --- options, open, close, unlink -------------------------------------------

TEST(OptionsTest, InitFillsDocumentedDefaults) {
  shmkv_options_t o;
  std::memset(&o, 0xab, sizeof(o));
  shmkv_options_init(&o);
  EXPECT_EQ(o.struct_size, sizeof(o));
  EXPECT_EQ(o.memory_bytes, 64ull << 20);
  EXPECT_TRUE(o.max_items == 0 || o.max_items == (64ull << 20) / 256) << o.max_items;
  EXPECT_EQ(o.max_key_len, 250u);
  EXPECT_EQ(o.max_value_len, 1u << 20);
  EXPECT_EQ(o.mode, 0600u);
  EXPECT_EQ(o.flags, 0u);
  EXPECT_EQ(o.evict_policy, static_cast<uint32_t>(SHMKV_EVICT_ALLKEYS));
}

TEST(OptionsTest, WriteOptsInitIsPlainSet) {
  shmkv_write_opts_t w;
  std::memset(&w, 0xab, sizeof(w));
  shmkv_write_opts_init(&w);
  EXPECT_EQ(w.struct_size, sizeof(w));
  EXPECT_EQ(w.mode, static_cast<uint32_t>(SHMKV_SET));
  EXPECT_EQ(w.ttl_ms, 0u);
  EXPECT_EQ(w.expect_cas, 0u);
  EXPECT_EQ(w.user_flags, 0u);
  EXPECT_EQ(w.flags, 0u);
}

TEST(OpenTest, CreateThenReopenWithNullOptionsSeesData) {
  ScopedSegmentName seg("reopen");
  shmkv_options_t o = SmallOptions(4u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0) << shmkv_last_error();
  ASSERT_EQ(shmkv_set(kv, "k", 1, "v1", 2, 0), 0);
  ASSERT_EQ(shmkv_close(kv), 0);

  shmkv_t* again = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), nullptr, &again), 0) << shmkv_last_error();
  char buf[8];
  size_t len = 0;
  ASSERT_EQ(shmkv_get(again, "k", 1, buf, sizeof(buf), &len, nullptr), 0);
  EXPECT_EQ(std::string(buf, len), "v1");
  EXPECT_EQ(shmkv_close(again), 0);
}

TEST(OpenTest, LeadingSlashNamesTheSameSegment) {
  ScopedSegmentName seg("slash");
  shmkv_options_t o = SmallOptions(4u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0);
  ASSERT_EQ(shmkv_set(kv, "k", 1, "v", 1, 0), 0);
  shmkv_t* other = nullptr;
  ASSERT_EQ(shmkv_open(("/" + seg.name()).c_str(), nullptr, &other), 0) << shmkv_last_error();
  size_t len = 0;
  char buf[4];
  EXPECT_EQ(shmkv_get(other, "k", 1, buf, sizeof(buf), &len, nullptr), 0);
  shmkv_close(other);
  shmkv_close(kv);
}

TEST(OpenTest, TwoHandlesInOneProcessShareData) {
  ScopedSegmentName seg("twohandles");
  shmkv_options_t o = SmallOptions(4u << 20);
  shmkv_t* a = nullptr;
  shmkv_t* b = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &a), 0);
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &b), 0);
  ASSERT_EQ(shmkv_set(a, "k", 1, "from-a", 6, 0), 0);
  char buf[16];
  size_t len = 0;
  ASSERT_EQ(shmkv_get(b, "k", 1, buf, sizeof(buf), &len, nullptr), 0);
  EXPECT_EQ(std::string(buf, len), "from-a");
  ASSERT_EQ(shmkv_delete(b, "k", 1, 0), 0);
  EXPECT_EQ(shmkv_get(a, "k", 1, buf, sizeof(buf), &len, nullptr), SHMKV_ENOTFOUND);
  shmkv_close(a);
  shmkv_close(b);
}

TEST(OpenTest, ExclusiveOnExistingSegmentIsEexist) {
  ScopedSegmentName seg("excl");
  shmkv_options_t o = SmallOptions(4u << 20);
  o.flags = SHMKV_OPEN_CREATE | SHMKV_OPEN_EXCL;
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0) << shmkv_last_error();
  ASSERT_EQ(shmkv_set(kv, "k", 1, "v", 1, 0), 0);
  shmkv_t* second = reinterpret_cast<shmkv_t*>(0x1);
  EXPECT_EQ(shmkv_open(seg.c_str(), &o, &second), SHMKV_EEXIST);
  // The existing segment is untouched.
  char buf[4];
  size_t len = 0;
  EXPECT_EQ(shmkv_get(kv, "k", 1, buf, sizeof(buf), &len, nullptr), 0);
  shmkv_close(kv);
}

TEST(OpenTest, CreateOnExistingSegmentKeepsItsGeometry) {
  ScopedSegmentName seg("geometry");
  shmkv_options_t o = SmallOptions(4u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0);
  ASSERT_EQ(shmkv_set(kv, "k", 1, "v", 1, 0), 0);
  shmkv_options_t bigger = SmallOptions(16u << 20);
  shmkv_t* kv2 = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &bigger, &kv2), 0) << shmkv_last_error();
  shmkv_stats_t s;
  s.struct_size = sizeof(s);
  ASSERT_EQ(shmkv_stats(kv2, &s), 0);
  EXPECT_EQ(s.memory_bytes, 4u << 20);
  EXPECT_EQ(s.items, 1u);
  shmkv_close(kv2);
  shmkv_close(kv);
}

TEST(OpenTest, MissingSegmentIsEnoseg) {
  ScopedSegmentName seg("missing");
  shmkv_t* kv = nullptr;
  EXPECT_EQ(shmkv_open(seg.c_str(), nullptr, &kv), SHMKV_ENOSEG);
  shmkv_options_t o;
  shmkv_options_init(&o);  // no SHMKV_OPEN_CREATE
  EXPECT_EQ(shmkv_open(seg.c_str(), &o, &kv), SHMKV_ENOSEG);
  o.flags = SHMKV_OPEN_READONLY;
  EXPECT_EQ(shmkv_open(seg.c_str(), &o, &kv), SHMKV_ENOSEG);
  struct stat st;
  EXPECT_NE(::stat(("/dev/shm/" + seg.name()).c_str(), &st), 0) << "open without CREATE created";
}

TEST(OpenTest, BadNamesAreEinval) {
  shmkv_options_t o = SmallOptions(4u << 20);
  const std::string too_long(201, 'a');
  const std::vector<std::string> bad = {"",       "bad name", "a*b",         "a\nb", "semi;colon",
                                        too_long, "/",        "caf\xc3\xa9", "a:b"};
  for (const std::string& name : bad) {
    shmkv_t* kv = nullptr;
    EXPECT_EQ(shmkv_open(name.c_str(), &o, &kv), SHMKV_EINVAL) << "name '" << name << "'";
    EXPECT_NE(std::strlen(shmkv_last_error()), 0u);
  }
  // 200 characters is still a legal name.
  ScopedSegmentName seg("maxname");
  std::string longest = seg.name() + std::string(200 - seg.name().size(), 'x');
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(longest.c_str(), &o, &kv), 0) << shmkv_last_error();
  shmkv_close(kv);
  EXPECT_EQ(shmkv_unlink(longest.c_str()), 0);
}

TEST(OpenTest, BadOptionsAreEinval) {
  ScopedSegmentName seg("badopts");
  shmkv_t* kv = nullptr;
  shmkv_options_t o = SmallOptions((1u << 20) - 1);
  EXPECT_EQ(shmkv_open(seg.c_str(), &o, &kv), SHMKV_EINVAL);
  o = SmallOptions(4u << 20);
  o.max_key_len = 4097;
  EXPECT_EQ(shmkv_open(seg.c_str(), &o, &kv), SHMKV_EINVAL);
  o = SmallOptions(4u << 20);
  o.evict_policy = 7;
  EXPECT_EQ(shmkv_open(seg.c_str(), &o, &kv), SHMKV_EINVAL);
  struct stat st;
  EXPECT_NE(::stat(("/dev/shm/" + seg.name()).c_str(), &st), 0) << "bad options created a file";

  // The limits themselves are legal.
  o = SmallOptions(1u << 20);
  o.max_key_len = 4096;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0) << shmkv_last_error();
  std::string key(4096, 'k');
  EXPECT_EQ(shmkv_set(kv, key.data(), key.size(), "v", 1, 0), 0);
  shmkv_close(kv);
}

TEST(OpenTest, NullArgumentsAreEinval) {
  ScopedSegmentName seg("nullopen");
  shmkv_options_t o = SmallOptions(4u << 20);
  shmkv_t* kv = nullptr;
  EXPECT_EQ(shmkv_open(nullptr, &o, &kv), SHMKV_EINVAL);
  EXPECT_EQ(shmkv_open(seg.c_str(), &o, nullptr), SHMKV_EINVAL);
  EXPECT_EQ(shmkv_close(nullptr), 0);
  EXPECT_EQ(shmkv_unlink(nullptr), SHMKV_EINVAL);
}

TEST(OpenTest, NewSegmentHasMode0600ByDefault) {
  ScopedSegmentName seg("mode");
  shmkv_options_t o = SmallOptions(4u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0);
  struct stat st;
  ASSERT_EQ(::stat(("/dev/shm/" + seg.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  shmkv_close(kv);
}

TEST(OpenTest, ModeOptionIsHonouredDespiteUmask) {
  ScopedSegmentName seg("mode660");
  shmkv_options_t o = SmallOptions(4u << 20);
  o.mode = 0660;  // group workers need write access (DESIGN.md §7)
  const mode_t old_umask = ::umask(022);
  shmkv_t* kv = nullptr;
  const int rc = shmkv_open(seg.c_str(), &o, &kv);
  ::umask(old_umask);
  ASSERT_EQ(rc, 0);
  struct stat st;
  ASSERT_EQ(::stat(("/dev/shm/" + seg.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  shmkv_close(kv);
}

TEST(OpenTest, ModeOptionIsNotAppliedToAnExistingSegment) {
  ScopedSegmentName seg("mode-existing");
  shmkv_options_t o = SmallOptions(4u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0);
  o.mode = 0644;
  shmkv_t* kv2 = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv2), 0);
  struct stat st;
  ASSERT_EQ(::stat(("/dev/shm/" + seg.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  shmkv_close(kv2);
  shmkv_close(kv);
}

TEST(OpenTest, WriteOpenWithoutWritePermissionIsEacces) {
  if (::geteuid() == 0) GTEST_SKIP() << "root bypasses file permissions";
  ScopedSegmentName seg("eacces");
  shmkv_options_t o = SmallOptions(4u << 20);
  o.mode = 0400;
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0) << shmkv_last_error();
  shmkv_close(kv);
  EXPECT_EQ(shmkv_open(seg.c_str(), nullptr, &kv), SHMKV_EACCES);
  shmkv_options_t ro;
  shmkv_options_init(&ro);
  ro.flags = SHMKV_OPEN_READONLY;
  ASSERT_EQ(shmkv_open(seg.c_str(), &ro, &kv), 0) << shmkv_last_error();
  shmkv_close(kv);
}

TEST(OpenTest, GarbageFileIsEbadseg) {
  ScopedSegmentName seg("garbage");
  const std::string path = "/dev/shm/" + seg.name();
  int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  std::string junk(2u << 20, '\xab');
  ASSERT_EQ(::write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  ::close(fd);
  shmkv_t* kv = nullptr;
  EXPECT_EQ(shmkv_open(seg.c_str(), nullptr, &kv), SHMKV_EBADSEG);
  EXPECT_NE(std::strlen(shmkv_last_error()), 0u);
  shmkv_options_t o = SmallOptions(4u << 20);
  EXPECT_EQ(shmkv_open(seg.c_str(), &o, &kv), SHMKV_EBADSEG);
  o.flags = SHMKV_OPEN_READONLY;
  EXPECT_EQ(shmkv_open(seg.c_str(), &o, &kv), SHMKV_EBADSEG);
}

TEST(OpenTest, TruncatedSegmentIsEbadseg) {
  ScopedSegmentName seg("truncated");
  shmkv_options_t o = SmallOptions(4u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0);
  ASSERT_EQ(shmkv_set(kv, "k", 1, "v", 1, 0), 0);
  ASSERT_EQ(shmkv_close(kv), 0);
  ASSERT_EQ(::truncate(("/dev/shm/" + seg.name()).c_str(), 2u << 20), 0);
  EXPECT_EQ(shmkv_open(seg.c_str(), nullptr, &kv), SHMKV_EBADSEG);
}

TEST(OpenTest, FilePathSegmentWorks) {
  ScopedSegmentName seg("filepath");
  const std::string path = "/dev/shm/" + seg.name();
  shmkv_options_t o = SmallOptions(4u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(path.c_str(), &o, &kv), 0) << shmkv_last_error();
  ASSERT_EQ(shmkv_set(kv, "k", 1, "file", 4, 0), 0);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 4u << 20);
  ASSERT_EQ(shmkv_close(kv), 0);

  ASSERT_EQ(shmkv_open(path.c_str(), nullptr, &kv), 0) << shmkv_last_error();
  char buf[8];
  size_t len = 0;
  ASSERT_EQ(shmkv_get(kv, "k", 1, buf, sizeof(buf), &len, nullptr), 0);
  EXPECT_EQ(std::string(buf, len), "file");
  shmkv_close(kv);
  EXPECT_EQ(shmkv_unlink(path.c_str()), 0);
  EXPECT_NE(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(shmkv_open(path.c_str(), nullptr, &kv), SHMKV_ENOSEG);
}

TEST(OpenTest, UnlinkWhileAttachedRemovesOnlyTheName) {
  ScopedSegmentName seg("unlink");
  shmkv_options_t o = SmallOptions(4u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0);
  ASSERT_EQ(shmkv_set(kv, "k", 1, "v", 1, 0), 0);
  ASSERT_EQ(shmkv_unlink(seg.c_str()), 0);
  shmkv_t* other = nullptr;
  EXPECT_EQ(shmkv_open(seg.c_str(), nullptr, &other), SHMKV_ENOSEG);
  char buf[4];
  size_t len = 0;
  EXPECT_EQ(shmkv_get(kv, "k", 1, buf, sizeof(buf), &len, nullptr), 0);
  EXPECT_EQ(shmkv_set(kv, "k2", 2, "v", 1, 0), 0);
  shmkv_close(kv);
  EXPECT_EQ(shmkv_unlink(seg.c_str()), SHMKV_ENOSEG);
}

// --- read-only handles -------------------------------------------------------

TEST_F(ApiTest, ReadOnlyHandleReadsButRefusesWrites) {
  ASSERT_EQ(Set("k", "v", 60000), 0);
  ASSERT_EQ(Incr("n", 1, 5), 0);
  shmkv_options_t o;
  shmkv_options_init(&o);
  o.flags = SHMKV_OPEN_READONLY;
  shmkv_t* ro = nullptr;
  ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &ro), 0) << shmkv_last_error();

  char buf[16];
  size_t len = 0;
  ASSERT_EQ(shmkv_get(ro, "k", 1, buf, sizeof(buf), &len, nullptr), 0);
  EXPECT_EQ(std::string(buf, len), "v");
  void* p = nullptr;
  ASSERT_EQ(shmkv_get_alloc(ro, "n", 1, &p, &len, nullptr), 0);
  EXPECT_EQ(std::string(static_cast<char*>(p), len), "5");
  shmkv_free(p);
  EXPECT_EQ(shmkv_get(ro, "zz", 2, buf, sizeof(buf), &len, nullptr), SHMKV_ENOTFOUND);
  int64_t ttl = 0;
  ASSERT_EQ(shmkv_ttl(ro, "k", 1, &ttl), 0);
  EXPECT_GT(ttl, 0);
  std::vector<std::string> keys;
  uint64_t cursor = 0;
  do {
    ASSERT_EQ(shmkv_scan(ro, &cursor, nullptr, 0, 100, CollectKey, &keys), 0);
  } while (cursor != 0);
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), 4u);
  shmkv_stats_t s;
  s.struct_size = sizeof(s);
  ASSERT_EQ(shmkv_stats(ro, &s), 0);
  EXPECT_EQ(s.items, 4u);

  const Snapshot before = Take();
  shmkv_write_opts_t w;
  shmkv_write_opts_init(&w);
  EXPECT_EQ(shmkv_set(ro, "k", 1, "x", 1, 0), SHMKV_EREADONLY);
  EXPECT_EQ(shmkv_set(ro, "new", 3, "x", 1, 0), SHMKV_EREADONLY);
  EXPECT_EQ(shmkv_store(ro, "k", 1, "x", 1, &w, nullptr), SHMKV_EREADONLY);
  EXPECT_EQ(shmkv_delete(ro, "k", 1, 0), SHMKV_EREADONLY);
  EXPECT_EQ(shmkv_incr(ro, "n", 1, 1, 0, 0, nullptr), SHMKV_EREADONLY);
  EXPECT_EQ(shmkv_touch(ro, "k", 1, 0), SHMKV_EREADONLY);
  EXPECT_EQ(shmkv_clear(ro), SHMKV_EREADONLY);
  EXPECT_TRUE(Take() == before);
  shmkv_close(ro);
}

// --- get, get_alloc ----------------------------------------------------------

TEST_F(ApiTest, SetThenGetReturnsValue) {
  ASSERT_EQ(Set("hello", "world"), 0);
  EXPECT_EQ(Get("hello"), "world");
}

TEST_F(ApiTest, GetMissingKeyIsEnotfound) {
  EXPECT_ERROR_UNCHANGED(Get("nope"), "<" + std::to_string(SHMKV_ENOTFOUND) + ">");
}

// The detail of the last error follows every call of the thread: a miss
// says so, the next call that succeeds clears it, and a later error with
// a message of its own replaces it (misses keep theirs without a copy).
TEST_F(ApiTest, LastErrorFollowsMissesSuccessesAndOtherErrors) {
  EXPECT_EQ(Get("no-such-key"), "<" + std::to_string(SHMKV_ENOTFOUND) + ">");
  EXPECT_STREQ(shmkv_last_error(), "key not found");
  EXPECT_EQ(Get("sentinel:text"), "alpha");
  EXPECT_STREQ(shmkv_last_error(), "");
  EXPECT_EQ(shmkv_delete(kv_, "no-such-key", 11, 0), SHMKV_ENOTFOUND);
  EXPECT_STREQ(shmkv_last_error(), "key not found");
  EXPECT_EQ(Set("", "x"), SHMKV_EINVAL);
  EXPECT_NE(std::string(shmkv_last_error()).find("key is empty"), std::string::npos)
      << shmkv_last_error();
  EXPECT_EQ(Get("no-such-key"), "<" + std::to_string(SHMKV_ENOTFOUND) + ">");
  EXPECT_STREQ(shmkv_last_error(), "key not found");
}

TEST_F(ApiTest, GetIntoSmallBufferIsEtoosmallAndCopiesNothing) {
  ASSERT_EQ(Set("k", "0123456789"), 0);
  const uint64_t cas = Cas("k");
  char buf[8];
  std::memset(buf, '#', sizeof(buf));
  size_t len = 0;
  shmkv_item_info_t info;
  std::memset(&info, 0, sizeof(info));
  info.struct_size = sizeof(info);
  EXPECT_EQ(shmkv_get(kv_, "k", 1, buf, sizeof(buf), &len, &info), SHMKV_ETOOSMALL);
  EXPECT_EQ(len, 10u);
  EXPECT_EQ(std::string(buf, sizeof(buf)), "########");
  EXPECT_EQ(info.value_len, 10u);
  EXPECT_EQ(info.cas, cas);
  EXPECT_EQ(info.ttl_ms, -1);
  // Exactly the right size works.
  char exact[10];
  EXPECT_EQ(shmkv_get(kv_, "k", 1, exact, sizeof(exact), &len, nullptr), 0);
  EXPECT_EQ(std::string(exact, len), "0123456789");
}

TEST_F(ApiTest, SizeQueryWithNullBufferReportsLength) {
  ASSERT_EQ(Set("k", std::string(777, 'z')), 0);
  size_t len = 0;
  EXPECT_EQ(shmkv_get(kv_, "k", 1, nullptr, 0, &len, nullptr), SHMKV_ETOOSMALL);
  EXPECT_EQ(len, 777u);
}

TEST_F(ApiTest, EmptyValueIsLegal) {
  ASSERT_EQ(shmkv_set(kv_, "empty", 5, nullptr, 0, 0), 0);
  size_t len = 99;
  shmkv_item_info_t info;
  info.struct_size = sizeof(info);
  EXPECT_EQ(shmkv_get(kv_, "empty", 5, nullptr, 0, &len, &info), 0);
  EXPECT_EQ(len, 0u);
  EXPECT_EQ(info.value_len, 0u);
  void* p = reinterpret_cast<void*>(0x1);
  len = 99;
  ASSERT_EQ(shmkv_get_alloc(kv_, "empty", 5, &p, &len, nullptr), 0);
  EXPECT_EQ(len, 0u);
  shmkv_free(p);
}

TEST_F(ApiTest, GetAllocReturnsMallocedCopy) {
  std::string big(200000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  ASSERT_EQ(Set("big", big), 0);
  void* p = nullptr;
  size_t len = 0;
  shmkv_item_info_t info;
  info.struct_size = sizeof(info);
  ASSERT_EQ(shmkv_get_alloc(kv_, "big", 3, &p, &len, &info), 0);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(len, big.size());
  EXPECT_EQ(std::memcmp(p, big.data(), len), 0);
  EXPECT_EQ(info.value_len, big.size());
  shmkv_free(p);
  p = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(shmkv_get_alloc(kv_, "nope", 4, &p, &len, nullptr), SHMKV_ENOTFOUND);
}

TEST_F(ApiTest, BinaryKeysAndValuesWithNulBytes) {
  const std::string k1("a\0b", 3), k2("a\0c", 3), k3("a", 1), k4("\0", 1);
  const std::string v1("\0\0\0", 3), v2("x\0y\xff", 4);
  ASSERT_EQ(Set(k1, v1), 0);
  ASSERT_EQ(Set(k2, v2), 0);
  ASSERT_EQ(Set(k3, "plain"), 0);
  ASSERT_EQ(Set(k4, "nul"), 0);
  EXPECT_EQ(Get(k1), v1);
  EXPECT_EQ(Get(k2), v2);
  EXPECT_EQ(Get(k3), "plain");
  EXPECT_EQ(Get(k4), "nul");
  EXPECT_EQ(Get(std::string("a\0", 2)), "<" + std::to_string(SHMKV_ENOTFOUND) + ">");
  std::vector<std::string> keys = AllKeys(std::string_view("a\0", 2));
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()), (std::set<std::string>{k1, k2}));
}

TEST_F(ApiTest, OverwriteReplacesValueOfAnotherSize) {
  ASSERT_EQ(Set("k", "short"), 0);
  ASSERT_EQ(Set("k", std::string(5000, 'L')), 0);
  EXPECT_TRUE(Get("k") == std::string(5000, 'L'));
  ASSERT_EQ(Set("k", "s"), 0);
  EXPECT_EQ(Get("k"), "s");
  EXPECT_EQ(Stats().items, 3u);
}

// --- store: modes, cas, flags ------------------------------------------------

TEST_F(ApiTest, StoreWithNullOptionsIsPlainSet) {
  uint64_t cas = 0;
  ASSERT_EQ(shmkv_store(kv_, "k", 1, "v", 1, nullptr, &cas), 0);
  EXPECT_NE(cas, 0u);
  EXPECT_EQ(Get("k"), "v");
  EXPECT_EQ(Cas("k"), cas);
  EXPECT_EQ(Ttl("k"), -1);
  EXPECT_EQ(shmkv_store(kv_, "k", 1, "w", 1, nullptr, nullptr), 0);
  EXPECT_EQ(Get("k"), "w");
}

TEST_F(ApiTest, StoreAddOnlyWhenAbsent) {
  uint64_t cas = 0;
  ASSERT_EQ(Store("k", "first", SHMKV_ADD, 0, &cas), 0);
  EXPECT_EQ(Get("k"), "first");
  EXPECT_EQ(Cas("k"), cas);
  EXPECT_ERROR_UNCHANGED(Store("k", "second", SHMKV_ADD), SHMKV_EEXIST);
  EXPECT_EQ(Get("k"), "first");
}

TEST_F(ApiTest, StoreReplaceOnlyWhenPresent) {
  EXPECT_ERROR_UNCHANGED(Store("k", "v", SHMKV_REPLACE), SHMKV_ENOTFOUND);
  ASSERT_EQ(Set("k", "old"), 0);
  uint64_t cas = 0;
  ASSERT_EQ(Store("k", "new", SHMKV_REPLACE, 0, &cas), 0);
  EXPECT_EQ(Get("k"), "new");
  EXPECT_EQ(Cas("k"), cas);
}

TEST_F(ApiTest, ExpectCasMatchStoresMismatchIsEcas) {
  ASSERT_EQ(Set("k", "v1"), 0);
  const uint64_t cas1 = Cas("k");
  ASSERT_NE(cas1, 0u);
  EXPECT_ERROR_UNCHANGED(Store("k", "bad", SHMKV_SET, cas1 + 1), SHMKV_ECAS);
  uint64_t cas2 = 0;
  ASSERT_EQ(Store("k", "v2", SHMKV_SET, cas1, &cas2), 0);
  EXPECT_NE(cas2, cas1);
  EXPECT_EQ(Get("k"), "v2");
  // The old token is stale now.
  EXPECT_ERROR_UNCHANGED(Store("k", "v3", SHMKV_SET, cas1), SHMKV_ECAS);
  EXPECT_ERROR_UNCHANGED(Store("k", "v3", SHMKV_REPLACE, cas1), SHMKV_ECAS);
  EXPECT_EQ(Store("k", "v3", SHMKV_REPLACE, cas2), 0);
  EXPECT_EQ(Get("k"), "v3");
}

TEST_F(ApiTest, ExpectCasOnMissingKeyIsEnotfound) {
  EXPECT_ERROR_UNCHANGED(Store("missing", "v", SHMKV_SET, 12345), SHMKV_ENOTFOUND);
  ASSERT_EQ(Set("gone", "v"), 0);
  const uint64_t cas = Cas("gone");
  ASSERT_EQ(shmkv_delete(kv_, "gone", 4, 0), 0);
  EXPECT_ERROR_UNCHANGED(Store("gone", "v", SHMKV_SET, cas), SHMKV_ENOTFOUND);
}

TEST_F(ApiTest, CasChangesOnEveryWrite) {
  std::set<uint64_t> seen;
  ASSERT_EQ(Set("k", "1"), 0);
  seen.insert(Cas("k"));
  ASSERT_EQ(Set("k", "1"), 0);  // same value: still a write
  seen.insert(Cas("k"));
  ASSERT_EQ(Incr("k", 1), 0);
  seen.insert(Cas("k"));
  ASSERT_EQ(Incr("k", 0), 0);
  seen.insert(Cas("k"));
  ASSERT_EQ(shmkv_touch(kv_, "k", 1, 5000), 0);
  seen.insert(Cas("k"));
  ASSERT_EQ(shmkv_touch(kv_, "k", 1, 0), 0);
  seen.insert(Cas("k"));
  uint64_t c = 0;
  ASSERT_EQ(Store("k", "9", SHMKV_REPLACE, 0, &c), 0);
  seen.insert(c);
  ASSERT_EQ(Store("k", "9", SHMKV_SET, 0, &c, 0, 0, SHMKV_WRITE_KEEPTTL), 0);
  seen.insert(c);
  EXPECT_EQ(seen.size(), 8u);
  EXPECT_EQ(seen.count(0), 0u);
  // A read does not change it.
  EXPECT_EQ(Cas("k"), c);
  EXPECT_EQ(Cas("k"), c);
}

TEST_F(ApiTest, CasDiffersBetweenKeys) {
  ASSERT_EQ(Set("a", "v"), 0);
  ASSERT_EQ(Set("b", "v"), 0);
  EXPECT_NE(Cas("a"), Cas("b"));
}

TEST_F(ApiTest, KeepTtlKeepsTheRemainingTtl) {
  ASSERT_EQ(Set("k", "v", 60000), 0);
  ASSERT_EQ(Store("k", "v2", SHMKV_SET, 0, nullptr, 0, 0, SHMKV_WRITE_KEEPTTL), 0);
  const int64_t t = Ttl("k");
  EXPECT_GT(t, 0);
  EXPECT_LE(t, 60000);
  EXPECT_EQ(Get("k"), "v2");
  // Without it, a write sets the TTL it carries.
  ASSERT_EQ(Store("k", "v3", SHMKV_SET), 0);
  EXPECT_EQ(Ttl("k"), -1);
  ASSERT_EQ(Set("k", "v4", 60000), 0);
  ASSERT_EQ(Set("k", "v5"), 0);
  EXPECT_EQ(Ttl("k"), -1);
}

TEST_F(ApiTest, NoEvictFlagIsAccepted) {
  ASSERT_EQ(Store("k", "pinned", SHMKV_SET, 0, nullptr, 0, 0, SHMKV_WRITE_NOEVICT), 0);
  EXPECT_EQ(Get("k"), "pinned");
  ASSERT_EQ(
      Store("k", "pinned2", SHMKV_SET, 0, nullptr, 0, 0, SHMKV_WRITE_NOEVICT | SHMKV_WRITE_KEEPTTL),
      0);
  EXPECT_EQ(Get("k"), "pinned2");
}

TEST_F(ApiTest, UserFlagsRoundTripAndAreReplacedByEachWrite) {
  ASSERT_EQ(Store("k", "v", SHMKV_SET, 0, nullptr, 0, 0xdeadbeefu), 0);
  shmkv_item_info_t info;
  info.struct_size = sizeof(info);
  ASSERT_EQ(Get("k", &info), "v");
  EXPECT_EQ(info.user_flags, 0xdeadbeefu);
  EXPECT_EQ(info.value_len, 1u);
  // touch keeps the flags; a plain set carries 0.
  ASSERT_EQ(shmkv_touch(kv_, "k", 1, 9000), 0);
  ASSERT_EQ(Get("k", &info), "v");
  EXPECT_EQ(info.user_flags, 0xdeadbeefu);
  ASSERT_EQ(Set("k", "w"), 0);
  ASSERT_EQ(Get("k", &info), "w");
  EXPECT_EQ(info.user_flags, 0u);
}

TEST_F(ApiTest, BadWriteModeIsEinval) {
  EXPECT_ERROR_UNCHANGED(Store("k", "v", 3), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(Store("sentinel:text", "v", 99), SHMKV_EINVAL);
}

// --- delete -------------------------------------------------------------------

TEST_F(ApiTest, DeleteRemovesKey) {
  ASSERT_EQ(Set("k", "v"), 0);
  ASSERT_EQ(shmkv_delete(kv_, "k", 1, 0), 0);
  EXPECT_EQ(Get("k"), "<" + std::to_string(SHMKV_ENOTFOUND) + ">");
  EXPECT_EQ(Stats().items, 2u);
}

TEST_F(ApiTest, DeleteMissingIsEnotfound) {
  EXPECT_ERROR_UNCHANGED(shmkv_delete(kv_, "nope", 4, 0), SHMKV_ENOTFOUND);
  EXPECT_ERROR_UNCHANGED(shmkv_delete(kv_, "nope", 4, 77), SHMKV_ENOTFOUND);
}

TEST_F(ApiTest, DeleteWithCas) {
  ASSERT_EQ(Set("k", "v"), 0);
  const uint64_t cas = Cas("k");
  EXPECT_ERROR_UNCHANGED(shmkv_delete(kv_, "k", 1, cas + 1), SHMKV_ECAS);
  EXPECT_EQ(Get("k"), "v");
  EXPECT_EQ(shmkv_delete(kv_, "k", 1, cas), 0);
  EXPECT_EQ(Get("k"), "<" + std::to_string(SHMKV_ENOTFOUND) + ">");
}

// --- incr -----------------------------------------------------------------------

TEST_F(ApiTest, IncrCreatesWithInitialWithoutApplyingDelta) {
  int64_t r = 0;
  ASSERT_EQ(Incr("n", 5, 100, 0, &r), 0);
  EXPECT_EQ(r, 100);
  EXPECT_EQ(Get("n"), "100");
  EXPECT_EQ(Ttl("n"), -1);
  ASSERT_EQ(Incr("n", 5, 100, 0, &r), 0);
  EXPECT_EQ(r, 105);
  ASSERT_EQ(Incr("n", -200, 0, 0, &r), 0);
  EXPECT_EQ(r, -95);
  EXPECT_EQ(Get("n"), "-95");
  ASSERT_EQ(Incr("n", 1), 0);  // result may be NULL
  EXPECT_EQ(Get("n"), "-94");
}

TEST_F(ApiTest, IncrCreatesWithTtlAndKeepsIt) {
  int64_t r = 0;
  ASSERT_EQ(Incr("n", 1, 7, 60000, &r), 0);
  EXPECT_EQ(r, 7);
  int64_t t = Ttl("n");
  EXPECT_GT(t, 0);
  EXPECT_LE(t, 60000);
  // An existing key keeps its TTL whatever ttl_ms the incr carries.
  ASSERT_EQ(Incr("n", 1, 0, 0, &r), 0);
  EXPECT_EQ(r, 8);
  t = Ttl("n");
  EXPECT_GT(t, 0);
  EXPECT_LE(t, 60000);
  ASSERT_EQ(Incr("n", 1, 0, 999999999, &r), 0);
  t = Ttl("n");
  EXPECT_LE(t, 60000);
  // Likewise a key that has no TTL keeps none.
  ASSERT_EQ(Set("p", "1"), 0);
  ASSERT_EQ(Incr("p", 1, 0, 5000, &r), 0);
  EXPECT_EQ(r, 2);
  EXPECT_EQ(Ttl("p"), -1);
}

TEST_F(ApiTest, IncrParsesDecimalStrings) {
  int64_t r = 0;
  ASSERT_EQ(Set("a", "00042"), 0);
  ASSERT_EQ(Incr("a", 1, 0, 0, &r), 0);
  EXPECT_EQ(r, 43);
  EXPECT_EQ(Get("a"), "43");
  ASSERT_EQ(Set("b", "-17"), 0);
  ASSERT_EQ(Incr("b", 20, 0, 0, &r), 0);
  EXPECT_EQ(r, 3);
  EXPECT_EQ(Get("b"), "3");
  ASSERT_EQ(Set("c", "9223372036854775806"), 0);  // 19 digits
  ASSERT_EQ(Incr("c", 1, 0, 0, &r), 0);
  EXPECT_EQ(r, std::numeric_limits<int64_t>::max());
  ASSERT_EQ(Set("d", "-9223372036854775807"), 0);
  ASSERT_EQ(Incr("d", -1, 0, 0, &r), 0);
  EXPECT_EQ(r, std::numeric_limits<int64_t>::min());
  EXPECT_EQ(Get("d"), "-9223372036854775808");
  ASSERT_EQ(Set("e", "0"), 0);
  ASSERT_EQ(Incr("e", 0, 0, 0, &r), 0);
  EXPECT_EQ(r, 0);
  ASSERT_EQ(Set("f", "0000000000000000001"), 0);  // 19 digits with leading zeros
  ASSERT_EQ(Incr("f", 1, 0, 0, &r), 0);
  EXPECT_EQ(r, 2);
}

TEST_F(ApiTest, IncrOnNonNumberIsEnotnum) {
  const std::vector<std::string> bad = {
      "4 2",  "+1",  "",   "abc", "12345678901234567890", " 1", "1 ", "-", "1.5",
      "0x10", "--1", "1-", "1e3", std::string("1\0", 2)};
  for (size_t i = 0; i < bad.size(); ++i) {
    const std::string key = "bad" + std::to_string(i);
    ASSERT_EQ(Set(key, bad[i]), 0);
    int64_t r = 777;
    EXPECT_ERROR_UNCHANGED(Incr(key, 1, 0, 0, &r), SHMKV_ENOTNUM);
    EXPECT_EQ(Get(key), bad[i]) << "value '" << bad[i] << "'";
  }
}

TEST_F(ApiTest, IncrOverflowIsEoverflowAndLeavesValue) {
  int64_t r = 0;
  ASSERT_EQ(Incr("max", 1, std::numeric_limits<int64_t>::max(), 0, &r), 0);
  EXPECT_EQ(r, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(Get("max"), "9223372036854775807");
  EXPECT_ERROR_UNCHANGED(Incr("max", 1, 0, 0, &r), SHMKV_EOVERFLOW);
  EXPECT_ERROR_UNCHANGED(Incr("max", std::numeric_limits<int64_t>::max(), 0, 0, &r),
                         SHMKV_EOVERFLOW);
  EXPECT_EQ(Get("max"), "9223372036854775807");
  ASSERT_EQ(Incr("min", -1, std::numeric_limits<int64_t>::min(), 0, &r), 0);
  EXPECT_ERROR_UNCHANGED(Incr("min", -1, 0, 0, &r), SHMKV_EOVERFLOW);
  EXPECT_ERROR_UNCHANGED(Incr("min", std::numeric_limits<int64_t>::min(), 0, 0, &r),
                         SHMKV_EOVERFLOW);
  EXPECT_EQ(Get("min"), "-9223372036854775808");
  // Stepping back from the edge is fine.
  ASSERT_EQ(Incr("max", -1, 0, 0, &r), 0);
  EXPECT_EQ(r, std::numeric_limits<int64_t>::max() - 1);
}

TEST_F(ApiTest, IncrCountsFromZero) {
  int64_t r = -1;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(Incr("c", 1, 0, 0, &r), 0);
    ASSERT_EQ(r, i);
  }
  EXPECT_EQ(Get("c"), "999");
}

// --- touch, ttl -----------------------------------------------------------------

TEST_F(ApiTest, TouchSetsAndClearsTtl) {
  ASSERT_EQ(Set("k", "v"), 0);
  EXPECT_EQ(Ttl("k"), -1);
  ASSERT_EQ(shmkv_touch(kv_, "k", 1, 30000), 0);
  int64_t t = Ttl("k");
  EXPECT_GT(t, 0);
  EXPECT_LE(t, 30000);
  ASSERT_EQ(shmkv_touch(kv_, "k", 1, 0), 0);
  EXPECT_EQ(Ttl("k"), -1);
  EXPECT_EQ(Get("k"), "v");
}

TEST_F(ApiTest, TouchMissingIsEnotfound) {
  EXPECT_ERROR_UNCHANGED(shmkv_touch(kv_, "nope", 4, 1000), SHMKV_ENOTFOUND);
  EXPECT_ERROR_UNCHANGED(shmkv_touch(kv_, "nope", 4, 0), SHMKV_ENOTFOUND);
}

TEST_F(ApiTest, TtlReportsRemainingOrMinusOne) {
  ASSERT_EQ(Set("none", "v"), 0);
  ASSERT_EQ(Set("some", "v", 5000), 0);
  EXPECT_EQ(Ttl("none"), -1);
  const int64_t t = Ttl("some");
  EXPECT_GT(t, 0);
  EXPECT_LE(t, 5000);
  shmkv_item_info_t info;
  info.struct_size = sizeof(info);
  ASSERT_EQ(Get("some", &info), "v");
  EXPECT_GT(info.ttl_ms, 0);
  EXPECT_LE(info.ttl_ms, 5000);
  int64_t out = 99;
  EXPECT_ERROR_UNCHANGED(shmkv_ttl(kv_, "nope", 4, &out), SHMKV_ENOTFOUND);
}

TEST_F(ApiTest, TtlLimitIsTwoToTheFortyMs) {
  ASSERT_EQ(Set("edge", "v", kMaxTtl), 0);
  EXPECT_GT(Ttl("edge"), static_cast<int64_t>(kMaxTtl) - 60000);
  EXPECT_ERROR_UNCHANGED(Set("k", "v", kMaxTtl + 1), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(Set("sentinel:text", "v", kMaxTtl + 1), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(Set("k", "v", UINT64_MAX), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(Store("k", "v", SHMKV_SET, 0, nullptr, kMaxTtl + 1), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(Store("k", "v", SHMKV_ADD, 0, nullptr, kMaxTtl + 1), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(Incr("n", 1, 0, kMaxTtl + 1), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_touch(kv_, "sentinel:text", 13, kMaxTtl + 1), SHMKV_EINVAL);
}

// --- argument checks ----------------------------------------------------------

TEST_F(ApiTest, EmptyKeyIsEinvalEverywhere) {
  char buf[8];
  size_t len = 0;
  void* p = nullptr;
  int64_t i = 0;
  EXPECT_ERROR_UNCHANGED(Set("", "v"), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(Store("", "v", SHMKV_ADD), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_get(kv_, "", 0, buf, sizeof(buf), &len, nullptr), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_get_alloc(kv_, "", 0, &p, &len, nullptr), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_delete(kv_, "", 0, 0), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(Incr("", 1, 0, 0, &i), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_touch(kv_, "", 0, 0), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_ttl(kv_, "", 0, &i), SHMKV_EINVAL);
}

TEST_F(ApiTest, KeyOverMaxKeyLenIsEkeytoobig) {
  const std::string max_key(250, 'k');
  const std::string long_key(251, 'k');
  ASSERT_EQ(Set(max_key, "ok"), 0);
  EXPECT_EQ(Get(max_key), "ok");
  char buf[8];
  size_t len = 0;
  int64_t i = 0;
  EXPECT_ERROR_UNCHANGED(Set(long_key, "v"), SHMKV_EKEYTOOBIG);
  EXPECT_ERROR_UNCHANGED(Store(long_key, "v", SHMKV_SET), SHMKV_EKEYTOOBIG);
  EXPECT_ERROR_UNCHANGED(Incr(long_key, 1), SHMKV_EKEYTOOBIG);
  EXPECT_ERROR_UNCHANGED(
      shmkv_get(kv_, long_key.data(), long_key.size(), buf, sizeof(buf), &len, nullptr),
      SHMKV_EKEYTOOBIG);
  EXPECT_ERROR_UNCHANGED(shmkv_delete(kv_, long_key.data(), long_key.size(), 0), SHMKV_EKEYTOOBIG);
  EXPECT_ERROR_UNCHANGED(shmkv_touch(kv_, long_key.data(), long_key.size(), 0), SHMKV_EKEYTOOBIG);
  EXPECT_ERROR_UNCHANGED(shmkv_ttl(kv_, long_key.data(), long_key.size(), &i), SHMKV_EKEYTOOBIG);
}

TEST_F(ApiTest, CustomMaxKeyLenIsEnforced) {
  shmkv_close(kv_);
  kv_ = nullptr;
  ASSERT_EQ(shmkv_unlink(seg_.c_str()), 0);
  shmkv_options_t o = SmallOptions(4u << 20);
  o.max_key_len = 16;
  ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &kv_), 0);
  ASSERT_EQ(Set(std::string(16, 'a'), "v"), 0);
  ASSERT_EQ(Set(std::string(15, 'b'), "v"), 0);  // the Take() snapshot needs two keys
  EXPECT_ERROR_UNCHANGED(Set(std::string(17, 'a'), "v"), SHMKV_EKEYTOOBIG);
}

TEST_F(ApiTest, ValueOverMaxValueLenIsEvaltoobig) {
  shmkv_close(kv_);
  kv_ = nullptr;
  ASSERT_EQ(shmkv_unlink(seg_.c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(Open(SmallOptions(64u << 20)));  // the default size
  const std::string max_val(1u << 20, 'v');
  ASSERT_EQ(Set("max", max_val), 0) << shmkv_last_error();
  EXPECT_TRUE(Get("max") == max_val);
  const std::string big((1u << 20) + 1, 'v');
  EXPECT_ERROR_UNCHANGED(Set("big", big), SHMKV_EVALTOOBIG);
  EXPECT_ERROR_UNCHANGED(Set("max", big), SHMKV_EVALTOOBIG);
  EXPECT_ERROR_UNCHANGED(Store("max", big, SHMKV_REPLACE), SHMKV_EVALTOOBIG);
  EXPECT_TRUE(Get("max") == max_val);
}

TEST(LargeValueTest, DefaultSizedSegmentStoresOneMiBValues) {
  // max_value_len is capped at the page size, at most 1/16 of the data
  // area: the default 64 MiB segment takes the default 1 MiB values.
  ScopedSegmentName seg("onemib");
  shmkv_options_t o = SmallOptions(64u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0) << shmkv_last_error();
  const std::string max_val(1u << 20, 'v');
  EXPECT_EQ(shmkv_set(kv, "max", 3, max_val.data(), max_val.size(), 0), 0) << shmkv_last_error();
  void* got = nullptr;
  size_t len = 0;
  ASSERT_EQ(shmkv_get_alloc(kv, "max", 3, &got, &len, nullptr), 0);
  EXPECT_TRUE(std::string(static_cast<char*>(got), len) == max_val);
  shmkv_free(got);
  shmkv_close(kv);
}

TEST(LargeValueTest, EightMiBSegmentStoresOneMiBValues) {
  // A quarter of the data area of 8 MiB is well above the 1 MiB default;
  // such a value spans several pages.
  ScopedSegmentName seg("onemib8");
  shmkv_options_t o = SmallOptions(8u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0) << shmkv_last_error();
  std::string val(1u << 20, '\0');
  for (size_t i = 0; i < val.size(); ++i) val[i] = static_cast<char>(i * 131 + i / 4096);
  ASSERT_EQ(shmkv_set(kv, "max", 3, val.data(), val.size(), 0), 0) << shmkv_last_error();
  void* got = nullptr;
  size_t len = 0;
  ASSERT_EQ(shmkv_get_alloc(kv, "max", 3, &got, &len, nullptr), 0);
  EXPECT_TRUE(std::string(static_cast<char*>(got), len) == val);
  shmkv_free(got);
  // More than a quarter of the segment is refused.
  const std::string too_big(3u << 20, 'x');
  EXPECT_EQ(shmkv_set(kv, "big", 3, too_big.data(), too_big.size(), 0), SHMKV_EVALTOOBIG);
  shmkv_close(kv);
}

TEST_F(ApiTest, CustomMaxValueLenIsEnforced) {
  shmkv_close(kv_);
  kv_ = nullptr;
  ASSERT_EQ(shmkv_unlink(seg_.c_str()), 0);
  shmkv_options_t o = SmallOptions(4u << 20);
  o.max_value_len = 1000;
  ASSERT_NO_FATAL_FAILURE(Open(o));
  ASSERT_EQ(Set("ok", std::string(1000, 'x')), 0);
  EXPECT_ERROR_UNCHANGED(Set("no", std::string(1001, 'x')), SHMKV_EVALTOOBIG);
}

TEST(SmallSegmentTest, MaxValueLenIsCappedAtAQuarterOfTheData) {
  ScopedSegmentName seg("valcap");
  shmkv_options_t o = SmallOptions(1u << 20);  // max_value_len stays 1 MiB
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0) << shmkv_last_error();
  const std::string big(256u << 10, 'v');  // a quarter of the whole segment
  EXPECT_EQ(shmkv_set(kv, "big", 3, big.data(), big.size(), 0), SHMKV_EVALTOOBIG);
  EXPECT_EQ(shmkv_set(kv, "small", 5, "v", 1, 0), 0);
  shmkv_close(kv);
}

TEST(SmallSegmentTest, FourMiBHoldsTenThousandSmallItems) {
  ScopedSegmentName seg("capacity");
  shmkv_options_t o = SmallOptions(4u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0) << shmkv_last_error();
  const std::string val(100, 'v');
  for (int i = 0; i < 10000; ++i) {
    const std::string key = "item:" + std::to_string(i);
    ASSERT_EQ(shmkv_set(kv, key.data(), key.size(), val.data(), val.size(), 0), 0) << "item " << i;
  }
  shmkv_stats_t s;
  s.struct_size = sizeof(s);
  ASSERT_EQ(shmkv_stats(kv, &s), 0);
  // A full bucket pair may evict early (about 0.3 % at load 0.75).
  EXPECT_GE(s.items, 9950u);
  EXPECT_LE(s.evictions, 50u);
  shmkv_close(kv);
}

TEST_F(ApiTest, NullPointersAreEinval) {
  char buf[8];
  size_t len = 0;
  int64_t i = 0;
  void* p = nullptr;
  uint64_t cursor = 0;
  shmkv_write_opts_t w;
  shmkv_write_opts_init(&w);
  EXPECT_ERROR_UNCHANGED(shmkv_set(nullptr, "k", 1, "v", 1, 0), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_set(kv_, nullptr, 1, "v", 1, 0), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_set(kv_, "k", 1, nullptr, 1, 0), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_store(nullptr, "k", 1, "v", 1, &w, nullptr), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_store(kv_, nullptr, 1, "v", 1, &w, nullptr), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_store(kv_, "k", 1, nullptr, 1, &w, nullptr), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_get(nullptr, "k", 1, buf, sizeof(buf), &len, nullptr), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_get(kv_, nullptr, 1, buf, sizeof(buf), &len, nullptr), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_get(kv_, "sentinel:text", 13, nullptr, 8, &len, nullptr),
                         SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_get(kv_, "sentinel:text", 13, buf, sizeof(buf), nullptr, nullptr),
                         SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_get_alloc(nullptr, "k", 1, &p, &len, nullptr), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_get_alloc(kv_, "sentinel:text", 13, nullptr, &len, nullptr),
                         SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_get_alloc(kv_, "sentinel:text", 13, &p, nullptr, nullptr),
                         SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_delete(nullptr, "k", 1, 0), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_delete(kv_, nullptr, 1, 0), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_incr(nullptr, "k", 1, 1, 0, 0, &i), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_incr(kv_, nullptr, 1, 1, 0, 0, &i), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_touch(nullptr, "k", 1, 0), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_touch(kv_, nullptr, 1, 0), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_ttl(nullptr, "k", 1, &i), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_ttl(kv_, "sentinel:text", 13, nullptr), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_clear(nullptr), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_scan(nullptr, &cursor, nullptr, 0, 10, CollectKey, nullptr),
                         SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_scan(kv_, nullptr, nullptr, 0, 10, CollectKey, nullptr),
                         SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_scan(kv_, &cursor, nullptr, 0, 10, nullptr, nullptr), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_scan(kv_, &cursor, nullptr, 3, 10, CollectKey, nullptr),
                         SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_stats(nullptr, nullptr), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_stats(kv_, nullptr), SHMKV_EINVAL);
  EXPECT_ERROR_UNCHANGED(shmkv_recover(nullptr, nullptr), SHMKV_EINVAL);
}

TEST_F(ApiTest, WrongStructSizeIsEinval) {
  shmkv_write_opts_t w;
  shmkv_write_opts_init(&w);
  w.struct_size = 0;
  EXPECT_ERROR_UNCHANGED(shmkv_store(kv_, "k", 1, "v", 1, &w, nullptr), SHMKV_EINVAL);
  shmkv_stats_t s;
  std::memset(&s, 0, sizeof(s));
  EXPECT_ERROR_UNCHANGED(shmkv_stats(kv_, &s), SHMKV_EINVAL);
}

// --- clear, scan ----------------------------------------------------------------

TEST_F(ApiTest, ClearRemovesEveryEntry) {
  for (int i = 0; i < 500; ++i) ASSERT_EQ(Set("k" + std::to_string(i), "v", i % 2 ? 60000 : 0), 0);
  ASSERT_EQ(shmkv_clear(kv_), 0);
  for (int i = 0; i < 500; ++i)
    EXPECT_EQ(Get("k" + std::to_string(i)), "<" + std::to_string(SHMKV_ENOTFOUND) + ">");
  EXPECT_EQ(Get("sentinel:text"), "<" + std::to_string(SHMKV_ENOTFOUND) + ">");
  EXPECT_EQ(Stats().items, 0u);
  EXPECT_TRUE(AllKeys().empty());
  // The segment is usable afterwards.
  ASSERT_EQ(Set("after", "v"), 0);
  EXPECT_EQ(Get("after"), "v");
}

struct ScanState {
  std::vector<std::string> keys;
  std::vector<shmkv_item_info_t> infos;
  int calls_this_round = 0;
  int stop_after = -1;  // stop when this many entries were seen
  shmkv_t* delete_via = nullptr;
};

int Record(const void* key, size_t key_len, const shmkv_item_info_t* info, void* ctx) {
  auto* s = static_cast<ScanState*>(ctx);
  s->keys.emplace_back(static_cast<const char*>(key), key_len);
  s->infos.push_back(*info);
  ++s->calls_this_round;
  if (s->delete_via != nullptr && shmkv_delete(s->delete_via, key, key_len, 0) != 0) return -1;
  if (s->stop_after >= 0 && static_cast<int>(s->keys.size()) == s->stop_after) return 1;
  return 0;
}

TEST_F(ApiTest, ScanVisitsEveryPrefixedKeyWithBoundedCalls) {
  std::set<std::string> want;
  for (int i = 0; i < 300; ++i) {
    const std::string k = "p:" + std::to_string(i);
    ASSERT_EQ(Store(k, std::string(i % 50, 'x'), SHMKV_SET, 0, nullptr, 0, i), 0);
    want.insert(k);
  }
  for (int i = 0; i < 100; ++i) ASSERT_EQ(Set("q:" + std::to_string(i), "v"), 0);

  ScanState st;
  uint64_t cursor = 0;
  int rounds = 0;
  const size_t kLimit = 7;
  do {
    st.calls_this_round = 0;
    ASSERT_EQ(shmkv_scan(kv_, &cursor, "p:", 2, kLimit, Record, &st), 0);
    EXPECT_LE(st.calls_this_round, static_cast<int>(kLimit)) << "limit not honoured";
    ASSERT_LT(++rounds, 1000000);
  } while (cursor != 0);
  EXPECT_GE(rounds, 300 / static_cast<int>(kLimit));
  EXPECT_EQ(std::set<std::string>(st.keys.begin(), st.keys.end()), want);
  for (size_t i = 0; i < st.keys.size(); ++i) {
    const int n = std::stoi(st.keys[i].substr(2));
    EXPECT_EQ(st.infos[i].value_len, static_cast<uint64_t>(n % 50));
    EXPECT_EQ(st.infos[i].user_flags, static_cast<uint32_t>(n));
    EXPECT_EQ(st.infos[i].ttl_ms, -1);
    EXPECT_NE(st.infos[i].cas, 0u);
  }
}

TEST_F(ApiTest, ScanWithoutPrefixVisitsAll) {
  for (int i = 0; i < 100; ++i) ASSERT_EQ(Set("k" + std::to_string(i), "v", 60000), 0);
  std::vector<std::string> keys = AllKeys({}, 1);
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), 102u);
  keys = AllKeys({}, 1000000);
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), 102u);
  keys = AllKeys({}, SIZE_MAX);  // "no limit": must not overflow the cursor arithmetic
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), 102u);
}

TEST_F(ApiTest, ScanReportsTtlOfEntries) {
  ASSERT_EQ(Set("t:a", "v", 30000), 0);
  ScanState st;
  uint64_t cursor = 0;
  do {
    ASSERT_EQ(shmkv_scan(kv_, &cursor, "t:", 2, 64, Record, &st), 0);
  } while (cursor != 0);
  ASSERT_EQ(st.infos.size(), 1u);
  EXPECT_GT(st.infos[0].ttl_ms, 0);
  EXPECT_LE(st.infos[0].ttl_ms, 30000);
  EXPECT_EQ(st.infos[0].value_len, 1u);
}

TEST_F(ApiTest, ScanCallbackMayDeleteTheKeyItWasGiven) {
  for (int i = 0; i < 200; ++i) ASSERT_EQ(Set("d:" + std::to_string(i), "v"), 0);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(Set("keep:" + std::to_string(i), "v"), 0);
  ScanState st;
  st.delete_via = kv_;
  uint64_t cursor = 0;
  do {
    ASSERT_EQ(shmkv_scan(kv_, &cursor, "d:", 2, 16, Record, &st), 0);
  } while (cursor != 0);
  EXPECT_EQ(std::set<std::string>(st.keys.begin(), st.keys.end()).size(), 200u);
  EXPECT_TRUE(AllKeys("d:").empty());
  EXPECT_EQ(AllKeys("keep:").size(), 50u);
  EXPECT_EQ(Stats().items, 52u);
}

TEST_F(ApiTest, ScanStopsEarlyAndResumesAfterTheEntry) {
  std::set<std::string> want;
  for (int i = 0; i < 100; ++i) {
    want.insert("s:" + std::to_string(i));
    ASSERT_EQ(Set("s:" + std::to_string(i), "v"), 0);
  }
  ScanState st;
  st.stop_after = 5;
  uint64_t cursor = 0;
  const int rc = shmkv_scan(kv_, &cursor, "s:", 2, 1000000, Record, &st);
  EXPECT_GE(rc, 0);
  ASSERT_EQ(st.keys.size(), 5u) << "fn was called after it asked to stop";
  ASSERT_NE(cursor, 0u) << "stopped early but the cursor says done";
  const std::string stopped_on = st.keys.back();
  st.stop_after = -1;
  const size_t first_part = st.keys.size();
  while (cursor != 0) ASSERT_EQ(shmkv_scan(kv_, &cursor, "s:", 2, 10, Record, &st), 0);
  EXPECT_EQ(std::set<std::string>(st.keys.begin(), st.keys.end()), want);
  for (size_t i = first_part; i < st.keys.size(); ++i)
    EXPECT_NE(st.keys[i], stopped_on) << "resumed scan revisited the entry it stopped on";
}

TEST_F(ApiTest, ScanOfEmptyPrefixMatchFinishes) {
  std::vector<std::string> keys = AllKeys("zzz:", 3);
  EXPECT_TRUE(keys.empty());
}

// --- stats ------------------------------------------------------------------------

TEST_F(ApiTest, StatsCountOperations) {
  const shmkv_stats_t s0 = Stats();
  EXPECT_EQ(s0.struct_size, sizeof(shmkv_stats_t));
  EXPECT_EQ(s0.memory_bytes, 8u << 20);
  EXPECT_EQ(s0.items, 2u);
  EXPECT_GE(s0.attached_processes, 1u);
  EXPECT_GT(s0.memory_used, 0u);
  EXPECT_LE(s0.memory_used, s0.memory_bytes);
  EXPECT_EQ(s0.capacity_items, (8u << 20) / 256);

  for (int i = 0; i < 10; ++i) ASSERT_EQ(Set("k" + std::to_string(i), "v"), 0);
  const shmkv_stats_t s1 = Stats();
  EXPECT_EQ(s1.sets - s0.sets, 10u);
  EXPECT_EQ(s1.items, 12u);
  EXPECT_GT(s1.memory_used, s0.memory_used);

  for (int i = 0; i < 7; ++i) EXPECT_EQ(Get("k" + std::to_string(i)), "v");
  for (int i = 0; i < 4; ++i) Get("missing" + std::to_string(i));
  const shmkv_stats_t s2 = Stats();
  EXPECT_EQ(s2.gets - s1.gets, 11u);
  EXPECT_EQ(s2.hits - s1.hits, 7u);
  EXPECT_EQ(s2.misses - s1.misses, 4u);

  ASSERT_EQ(shmkv_delete(kv_, "k0", 2, 0), 0);
  const shmkv_stats_t s3 = Stats();
  EXPECT_EQ(s3.deletes - s2.deletes, 1u);
  EXPECT_EQ(s3.items, 11u);

  for (int i = 0; i < 5; ++i) ASSERT_EQ(Incr("n", 1), 0);
  const shmkv_stats_t s4 = Stats();
  EXPECT_EQ(s4.incrs - s3.incrs, 5u);
  EXPECT_EQ(s4.items, 12u);

  EXPECT_EQ(Store("k1", "x", SHMKV_SET, 1), SHMKV_ECAS);
  EXPECT_EQ(shmkv_delete(kv_, "k1", 2, 1), SHMKV_ECAS);
  const shmkv_stats_t s5 = Stats();
  EXPECT_EQ(s5.cas_failures - s4.cas_failures, 2u);
  EXPECT_EQ(s5.items, 12u);
}

TEST(StatsTest, CapacityItemsIsMaxItems) {
  ScopedSegmentName seg("capitems");
  shmkv_options_t o = SmallOptions(4u << 20, 5000);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv), 0);
  shmkv_stats_t s;
  s.struct_size = sizeof(s);
  ASSERT_EQ(shmkv_stats(kv, &s), 0);
  EXPECT_EQ(s.capacity_items, 5000u);
  EXPECT_EQ(s.memory_bytes, 4u << 20);
  shmkv_close(kv);
}

TEST_F(ApiTest, RecoverWithNobodyDeadRecoversNothing) {
  uint32_t n = 99;
  ASSERT_EQ(shmkv_recover(kv_, &n), 0);
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(shmkv_recover(kv_, nullptr), 0);
  EXPECT_EQ(Get("sentinel:text"), "alpha");
}

// --- strerror, version, last_error ---------------------------------------------

TEST(StrerrorTest, EveryCodeHasADistinctMessage) {
  std::set<std::string> messages;
  for (int code = SHMKV_EBUSY; code <= SHMKV_ENOTFOUND; ++code) {
    const char* m = shmkv_strerror(code);
    ASSERT_NE(m, nullptr) << code;
    EXPECT_GT(std::strlen(m), 3u) << code;
    messages.insert(m);
  }
  EXPECT_EQ(messages.size(), 15u);
  EXPECT_EQ(SHMKV_ENOTFOUND, -1001);
  EXPECT_EQ(SHMKV_EBUSY, -1015);
}

TEST(StrerrorTest, ErrnoValuesAndUnknownCodesAreNamed) {
  const char* m = shmkv_strerror(ENOENT);
  ASSERT_NE(m, nullptr);
  EXPECT_GT(std::strlen(m), 0u);
  for (int code = SHMKV_EBUSY; code <= SHMKV_ENOTFOUND; ++code)
    EXPECT_STRNE(m, shmkv_strerror(code));
  EXPECT_STRNE(shmkv_strerror(ENOMEM), m);
  ASSERT_NE(shmkv_strerror(0), nullptr);
  ASSERT_NE(shmkv_strerror(-5000), nullptr);
  EXPECT_GT(std::strlen(shmkv_strerror(-5000)), 0u);
  ASSERT_NE(shmkv_strerror(-1016), nullptr);
  ASSERT_NE(shmkv_strerror(INT32_MIN), nullptr);
}

TEST(VersionTest, MatchesHeader) {
  const char* v = shmkv_version();
  ASSERT_NE(v, nullptr);
  EXPECT_NE(std::string(v).find(SHMKV_VERSION_STRING), std::string::npos) << v;
}

TEST_F(ApiTest, LastErrorDescribesTheFailureAndClearsOnSuccess) {
  EXPECT_EQ(Set(std::string(251, 'k'), "v"), SHMKV_EKEYTOOBIG);
  EXPECT_NE(std::strlen(shmkv_last_error()), 0u);
  EXPECT_EQ(Set("k", "v"), 0);
  EXPECT_STREQ(shmkv_last_error(), "");
}

// ---- mget -------------------------------------------------------------------

TEST_F(ApiTest, MGetReturnsEachKeysResult) {
  // 100 keys: the even ones stored (lengths 0..99), the odd ones not; one
  // value too large for its buffer; one expired.
  constexpr size_t kN = 100;
  std::vector<std::string> keys, bufs(kN, std::string(64, '\0'));
  for (size_t i = 0; i < kN; ++i) {
    keys.push_back("mget:" + std::to_string(i));
    if (i % 2 == 0) {
      ASSERT_EQ(Set(keys[i], std::string(i, static_cast<char>('a' + i % 26))), 0);
    }
  }
  shmkv::testing::SetFakeNowMs(1'000'000);
  ASSERT_EQ(Set(keys[10], "short-lived", 100), 0);
  ASSERT_EQ(Store(keys[12], std::string(12, 'm'), SHMKV_SET, 0, nullptr, 59200, 77), 0);
  shmkv::testing::SetFakeNowMs(1'000'200);
  std::vector<const void*> kp;
  std::vector<size_t> kl, caps(kN, 64), lens(kN, 12345);
  std::vector<void*> bp;
  for (size_t i = 0; i < kN; ++i) {
    kp.push_back(keys[i].data());
    kl.push_back(keys[i].size());
    bp.push_back(bufs[i].data());
  }
  std::vector<int> rcs(kN, -1);
  std::vector<shmkv_item_info_t> infos(kN);
  for (auto& in : infos) in.struct_size = sizeof(in);
  ASSERT_EQ(shmkv_mget(kv_, kN, kp.data(), kl.data(), bp.data(), caps.data(), lens.data(),
                       rcs.data(), infos.data()),
            0)
      << shmkv_last_error();
  shmkv::testing::SetFakeNowMs(-1);
  for (size_t i = 0; i < kN; ++i) {
    SCOPED_TRACE(keys[i]);
    if (i % 2 == 1 || i == 10) {
      EXPECT_EQ(rcs[i], SHMKV_ENOTFOUND);
    } else if (i > 64) {
      EXPECT_EQ(rcs[i], SHMKV_ETOOSMALL);
      EXPECT_EQ(lens[i], i);  // the size needed
    } else {
      ASSERT_EQ(rcs[i], 0);
      ASSERT_EQ(lens[i], i);
      EXPECT_EQ(bufs[i].substr(0, i), std::string(i, static_cast<char>('a' + i % 26)));
      EXPECT_EQ(infos[i].value_len, i);  // info filled as shmkv_get fills it
      EXPECT_EQ(infos[i].ttl_ms, i == 12 ? 59000 : -1);
      EXPECT_EQ(infos[i].user_flags, i == 12 ? 77u : 0u);
      EXPECT_NE(infos[i].cas, 0u);
    }
  }
  // Every key counted as one get.
  shmkv_stats_t st{};
  st.struct_size = sizeof st;
  ASSERT_EQ(shmkv_stats(kv_, &st), 0);
  EXPECT_EQ(st.gets, kN);
  EXPECT_EQ(st.hits, 49u);  // 50 stored (key 0 with an empty value), one expired
}

TEST_F(ApiTest, MGetReportsBadKeysPerKeyAndBadArgumentsForTheCall) {
  const std::string big(300, 'k');  // above max_key_len
  const void* keys[] = {"sentinel:text", "", big.data(), nullptr};
  const size_t klens[] = {13, 0, big.size(), 4};
  char b0[16], b1[16], b2[16], b3[16];
  void* bufs[] = {b0, b1, b2, b3};
  const size_t caps[] = {16, 16, 16, 16};
  size_t lens[4];
  int rcs[4];
  ASSERT_EQ(shmkv_mget(kv_, 4, keys, klens, bufs, caps, lens, rcs, nullptr), 0);
  EXPECT_EQ(rcs[0], 0);
  EXPECT_EQ(std::string(b0, lens[0]), "alpha");
  EXPECT_EQ(rcs[1], SHMKV_EINVAL);
  EXPECT_EQ(rcs[2], SHMKV_EKEYTOOBIG);
  EXPECT_EQ(rcs[3], SHMKV_EINVAL);
  // The call's own arguments.
  EXPECT_EQ(shmkv_mget(kv_, 0, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr), 0);
  EXPECT_EQ(shmkv_mget(kv_, 4, keys, klens, bufs, caps, lens, nullptr, nullptr), SHMKV_EINVAL);
  EXPECT_EQ(shmkv_mget(nullptr, 4, keys, klens, bufs, caps, lens, rcs, nullptr), SHMKV_EINVAL);
  void* nobuf[] = {nullptr, b1, b2, b3};
  EXPECT_EQ(shmkv_mget(kv_, 4, keys, klens, nobuf, caps, lens, rcs, nullptr), SHMKV_EINVAL);
  EXPECT_NE(std::string(shmkv_last_error()).find("bufs[0]"), std::string::npos);
  EXPECT_EQ(Get("sentinel:text"), "alpha");
}

}  // namespace
