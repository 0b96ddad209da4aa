// Property: the cross-process guarantees hold between threads of one
// process too, whether they share one handle or each opens its own:
// per-key linearizability, no lost increment, no torn/foreign/unwritten
// value, and no leaked block or slot after heavy insert/delete churn.
// No fork, so that ThreadSanitizer can watch it (label "tsan").
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "stress/linearizability.h"
#include "stress/stress_util.h"
#include "testing.h"

namespace shmkv::stress {
namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;

constexpr int kThreads = 4;

// Threads [0, kThreads/2) share `shared`; the others open their own.
class Handles {
 public:
  Handles(const ScopedSegmentName& seg, shmkv_t* shared) {
    for (int t = 0; t < kThreads; ++t) {
      shmkv_t* h = shared;
      if (t >= kThreads / 2) {
        EXPECT_EQ(shmkv_open(seg.c_str(), nullptr, &h), 0) << shmkv_last_error();
        own_.push_back(h);
      }
      handles_.push_back(h);
    }
  }
  ~Handles() {
    for (shmkv_t* h : own_) shmkv_close(h);
  }
  shmkv_t* operator[](int t) const { return handles_[t]; }

 private:
  std::vector<shmkv_t*> handles_;
  std::vector<shmkv_t*> own_;
};

// Starts every thread at once, without sleeping.
class Latch {
 public:
  explicit Latch(int n) : left_(n) {}
  void ArriveAndWait() {
    left_.fetch_sub(1, std::memory_order_acq_rel);
    while (left_.load(std::memory_order_acquire) > 0) std::this_thread::yield();
  }

 private:
  std::atomic<int> left_;
};

TEST(ThreadsTest, HistoriesAreLinearizable) {
  ScopedSegmentName seg("thlin");
  shmkv_options_t opts = SmallOptions(16u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  {
    Handles handles(seg, kv);
    const int keys = 5;
    const int64_t duration = static_cast<int64_t>(StressSeconds(1.0) * 1e9);
    const size_t cap = 40'000;
    std::vector<std::vector<Operation>> histories(kThreads);
    std::atomic<uint64_t> unexpected{0};
    Latch latch(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        shmkv_t* h = handles[t];
        std::mt19937_64 rng(static_cast<uint64_t>(t) * 7777 + 1);
        std::vector<Operation>& hist = histories[t];
        hist.reserve(cap);
        std::string buf(256, '\0');
        uint32_t seq = 0;
        latch.ArriveAndWait();
        const int64_t deadline = NowNs() + duration;
        while (hist.size() < cap && NowNs() < deadline) {
          Operation op;
          op.process = t;
          op.key = "th-key-" + std::to_string(rng() % keys);
          unsigned dice = static_cast<unsigned>(rng() % 100);
          op.kind = dice < 35   ? OpKind::kGet
                    : dice < 55 ? OpKind::kSet
                    : dice < 63 ? OpKind::kAdd
                    : dice < 71 ? OpKind::kReplace
                    : dice < 83 ? OpKind::kDelete
                                : OpKind::kIncr;
          if (rng() % 3 == 0) {
            op.value = std::to_string((t + 1) * 1'000'000'000LL + (++seq) * 1000LL);
          } else {
            MakeValue(static_cast<uint32_t>(t), ++seq, kMinGenLen + rng() % 40, &op.value);
          }
          op.delta = 1;
          op.initial = static_cast<int64_t>(rng() % 100);
          int rc = 0;
          op.call_ns = NowNs();
          switch (op.kind) {
            case OpKind::kGet: {
              size_t len = 0;
              rc =
                  shmkv_get(h, op.key.data(), op.key.size(), buf.data(), buf.size(), &len, nullptr);
              if (rc == 0) op.result.assign(buf.data(), len);
              op.outcome = rc == 0 ? Outcome::kOk : Outcome::kNotFound;
              if (rc != 0 && rc != SHMKV_ENOTFOUND) unexpected++;
              break;
            }
            case OpKind::kSet:
            case OpKind::kAdd:
            case OpKind::kReplace: {
              shmkv_write_opts_t o;
              shmkv_write_opts_init(&o);
              o.mode = op.kind == OpKind::kSet   ? SHMKV_SET
                       : op.kind == OpKind::kAdd ? SHMKV_ADD
                                                 : SHMKV_REPLACE;
              rc = shmkv_store(h, op.key.data(), op.key.size(), op.value.data(), op.value.size(),
                               &o, nullptr);
              op.outcome = rc == 0                 ? Outcome::kOk
                           : rc == SHMKV_EEXIST    ? Outcome::kExists
                           : rc == SHMKV_ENOTFOUND ? Outcome::kNotFound
                                                   : (unexpected++, Outcome::kOk);
              break;
            }
            case OpKind::kDelete:
              rc = shmkv_delete(h, op.key.data(), op.key.size(), 0);
              op.outcome = rc == 0                 ? Outcome::kOk
                           : rc == SHMKV_ENOTFOUND ? Outcome::kNotFound
                                                   : (unexpected++, Outcome::kOk);
              break;
            case OpKind::kIncr:
              rc = shmkv_incr(h, op.key.data(), op.key.size(), op.delta, op.initial, 0, &op.number);
              op.outcome = rc == 0                 ? Outcome::kOk
                           : rc == SHMKV_ENOTNUM   ? Outcome::kNotNum
                           : rc == SHMKV_EOVERFLOW ? Outcome::kOverflow
                                                   : (unexpected++, Outcome::kOk);
              break;
          }
          op.return_ns = NowNs();
          hist.push_back(std::move(op));
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(unexpected.load(), 0u);
    std::vector<Operation> all;
    for (auto& h : histories) all.insert(all.end(), h.begin(), h.end());
    CheckResult r = CheckHistory(all);
    EXPECT_TRUE(r.ok) << r.explanation;
    EXPECT_GT(all.size(), 1000u);
    std::printf("%zu ops on %llu keys checked\n", all.size(),
                static_cast<unsigned long long>(r.keys_checked));
  }
  shmkv_close(kv);
}

TEST(ThreadsTest, NoIncrementIsLost) {
  ScopedSegmentName seg("thincr");
  shmkv_options_t opts = SmallOptions();
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  {
    Handles handles(seg, kv);
    const uint64_t per_thread = StressScale(20'000);
    std::vector<std::vector<int64_t>> results(kThreads);
    std::atomic<uint64_t> errors{0};
    Latch latch(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        results[t].resize(per_thread);
        latch.ArriveAndWait();
        for (uint64_t i = 0; i < per_thread; ++i) {
          if (shmkv_incr(handles[t], "ctr", 3, 1, 1, 0, &results[t][i]) != 0) errors++;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(errors.load(), 0u);
    const int64_t total = static_cast<int64_t>(per_thread * kThreads);
    char buf[32];
    size_t len = 0;
    ASSERT_EQ(shmkv_get(kv, "ctr", 3, buf, sizeof(buf), &len, nullptr), 0);
    EXPECT_EQ(std::string(buf, len), std::to_string(total));
    std::vector<int64_t> all;
    for (auto& r : results) {
      EXPECT_TRUE(std::is_sorted(r.begin(), r.end()));
      all.insert(all.end(), r.begin(), r.end());
    }
    std::sort(all.begin(), all.end());
    EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end()) << "duplicate incr result";
    EXPECT_EQ(all.front(), 1);
    EXPECT_EQ(all.back(), total);
  }
  shmkv_close(kv);
}

TEST(ThreadsTest, ReadersNeverSeeTornForeignOrUnwrittenValues) {
  ScopedSegmentName seg("thtorn");
  shmkv_options_t opts = SmallOptions(128u << 20);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  {
    Handles handles(seg, kv);
    constexpr uint32_t kKeys = 16;
    constexpr int kWriters = 2;
    constexpr uint32_t kMaxSeq = 1u << 20;
    std::vector<std::atomic<uint32_t>> published(kWriters);
    std::vector<std::vector<std::atomic<uint16_t>>> key_of_seq(kWriters);
    for (auto& v : key_of_seq) v = std::vector<std::atomic<uint16_t>>(kMaxSeq);
    std::atomic<uint64_t> hits{0}, bad{0}, errors{0};
    std::atomic<bool> done{false};
    const int64_t duration = static_cast<int64_t>(StressSeconds(1.0) * 1e9);
    Latch latch(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        shmkv_t* h = handles[t];
        std::mt19937_64 rng(static_cast<uint64_t>(t) + 99);
        latch.ArriveAndWait();
        const int64_t deadline = NowNs() + duration;
        if (t % 2 == 0) {  // writer: threads 0 (shared handle) and 2 (own handle)
          const int w = t / 2;
          std::string value;
          for (uint32_t seq = 1; seq < kMaxSeq && NowNs() < deadline; ++seq) {
            uint32_t k = static_cast<uint32_t>(rng() % kKeys);
            key_of_seq[w][seq].store(static_cast<uint16_t>(k), std::memory_order_relaxed);
            published[w].store(seq, std::memory_order_release);
            int bits = static_cast<int>(rng() % 17);
            size_t len = std::min<size_t>(65536, 1 + rng() % (size_t{1} << bits));
            MakeTaggedValue(k, static_cast<uint32_t>(w), seq, len, &value);
            std::string key = "tt-" + std::to_string(k);
            if (shmkv_set(h, key.data(), key.size(), value.data(), value.size(), 0) != 0) {
              errors++;
            }
          }
          done.store(true);
        } else {  // reader: thread 1 with single gets, thread 3 with mget of every key
          auto check = [&](uint32_t k, std::string_view v) {
            hits++;
            uint32_t writer = 0, seq = 0;
            TaggedCheck c = CheckTaggedValue(v, k, &writer, &seq);
            bool ok = c == TaggedCheck::kTooShortButOk ||
                      (c == TaggedCheck::kOk && writer < kWriters && seq > 0 && seq < kMaxSeq &&
                       seq <= published[writer].load(std::memory_order_acquire) &&
                       key_of_seq[writer][seq].load(std::memory_order_relaxed) == k);
            if (!ok && bad++ == 0) {
              ADD_FAILURE() << "key " << k << ", " << v.size() << " bytes: " << TaggedCheckName(c)
                            << (t == 3 ? " (mget)" : "");
            }
          };
          std::vector<std::string> keys, bufs(kKeys, std::string(65536 + 64, '\0'));
          std::vector<const void*> kp;
          std::vector<size_t> kl, caps(kKeys, 65536 + 64), lens(kKeys);
          std::vector<void*> bp;
          std::vector<int> rcs(kKeys);
          for (uint32_t k = 0; k < kKeys; ++k) keys.push_back("tt-" + std::to_string(k));
          for (uint32_t k = 0; k < kKeys; ++k) {
            kp.push_back(keys[k].data());
            kl.push_back(keys[k].size());
            bp.push_back(bufs[k].data());
          }
          while (NowNs() < deadline) {
            if (t == 3) {
              if (shmkv_mget(h, kKeys, kp.data(), kl.data(), bp.data(), caps.data(), lens.data(),
                             rcs.data(), nullptr) != 0) {
                errors++;
                continue;
              }
              for (uint32_t k = 0; k < kKeys; ++k) {
                if (rcs[k] == 0) check(k, std::string_view(bufs[k].data(), lens[k]));
                if (rcs[k] != 0 && rcs[k] != SHMKV_ENOTFOUND) errors++;
              }
              continue;
            }
            uint32_t k = static_cast<uint32_t>(rng() % kKeys);
            size_t len = 0;
            int rc = shmkv_get(h, keys[k].data(), keys[k].size(), bufs[0].data(), bufs[0].size(),
                               &len, nullptr);
            if (rc == SHMKV_ENOTFOUND) continue;
            if (rc != 0) {
              errors++;
              continue;
            }
            check(k, std::string_view(bufs[0].data(), len));
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(bad.load(), 0u);
    EXPECT_EQ(errors.load(), 0u);
    EXPECT_GT(hits.load(), 100u);
  }
  shmkv_close(kv);
}

TEST(ThreadsTest, InsertDeleteChurnLeavesNoLeak) {
  ScopedSegmentName seg("thchurn");
  shmkv_options_t opts = SmallOptions(8u << 20, 2048);
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(seg.c_str(), &opts, &kv), 0) << shmkv_last_error();
  {
    Handles handles(seg, kv);
    const int64_t duration = static_cast<int64_t>(StressSeconds(1.0) * 1e9);
    std::atomic<uint64_t> errors{0}, busy{0}, ops{0};
    Latch latch(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        shmkv_t* h = handles[t];
        std::mt19937_64 rng(static_cast<uint64_t>(t) * 31 + 5);
        std::string value;
        latch.ArriveAndWait();
        const int64_t deadline = NowNs() + duration;
        uint64_t n = 0;
        while (NowNs() < deadline) {
          std::string key = "churn-" + std::to_string(rng() % 6000);
          int rc = 0;
          switch (rng() % 4) {
            case 0:
              value.assign(1 + rng() % 2000, 'c');
              rc = shmkv_set(h, key.data(), key.size(), value.data(), value.size(), 0);
              break;
            case 1: {
              shmkv_write_opts_t o;
              shmkv_write_opts_init(&o);
              o.mode = SHMKV_ADD;
              rc = shmkv_store(h, key.data(), key.size(), "a", 1, &o, nullptr);
              if (rc == SHMKV_EEXIST) rc = 0;
              break;
            }
            case 2:
              rc = shmkv_incr(h, key.data(), key.size(), 1, 0, 0, nullptr);
              if (rc == SHMKV_ENOTNUM) rc = 0;
              break;
            case 3:
              rc = shmkv_delete(h, key.data(), key.size(), 0);
              if (rc == SHMKV_ENOTFOUND) rc = 0;
              break;
          }
          if (rc == SHMKV_EBUSY) {
            busy++;
          } else if (rc != 0) {
            errors++;
          }
          ++n;
        }
        ops += n;
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(errors.load(), 0u);
    std::printf("%llu ops, %llu EBUSY\n", static_cast<unsigned long long>(ops.load()),
                static_cast<unsigned long long>(busy.load()));
    internal::Census c;
    ASSERT_EQ(internal::TakeCensus(kv, &c), 0);
    test::ExpectCleanCensus(c);
  }
  shmkv_close(kv);
}

}  // namespace
}  // namespace shmkv::stress
