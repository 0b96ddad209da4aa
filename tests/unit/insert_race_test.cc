// Interleavings of the insert protocol (design-notes §4.4) replayed step by
// step: threads are paused at named crash or step points (SetStepHook), so
// a race that a stress test meets once in thousands of rounds happens here
// every time.
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "handle.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"
#include "table.h"
#include "testing.h"

namespace shmkv {
namespace {

using test::ScopedSegmentName;
using test::SmallOptions;

// One pause: the thread that reaches the point waits there until released.
class Pause {
 public:
  void Arrive() {
    std::unique_lock<std::mutex> l(mu_);
    reached_ = true;
    cv_.notify_all();
    cv_.wait(l, [this] { return released_; });
  }
  void AwaitArrival() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [this] { return reached_; });
  }
  void Release() {
    std::lock_guard<std::mutex> l(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool reached_ = false, released_ = false;
};

// Each thread pauses at most once: at the first time it reaches t_point.
thread_local const char* t_point = nullptr;
thread_local Pause* t_pause = nullptr;

void PauseHook(const char* point) {
  if (t_point == nullptr || std::strcmp(point, t_point) != 0) return;
  t_point = nullptr;
  t_pause->Arrive();
}

class InsertRaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shmkv_options_t o = SmallOptions(8u << 20);
    ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &kv_), 0) << shmkv_last_error();
    shmkv::testing::SetStepHook(PauseHook);
  }
  void TearDown() override {
    shmkv::testing::SetStepHook(nullptr);
    shmkv_close(kv_);
  }

  int Set(std::string_view key, std::string_view val) {
    return shmkv_store(kv_, key.data(), key.size(), val.data(), val.size(), nullptr, nullptr);
  }
  std::string Get(std::string_view key) {
    char buf[64];
    size_t len = 0;
    const int rc = shmkv_get(kv_, key.data(), key.size(), buf, sizeof(buf), &len, nullptr);
    if (rc != 0) return "<" + std::to_string(rc) + ">";
    return std::string(buf, len);
  }
  void Buckets(std::string_view key, uint64_t b[2]) {
    const internal::KeyHash h = internal::HashKey(kv_->v, key.data(), key.size());
    internal::BucketsOf(kv_->v, h, &b[0], &b[1]);
  }
  // Runs `set(key, val)` on a new thread that pauses at `point`; returns
  // once it is there.
  std::thread SetPausedAt(std::string key, std::string val, const char* point, Pause* p, int* rc) {
    std::thread t([this, key, val, point, p, rc] {
      t_point = point;
      t_pause = p;
      *rc = Set(key, val);
    });
    p->AwaitArrival();
    return t;
  }

  ScopedSegmentName seg_{"insrace"};
  shmkv_t* kv_ = nullptr;
};

// A higher claim is not always a later one: claims go to the less loaded
// bucket, and a slot below can empty after a claim was made higher up. Here
// L1 claims in K's second bucket (its first holds X), decides for itself and
// stops before its link; X is deleted; L2 claims below L1, loads L1's state
// (ALLOC) to kill it, and stops; L1 links and promotes its claim; L2's kill
// fails. L2 must see that L1 won and update L1's entry, not link its own
// claim as a second LIVE entry of K (Invariant 2).
TEST_F(InsertRaceTest, AClaimLinkedWhileALowerDeciderKillsItWins) {
  const std::string k = "race-key";
  uint64_t kb[2];
  Buckets(k, kb);
  // X: a key whose first bucket is K's first, so that it lands there.
  std::string x;
  for (int i = 0; x.empty(); ++i) {
    ASSERT_LT(i, 10'000'000) << "no key shares a bucket with " << k;
    const std::string cand = "x" + std::to_string(i);
    uint64_t xb[2];
    Buckets(cand, xb);
    if (xb[0] == kb[0] && xb[1] != kb[1]) x = cand;
  }
  ASSERT_EQ(Set(x, "other"), 0);

  Pause p1, p2;
  int rc1 = -1, rc2 = -1;
  std::thread l1 = SetPausedAt(k, "v1", "insert.killed", &p1, &rc1);  // decided, not linked
  ASSERT_EQ(shmkv_delete(kv_, x.data(), x.size(), 0), 0);             // K's first bucket empties
  std::thread l2 = SetPausedAt(k, "v2", "insert.kill_loaded", &p2, &rc2);
  p1.Release();  // L1 links and promotes its claim
  l1.join();
  ASSERT_EQ(rc1, 0);
  p2.Release();  // L2's kill CAS fails on L1's LINKED state
  l2.join();
  ASSERT_EQ(rc2, 0);

  std::string why;
  EXPECT_EQ(shmkv::testing::LiveCopies(kv_, k.data(), k.size(), &why), 1) << why;
  EXPECT_EQ(Get(k), "v2");  // L2 came last: it updated L1's entry
  ASSERT_EQ(shmkv_delete(kv_, k.data(), k.size(), 0), 0);
  EXPECT_EQ(Get(k), "<" + std::to_string(SHMKV_ENOTFOUND) + ">") << "a second entry of K";
  shmkv_check_report_t report{};
  report.struct_size = sizeof(report);
  ASSERT_EQ(shmkv_check(kv_, 0, &report), 0) << shmkv_last_error();
  EXPECT_EQ(report.problems, 0u) << report.first_problem;
}

// An insert that found its bucket pair full, and stopped there while
// another writer emptied the pair, finds the pair empty when it goes on to
// choose a victim: it must take an empty slot, not report that nothing may
// be evicted (ENOSPC). Seen in sigstop_test: a writer SIGSTOPped at this
// point while the parent deleted every key of the pair.
TEST_F(InsertRaceTest, AnInsertThatFoundThePairFullAndThenEmptyInsertsAnyway) {
  // A segment of 16 buckets: 8 keys with K's very bucket pair are easy to find.
  shmkv_close(kv_);
  ScopedSegmentName seg("insrace-full");
  shmkv_options_t o = SmallOptions(8u << 20, 16);
  ASSERT_EQ(shmkv_open(seg.c_str(), &o, &kv_), 0) << shmkv_last_error();
  ASSERT_EQ(kv_->v.n_buckets, 16u);
  const std::string k = "full-key";
  uint64_t kb[2];
  Buckets(k, kb);
  std::vector<std::string> fill;
  for (int i = 0; fill.size() < 8; ++i) {
    ASSERT_LT(i, 1'000'000) << "no 8 keys share the bucket pair of " << k;
    const std::string cand = "f" + std::to_string(i);
    uint64_t b[2];
    Buckets(cand, b);
    if (std::min(b[0], b[1]) == std::min(kb[0], kb[1]) &&
        std::max(b[0], b[1]) == std::max(kb[0], kb[1]))
      fill.push_back(cand);
  }
  for (const std::string& f : fill) ASSERT_EQ(Set(f, "fill"), 0) << f;
  for (const std::string& f : fill) ASSERT_EQ(Get(f), "fill") << f << " was evicted";

  Pause p;
  int rc = -1;
  std::thread t = SetPausedAt(k, "v", "insert.full_seen", &p, &rc);
  // EXPECT, not ASSERT: the paused writer must be released in any case.
  for (const std::string& f : fill) EXPECT_EQ(shmkv_delete(kv_, f.data(), f.size(), 0), 0) << f;
  p.Release();
  t.join();
  EXPECT_EQ(rc, 0) << shmkv_strerror(rc);
  EXPECT_EQ(Get(k), "v");
  shmkv_check_report_t report{};
  report.struct_size = sizeof(report);
  ASSERT_EQ(shmkv_check(kv_, 0, &report), 0) << shmkv_last_error();
  EXPECT_EQ(report.problems, 0u) << report.first_problem;
}

}  // namespace
}  // namespace shmkv
