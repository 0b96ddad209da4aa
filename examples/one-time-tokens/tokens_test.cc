// One-time tokens (tokens.h) with real processes: every token is redeemed
// exactly once however many processes race for it, an expired or replayed
// token is refused, and ADD refuses an id that is live.
#include "tokens.h"

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <new>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "shmkv/cache.h"
#include "support/run_program.h"
#include "support/test_segment.h"
#include "testing.h"

namespace {

using namespace std::chrono_literals;
using one_time_tokens::TokenStore;
using shmkv::test::ScopedSegmentName;

class TokensTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shmkv::Options options;
    options.memory_bytes = 8ull << 20;
    options.create = true;
    options.exclusive = true;
    auto cache = shmkv::Cache::Open(seg_.name(), options);
    ASSERT_TRUE(cache) << cache.error().message() << " " << shmkv_last_error();
    cache_.emplace(std::move(cache).value());
  }
  void TearDown() override { shmkv::testing::SetFakeNowMs(-1); }

  shmkv::Cache& cache() { return *cache_; }

  ScopedSegmentName seg_{"tokens"};
  std::optional<shmkv::Cache> cache_;
};

// Forked processes still running when a test ends (a failed assertion)
// are killed, so that none is left waiting at a barrier.
class Children {
 public:
  Children() = default;
  Children(const Children&) = delete;
  Children& operator=(const Children&) = delete;
  ~Children() {
    for (const pid_t pid : pids_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  void Add(pid_t pid) { pids_.push_back(pid); }
  // Waits for the oldest child still running; returns its wait status.
  int WaitOldest() {
    int status = -1;
    while (waitpid(pids_.front(), &status, 0) < 0 && errno == EINTR) {
    }
    pids_.erase(pids_.begin());
    return status;
  }

 private:
  std::vector<pid_t> pids_;
};

// Counters in anonymous shared memory, mapped before the fork: the
// redeemers' start line and the lockstep barrier.
struct Shared {
  std::atomic<int> arrived{0};
  std::atomic<int> done{0};  // redeem attempts finished, all processes
};
static_assert(std::atomic<int>::is_always_lock_free);  // address-free: works across processes

enum class Pace {
  // Each process goes through the tokens in an order of its own and yields
  // the CPU after each one, as a server does between requests: there are
  // more redeemers than cores, and one that ran alone would take every
  // token within a fraction of its time slice.
  kFree,
  // All go through the tokens in the same order, and none starts on token
  // i before every process is done with token i - 1: all of them want each
  // token at the same moment, between one's get and another's delete.
  kLockstep,
};

// Waits (spinning, the CPU yielded) until *counter >= target; false after
// 10 s (a redeemer died).
bool SpinUntil(const std::atomic<int>& counter, int target) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  // Relaxed: the counters only pace the race; the tokens were published
  // before the fork and each redeem is atomic on its own.
  while (counter.load(std::memory_order_relaxed) < target) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    sched_yield();
  }
  return true;
}

// A forked redeemer: its own handle, opened by name, then the start line
// shared by all `redeemers`. It tries to redeem every token in `ids` once,
// at `pace`, and writes one line per token it redeemed, "INDEX GRANT", then
// "lost N" (tokens it saw live but another process deleted first), to
// `out_fd`. Exit status 0, or 2 with "error ..." written on any failure.
[[noreturn]] void RedeemAll(const std::string& segment, const std::vector<std::string>& ids,
                            Pace pace, unsigned seed, Shared* shared, int redeemers, int out_fd) {
  std::vector<size_t> order(ids.size());
  std::iota(order.begin(), order.end(), size_t{0});
  if (pace == Pace::kFree) std::shuffle(order.begin(), order.end(), std::mt19937(seed));
  std::string out;
  int rc = 0;
  {
    auto cache = shmkv::Cache::Open(segment);
    shared->arrived.fetch_add(1, std::memory_order_relaxed);
    if (!cache) {
      out = "error open " + cache.error().message() + "\n";
      rc = 2;
    } else if (!SpinUntil(shared->arrived, redeemers)) {
      out = "error not every redeemer started\n";
      rc = 2;
    } else {
      TokenStore tokens(&*cache);
      int lost = 0;
      for (size_t k = 0; k < order.size() && rc == 0; ++k) {
        if (pace == Pace::kLockstep && !SpinUntil(shared->done, static_cast<int>(k) * redeemers)) {
          out += "error a redeemer is missing at token " + std::to_string(k) + "\n";
          rc = 2;
          break;
        }
        const size_t i = order[k];
        bool lost_race = false;
        auto grant = tokens.Redeem(ids[i], &lost_race);
        if (grant) {
          out += std::to_string(i) + " " + *grant + "\n";
        } else if (!grant.IsNotFound()) {
          out += "error redeem " + grant.error().message() + "\n";
          rc = 2;
        }
        lost += lost_race;
        shared->done.fetch_add(1, std::memory_order_relaxed);
        if (pace == Pace::kFree) sched_yield();
      }
      out += "lost " + std::to_string(lost) + "\n";
    }
  }
  for (size_t off = 0; off < out.size();) {
    const ssize_t w = write(out_fd, out.data() + off, out.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) _exit(3);
    off += static_cast<size_t>(w);
  }
  _exit(rc);
}

class ConcurrentRedeemTest : public TokensTest {
 protected:
  // Issues `tokens_count` tokens, has `processes` forked processes redeem
  // all of them at `pace`, and checks that each was redeemed exactly once,
  // with its own grant, and is gone.
  void RedeemConcurrently(int tokens_count, int processes, Pace pace) {
    TokenStore tokens(&cache());
    std::vector<std::string> ids;
    for (int i = 0; i < tokens_count; ++i) {
      auto id = tokens.Issue("grant-" + std::to_string(i), 1min);
      ASSERT_TRUE(id) << id.error().message();
      ids.push_back(*id);
    }
    void* mem =
        mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem, MAP_FAILED) << std::strerror(errno);
    std::unique_ptr<void, std::function<void(void*)>> unmap(
        mem, [](void* p) { munmap(p, sizeof(Shared)); });
    auto* shared = new (mem) Shared;

    Children children;
    std::vector<pollfd> pfds;
    for (int p = 0; p < processes; ++p) {
      int out[2];
      ASSERT_EQ(pipe(out), 0) << std::strerror(errno);
      const pid_t pid = fork();
      ASSERT_GE(pid, 0) << std::strerror(errno);
      if (pid == 0) {
        close(out[0]);
        RedeemAll(seg_.name(), ids, pace, static_cast<unsigned>(p), shared, processes, out[1]);
      }
      close(out[1]);
      children.Add(pid);
      pfds.push_back({out[0], POLLIN, 0});
    }
    std::vector<std::string> outputs(processes);
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    for (int open_fds = processes; open_fds > 0;) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "redeemers did not finish";
      if (poll(pfds.data(), pfds.size(), 1000) < 0 && errno != EINTR) {
        FAIL() << std::strerror(errno);
      }
      for (int p = 0; p < processes; ++p) {
        if (pfds[p].fd < 0 || pfds[p].revents == 0) continue;
        char buf[4096];
        const ssize_t n = read(pfds[p].fd, buf, sizeof(buf));
        if (n > 0) {
          outputs[p].append(buf, static_cast<size_t>(n));
        } else if (n == 0 || errno != EINTR) {
          close(pfds[p].fd);
          pfds[p].fd = -1;
          --open_fds;
        }
      }
    }
    for (int p = 0; p < processes; ++p) {
      const int status = children.WaitOldest();
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
          << "redeemer " << p << " status " << status << ": " << outputs[p];
    }

    std::vector<int> times_redeemed(tokens_count, 0);
    std::vector<int> per_process(processes, 0);
    int lost_races = 0;
    for (int p = 0; p < processes; ++p) {
      std::istringstream in(outputs[p]);
      std::string first;
      bool finished = false;
      while (in >> first) {
        std::string second;
        ASSERT_TRUE(in >> second) << outputs[p];
        if (first == "lost") {
          lost_races += std::stoi(second);
          finished = true;
          continue;
        }
        const int i = std::stoi(first);
        ASSERT_GE(i, 0);
        ASSERT_LT(i, tokens_count);
        // The grant returned is the one of the token deleted.
        EXPECT_EQ(second, "grant-" + std::to_string(i));
        ++times_redeemed[i];
        ++per_process[p];
      }
      EXPECT_TRUE(finished) << "redeemer " << p << " did not report: " << outputs[p];
    }
    int redeemed = 0;
    for (int i = 0; i < tokens_count; ++i) {
      EXPECT_EQ(times_redeemed[i], 1) << "token " << i;
      redeemed += times_redeemed[i];
      EXPECT_TRUE(cache().Get(TokenStore::Key(ids[i])).IsNotFound()) << "token " << i;
    }
    EXPECT_EQ(redeemed, tokens_count);
    std::string split;
    for (int n : per_process) split += " " + std::to_string(n);
    std::cout << tokens_count << " tokens, " << processes << " processes"
              << (pace == Pace::kLockstep ? " in lockstep" : "")
              << ": redeemed per process:" << split << "; " << lost_races
              << " redemptions saw the token but lost the race\n";
  }
};

TEST_F(ConcurrentRedeemTest, EachTokenIsRedeemedOnce) { RedeemConcurrently(2000, 8, Pace::kFree); }

TEST_F(ConcurrentRedeemTest, EachTokenIsRedeemedOnceWhenAllWantItAtOnce) {
  RedeemConcurrently(2000, 8, Pace::kLockstep);
}

TEST_F(TokensTest, ReplayedTokenIsRefused) {
  TokenStore tokens(&cache());
  auto id = tokens.Issue("reset-password user=alice", 1min);
  ASSERT_TRUE(id) << id.error().message();
  auto first = tokens.Redeem(*id);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(*first, "reset-password user=alice");
  bool lost_race = true;
  EXPECT_TRUE(tokens.Redeem(*id, &lost_race).IsNotFound());
  EXPECT_FALSE(lost_race);
  EXPECT_TRUE(tokens.Redeem("never-issued").IsNotFound());
  EXPECT_TRUE(tokens.Redeem("").IsNotFound());
}

// The testing clock steps over the TTL edge: live 1 ms before it, gone at it.
TEST_F(TokensTest, ExpiredTokenIsNotRedeemable) {
  shmkv_info_t info;
  info.struct_size = sizeof(info);
  ASSERT_EQ(shmkv_info(cache().c_handle(), &info), 0) << shmkv_last_error();
  const int64_t t0 = static_cast<int64_t>(info.clock_ms);
  shmkv::testing::SetFakeNowMs(t0);
  TokenStore tokens(&cache());
  ASSERT_FALSE(tokens.IssueWithId("a", "grant-a", 1000ms));
  ASSERT_FALSE(tokens.IssueWithId("b", "grant-b", 1000ms));

  shmkv::testing::SetFakeNowMs(t0 + 999);
  auto a = tokens.Redeem("a");
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(*a, "grant-a");

  shmkv::testing::SetFakeNowMs(t0 + 1000);
  // Refused in another process (a fork keeps the testing clock), then here.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int rc = 2;
    {
      auto other = shmkv::Cache::Open(seg_.name());
      if (other) {
        TokenStore theirs(&*other);
        auto r = theirs.Redeem("b");
        rc = r ? 0 : r.IsNotFound() ? 1 : 2;
      }
    }
    _exit(rc);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "status " << status;
  EXPECT_TRUE(tokens.Redeem("b").IsNotFound());
  // The id of an expired token is free again.
  EXPECT_FALSE(tokens.IssueWithId("b", "grant-b2", 1000ms));
}

// With the real clock: a short TTL, then poll until the entry reads as gone.
TEST_F(TokensTest, TokenExpiresOnTheRealClock) {
  TokenStore tokens(&cache());
  auto id = tokens.Issue("download report.pdf", 30ms);
  ASSERT_TRUE(id) << id.error().message();
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (cache().Ttl(TokenStore::Key(*id)).ok()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the token did not expire";
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_TRUE(tokens.Redeem(*id).IsNotFound());
}

TEST_F(TokensTest, AddRefusesDuplicateTokenId) {
  TokenStore tokens(&cache());
  ASSERT_FALSE(tokens.IssueWithId("invite-7", "join team=blue", 1h));
  EXPECT_EQ(tokens.IssueWithId("invite-7", "join team=red", 1h), shmkv::Errc::kExists);
  auto grant = tokens.Redeem("invite-7");
  ASSERT_TRUE(grant) << grant.error().message();
  EXPECT_EQ(*grant, "join team=blue");
  // Once redeemed, the id may be issued again.
  EXPECT_FALSE(tokens.IssueWithId("invite-7", "join team=green", 1h));
  EXPECT_EQ(tokens.IssueWithId("", "x", 1h), shmkv::Errc::kInvalid);
  EXPECT_EQ(tokens.IssueWithId("no-ttl", "x", 0ms), shmkv::Errc::kInvalid);
}

TEST_F(TokensTest, ExampleProgramWalksThrough) {
  auto r = shmkv::test::RunProgram({ONE_TIME_TOKENS_PATH, seg_.name()});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 redeemed it, 3 were refused"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("all steps gave the expected answer"), std::string::npos) << r.out;
}

}  // namespace
