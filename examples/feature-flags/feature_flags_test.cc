// Feature flags with real processes: worker processes running the
// feature_flags program, flags written and deleted with the real shmkv CLI.
// A flag written or deleted by the CLI is what every worker sees on its very
// next request, and flags stored with --noevict survive a cache that is
// full and evicting.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "shmkv/cache.h"
#include "support/run_program.h"
#include "support/test_segment.h"

namespace {

using namespace std::chrono_literals;
using shmkv::test::ProgramResult;
using shmkv::test::RunProgram;
using shmkv::test::ScopedSegmentName;

ProgramResult Cli(std::vector<std::string> args) {
  args.insert(args.begin(), SHMKV_CLI_PATH);
  return RunProgram(std::move(args));
}

// One feature_flags process, requests on its stdin, answers on its stdout.
// Killed when destroyed if it is still running.
class Worker {
 public:
  Worker(const std::string& segment, int id) : id_(id) {
    // A worker that died must fail the test, not kill it on the next write.
    signal(SIGPIPE, SIG_IGN);
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe: " << std::strerror(errno);
      return;
    }
    const std::string id_arg = std::to_string(id);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], STDIN_FILENO);
      dup2(out[1], STDOUT_FILENO);
      execl(FEATURE_FLAGS_PATH, FEATURE_FLAGS_PATH, segment.c_str(), id_arg.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    from_ = out[0];
    if (pid_ < 0) ADD_FAILURE() << "fork: " << std::strerror(errno);
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker() {
    CloseInput();
    if (from_ >= 0) close(from_);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Sends one request and returns the answer line ("" after a failure,
  // which is recorded).
  std::string Request() {
    const std::string line = "GET /checkout\n";
    if (write(to_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      ADD_FAILURE() << "worker " << id_ << ": write: " << std::strerror(errno);
      return "";
    }
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    size_t eol;
    while ((eol = buffer_.find('\n')) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{from_, POLLIN, 0};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) == 0) {
        ADD_FAILURE() << "worker " << id_ << " did not answer";
        return "";
      }
      char buf[512];
      const ssize_t n = read(from_, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ADD_FAILURE() << "worker " << id_ << " closed its output (exited?)";
        return "";
      }
      buffer_.append(buf, static_cast<size_t>(n));
    }
    std::string answer = buffer_.substr(0, eol);
    buffer_.erase(0, eol + 1);
    return answer;
  }

  // End of input, then the exit status (the worker exits at end of input).
  int Finish() {
    CloseInput();
    int status = -1;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

 private:
  void CloseInput() {
    if (to_ >= 0) close(to_);
    to_ = -1;
  }

  int id_;
  pid_t pid_ = -1;
  int to_ = -1;
  int from_ = -1;
  std::string buffer_;
};

// The values of an answer line "worker=1 pid=.. request=.. key=value ...".
std::map<std::string, std::string> Parse(const std::string& answer) {
  std::map<std::string, std::string> m;
  size_t pos = 0;
  while (pos < answer.size()) {
    size_t end = answer.find(' ', pos);
    if (end == std::string::npos) end = answer.size();
    const std::string word = answer.substr(pos, end - pos);
    const size_t eq = word.find('=');
    if (eq != std::string::npos) m[word.substr(0, eq)] = word.substr(eq + 1);
    pos = end + 1;
  }
  return m;
}

class FeatureFlagsTest : public ::testing::Test {
 protected:
  static constexpr int kWorkers = 6;

  void Create(const std::string& memory) {
    const ProgramResult r = Cli({"create", seg_.name(), "--memory", memory});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  void SetFlag(const std::string& key, const std::string& value) {
    const ProgramResult r = Cli({"set", seg_.name(), key, value, "--noevict"});
    ASSERT_EQ(r.code, 0) << "shmkv set " << key << ": " << r.err;
  }
  void StartWorkers() {
    for (int i = 0; i < kWorkers; ++i) workers_.push_back(std::make_unique<Worker>(seg_.name(), i));
  }
  // One request to every worker; each answer must show `want`.
  void ExpectEveryWorkerSees(const std::map<std::string, std::string>& want) {
    for (int i = 0; i < kWorkers; ++i) {
      const std::string answer = workers_[i]->Request();
      const auto got = Parse(answer);
      EXPECT_EQ(got.count("worker") ? got.at("worker") : "", std::to_string(i)) << answer;
      for (const auto& [key, value] : want) {
        EXPECT_EQ(got.count(key) ? got.at(key) : "<missing>", value)
            << "worker " << i << ": " << answer;
      }
    }
  }
  void FinishWorkers() {
    for (auto& w : workers_) {
      const int status = w->Finish();
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
    }
  }

  ScopedSegmentName seg_{"flags"};
  std::vector<std::unique_ptr<Worker>> workers_;
};

TEST_F(FeatureFlagsTest, EveryWorkerSeesAWriteOnItsNextRequest) {
  ASSERT_NO_FATAL_FAILURE(Create("8M"));
  ASSERT_NO_FATAL_FAILURE(SetFlag("flag:checkout_v2", "off"));
  ASSERT_NO_FATAL_FAILURE(SetFlag("config:max_items", "100"));
  StartWorkers();
  ExpectEveryWorkerSees({{"flag:checkout_v2", "off"}, {"config:max_items", "100"}});
  // Each round writes new values, then asks every worker exactly once.
  for (int round = 1; round <= 10; ++round) {
    const std::string flag = round % 2 ? "on" : "off";
    const std::string max_items = std::to_string(100 + round);
    ASSERT_NO_FATAL_FAILURE(SetFlag("flag:checkout_v2", flag));
    ASSERT_NO_FATAL_FAILURE(SetFlag("config:max_items", max_items));
    ExpectEveryWorkerSees({{"flag:checkout_v2", flag}, {"config:max_items", max_items}});
  }
  FinishWorkers();
}

TEST_F(FeatureFlagsTest, DeletedFlagFallsBackToTheDefaultForEveryWorker) {
  ASSERT_NO_FATAL_FAILURE(Create("8M"));
  ASSERT_NO_FATAL_FAILURE(SetFlag("flag:dark_mode", "on"));
  StartWorkers();
  ExpectEveryWorkerSees({{"flag:dark_mode", "on"}});
  const ProgramResult del = Cli({"del", seg_.name(), "flag:dark_mode"});
  ASSERT_EQ(del.code, 0) << del.err;
  ExpectEveryWorkerSees({{"flag:dark_mode", "off(default)"}});
  EXPECT_EQ(Cli({"get", seg_.name(), "flag:dark_mode"}).code, 1);
  FinishWorkers();
}

// A 2 MiB segment filled with many times its size of ordinary entries: it
// evicts, but never a flag, and a flag can still be written while it is full.
TEST_F(FeatureFlagsTest, FlagsSurviveEvictionUnderMemoryPressure) {
  ASSERT_NO_FATAL_FAILURE(Create("2M"));
  const std::map<std::string, std::string> flags = {
      {"flag:checkout_v2", "on"}, {"flag:dark_mode", "on"}, {"config:max_items", "100"}};
  for (const auto& [key, value] : flags) ASSERT_NO_FATAL_FAILURE(SetFlag(key, value));
  StartWorkers();
  ExpectEveryWorkerSees(flags);

  auto cache = shmkv::Cache::Open(seg_.name());
  ASSERT_TRUE(cache) << cache.error().message();
  const std::string filler(200, 'x');
  auto fill = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      const std::error_code ec = cache->Set("page:" + std::to_string(i), filler);
      ASSERT_FALSE(ec) << "set page:" << i << ": " << ec.message() << " " << shmkv_last_error();
    }
  };
  constexpr int kFillers = 40'000;  // about 4 times what 2 MiB holds
  ASSERT_NO_FATAL_FAILURE(fill(0, kFillers / 2));
  auto stats = cache->Stats();
  ASSERT_TRUE(stats) << stats.error().message();
  ASSERT_GT(stats->evictions, 0u) << "half the fill did not make the segment evict";
  // Flipped while the segment is full: the write evicts ordinary entries.
  ASSERT_NO_FATAL_FAILURE(SetFlag("flag:checkout_v2", "off"));
  ASSERT_NO_FATAL_FAILURE(fill(kFillers / 2, kFillers));

  stats = cache->Stats();
  ASSERT_TRUE(stats) << stats.error().message();
  const uint64_t evictions = stats->evictions;
  EXPECT_GT(evictions, 0u);
  int evicted = 0;
  for (int i = 0; i < kFillers; ++i) {
    evicted += cache->Get("page:" + std::to_string(i)).IsNotFound();
  }
  EXPECT_GT(evicted, 0) << "no ordinary entry was evicted";
  EXPECT_LT(evicted, kFillers) << "nothing is cached at all";

  auto want = flags;
  want["flag:checkout_v2"] = "off";
  for (const auto& [key, value] : want) {
    const ProgramResult r = Cli({"get", seg_.name(), key});
    EXPECT_EQ(r.code, 0) << key << ": " << r.err;
    EXPECT_EQ(r.out, value) << key;
    shmkv::ItemInfo info;
    auto v = cache->Get(key, &info);
    ASSERT_TRUE(v) << key << ": " << v.error().message();
    EXPECT_TRUE(info.no_evict) << key;
    EXPECT_EQ(info.ttl.count(), -1) << key;
  }
  ExpectEveryWorkerSees(want);
  FinishWorkers();
  std::cout << kWorkers << " workers; " << kFillers << " ordinary entries written, " << evicted
            << " of them evicted (" << evictions << " evictions); every flag kept\n";
}

// run.sh, the documented demo, with the programs of this build.
TEST(FeatureFlagsScript, EveryWorkerSeesEveryChange) {
  ScopedSegmentName seg("flags-script");
  const ProgramResult r =
      RunProgram({"env", std::string("SHMKV_CLI=") + SHMKV_CLI_PATH,
                  std::string("FEATURE_FLAGS_WORKER=") + FEATURE_FLAGS_PATH,
                  "FEATURE_FLAGS_SEGMENT=" + seg.name(), "bash", FEATURE_FLAGS_SCRIPT});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("every worker saw every change on its next request"), std::string::npos)
      << r.out << r.err;
  // The script removed its segment.
  EXPECT_NE(access(("/dev/shm/" + seg.name()).c_str(), F_OK), 0);
}

}  // namespace
