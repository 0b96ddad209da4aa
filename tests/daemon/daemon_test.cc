// Black-box tests of the janitor daemon shmkvd (DESIGN.md §7, issue 4).
//
// Property: started on a segment, shmkvd tells systemd it is ready and
// alive, returns the memory of expired entries without any client touching
// them, recovers what a killed client held (the checker is clean
// afterwards), is the only janitor of its segment (a second one refuses,
// a successor takes over from a killed one), stops promptly and cleanly on
// SIGTERM, and writes metrics that promtool accepts. Its systemd unit
// passes `systemd-analyze verify`.
//
// Every test uses its own segment; every wait polls a condition until a
// deadline (generous, for a loaded 2-core machine), never a fixed sleep.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "metrics.h"
#include "options.h"
#include "shmkv/shmkv.h"
#include "shmkvd_process.h"
#include "support/test_segment.h"

namespace shmkv::test {
namespace {

using namespace std::chrono_literals;

constexpr auto kStartTimeout = 15s;
constexpr auto kExitTimeout = 10s;

// A segment created by the test, with a handle the test keeps.
class Segment {
 public:
  explicit Segment(const std::string& tag, uint64_t memory = 8u << 20) : name_(tag) {
    shmkv_options_t o = SmallOptions(memory);
    EXPECT_EQ(shmkv_open(name_.c_str(), &o, &kv_), 0) << shmkv_last_error();
  }
  ~Segment() { shmkv_close(kv_); }
  const std::string& name() const { return name_.name(); }
  shmkv_t* kv() const { return kv_; }
  shmkv_stats_t Stats() const {
    shmkv_stats_t s;
    s.struct_size = sizeof s;
    EXPECT_EQ(shmkv_stats(kv_, &s), 0);
    return s;
  }

 private:
  ScopedSegmentName name_;
  shmkv_t* kv_ = nullptr;
};

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/shmkvd-test-XXXXXX";
    path_ = ::mkdtemp(tmpl) ? tmpl : "";
  }
  ~TempDir() {
    if (!path_.empty()) RunCommand("rm -rf '" + path_ + "'");
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Starts shmkvd on segment and waits for READY=1 on a fake notify socket.
void StartReady(ShmkvdProcess* d, FakeNotifySocket* notify, const std::vector<std::string>& args) {
  ASSERT_TRUE(notify->ok());
  ASSERT_TRUE(d->Start(args, {{"NOTIFY_SOCKET", notify->address()}}));
  std::vector<std::string> seen;
  ASSERT_TRUE(notify->WaitForLine("READY=1", After(kStartTimeout), &seen))
      << "no READY=1; stderr:\n"
      << d->Stderr();
}

void ExpectExitCode(ShmkvdProcess* d, int code) {
  auto status = d->WaitExit(After(kExitTimeout));
  ASSERT_TRUE(status.has_value()) << "shmkvd did not exit; stderr:\n" << d->Stderr();
  ASSERT_TRUE(WIFEXITED(*status)) << "status " << *status << "; stderr:\n" << d->Stderr();
  EXPECT_EQ(WEXITSTATUS(*status), code) << d->Stderr();
}

void StopCleanly(ShmkvdProcess* d) {
  d->Signal(SIGTERM);
  ExpectExitCode(d, 0);
}

// (a) The sd_notify protocol: READY=1 after the first tick, STATUS= one
// line, WATCHDOG=1 every tick when WATCHDOG_USEC is set, STOPPING=1.
TEST(DaemonTest, NotifiesReadyStatusWatchdogAndStopping) {
  Segment seg("notify");
  FakeNotifySocket notify;
  ASSERT_TRUE(notify.ok());
  ShmkvdProcess d;
  ASSERT_TRUE(d.Start({"--segment", seg.name(), "--interval", "20ms", "--metrics-every", "50ms"},
                      {{"NOTIFY_SOCKET", notify.address()}, {"WATCHDOG_USEC", "5000000"}}));

  // Every datagram is KEY=VALUE lines; count them until enough of each.
  const std::regex line_re("^[A-Z_]+=[^\n]+$");
  std::vector<std::string> messages;
  int ready = 0, watchdogs = 0, statuses = 0;
  bool watchdog_before_ready = false;
  const Deadline deadline = After(kStartTimeout);
  while (ready == 0 || watchdogs < 3 || statuses < 2) {
    auto msg = notify.Receive(deadline);
    ASSERT_TRUE(msg.has_value()) << "ready " << ready << " watchdogs " << watchdogs << " statuses "
                                 << statuses << "; stderr:\n"
                                 << d.Stderr();
    messages.push_back(*msg);
    std::istringstream in(*msg);
    for (std::string line; std::getline(in, line);) {
      EXPECT_TRUE(std::regex_match(line, line_re)) << "malformed: '" << line << "'";
      if (line == "READY=1") ++ready;
      if (line == "WATCHDOG=1") {
        ++watchdogs;
        if (ready == 0) watchdog_before_ready = true;
      }
      if (line.rfind("STATUS=", 0) == 0) {
        ++statuses;
        EXPECT_NE(line.find("items"), std::string::npos) << line;
        EXPECT_NE(line.find("hit ratio"), std::string::npos) << line;
      }
    }
  }
  EXPECT_EQ(ready, 1);
  EXPECT_FALSE(watchdog_before_ready);

  d.Signal(SIGTERM);
  std::vector<std::string> seen;
  EXPECT_TRUE(notify.WaitForLine("STOPPING=1", After(kExitTimeout), &seen));
  ExpectExitCode(&d, 0);
}

// Without WATCHDOG_USEC there is no WATCHDOG=1.
TEST(DaemonTest, NoWatchdogMessagesWithoutWatchdogUsec) {
  Segment seg("nowatchdog");
  FakeNotifySocket notify;
  ShmkvdProcess d;
  StartReady(&d, &notify,
             {"--segment", seg.name(), "--interval", "10ms", "--metrics-every", "50ms"});
  int statuses = 0;
  const Deadline deadline = After(kStartTimeout);
  while (statuses < 3) {
    auto msg = notify.Receive(deadline);
    ASSERT_TRUE(msg.has_value());
    EXPECT_EQ(msg->find("WATCHDOG=1"), std::string::npos);
    if (msg->rfind("STATUS=", 0) == 0) ++statuses;
  }
  StopCleanly(&d);
}

// (b) Entries with a 1 s TTL are reclaimed by the sweep: expirations grow
// and memory comes back, while no client reads the keys.
TEST(DaemonTest, SweepReclaimsExpiredEntriesWithoutClients) {
  Segment seg("expiry");
  const shmkv_stats_t before = seg.Stats();
  constexpr int kKeys = 300;
  const std::string value(1000, 'v');
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = "ttl:" + std::to_string(i);
    ASSERT_EQ(shmkv_set(seg.kv(), key.data(), key.size(), value.data(), value.size(), 1000), 0);
  }
  const shmkv_stats_t filled = seg.Stats();
  ASSERT_EQ(filled.items, before.items + kKeys);
  ASSERT_GT(filled.memory_used, before.memory_used);

  FakeNotifySocket notify;
  ShmkvdProcess d;
  StartReady(&d, &notify,
             {"--segment", seg.name(), "--interval", "50ms", "--sweep-period", "500ms"});
  shmkv_stats_t now{};
  EXPECT_TRUE(WaitUntil(
      [&] {
        now = seg.Stats();
        return now.expirations >= before.expirations + kKeys &&
               now.memory_used <= before.memory_used && now.items == before.items;
      },
      After(20s)))
      << "expirations " << now.expirations << " memory_used " << now.memory_used << " (before "
      << before.memory_used << ", filled " << filled.memory_used << ") items " << now.items;
  EXPECT_EQ(now.gets, filled.gets) << "nobody read the keys";
  StopCleanly(&d);
}

// (c) A client killed in the middle of its writes: the daemon recovers it,
// and the offline check finds no violation and no leak.
TEST(DaemonTest, RecoversAKilledWriter) {
  Segment seg("recovery", 4u << 20);
  FakeNotifySocket notify;
  ShmkvdProcess d;
  StartReady(&d, &notify, {"--segment", seg.name(), "--interval", "20ms"});
  const uint64_t recovered_before = seg.Stats().recovered_processes;

  int ready_pipe[2];
  ASSERT_EQ(::pipe(ready_pipe), 0);
  const pid_t writer = ::fork();
  ASSERT_GE(writer, 0);
  if (writer == 0) {
    ::close(ready_pipe[0]);
    shmkv_t* kv = nullptr;
    if (shmkv_open(seg.name().c_str(), nullptr, &kv) != 0) ::_exit(2);
    std::string value(3000, 'w');
    for (uint64_t i = 0;; ++i) {
      const std::string key = "w:" + std::to_string(i);
      const size_t len = 16 + (i * 7919) % (value.size() - 16);  // several size classes
      shmkv_set(kv, key.data(), key.size(), value.data(), len, 0);
      if (i == 2000) (void)!::write(ready_pipe[1], "x", 1);
    }
  }
  ::close(ready_pipe[1]);
  char c;
  ASSERT_EQ(::read(ready_pipe[0], &c, 1), 1) << "the writer did not start";
  ::close(ready_pipe[0]);
  ::kill(writer, SIGKILL);  // somewhere inside a write, most likely
  int status = 0;
  ASSERT_EQ(::waitpid(writer, &status, 0), writer);
  ASSERT_TRUE(WIFSIGNALED(status));

  EXPECT_TRUE(
      WaitUntil([&] { return seg.Stats().recovered_processes > recovered_before; }, After(20s)))
      << "stderr:\n"
      << d.Stderr();
  EXPECT_TRUE(d.WaitForStderr("recovered 1 dead process", After(kExitTimeout))) << d.Stderr();
  StopCleanly(&d);

  shmkv_check_report_t report;
  report.struct_size = sizeof report;
  ASSERT_EQ(shmkv_check(seg.kv(), SHMKV_CHECK_OFFLINE, &report), 0) << shmkv_last_error();
  EXPECT_EQ(report.problems, 0u) << report.first_problem;
  EXPECT_EQ(report.leaked_blocks, 0u);
  EXPECT_EQ(report.slots_pending, 0u);
}

// (d) One janitor per segment: a second shmkvd refuses and names the
// first; once the first is killed, a new one takes over.
TEST(DaemonTest, SecondDaemonRefusesAndSuccessorTakesOver) {
  Segment seg("single");
  FakeNotifySocket notify;
  ShmkvdProcess first;
  StartReady(&first, &notify, {"--segment", seg.name()});

  ShmkvdProcess second;
  ASSERT_TRUE(second.Start({"--segment", seg.name()}));
  ExpectExitCode(&second, 1);
  EXPECT_NE(second.Stderr().find("shmkvd: segment " + seg.name() + " already has a janitor (pid " +
                                 std::to_string(first.pid()) + ")"),
            std::string::npos)
      << second.Stderr();

  first.Signal(SIGKILL);
  auto status = first.WaitExit(After(kExitTimeout));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFSIGNALED(*status));

  FakeNotifySocket notify3;
  ShmkvdProcess third;
  StartReady(&third, &notify3, {"--segment", seg.name()});
  StopCleanly(&third);
}

// (e) SIGTERM and SIGINT stop it promptly, even between long ticks, and
// it detaches.
TEST(DaemonTest, SigtermExitsZeroPromptly) {
  Segment seg("sigterm");
  FakeNotifySocket notify;
  ShmkvdProcess d;
  // Ticks 30 s apart: the signal must not wait for the next one.
  StartReady(&d, &notify, {"--segment", seg.name(), "--interval", "30s", "--sweep-period", "60s"});
  const auto start = std::chrono::steady_clock::now();
  d.Signal(SIGTERM);
  auto status = d.WaitExit(After(5s));
  ASSERT_TRUE(status.has_value()) << "no exit within 5 s of SIGTERM";
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_NE(d.Stderr().find("stopped"), std::string::npos) << d.Stderr();
}

TEST(DaemonTest, SigintExitsZero) {
  Segment seg("sigint");
  FakeNotifySocket notify;
  ShmkvdProcess d;
  StartReady(&d, &notify, {"--segment", seg.name()});
  d.Signal(SIGINT);
  ExpectExitCode(&d, 0);
}

const char* const kMetricNames[] = {
    "shmkv_items",
    "shmkv_memory_bytes",
    "shmkv_memory_used_bytes",
    "shmkv_memory_class_used_bytes",
    "shmkv_gets_total",
    "shmkv_hits_total",
    "shmkv_misses_total",
    "shmkv_hit_ratio",
    "shmkv_sets_total",
    "shmkv_deletes_total",
    "shmkv_evictions_total",
    "shmkv_expirations_total",
    "shmkv_recovered_processes_total",
    "shmkv_attached_processes",
    "shmkv_janitor_tick_seconds",
    "shmkv_janitor_tick_seconds_max",
    "shmkv_janitor_sweep_passes_total",
};

void ExpectPromtoolAccepts(const std::string& path) {
  const CommandResult r = RunCommand("promtool check metrics < '" + path + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "") << "promtool has remarks";
}

// (f) The metrics file is valid Prometheus text with every metric.
TEST(DaemonTest, MetricsFilePassesPromtool) {
  Segment seg("metrics");
  for (int i = 0; i < 50; ++i) {
    const std::string key = "m:" + std::to_string(i), value(100 + i * 40, 'x');
    ASSERT_EQ(shmkv_set(seg.kv(), key.data(), key.size(), value.data(), value.size(), 0), 0);
  }
  char buf[8];
  size_t len;
  shmkv_get(seg.kv(), "m:1", 3, buf, sizeof buf, &len, nullptr);  // a hit (too small: fine)
  shmkv_get(seg.kv(), "nope", 4, buf, sizeof buf, &len, nullptr);

  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string path = dir.path() + "/shmkv.prom";
  ShmkvdProcess d;
  ASSERT_TRUE(d.Start({"--segment", seg.name(), "--interval", "20ms", "--metrics-file", path,
                       "--metrics-every", "50ms"}));
  ASSERT_TRUE(WaitUntil([&] { return FileExists(path); }, After(kStartTimeout))) << d.Stderr();
  const std::string text = ReadFile(path);
  for (const char* name : kMetricNames) {
    EXPECT_NE(text.find(std::string("# TYPE ") + name + " "), std::string::npos) << name;
    EXPECT_NE(text.find(std::string("# HELP ") + name + " "), std::string::npos) << name;
    EXPECT_NE(text.find(std::string(name) + "{segment=\"" + seg.name() + "\""), std::string::npos)
        << name;
  }
  EXPECT_NE(text.find("shmkv_items{segment=\"" + seg.name() + "\"} 50\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("shmkv_memory_class_used_bytes{segment=\"" + seg.name() + "\",class=\""),
            std::string::npos)
      << text;
  EXPECT_FALSE(FileExists(path + ".tmp"));
  StopCleanly(&d);

  if (!HaveProgram("promtool")) GTEST_SKIP() << "promtool (Debian package prometheus) missing";
  ExpectPromtoolAccepts(path);
}

// The formatting function itself, on awkward input: a label value that
// needs escaping, no classes, no lookups.
TEST(MetricsTest, FormatEscapesLabelsAndPassesPromtool) {
  shmkvd::MetricsSnapshot m;
  m.segment = "odd\"name\\x";
  m.stats.memory_bytes = 1 << 20;
  m.stats.hits = 3;
  m.stats.misses = 1;
  m.classes.push_back({2, 128, 4096});
  m.tick_seconds = 0.00025;
  m.tick_seconds_max = 0.5;
  const std::string text = shmkvd::FormatPrometheus(m);
  EXPECT_NE(text.find("shmkv_hit_ratio{segment=\"odd\\\"name\\\\x\"} 0.75\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("shmkv_memory_class_used_bytes{segment=\"odd\\\"name\\\\x\",class=\"2\","
                      "block_size=\"128\"} 4096\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("shmkv_janitor_tick_seconds{segment=\"odd\\\"name\\\\x\"} 0.00025\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(shmkvd::HitRatio(shmkv_stats_t{}), 0.0);

  if (!HaveProgram("promtool")) GTEST_SKIP() << "promtool (Debian package prometheus) missing";
  TempDir dir;
  const std::string path = dir.path() + "/x.prom";
  std::string why;
  ASSERT_EQ(shmkvd::WriteFileAtomically(path, text, &why), 0) << why;
  ExpectPromtoolAccepts(path);
}

// The near-cache families appear only with --upstream; a stream never
// confirmed has a heartbeat age of +Inf.
TEST(MetricsTest, UpstreamFamiliesOnlyWithAnUpstream) {
  shmkvd::MetricsSnapshot m;
  m.segment = "nc";
  EXPECT_EQ(shmkvd::FormatPrometheus(m).find("shmkv_upstream_"), std::string::npos);
  EXPECT_EQ(shmkvd::FormatStatus(m).find("upstream"), std::string::npos);
  m.upstream.emplace();
  m.upstream->keys = 7;
  m.upstream->flushes = 2;
  const std::string text = shmkvd::FormatPrometheus(m);
  for (const char* line : {"shmkv_upstream_up{segment=\"nc\"} 0\n",
                           "shmkv_upstream_heartbeat_age_seconds{segment=\"nc\"} +Inf\n",
                           "shmkv_upstream_invalidated_keys_total{segment=\"nc\"} 7\n",
                           "shmkv_upstream_flushes_total{segment=\"nc\"} 2\n",
                           "shmkv_upstream_invalidation_messages_total{segment=\"nc\"} 0\n",
                           "shmkv_upstream_losses_total{segment=\"nc\"} 0\n",
                           "shmkv_upstream_reconnects_total{segment=\"nc\"} 0\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << " not in\n" << text;
  }
  EXPECT_NE(shmkvd::FormatStatus(m).find(", upstream down"), std::string::npos);
  m.upstream->up = true;
  m.upstream->heartbeat_age_seconds = 0.05;
  EXPECT_NE(shmkvd::FormatPrometheus(m).find(
                "shmkv_upstream_heartbeat_age_seconds{segment=\"nc\"} 0.05\n"),
            std::string::npos);

  if (!HaveProgram("promtool")) GTEST_SKIP() << "promtool (Debian package prometheus) missing";
  TempDir dir;
  const std::string path = dir.path() + "/nc.prom";
  std::string why;
  ASSERT_EQ(shmkvd::WriteFileAtomically(path, text, &why), 0) << why;
  ExpectPromtoolAccepts(path);
}

TEST(MetricsTest, WriteFileAtomicallyReportsAMissingDirectory) {
  std::string why;
  EXPECT_NE(shmkvd::WriteFileAtomically("/nonexistent-dir/x.prom", "x\n", &why), 0);
  EXPECT_NE(why.find("/nonexistent-dir/x.prom.tmp"), std::string::npos) << why;
}

// (g) The unit passes `systemd-analyze verify` with the built binary.
TEST(UnitFileTest, SystemdAnalyzeVerifyPasses) {
  const std::string unit = ReadFile(SHMKVD_UNIT_PATH);
  ASSERT_FALSE(unit.empty());
  EXPECT_NE(unit.find("\nType=notify\n"), std::string::npos);
  // Either would delete the segment under the clients (see the unit).
  EXPECT_EQ(unit.find("\nDynamicUser=yes"), std::string::npos);
  EXPECT_EQ(unit.find("\nRemoveIPC=yes"), std::string::npos);
  EXPECT_EQ(unit.find("\nPrivateIPC=yes"), std::string::npos);
  EXPECT_NE(unit.find("\nWatchdogSec="), std::string::npos);

  if (!HaveProgram("systemd-analyze")) GTEST_SKIP() << "systemd-analyze missing";
  TempDir dir;
  std::string copy = unit;
  const std::string from = "/usr/sbin/shmkvd";
  const size_t at = copy.find(from);
  ASSERT_NE(at, std::string::npos) << "ExecStart names " << from;
  copy.replace(at, from.size(), SHMKVD_PATH);
  {
    std::ofstream out(dir.path() + "/shmkvd@.service");
    out << copy;
  }
  // verify exits 0 on warnings too, so its output must be empty as well.
  const CommandResult r =
      RunCommand("cd '" + dir.path() + "' && systemd-analyze verify ./shmkvd@sessions.service");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("shmkvd@"), std::string::npos) << r.output;
}

// Usage errors exit 2 with a message; --help exits 0 with an example and
// --version with the version.
TEST(DaemonCliTest, UsageErrorsExitTwo) {
  const std::vector<std::vector<std::string>> bad = {
      {},
      {"--segment", "x", "--interval", "soon"},
      {"--segment", "x", "--no-such-option"},
      {"--segment", "x", "--evict", "random"},
      {"--segment", "x", "--memory", "lots"},
      {"--segment", "x", "--mode", "0999"},
      {"--segment", "x", "--log-level", "loud"},
      {"--segment", "x", "--interval", "2s", "--sweep-period", "1s"},
      {"--segment", "x", "--config", "/nonexistent/shmkv.conf"},
  };
  for (const auto& args : bad) {
    ShmkvdProcess d;
    ASSERT_TRUE(d.Start(args));
    ExpectExitCode(&d, 2);
    EXPECT_EQ(d.Stderr().rfind("shmkvd: ", 0), 0u) << d.Stderr();
  }
  ShmkvdProcess help;
  ASSERT_TRUE(help.Start({"--help"}));
  ExpectExitCode(&help, 0);
  EXPECT_NE(help.Stderr().find("Example:"), std::string::npos);
  EXPECT_NE(help.Stderr().find("--sweep-period"), std::string::npos);
  ShmkvdProcess version;
  ASSERT_TRUE(version.Start({"--version"}));
  ExpectExitCode(&version, 0);
  EXPECT_EQ(version.Stderr(), "shmkvd " SHMKV_VERSION_STRING "\n");
}

TEST(DaemonCliTest, MissingSegmentExitsOne) {
  ScopedSegmentName name("missing");
  ShmkvdProcess d;
  ASSERT_TRUE(d.Start({"--segment", name.name()}));
  ExpectExitCode(&d, 1);
  EXPECT_NE(d.Stderr().find("--create"), std::string::npos) << d.Stderr();
}

TEST(DaemonCliTest, ParsesSizesAndDurations) {
  EXPECT_EQ(shmkvd::ParseSize("64K"), 64u << 10);
  EXPECT_EQ(shmkvd::ParseSize("64m"), 64u << 20);
  EXPECT_EQ(shmkvd::ParseSize("1G"), 1u << 30);
  EXPECT_EQ(shmkvd::ParseSize("4096"), 4096u);
  EXPECT_FALSE(shmkvd::ParseSize("1X").has_value());
  EXPECT_FALSE(shmkvd::ParseSize("").has_value());
  EXPECT_FALSE(shmkvd::ParseSize("99999999999999999999G").has_value());
  EXPECT_EQ(shmkvd::ParseDuration("500ms"), 500ms);
  EXPECT_EQ(shmkvd::ParseDuration("30s"), 30s);
  EXPECT_EQ(shmkvd::ParseDuration("5m"), 5min);
  EXPECT_EQ(shmkvd::ParseDuration("1h"), 1h);
  EXPECT_EQ(shmkvd::ParseDuration("7"), 7s);
  EXPECT_FALSE(shmkvd::ParseDuration("-1s").has_value());
  EXPECT_FALSE(shmkvd::ParseDuration("1d").has_value());
}

// --create applies --mode and --group to the segment it creates.
TEST(DaemonTest, CreatesSegmentWithModeAndGroup) {
  ScopedSegmentName name("create");
  // A group other than ours when we may chown to it (root); else our own.
  std::string group;
  gid_t gid;
  if (::geteuid() == 0 && ::getgrnam("nogroup") != nullptr) {
    group = "nogroup";
    gid = ::getgrnam("nogroup")->gr_gid;
  } else {
    gid = ::getegid();
    const struct group* g = ::getgrgid(gid);
    ASSERT_NE(g, nullptr);
    group = g->gr_name;
  }
  FakeNotifySocket notify;
  ShmkvdProcess d;
  StartReady(&d, &notify,
             {"--segment", name.name(), "--create", "--memory", "2M", "--max-items", "1K", "--mode",
              "0640", "--group", group, "--evict", "volatile"});
  struct stat st;
  ASSERT_EQ(::stat(("/dev/shm/" + name.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_gid, gid);

  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(name.c_str(), nullptr, &kv), 0);
  shmkv_stats_t s;
  s.struct_size = sizeof s;
  ASSERT_EQ(shmkv_stats(kv, &s), 0);
  EXPECT_EQ(s.memory_bytes, 2u << 20);
  shmkv_close(kv);
  StopCleanly(&d);
}

// Run by hand: timestamped records; under systemd ($JOURNAL_STREAM names
// stderr): "<N>" priority prefixes and no timestamp.
TEST(DaemonTest, LogFormatByHandAndUnderJournal) {
  Segment seg("log");
  {
    FakeNotifySocket notify;
    ShmkvdProcess d;
    StartReady(&d, &notify, {"--segment", seg.name()});
    const pid_t pid = d.pid();
    StopCleanly(&d);
    const std::regex by_hand("^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z shmkvd\\[" +
                             std::to_string(pid) + "\\] info: janitor of segment ");
    EXPECT_TRUE(std::regex_search(d.Stderr(), by_hand)) << d.Stderr();
  }
  {
    FakeNotifySocket notify;
    ShmkvdProcess d;
    // $JOURNAL_STREAM inherited from a parent whose stderr was the journal,
    // while ours is not: keep the plain format.
    ASSERT_TRUE(d.Start({"--segment", seg.name()},
                        {{"NOTIFY_SOCKET", notify.address()}, {"JOURNAL_STREAM", "1:1"}}));
    std::vector<std::string> seen;
    ASSERT_TRUE(notify.WaitForLine("READY=1", After(kStartTimeout), &seen));
    StopCleanly(&d);
    EXPECT_EQ(d.Stderr().find("<6>"), std::string::npos) << d.Stderr();
  }
}

// Under the journal, stderr is the stream $JOURNAL_STREAM names.
TEST(DaemonTest, JournalPriorityPrefixes) {
  Segment seg("journal");
  FakeNotifySocket notify;
  ShmkvdProcess d;
  ASSERT_TRUE(d.Start(
      {"--segment", seg.name()},
      {{"NOTIFY_SOCKET", notify.address()}, {"JOURNAL_STREAM", ShmkvdProcess::kStderrStream}}));
  std::vector<std::string> seen;
  ASSERT_TRUE(notify.WaitForLine("READY=1", After(kStartTimeout), &seen)) << d.Stderr();
  StopCleanly(&d);
  EXPECT_EQ(d.Stderr().rfind("<6>janitor of segment " + seg.name(), 0), 0u) << d.Stderr();
  EXPECT_EQ(d.Stderr().find("Z shmkvd["), std::string::npos) << d.Stderr();
}

// SIGHUP re-reads --config: a metrics file named there appears.
TEST(DaemonTest, SighupReloadsConfig) {
  Segment seg("reload");
  TempDir dir;
  const std::string conf = dir.path() + "/shmkv.conf";
  const std::string metrics = dir.path() + "/after-reload.prom";
  {
    std::ofstream out(conf);
    out << "# before the reload\ninterval = 20ms\n";
  }
  FakeNotifySocket notify;
  ShmkvdProcess d;
  StartReady(&d, &notify, {"--segment", seg.name(), "--config", conf});
  ASSERT_FALSE(FileExists(metrics));
  {
    std::ofstream out(conf);
    out << "interval = 30ms\nsweep-period = 2s\nmetrics-file = " << metrics
        << "\nmetrics-every = 50ms\nlog-level = debug\n";
  }
  d.Signal(SIGHUP);
  std::vector<std::string> seen;
  EXPECT_TRUE(notify.WaitForLine("READY=1", After(kStartTimeout), &seen)) << d.Stderr();
  bool reloading = false;
  for (const std::string& m : seen) reloading |= m.rfind("RELOADING=1\nMONOTONIC_USEC=", 0) == 0;
  EXPECT_TRUE(reloading) << "no RELOADING=1 before READY=1";
  EXPECT_TRUE(WaitUntil([&] { return FileExists(metrics); }, After(kStartTimeout))) << d.Stderr();
  EXPECT_TRUE(d.WaitForStderr("reloaded", After(kExitTimeout))) << d.Stderr();

  // A broken config is reported and the daemon keeps running.
  {
    std::ofstream out(conf);
    out << "interval = never\n";
  }
  d.Signal(SIGHUP);
  EXPECT_TRUE(d.WaitForStderr("keeping the old options", After(kExitTimeout))) << d.Stderr();
  StopCleanly(&d);
}

}  // namespace
}  // namespace shmkv::test
