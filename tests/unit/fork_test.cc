// Handles and fork() (DESIGN.md §5): a child keeps using an inherited handle
// (its first call registers it), attached_processes counts it while it
// lives, and a child that dies without closing is found by shmkv_recover.
// Children report through their exit status; the parent synchronises with
// pipes and waitpid, never with sleeps. Not under ThreadSanitizer (forks).
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"
#include "testing.h"

namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;

// Exit codes of the children: 0 = all good, else the failing step.
int WaitForChild(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  if (!WIFEXITED(status)) return -2;
  return WEXITSTATUS(status);
}

bool WriteByte(int fd) {
  const char c = 'x';
  return ::write(fd, &c, 1) == 1;
}
bool ReadByte(int fd) {
  char c;
  return ::read(fd, &c, 1) == 1;
}

class ForkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shmkv_options_t o = SmallOptions(4u << 20);
    ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &kv_), 0) << shmkv_last_error();
  }
  void TearDown() override {
    if (kv_ != nullptr) {
      shmkv::internal::Census c;
      EXPECT_EQ(shmkv::internal::TakeCensus(kv_, &c), 0);
      shmkv::test::ExpectCleanCensus(c);
      EXPECT_EQ(c.slots_live, c.blocks_linked);
      shmkv_close(kv_);
    }
  }
  shmkv_stats_t Stats() {
    shmkv_stats_t s;
    s.struct_size = sizeof(s);
    EXPECT_EQ(shmkv_stats(kv_, &s), 0);
    return s;
  }
  std::string Get(const std::string& k) {
    char buf[64];
    size_t len = 0;
    const int rc = shmkv_get(kv_, k.data(), k.size(), buf, sizeof(buf), &len, nullptr);
    return rc == 0 ? std::string(buf, len) : "<" + std::to_string(rc) + ">";
  }

  ScopedSegmentName seg_{"fork"};
  shmkv_t* kv_ = nullptr;
};

TEST_F(ForkTest, InheritedHandleWorksInChild) {
  ASSERT_EQ(shmkv_set(kv_, "parent", 6, "p", 1, 0), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    char buf[8];
    size_t len = 0;
    if (shmkv_get(kv_, "parent", 6, buf, sizeof(buf), &len, nullptr) != 0) ::_exit(1);
    if (len != 1 || buf[0] != 'p') ::_exit(2);
    if (shmkv_set(kv_, "child", 5, "c", 1, 0) != 0) ::_exit(3);
    for (int i = 0; i < 1000; ++i) {
      const std::string k = "ck" + std::to_string(i);
      if (shmkv_set(kv_, k.data(), k.size(), k.data(), k.size(), 0) != 0) ::_exit(4);
    }
    int64_t r = 0;
    if (shmkv_incr(kv_, "counter", 7, 1, 100, 0, &r) != 0 || r != 100) ::_exit(5);
    ::_exit(shmkv_close(kv_) == 0 ? 0 : 6);
  }
  ASSERT_EQ(WaitForChild(pid), 0);
  EXPECT_EQ(Get("child"), "c");
  for (int i = 0; i < 1000; ++i) {
    const std::string k = "ck" + std::to_string(i);
    ASSERT_EQ(Get(k), k);
  }
  int64_t r = 0;
  ASSERT_EQ(shmkv_incr(kv_, "counter", 7, 1, 0, 0, &r), 0);
  EXPECT_EQ(r, 101);
  // The parent's handle is unaffected by the child's close.
  ASSERT_EQ(shmkv_set(kv_, "after", 5, "a", 1, 0), 0);
  EXPECT_EQ(Get("after"), "a");
}

TEST_F(ForkTest, AttachedProcessesCountsALiveChild) {
  ASSERT_EQ(shmkv_set(kv_, "warm", 4, "v", 1, 0), 0);  // the parent is registered
  const uint64_t before = Stats().attached_processes;
  ASSERT_GE(before, 1u);
  int ready[2], release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(ready[0]);
    ::close(release[1]);
    if (shmkv_set(kv_, "child", 5, "c", 1, 0) != 0) ::_exit(1);  // registers the child
    if (!WriteByte(ready[1])) ::_exit(2);
    if (!ReadByte(release[0])) ::_exit(3);
    ::_exit(shmkv_close(kv_) == 0 ? 0 : 4);
  }
  ::close(ready[1]);
  ::close(release[0]);
  ASSERT_TRUE(ReadByte(ready[0]));
  EXPECT_EQ(Stats().attached_processes, before + 1);
  ASSERT_TRUE(WriteByte(release[1]));
  ASSERT_EQ(WaitForChild(pid), 0);
  ::close(ready[0]);
  ::close(release[1]);
  EXPECT_EQ(Stats().attached_processes, before);
  uint32_t recovered = 99;
  ASSERT_EQ(shmkv_recover(kv_, &recovered), 0);
  EXPECT_EQ(recovered, 0u) << "a child that closed cleanly needs no recovery";
}

TEST_F(ForkTest, ChildThatClosesNeedsNoRecovery) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    shmkv_t* own = nullptr;
    if (shmkv_open(seg_.c_str(), nullptr, &own) != 0) ::_exit(1);
    if (shmkv_set(own, "child", 5, "c", 1, 0) != 0) ::_exit(2);
    ::_exit(shmkv_close(own) == 0 ? 0 : 3);
  }
  ASSERT_EQ(WaitForChild(pid), 0);
  uint32_t recovered = 99;
  ASSERT_EQ(shmkv_recover(kv_, &recovered), 0);
  EXPECT_EQ(recovered, 0u);
  EXPECT_EQ(Get("child"), "c");
}

TEST_F(ForkTest, ChildThatDiesWithoutCloseIsRecovered) {
  const uint64_t recovered_before = Stats().recovered_processes;
  const uint64_t attached_before = Stats().attached_processes;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    shmkv_t* own = nullptr;
    if (shmkv_open(seg_.c_str(), nullptr, &own) != 0) ::_exit(1);
    for (int i = 0; i < 100; ++i) {
      const std::string k = "dead" + std::to_string(i);
      if (shmkv_set(own, k.data(), k.size(), "v", 1, 0) != 0) ::_exit(2);
    }
    ::_exit(0);  // no shmkv_close
  }
  ASSERT_EQ(WaitForChild(pid), 0);
  uint32_t recovered = 0;
  ASSERT_EQ(shmkv_recover(kv_, &recovered), 0);
  EXPECT_GE(recovered, 1u);
  const shmkv_stats_t s = Stats();
  EXPECT_GE(s.recovered_processes, recovered_before + 1);
  EXPECT_EQ(s.attached_processes, attached_before);
  // What it wrote completed before it died, so it stays.
  for (int i = 0; i < 100; ++i) EXPECT_EQ(Get("dead" + std::to_string(i)), "v");
  // A second recovery finds nothing more.
  ASSERT_EQ(shmkv_recover(kv_, &recovered), 0);
  EXPECT_EQ(recovered, 0u);
}

TEST_F(ForkTest, ChildUsingInheritedHandleThenDyingIsRecovered) {
  ASSERT_EQ(shmkv_set(kv_, "warm", 4, "v", 1, 0), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (shmkv_set(kv_, "child", 5, "c", 1, 0) != 0) ::_exit(1);
    ::_exit(0);  // no close
  }
  ASSERT_EQ(WaitForChild(pid), 0);
  uint32_t recovered = 0;
  ASSERT_EQ(shmkv_recover(kv_, &recovered), 0);
  EXPECT_GE(recovered, 1u);
  EXPECT_EQ(Get("child"), "c");
  // The parent's own registration survived the child's death.
  ASSERT_EQ(shmkv_set(kv_, "parent", 6, "p", 1, 0), 0);
  ASSERT_EQ(shmkv_recover(kv_, &recovered), 0);
  EXPECT_EQ(recovered, 0u) << "recovery must not take the live parent for dead";
  EXPECT_EQ(Get("parent"), "p");
}

TEST_F(ForkTest, GrandchildOfAForkedChildWorksToo) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (shmkv_set(kv_, "child", 5, "c", 1, 0) != 0) ::_exit(1);
    const pid_t grand = ::fork();
    if (grand < 0) ::_exit(2);
    if (grand == 0) ::_exit(shmkv_set(kv_, "grand", 5, "g", 1, 0) == 0 ? 0 : 1);
    if (WaitForChild(grand) != 0) ::_exit(3);
    ::_exit(shmkv_close(kv_) == 0 ? 0 : 4);
  }
  ASSERT_EQ(WaitForChild(pid), 0);
  EXPECT_EQ(Get("child"), "c");
  EXPECT_EQ(Get("grand"), "g");
}

}  // namespace
