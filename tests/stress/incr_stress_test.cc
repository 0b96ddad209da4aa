// Property: incr loses no increment across processes. 4 forked processes
// x 50k incr(+1) on one key end at exactly the total, and the values the
// calls return are all distinct (together they are exactly 1..total);
// each process sees its own results strictly increase. When processes
// race to create fresh counters, exactly one creation wins per key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "stress/stress_util.h"

namespace shmkv::stress {
namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;

constexpr int kProcs = 4;

TEST(IncrStressTest, NoIncrementIsLostAndEveryResultIsUnique) {
  Watchdog dog(120, "IncrStressTest.NoIncrementIsLostAndEveryResultIsUnique");
  ScopedSegmentName seg("incr");
  shmkv_options_t opts = SmallOptions();
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  const uint64_t per_proc = StressScale(50'000);
  SharedRegion shared(sizeof(int64_t) * per_proc * kProcs + sizeof(int64_t) * kProcs);
  int64_t* results = shared.as<int64_t>();
  int64_t* errors = results + per_proc * kProcs;
  const std::string key = "hot-counter";
  StartGate gate;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcs; ++p) {
    pids.push_back(ForkChild([&, p] {
      gate.Wait();
      shmkv_t* h = kv;
      if (p % 2 == 0 && OpenSegment(seg.name(), nullptr, &h) != 0) return 2;
      int64_t* mine = results + per_proc * p;
      for (uint64_t i = 0; i < per_proc; ++i) {
        // A missing key is created holding `initial` = 1: that counts as
        // the first increment, so the total stays exact.
        int rc = shmkv_incr(h, key.data(), key.size(), 1, 1, 0, &mine[i]);
        if (rc != 0) {
          errors[p]++;
          std::fprintf(stderr, "incr: %s\n", shmkv_strerror(rc));
          mine[i] = -1;
        }
      }
      if (h != kv) shmkv_close(h);
      return 0;
    }));
  }
  gate.Open();
  for (pid_t pid : pids) {
    int status = WaitChild(pid);
    EXPECT_TRUE(ExitedCleanly(status)) << DescribeStatus(status);
  }
  for (int p = 0; p < kProcs; ++p) EXPECT_EQ(errors[p], 0) << "process " << p;

  const int64_t total = static_cast<int64_t>(per_proc) * kProcs;
  char buf[32];
  size_t len = 0;
  ASSERT_EQ(shmkv_get(kv, key.data(), key.size(), buf, sizeof(buf), &len, nullptr), 0);
  EXPECT_EQ(std::string(buf, len), std::to_string(total));

  for (int p = 0; p < kProcs; ++p) {
    const int64_t* mine = results + per_proc * p;
    for (uint64_t i = 1; i < per_proc; ++i) {
      ASSERT_LT(mine[i - 1], mine[i]) << "process " << p << " saw its counter go back at " << i;
    }
  }
  std::vector<int64_t> all(results, results + per_proc * kProcs);
  std::sort(all.begin(), all.end());
  uint64_t duplicates = 0, out_of_range = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    if (i > 0 && all[i] == all[i - 1]) ++duplicates;
    if (all[i] < 1 || all[i] > total) ++out_of_range;
  }
  EXPECT_EQ(duplicates, 0u) << "two incr calls returned the same value";
  EXPECT_EQ(out_of_range, 0u);
  EXPECT_EQ(all.front(), 1);
  EXPECT_EQ(all.back(), total);
  shmkv_close(kv);
}

TEST(IncrStressTest, RacingCreatesOfFreshCountersApplyEveryIncrementOnce) {
  Watchdog dog(120, "IncrStressTest.RacingCreatesOfFreshCountersApplyEveryIncrementOnce");
  ScopedSegmentName seg("incrcreate");
  const uint64_t keys = StressScale(5'000);
  // Room for every counter (the soak scale makes 100 000): none may be
  // evicted before the final check.
  shmkv_options_t opts =
      SmallOptions(std::max<uint64_t>(16u << 20, keys * 512), std::max<uint64_t>(keys * 3, 1024));
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  SharedRegion shared(sizeof(int64_t) * keys * kProcs + sizeof(int64_t) * kProcs);
  int64_t* results = shared.as<int64_t>();
  int64_t* errors = results + keys * kProcs;
  auto key_name = [](uint64_t k) { return "fresh-counter-" + std::to_string(k); };
  StartGate gate;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcs; ++p) {
    pids.push_back(ForkChild([&, p] {
      gate.Wait();
      shmkv_t* h = kv;
      if (p % 2 == 1 && OpenSegment(seg.name(), nullptr, &h) != 0) return 2;
      for (uint64_t k = 0; k < keys; ++k) {
        std::string key = key_name(k);
        // initial 100, delta 1: the creator gets 100, the others 101..103.
        int rc = shmkv_incr(h, key.data(), key.size(), 1, 100, 0, &results[k * kProcs + p]);
        if (rc != 0) {
          errors[p]++;
          std::fprintf(stderr, "incr: %s\n", shmkv_strerror(rc));
        }
      }
      if (h != kv) shmkv_close(h);
      return 0;
    }));
  }
  gate.Open();
  for (pid_t pid : pids) {
    int status = WaitChild(pid);
    EXPECT_TRUE(ExitedCleanly(status)) << DescribeStatus(status);
  }
  for (int p = 0; p < kProcs; ++p) EXPECT_EQ(errors[p], 0) << "process " << p;
  uint64_t bad = 0;
  for (uint64_t k = 0; k < keys; ++k) {
    std::vector<int64_t> got(results + k * kProcs, results + (k + 1) * kProcs);
    std::sort(got.begin(), got.end());
    std::string value(32, '\0');
    size_t len = 0;
    std::string key = key_name(k);
    int rc = shmkv_get(kv, key.data(), key.size(), value.data(), value.size(), &len, nullptr);
    value.resize(rc == 0 ? len : 0);
    if (got != std::vector<int64_t>{100, 101, 102, 103} || value != "103") {
      if (++bad <= 5) {
        ADD_FAILURE() << key << ": results " << got[0] << "," << got[1] << "," << got[2] << ","
                      << got[3] << "; final value \"" << value << "\" (rc " << rc << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0u) << "keys whose racing creation lost or duplicated an increment";
  shmkv_close(kv);
}

}  // namespace
}  // namespace shmkv::stress
