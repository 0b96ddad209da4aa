// The consistency checker (shmkv_check) finds planted violations and stays
// quiet on healthy segments; the janitor library reclaims expired entries,
// recovers dead processes and is exclusive per segment.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "handle.h"
#include "janitor.h"
#include "segment.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"
#include "testing.h"

namespace shmkv {
namespace {

using internal::Janitor;
using internal::JanitorOptions;
using internal::TickReport;

shmkv_check_report_t Check(shmkv_t* kv, uint32_t flags) {
  shmkv_check_report_t r{};
  r.struct_size = sizeof(r);
  EXPECT_EQ(shmkv_check(kv, flags, &r), 0) << shmkv_last_error();
  return r;
}

class CheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shmkv_options_t o = test::SmallOptions(4u << 20);
    ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &kv_), 0) << shmkv_last_error();
    for (int i = 0; i < 500; ++i) {
      const std::string k = "key:" + std::to_string(i), v(i % 300, 'v');
      ASSERT_EQ(shmkv_set(kv_, k.data(), k.size(), v.data(), v.size(), 0), 0);
    }
  }
  void TearDown() override {
    shmkv::testing::SetFakeNowMs(-1);
    shmkv_close(kv_);
  }
  // The first LIVE slot of the index.
  internal::Slot* FirstLive() {
    for (uint64_t i = 0; i < kv_->v.n_buckets * 4; ++i) {
      internal::Slot* s = &kv_->v.buckets[i / 4].slot[i % 4];
      if (internal::ref::State(s->ref) == internal::kLive) return s;
    }
    return nullptr;
  }
  test::ScopedSegmentName seg_{"check"};
  shmkv_t* kv_ = nullptr;
};

TEST_F(CheckTest, HealthySegmentIsClean) {
  const shmkv_check_report_t r = Check(kv_, SHMKV_CHECK_OFFLINE);
  EXPECT_EQ(r.problems, 0u) << r.first_problem;
  EXPECT_EQ(r.leaked_blocks, 0u);
  EXPECT_EQ(r.slots_live, 500u);
  EXPECT_EQ(r.blocks_linked, 500u);
  EXPECT_STREQ(r.first_problem, "");
}

// A live check while others write: blocks are freed and reused by other
// keys, and keys are deleted and re-inserted into the other bucket of their
// pair, between the moments the checker reads two slots. None of that is a
// violation, and none may be reported.
TEST_F(CheckTest, LiveCheckUnderConcurrentWritesReportsNothing) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      uint64_t x = 0x9E3779B97F4A7C15ull * (t + 1);
      while (!stop.load(std::memory_order_relaxed)) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const std::string k = "key:" + std::to_string(x % 500), v(x % 200, 'w');
        if (x % 3 == 0) {
          shmkv_delete(kv_, k.data(), k.size(), 0);
        } else {
          shmkv_set(kv_, k.data(), k.size(), v.data(), v.size(), 0);
        }
      }
    });
  }
  uint64_t problems = 0;
  std::string first;
  for (int round = 0; round < 200 && problems == 0; ++round) {
    const shmkv_check_report_t r = Check(kv_, 0);
    problems += r.problems;
    first = r.first_problem;
  }
  stop = true;
  for (auto& w : writers) w.join();
  EXPECT_EQ(problems, 0u) << first;
  EXPECT_EQ(Check(kv_, SHMKV_CHECK_OFFLINE).problems, 0u);
}

TEST_F(CheckTest, SlotPointingOutsideTheDataAreaIsReported) {
  internal::Slot* s = FirstLive();
  ASSERT_NE(s, nullptr);
  s->ref |= internal::ref::kOffMask;  // offset far beyond the segment
  const shmkv_check_report_t r = Check(kv_, 0);
  EXPECT_GT(r.problems, 0u);
  EXPECT_NE(std::string(r.first_problem).find("outside the data area"), std::string::npos)
      << r.first_problem;
}

TEST_F(CheckTest, TwoSlotsSharingABlockAreReported) {
  internal::Slot* a = FirstLive();
  ASSERT_NE(a, nullptr);
  // Copy the link into an empty slot of the same bucket pair's first bucket.
  internal::Bucket* b =
      reinterpret_cast<internal::Bucket*>(reinterpret_cast<uintptr_t>(a) & ~63ull);
  internal::Slot* empty = nullptr;
  for (auto& s : b->slot)
    if (internal::ref::State(s.ref) == internal::kEmpty) empty = &s;
  if (empty == nullptr) GTEST_SKIP() << "bucket full";
  empty->ref = a->ref;
  empty->meta = a->meta;
  const shmkv_check_report_t r = Check(kv_, 0);
  EXPECT_GE(r.problems, 2u);  // referenced twice, and a second LIVE entry for one key
}

TEST_F(CheckTest, LeakedBlockIsReportedOffline) {
  // Unlink a slot behind the library's back: its block stays LINKED.
  internal::Slot* s = FirstLive();
  ASSERT_NE(s, nullptr);
  s->ref = 0;
  EXPECT_EQ(Check(kv_, 0).problems, 0u);  // live check: could be an unlink in flight
  const shmkv_check_report_t r = Check(kv_, SHMKV_CHECK_OFFLINE);
  EXPECT_GE(r.leaked_blocks, 1u);
  EXPECT_GT(r.problems, 0u);
}

TEST_F(CheckTest, CorruptedLengthsAndStatesNeverCrash) {
  // Scribble over every block header of the first used page (the words
  // after the state: the cas or counter mark, the lengths, kx, and what a
  // counter keeps further on).
  const internal::View& v = kv_->v;
  for (uint64_t p = 0; p < v.n_pages; ++p) {
    const uint64_t cls1 = internal::pword::Cls1(v.ptab[p]);
    if (cls1 == 0) continue;
    unsigned char* page = v.data + (p << v.page_shift);
    const uint64_t size = v.class_size[cls1 - 1];
    for (uint64_t off = 0; off + size <= v.page_size; off += size)
      std::memset(page + off + 8, 0xff, 40);
    break;
  }
  const shmkv_check_report_t r = Check(kv_, SHMKV_CHECK_OFFLINE);
  EXPECT_GT(r.problems, 0u);
  char buf[512];
  size_t n;
  for (int i = 0; i < 500; ++i) {  // reads stay memory-safe too
    const std::string k = "key:" + std::to_string(i);
    const int rc = shmkv_get(kv_, k.data(), k.size(), buf, sizeof(buf), &n, nullptr);
    EXPECT_TRUE(rc == 0 || rc == SHMKV_ENOTFOUND) << rc;
  }
}

TEST_F(CheckTest, JanitorIsExclusivePerSegment) {
  std::unique_ptr<Janitor> j1, j2;
  std::string why;
  ASSERT_EQ(Janitor::Acquire(kv_, JanitorOptions{}, &j1, &why), 0) << why;
  shmkv_t* other = nullptr;
  ASSERT_EQ(shmkv_open(seg_.c_str(), nullptr, &other), 0);
  EXPECT_EQ(Janitor::Acquire(other, JanitorOptions{}, &j2, &why), SHMKV_EBUSY);
  EXPECT_NE(why.find("already has a janitor (pid " + std::to_string(getpid()) + ")"),
            std::string::npos)
      << why;
  j1.reset();  // gives the lock back
  EXPECT_EQ(Janitor::Acquire(other, JanitorOptions{}, &j2, &why), 0) << why;
  j2.reset();
  shmkv_close(other);
}

TEST_F(CheckTest, JanitorSweepReclaimsExpiredEntriesWithinOnePass) {
  shmkv::testing::SetFakeNowMs(10'000);
  for (int i = 0; i < 200; ++i) {
    const std::string k = "ttl:" + std::to_string(i);
    ASSERT_EQ(shmkv_set(kv_, k.data(), k.size(), "x", 1, 1000), 0);
  }
  shmkv_stats_t before{};
  before.struct_size = sizeof(before);
  shmkv_stats(kv_, &before);
  shmkv::testing::SetFakeNowMs(12'500);
  std::unique_ptr<Janitor> j;
  std::string why;
  JanitorOptions o;
  o.interval = std::chrono::milliseconds(100);
  o.sweep_period = std::chrono::milliseconds(1000);  // ten ticks a pass
  ASSERT_EQ(Janitor::Acquire(kv_, o, &j, &why), 0) << why;
  uint64_t expired = 0;
  bool pass = false;
  for (int t = 0; t < 10; ++t) {
    TickReport r;
    ASSERT_EQ(j->Tick(&r), 0);
    expired += r.expired;
    pass |= r.pass_completed;
  }
  EXPECT_TRUE(pass);
  EXPECT_EQ(expired, 200u);
  shmkv_stats_t after{};
  after.struct_size = sizeof(after);
  shmkv_stats(kv_, &after);
  EXPECT_EQ(after.items, before.items - 200);
  EXPECT_LT(after.memory_used, before.memory_used);
  EXPECT_EQ(Check(kv_, SHMKV_CHECK_OFFLINE).problems, 0u);
}

TEST_F(CheckTest, JanitorRecoversADeadProcess) {
  const pid_t pid = fork();
  if (pid == 0) {
    shmkv_t* kv = nullptr;
    if (shmkv_open(seg_.c_str(), nullptr, &kv) != 0) _exit(1);
    for (int i = 0; i < 50; ++i) {
      const std::string k = "child:" + std::to_string(i);
      shmkv_set(kv, k.data(), k.size(), "c", 1, 0);
    }
    _exit(0);  // without closing: looks like a crash
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  std::unique_ptr<Janitor> j;
  std::string why;
  ASSERT_EQ(Janitor::Acquire(kv_, JanitorOptions{}, &j, &why), 0) << why;
  TickReport r;
  ASSERT_EQ(j->Tick(&r), 0);
  EXPECT_EQ(r.recovered_processes, 1u);
  j.reset();
  EXPECT_EQ(Check(kv_, SHMKV_CHECK_OFFLINE).problems, 0u);
}

TEST_F(CheckTest, InfoDescribesTheSegment) {
  shmkv_info_t info{};
  info.struct_size = sizeof(info);
  ASSERT_EQ(shmkv_info(kv_, &info), 0) << shmkv_last_error();
  EXPECT_EQ(info.memory_bytes, 4u << 20);
  EXPECT_EQ(info.layout_version, internal::kLayoutVersion);
  EXPECT_EQ(info.index_slots, kv_->v.n_buckets * 4);
  EXPECT_GT(info.data_bytes, 2u << 20);
  EXPECT_EQ(info.data_bytes % info.page_size, 0u);
  EXPECT_EQ(info.mode, 0600u);
  EXPECT_EQ(info.creator_pid, static_cast<uint32_t>(getpid()));
  EXPECT_EQ(info.attached_processes, 1u);
  EXPECT_EQ(info.janitor_pid, 0u);
  EXPECT_EQ(info.superseded, 0);
  // Whatever pages back /dev/shm here, info reports what smaps says of them.
  EXPECT_EQ(info.huge_page_bytes, internal::MappedHugeBytes(kv_->v.base, info.memory_bytes));
  EXPECT_EQ(std::strlen(info.boot_id), 36u);
  EXPECT_GE(info.max_value_len, 1u << 19);  // a quarter of ~3.5 MiB of data
}

TEST_F(CheckTest, ProcessesListsTheLiveAndTheDead) {
  int go[2], done[2];
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(done), 0);
  const pid_t child = fork();
  if (child == 0) {
    shmkv_t* kv = nullptr;
    if (shmkv_open(seg_.c_str(), nullptr, &kv) != 0) _exit(1);
    char c = 'r';
    if (write(done[1], &c, 1) != 1) _exit(2);  // registered
    if (read(go[0], &c, 1) != 1) _exit(3);     // wait for the parent's look
    _exit(0);                                  // dies attached
  }
  char c;
  ASSERT_EQ(read(done[0], &c, 1), 1);
  shmkv_process_info_t procs[8];
  size_t n = 0;
  ASSERT_EQ(shmkv_processes(kv_, procs, 8, &n), 0);
  ASSERT_EQ(n, 2u);
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(procs[i].alive, 1) << procs[i].pid;
  ASSERT_EQ(write(go[1], "g", 1), 1);
  int st = 0;
  ASSERT_EQ(waitpid(child, &st, 0), child);
  ASSERT_EQ(shmkv_processes(kv_, procs, 8, &n), 0);
  ASSERT_EQ(n, 2u);  // still listed until recovered, but dead
  int dead = 0;
  for (size_t i = 0; i < n; ++i) dead += procs[i].alive == 0 && procs[i].pid == uint32_t(child);
  EXPECT_EQ(dead, 1);
  uint32_t recovered = 0;
  ASSERT_EQ(shmkv_recover(kv_, &recovered), 0);
  EXPECT_EQ(recovered, 1u);
  ASSERT_EQ(shmkv_processes(kv_, procs, 8, &n), 0);
  EXPECT_EQ(n, 1u);
  for (int fd : {go[0], go[1], done[0], done[1]}) close(fd);
}

}  // namespace
}  // namespace shmkv
