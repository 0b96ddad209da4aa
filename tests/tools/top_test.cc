// Black-box tests of `shmkv top` (DESIGN.md §8): the real binary in a
// detached tmux session on a private tmux server, watching a segment that a
// forked writer keeps busy. The test reads the screen with capture-pane and
// drives the view with send-keys; every wait is a poll with a deadline.
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "support/run_program.h"
#include "support/test_segment.h"

namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;

constexpr auto kDeadline = std::chrono::seconds(20);
constexpr auto kPollEvery = std::chrono::milliseconds(50);

using Result = shmkv::test::ProgramResult;
using shmkv::test::RunProgram;

bool TmuxInstalled() { return RunProgram({"tmux", "-V"}).code == 0; }

// Polls until pred() holds or the deadline passes; returns pred()'s last value.
bool WaitFor(const std::function<bool()>& pred) {
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollEvery);
  }
  return true;
}

// A forked process that sets and gets keys on the segment (hits and
// misses) until the pipe to it is closed.
class Writer {
 public:
  explicit Writer(const std::string& segment) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe: " << std::strerror(errno);
      return;
    }
    pid_ = fork();
    if (pid_ == 0) {
      close(fds[1]);
      _exit(Loop(segment, fds[0]));
    }
    close(fds[0]);
    stop_fd_ = fds[1];
  }
  ~Writer() { Stop(); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  pid_t pid() const { return pid_; }

  // Tells the writer to stop and returns its exit code (0: it ran cleanly).
  int Stop() {
    if (pid_ <= 0) return -1;
    close(stop_fd_);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  static int Loop(const std::string& segment, int stop_fd) {
    shmkv_t* kv = nullptr;
    if (shmkv_open(segment.c_str(), nullptr, &kv) != 0) return 3;
    char buf[64];
    size_t len = 0;
    for (uint64_t i = 0;; ++i) {
      const std::string key = "key:" + std::to_string(i % 512);
      if (shmkv_set(kv, key.data(), key.size(), "value", 5, 0) != 0) return 4;
      shmkv_get(kv, key.data(), key.size(), buf, sizeof buf, &len, nullptr);
      shmkv_get(kv, "absent", 6, buf, sizeof buf, &len, nullptr);
      pollfd p{stop_fd, POLLIN, 0};
      if (i % 64 == 0 && poll(&p, 1, 0) != 0) break;  // EOF: the test closed the pipe
    }
    shmkv_close(kv);
    return 0;
  }

  pid_t pid_ = -1;
  int stop_fd_ = -1;
};

// A private tmux server (its own socket in the test's temporary directory),
// killed on destruction, its socket and status file removed.
class Tmux {
 public:
  Tmux() {
    static std::atomic<unsigned> counter{0};
    const std::string base = ::testing::TempDir() + "shmkv-top-test-" + std::to_string(getpid()) +
                             "-" + std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
    socket_ = base + ".sock";
    status_file_ = base + ".status";
  }
  ~Tmux() {
    RunProgram({"tmux", "-S", socket_, "kill-server"});
    std::remove(socket_.c_str());
    std::remove(status_file_.c_str());
  }
  Tmux(const Tmux&) = delete;
  Tmux& operator=(const Tmux&) = delete;

  // Starts `command` in a detached 120x40 session "top". The shell around it
  // writes its exit status to a file: tmux's own #{pane_dead_status} may never
  // be filled in when the server misses the child's SIGCHLD (seen with 3.3a).
  Result Start(const std::string& command) {
    return Do({"-f", "/dev/null", "new-session", "-d", "-s", "top", "-x", "120", "-y", "40",
               command + "; echo $? > '" + status_file_ + "'"});
  }
  std::string Screen() { return Do({"capture-pane", "-p", "-t", "top"}).out; }
  void Keys(const std::string& keys) { Do({"send-keys", "-t", "top", "-l", keys}); }
  // The session ends with its only pane, when the command has exited.
  bool SessionExists() { return Do({"has-session", "-t", "top"}).code == 0; }
  // The command's exit status ("0\n"), empty while it runs.
  std::string ExitStatus() const {
    std::ifstream in(status_file_);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

 private:
  Result Do(std::vector<std::string> args) {
    args.insert(args.begin(), {"tmux", "-S", socket_});
    return RunProgram(args);
  }
  std::string socket_;
  std::string status_file_;
};

// The per-second figure of the "gets" row, -1 if the row is not on screen.
double GetsPerSecond(const std::string& screen) {
  static const std::regex kRow(R"(^ gets +([0-9.]+[kMGT]?) +[0-9]+)");
  std::istringstream lines(screen);
  std::string line;
  std::smatch m;
  while (std::getline(lines, line)) {
    if (std::regex_search(line, m, kRow)) return std::strtod(m[1].str().c_str(), nullptr);
  }
  return -1;
}

bool ShowsAlivePid(const std::string& screen, pid_t pid) {
  return std::regex_search(screen, std::regex("\\b" + std::to_string(pid) + " +alive\\b"));
}

class TopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shmkv_options_t o = SmallOptions();
    shmkv_t* kv = nullptr;
    ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &kv), 0) << shmkv_last_error();
    shmkv_close(kv);
  }
  std::string TopCommand(const std::string& args) {
    return std::string("'") + SHMKV_CLI_PATH + "' top '" + seg_.name() + "' " + args;
  }
  ScopedSegmentName seg_{"top"};
};

TEST_F(TopTest, ShowsRatesAndProcessesThenQuits) {
  if (!TmuxInstalled()) GTEST_SKIP() << "tmux is not installed";
  Writer writer(seg_.name());
  ASSERT_GT(writer.pid(), 0);
  Tmux tmux;
  const Result started = tmux.Start(TopCommand("--interval 200ms"));
  ASSERT_EQ(started.code, 0) << started.err;

  std::string screen;
  const bool seen = WaitFor([&] {
    screen = tmux.Screen();
    return GetsPerSecond(screen) > 0 && ShowsAlivePid(screen, writer.pid());
  });
  ASSERT_TRUE(seen) << "the pane never showed gets/s > 0 and pid " << writer.pid()
                    << " alive; last screen:\n"
                    << screen << "\nexit status: " << tmux.ExitStatus();
  EXPECT_GT(GetsPerSecond(screen), 0) << screen;
  EXPECT_TRUE(ShowsAlivePid(screen, writer.pid())) << screen;
  EXPECT_NE(screen.find("shmkv top  " + seg_.name()), std::string::npos) << screen;
  EXPECT_NE(screen.find("every 200ms"), std::string::npos) << screen;
  EXPECT_NE(screen.find("hit ratio"), std::string::npos) << screen;
  EXPECT_NE(screen.find("CLASS"), std::string::npos) << screen;
  EXPECT_NE(screen.find("janitor none"), std::string::npos) << screen;

  // + lengthens the interval, p pauses and resumes.
  tmux.Keys("+");
  EXPECT_TRUE(WaitFor([&] {
    return (screen = tmux.Screen()).find("every 500ms") != std::string::npos;
  })) << screen;
  tmux.Keys("p");
  EXPECT_TRUE(WaitFor([&] { return (screen = tmux.Screen()).find("PAUSED") != std::string::npos; }))
      << screen;
  tmux.Keys("p");
  EXPECT_TRUE(WaitFor([&] { return (screen = tmux.Screen()).find("PAUSED") == std::string::npos; }))
      << screen;

  tmux.Keys("q");
  EXPECT_TRUE(WaitFor([&] { return !tmux.SessionExists(); })) << "top did not exit on q; screen:\n"
                                                              << tmux.Screen();
  EXPECT_EQ(tmux.ExitStatus(), "0\n");
  EXPECT_EQ(writer.Stop(), 0);
}

TEST_F(TopTest, IterationsEndTheView) {
  if (!TmuxInstalled()) GTEST_SKIP() << "tmux is not installed";
  Tmux tmux;
  const Result started = tmux.Start(TopCommand("--interval 100ms --iterations 3"));
  ASSERT_EQ(started.code, 0) << started.err;
  EXPECT_TRUE(WaitFor([&] { return !tmux.SessionExists(); })) << tmux.Screen();
  EXPECT_EQ(tmux.ExitStatus(), "0\n");
}

TEST_F(TopTest, WithoutATerminalExits2) {
  const Result r = RunProgram({SHMKV_CLI_PATH, "top", seg_.name()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("needs a terminal"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("stats " + seg_.name() + " --watch"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(TopUsage, HelpAndBadOptions) {
  const Result h = RunProgram({SHMKV_CLI_PATH, "top", "--help"});
  EXPECT_EQ(h.code, 0);
  EXPECT_NE(h.out.find("Example:\n  shmkv top"), std::string::npos) << h.out;
  EXPECT_NE(RunProgram({SHMKV_CLI_PATH, "--help"}).out.find("  top "), std::string::npos);
  EXPECT_EQ(RunProgram({SHMKV_CLI_PATH, "top", "seg", "--interval", "soon"}).code, 2);
  EXPECT_EQ(RunProgram({SHMKV_CLI_PATH, "top", "seg", "--interval", "0"}).code, 2);
  EXPECT_EQ(RunProgram({SHMKV_CLI_PATH, "top", "seg", "--iterations", "0"}).code, 2);
  EXPECT_EQ(RunProgram({SHMKV_CLI_PATH, "top"}).code, 2);
}

}  // namespace
