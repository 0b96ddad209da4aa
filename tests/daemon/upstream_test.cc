// Black-box tests of shmkvd --upstream (DESIGN.md §10) against a real
// redis-server per test.
//
// Property: shmkvd publishes UP only after flushing the tracked prefix;
// while UP, a local copy of a key written, deleted, expired or flushed in
// Redis disappears (keys outside the prefix stay); when the stream is lost
// (a connection killed, Redis killed, Redis stopped past max-lag) the state
// is DOWN at once, and it is UP again only after a fresh flush; a stopped
// daemon leaves DOWN. The invalidation delay (Redis SET returned -> local
// copy gone) is measured and printed.
//
// Each test has its own Redis, segment and daemon, killed and removed on
// the way out whatever happens; every wait polls until a deadline.
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "shmkv/shmkv.h"
#include "shmkvd_process.h"
#include "support/redis_server.h"
#include "support/run_program.h"
#include "support/test_segment.h"

namespace shmkv::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kTimeout = 10s;
constexpr char kPrefix[] = "t:";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class UpstreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!RedisServer::Installed()) GTEST_SKIP() << "redis-server (Debian redis-server) missing";
    ASSERT_TRUE(redis_.Start()) << redis_.error();
    writer_ = redis_.Connect();
    ASSERT_NE(writer_, nullptr);
    shmkv_options_t o = SmallOptions();
    ASSERT_EQ(shmkv_open(name_.c_str(), &o, &kv_), 0) << shmkv_last_error();
  }
  void TearDown() override {
    daemon_.reset();  // SIGKILLs a daemon still running
    shmkv_close(kv_);
  }

  // Starts shmkvd --upstream --prefix t: (then extra) on the segment and
  // waits for UP.
  void StartDaemon(std::vector<std::string> extra = {}, bool prefix = true) {
    std::vector<std::string> args = {"--segment", name_.name(), "--upstream", redis_.url()};
    if (prefix) args.insert(args.end(), {"--prefix", kPrefix});
    args.insert(args.end(), extra.begin(), extra.end());
    daemon_ = std::make_unique<ShmkvdProcess>();
    ASSERT_TRUE(daemon_->Start(args));
    ASSERT_TRUE(WaitForState(SHMKV_UPSTREAM_UP)) << daemon_->Stderr();
  }
  // StartDaemon(extra), then the generation of that UP in *g0.
  void StartDaemonUp(std::vector<std::string> extra, uint64_t* g0) {
    StartDaemon(std::move(extra));
    ASSERT_EQ(State(g0), static_cast<uint32_t>(SHMKV_UPSTREAM_UP));
  }

  uint32_t State(uint64_t* generation = nullptr) {
    uint32_t state = 0;
    uint64_t gen = 0;
    EXPECT_EQ(shmkv_upstream_state(kv_, &state, &gen), 0);
    if (generation != nullptr) *generation = gen;
    return state;
  }
  bool WaitForState(uint32_t state, Deadline deadline = After(kTimeout)) {
    return WaitUntil([&] { return State() == state; }, deadline);
  }
  // Waits until the stream has been lost and synced again since generation
  // g0 (DOWN and UP are two publications).
  bool WaitForResync(uint64_t g0) {
    return WaitUntil(
        [&] {
          uint64_t g = 0;
          return State(&g) == SHMKV_UPSTREAM_UP && g >= g0 + 2;
        },
        After(kTimeout));
  }

  void Put(const std::string& key) {
    ASSERT_EQ(shmkv_set(kv_, key.data(), key.size(), "v", 1, 0), 0) << shmkv_last_error();
  }
  bool Has(const std::string& key) {
    size_t len = 0;  // a size query: nothing is copied
    const int rc = shmkv_get(kv_, key.data(), key.size(), nullptr, 0, &len, nullptr);
    EXPECT_TRUE(rc == 0 || rc == SHMKV_ETOOSMALL || rc == SHMKV_ENOTFOUND) << rc;
    return rc != SHMKV_ENOTFOUND;
  }
  bool WaitGone(const std::string& key) {
    return WaitUntil([&] { return !Has(key); }, After(kTimeout));
  }
  // The stream invalidates: key put here, then SET in Redis, goes.
  void ExpectASetInvalidates(const std::string& key) {
    Put(key);
    Command(writer(), "SET " + key + " 1");
    EXPECT_TRUE(WaitGone(key)) << key;
  }
  redisContext* writer() { return writer_.get(); }

  RedisServer redis_;
  upstream::RedisContextPtr writer_;
  ScopedSegmentName name_{"upstream"};
  shmkv_t* kv_ = nullptr;
  std::unique_ptr<ShmkvdProcess> daemon_;
};

// Startup: the tracked prefix is flushed before UP, the rest is kept, the
// header names the upstream (shmkv info shows it), SIGTERM publishes DOWN.
TEST_F(UpstreamTest, SyncFlushesThePrefixThenUpAndSigtermDown) {
  Put("t:stale");
  Put("u:kept");
  ASSERT_EQ(State(), static_cast<uint32_t>(SHMKV_UPSTREAM_NONE));
  StartDaemon();
  EXPECT_FALSE(Has("t:stale"));
  EXPECT_TRUE(Has("u:kept"));

  shmkv_upstream_t u{};
  u.struct_size = sizeof u;
  ASSERT_EQ(shmkv_upstream_get(kv_, &u), 0);
  EXPECT_EQ(std::string(u.url), redis_.url());
  EXPECT_EQ(std::string(u.prefixes), kPrefix);
  EXPECT_EQ(u.max_lag_ms, 1000u);
  EXPECT_LE(u.heartbeat_age_ms, 1000u);

  const ProgramResult info = RunProgram({SHMKV_CLI_PATH, "info", name_.name()});
  EXPECT_EQ(info.code, 0) << info.err;
  EXPECT_NE(info.out.find("upstream        " + redis_.url() + " prefixes t:, up, heartbeat "),
            std::string::npos)
      << info.out;
  const ProgramResult json = RunProgram({SHMKV_CLI_PATH, "info", name_.name(), "--json"});
  EXPECT_NE(json.out.find("\"state\": \"up\""), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("\"prefixes\": \"t:\""), std::string::npos) << json.out;

  daemon_->Signal(SIGTERM);
  auto status = daemon_->WaitExit(After(kTimeout));
  ASSERT_TRUE(status.has_value()) << daemon_->Stderr();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << daemon_->Stderr();
  EXPECT_EQ(State(), static_cast<uint32_t>(SHMKV_UPSTREAM_DOWN));
  const std::string log = daemon_->Stderr();
  for (const char* line : {"upstream: connected to ",
                           "upstream: sync: flushed 1 local key under t:", "upstream: synced with ",
                           "upstream: stopped"}) {
    EXPECT_NE(log.find(line), std::string::npos) << line << " not in:\n" << log;
  }
}

// Writes, deletes, expiry and FLUSHALL in Redis remove local copies under
// the prefix and only there; the metrics count them.
TEST_F(UpstreamTest, WritesDeletesExpiryAndFlushallInvalidate) {
  // In Redis before tracking starts: no invalidation is pending for them.
  Command(writer(), "SET t:del 1");
  Command(writer(), "SET t:exp 1");
  char dir[] = "/tmp/shmkvd-upstream-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  struct RemoveDir {
    std::string path;
    ~RemoveDir() { RunCommand("rm -rf '" + path + "'"); }
  } remove_dir{dir};
  const std::string metrics = std::string(dir) + "/shmkv.prom";
  StartDaemon({"--metrics-file", metrics, "--metrics-every", "50ms"});

  Put("t:set");
  Put("u:set");
  Command(writer(), "SET u:set 2");  // not tracked
  Command(writer(), "SET t:set 2");
  EXPECT_TRUE(WaitGone("t:set"));
  EXPECT_TRUE(Has("u:set"));  // its write came first and was not applied

  Put("t:del");
  Command(writer(), "DEL t:del");
  EXPECT_TRUE(WaitGone("t:del"));

  Put("t:exp");
  Command(writer(), "PEXPIRE t:exp 20");  // Redis's active expiry deletes it
  EXPECT_TRUE(WaitGone("t:exp"));

  // A key too long for the segment is skipped; the stream goes on.
  Command(writer(), "SET t:" + std::string(300, 'k') + " 1");
  ExpectASetInvalidates("t:after");

  Put("t:f1");
  Put("t:f2");
  Put("u:f");
  Command(writer(), "FLUSHALL");
  EXPECT_TRUE(WaitGone("t:f1"));
  EXPECT_TRUE(WaitGone("t:f2"));
  EXPECT_TRUE(Has("u:f"));
  EXPECT_TRUE(Has("u:set"));
  EXPECT_EQ(State(), static_cast<uint32_t>(SHMKV_UPSTREAM_UP));

  // Sync + FLUSHALL: two flushes; at least t:set, t:del, t:exp, the long
  // key and t:after named by messages.
  std::string text;
  EXPECT_TRUE(WaitUntil(
      [&] {
        text = ReadFile(metrics);
        return text.find("shmkv_upstream_flushes_total{segment=\"" + name_.name() + "\"} 2\n") !=
               std::string::npos;
      },
      After(kTimeout)))
      << text;
  const std::string label = "{segment=\"" + name_.name() + "\"} ";
  EXPECT_NE(text.find("shmkv_upstream_up" + label + "1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("shmkv_upstream_losses_total" + label + "0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE shmkv_upstream_heartbeat_age_seconds gauge"), std::string::npos);
  auto value = [&](const std::string& name) {
    const size_t at = text.find(name + label);
    return at == std::string::npos ? -1.0 : std::stod(text.substr(at + name.size() + label.size()));
  };
  EXPECT_GE(value("shmkv_upstream_invalidated_keys_total"), 5);
  EXPECT_GE(value("shmkv_upstream_invalidation_messages_total"), 5);
  EXPECT_GE(value("shmkv_upstream_heartbeat_age_seconds"), 0);
  EXPECT_LE(value("shmkv_upstream_heartbeat_age_seconds"), 1);
  if (HaveProgram("promtool")) {
    const CommandResult r = RunCommand("promtool check metrics < '" + metrics + "'");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output, "") << "promtool has remarks";
  }
}

// Without --prefix every key is tracked, and a sync clears the segment.
TEST_F(UpstreamTest, WithoutPrefixEveryKeyIsTracked) {
  Put("any");
  StartDaemon({}, /*prefix=*/false);
  EXPECT_FALSE(Has("any"));
  shmkv_upstream_t u{};
  u.struct_size = sizeof u;
  ASSERT_EQ(shmkv_upstream_get(kv_, &u), 0);
  EXPECT_EQ(std::string(u.prefixes), "");
  Put("a");
  Put("b:c");
  Command(writer(), "SET a 1");
  Command(writer(), "SET b:c 1");
  EXPECT_TRUE(WaitGone("a"));
  EXPECT_TRUE(WaitGone("b:c"));
  EXPECT_NE(daemon_->Stderr().find("upstream: sync: cleared the segment"), std::string::npos)
      << daemon_->Stderr();
}

// Killing either connection in Redis is a loss: DOWN at once (well before
// --upstream-max-lag, 5 s here), then a new sync and UP; invalidations work
// again afterwards.
TEST_F(UpstreamTest, KilledConnectionsGoDownAndResync) {
  StartDaemon({"--upstream-max-lag", "5s"});
  for (const char* kill : {"CLIENT KILL TYPE pubsub", "CLIENT KILL TYPE normal SKIPME yes"}) {
    SCOPED_TRACE(kill);
    uint64_t g0 = 0;
    ASSERT_EQ(State(&g0), static_cast<uint32_t>(SHMKV_UPSTREAM_UP));
    auto r = Command(writer(), kill);
    ASSERT_NE(r, nullptr);
    EXPECT_GE(r->integer, 1);  // connections killed
    EXPECT_TRUE(WaitUntil(
        [&] {
          uint64_t g = 0;
          return State(&g) != SHMKV_UPSTREAM_UP || g >= g0 + 2;
        },
        After(2s)))
        << "no DOWN within 2 s";
    EXPECT_TRUE(WaitForResync(g0)) << daemon_->Stderr();
    ExpectASetInvalidates("t:again");
  }
  EXPECT_NE(daemon_->Stderr().find("upstream: stream lost: subscriber connection: "),
            std::string::npos)
      << daemon_->Stderr();
  EXPECT_NE(daemon_->Stderr().find("upstream: stream lost: tracking connection: "),
            std::string::npos)
      << daemon_->Stderr();
}

// A Redis restart is a loss and a reconnect; what was written locally while
// there was no stream is flushed by the new sync.
TEST_F(UpstreamTest, RedisRestartGoesDownThenResyncsAndFlushes) {
  uint64_t g0 = 0;
  ASSERT_NO_FATAL_FAILURE(StartDaemonUp({"--upstream-max-lag", "5s"}, &g0));
  redis_.Kill();
  EXPECT_TRUE(WaitForState(SHMKV_UPSTREAM_DOWN, After(2s))) << "no DOWN within 2 s";
  // Redis is gone: the daemon cannot sync before it is back.
  Put("t:while-down");
  Put("u:while-down");
  ASSERT_TRUE(daemon_->WaitForStderr("retrying in", After(kTimeout))) << daemon_->Stderr();
  ASSERT_TRUE(redis_.Start(redis_.port())) << redis_.error();
  EXPECT_TRUE(WaitForResync(g0)) << daemon_->Stderr();
  EXPECT_FALSE(Has("t:while-down"));
  EXPECT_TRUE(Has("u:while-down"));
  writer_ = redis_.Connect();
  ASSERT_NE(writer_, nullptr);
  ExpectASetInvalidates("t:after-restart");
}

// A Redis that stops answering (SIGSTOP) for longer than max-lag: DOWN
// (the PING goes unanswered, and the heartbeat goes stale); back UP after
// SIGCONT.
TEST_F(UpstreamTest, StoppedRedisGoesDownPastMaxLagAndRecovers) {
  uint64_t g0 = 0;
  ASSERT_NO_FATAL_FAILURE(
      StartDaemonUp({"--upstream-max-lag", "300ms", "--upstream-ping", "50ms"}, &g0));
  redis_.Signal(SIGSTOP);
  const auto stopped = Clock::now();
  // The daemon publishes DOWN (a new generation); clients see DOWN anyway
  // as soon as the heartbeat is older than max-lag.
  uint64_t g = g0;
  const bool down =
      WaitUntil([&] { return State(&g) == SHMKV_UPSTREAM_DOWN && g > g0; }, After(3s));
  const auto took = Clock::now() - stopped;
  redis_.Signal(SIGCONT);
  ASSERT_TRUE(down) << "no DOWN published 3 s after SIGSTOP\n" << daemon_->Stderr();
  EXPECT_GE(took, 200ms) << "DOWN before max-lag could pass";
  EXPECT_TRUE(WaitForResync(g0)) << daemon_->Stderr();
  EXPECT_NE(daemon_->Stderr().find("connection within 300ms"), std::string::npos)
      << daemon_->Stderr();
  ExpectASetInvalidates("t:resumed");
}

// A daemon killed with SIGKILL publishes nothing more; its heartbeat goes
// stale, and clients read DOWN once it is older than max-lag.
TEST_F(UpstreamTest, KilledDaemonGoesStalePastMaxLag) {
  uint64_t g0 = 0;
  ASSERT_NO_FATAL_FAILURE(
      StartDaemonUp({"--upstream-max-lag", "300ms", "--upstream-ping", "50ms"}, &g0));
  const auto killed = Clock::now();
  daemon_->Signal(SIGKILL);
  ASSERT_TRUE(daemon_->WaitExit(After(kTimeout)).has_value());
  uint64_t g = 0;
  EXPECT_TRUE(WaitUntil([&] { return State(&g) == SHMKV_UPSTREAM_DOWN; }, After(3s)));
  EXPECT_GE(Clock::now() - killed, 200ms);
  EXPECT_EQ(g, g0) << "nothing was published";
  shmkv_upstream_t u{};
  u.struct_size = sizeof u;
  ASSERT_EQ(shmkv_upstream_get(kv_, &u), 0);
  EXPECT_GT(u.heartbeat_age_ms, 300u);
}

// From a Redis SET returning to the local copy being gone, over 200 writes.
TEST_F(UpstreamTest, InvalidationDelay) {
  StartDaemon();
  constexpr int kWrites = 200;
  // From the SET returning, and from the SET being sent (one round trip
  // to Redis more).
  std::vector<double> returned_us, sent_us;
  int gone_at_return = 0;
  for (int i = 0; i < kWrites; ++i) {
    const std::string key = "t:delay:" + std::to_string(i);
    Put(key);
    ASSERT_TRUE(Has(key));
    const auto sent = Clock::now();
    ASSERT_NE(Command(writer(), "SET " + key + " 1"), nullptr);
    const auto returned = Clock::now();
    if (!Has(key)) ++gone_at_return;
    const auto deadline = returned + kTimeout;
    while (Has(key) && Clock::now() < deadline) sched_yield();
    const auto gone = Clock::now();
    ASSERT_FALSE(Has(key)) << key << " still cached";
    returned_us.push_back(std::chrono::duration<double, std::micro>(gone - returned).count());
    sent_us.push_back(std::chrono::duration<double, std::micro>(gone - sent).count());
  }
  for (auto* v : {&returned_us, &sent_us}) std::sort(v->begin(), v->end());
  auto at = [&](const std::vector<double>& v, double q) {
    return v[static_cast<size_t>(q * (kWrites - 1))];
  };
  std::printf(
      "invalidation delay over %d writes, from the SET returning: p50 %.0f us, p99 %.0f us, "
      "max %.0f us (%d already gone when it returned); from the SET being sent: p50 %.0f us, "
      "p99 %.0f us, max %.0f us\n",
      kWrites, at(returned_us, 0.5), at(returned_us, 0.99), returned_us.back(), gone_at_return,
      at(sent_us, 0.5), at(sent_us, 0.99), sent_us.back());
  RecordProperty("delay_p50_us", static_cast<int>(at(returned_us, 0.5)));
  RecordProperty("delay_p99_us", static_cast<int>(at(returned_us, 0.99)));
  RecordProperty("delay_max_us", static_cast<int>(returned_us.back()));
  EXPECT_EQ(State(), static_cast<uint32_t>(SHMKV_UPSTREAM_UP));
}

// Option errors exit 2 before anything is opened.
TEST(UpstreamCliTest, BadOptionsExitTwo) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"--upstream", "http://127.0.0.1:6379"}, "for --upstream"},
      {{"--upstream", "redis://127.0.0.1:0"}, "bad port"},
      {{"--prefix", "t:"}, "--prefix needs --upstream"},
      {{"--upstream", "redis://h", "--prefix", "t:", "--prefix", "t:a"}, "overlap"},
      {{"--upstream", "redis://h", "--prefix", "a b"}, "without spaces"},
      {{"--upstream", "redis://h", "--upstream-ping", "1s"}, "must be shorter"},
      {{"--upstream", "redis://h", "--upstream-max-lag", "soon"}, "--upstream-max-lag"},
  };
  for (const auto& [args, message] : bad) {
    std::vector<std::string> full = {"--segment", "shmkv-test-never-opened"};
    full.insert(full.end(), args.begin(), args.end());
    ShmkvdProcess d;
    ASSERT_TRUE(d.Start(full));
    auto status = d.WaitExit(After(kTimeout));
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << d.Stderr();
    EXPECT_EQ(d.Stderr().rfind("shmkvd: ", 0), 0u) << d.Stderr();
    EXPECT_NE(d.Stderr().find(message), std::string::npos) << d.Stderr();
  }
}

}  // namespace
}  // namespace shmkv::test
