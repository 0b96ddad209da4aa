// Black-box tests of the shmkv CLI (DESIGN.md §8): the real binary, run with
// fork/exec on a unique segment per test.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <new>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "layout.h"
#include "shmkv/shmkv.h"
#include "support/run_program.h"
#include "support/test_segment.h"

namespace {

using nlohmann::json;
using shmkv::test::ScopedSegmentName;

using Result = shmkv::test::ProgramResult;
using shmkv::test::RunProgram;

// Runs the CLI with args.
Result Cli(const std::vector<std::string>& args, const std::string& input = "") {
  std::vector<std::string> argv{SHMKV_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProgram(std::move(argv), input);
}

json Json(const Result& r) {
  try {
    return json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON: " << e.what() << "\n" << r.out;
    return json();
  }
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result r = Cli({"create", name(), "--memory", "8M", "--max-items", "1024"});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  const std::string& name() const { return seg_.name(); }
  ScopedSegmentName seg_{"cli"};
};

TEST(CliUsage, HelpListsEveryCommand) {
  Result r = Cli({"--help"});
  EXPECT_EQ(r.code, 0);
  for (const char* c : {"create", "get", "set", "add", "del", "incr", "ttl", "touch", "keys",
                        "stats", "check", "recover", "destroy"}) {
    EXPECT_NE(r.out.find(std::string("  ") + c + " "), std::string::npos) << c;
    Result h = Cli({c, "--help"});
    EXPECT_EQ(h.code, 0) << c;
    EXPECT_NE(h.out.find("Example:\n  shmkv " + std::string(c)), std::string::npos) << h.out;
  }
}

TEST(CliUsage, UsageErrorsExit2) {
  EXPECT_EQ(Cli({}).code, 2);
  EXPECT_EQ(Cli({"frobnicate", "x"}).code, 2);
  EXPECT_EQ(Cli({"get"}).code, 2);
  EXPECT_EQ(Cli({"get", "seg"}).code, 2);
  EXPECT_EQ(Cli({"get", "seg", "k", "extra"}).code, 2);
  EXPECT_EQ(Cli({"get", "seg", "k", "--bogus"}).code, 2);
  EXPECT_EQ(Cli({"set", "seg", "k", "v", "--ttl", "soon"}).code, 2);
  EXPECT_EQ(Cli({"set", "seg", "k", "v", "--nx", "--xx"}).code, 2);
  EXPECT_EQ(Cli({"set", "seg", "k"}).code, 2);
  EXPECT_EQ(Cli({"set", "seg", "k", "v", "--cas", "-1"}).code, 2);
  EXPECT_EQ(Cli({"get", "seg", "zz", "--hex"}).code, 2);
  EXPECT_EQ(Cli({"create", "seg", "--memory", "lots"}).code, 2);
  EXPECT_EQ(Cli({"create", "seg", "--evict", "random"}).code, 2);
  EXPECT_EQ(Cli({"stats", "seg", "--format", "xml"}).code, 2);
  EXPECT_EQ(Cli({"touch", "seg", "k"}).code, 2);
  Result r = Cli({"destroy", "seg"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--yes"), std::string::npos);
}

TEST(CliOpen, MissingSegmentExits3) {
  ScopedSegmentName seg("cli-missing");
  for (const auto& args : std::vector<std::vector<std::string>>{{"get", seg.name(), "k"},
                                                                {"stats", seg.name()},
                                                                {"keys", seg.name()},
                                                                {"check", seg.name()},
                                                                {"destroy", seg.name(), "--yes"}}) {
    Result r = Cli(args);
    EXPECT_EQ(r.code, 3) << args[0];
    EXPECT_EQ(r.err.rfind("shmkv: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  }
}

TEST(CliOpen, BadSegmentExits3) {
  ScopedSegmentName seg("cli-bad");
  ASSERT_EQ(Cli({"create", seg.name(), "--memory", "2M"}).code, 0);
  {
    const int fd = open(("/dev/shm/" + seg.name()).c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    const std::string junk(64, 'X');
    ASSERT_EQ(pwrite(fd, junk.data(), junk.size(), 0), 64);
    close(fd);
  }
  Result r = Cli({"stats", seg.name()});
  EXPECT_EQ(r.code, 3) << r.err;
}

TEST_F(CliTest, CreateExistingExits1) {
  Result r = Cli({"create", name()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("exists"), std::string::npos) << r.err;
}

TEST_F(CliTest, CreateTakesGeometry) {
  ScopedSegmentName seg("cli-geo");
  Result r = Cli({"create", seg.name(), "--memory", "4M", "--max-items", "2000", "--max-key-len",
                  "64", "--max-value-len", "64K", "--mode", "0640", "--evict", "none"});
  ASSERT_EQ(r.code, 0) << r.err;
  json s = Json(Cli({"stats", seg.name(), "--json"}));
  EXPECT_EQ(s["memory_bytes"], 4u << 20);
  EXPECT_EQ(s["capacity_items"], 2000u);
  // max-key-len applies.
  EXPECT_NE(Cli({"set", seg.name(), std::string(65, 'k'), "v"}).code, 0);
  EXPECT_EQ(Cli({"set", seg.name(), std::string(64, 'k'), "v"}).code, 0);
}

TEST_F(CliTest, SetGetText) {
  ASSERT_EQ(Cli({"set", name(), "user:42", "hello world"}).code, 0);
  Result r = Cli({"get", name(), "user:42"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "hello world");
  // --hex applies to the key as well as the value.
  EXPECT_EQ(Cli({"get", name(), "user:42", "--hex"}).code, 2);
  r = Cli({"get", name(), "757365723a3432", "--hex"});
  EXPECT_EQ(r.out, "68656c6c6f20776f726c64\n");
  r = Cli({"get", name(), "nope"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("shmkv: get nope: "), std::string::npos) << r.err;
}

TEST_F(CliTest, GetJson) {
  ASSERT_EQ(Cli({"set", name(), "k", "v1", "--ttl", "30s", "--flags", "7"}).code, 0);
  json j = Json(Cli({"get", name(), "k", "--json"}));
  EXPECT_EQ(j["key"], "k");
  EXPECT_EQ(j["value"], "v1");
  EXPECT_EQ(j["flags"], 7);
  EXPECT_GT(j["ttl_ms"].get<int64_t>(), 25000);
  EXPECT_LE(j["ttl_ms"].get<int64_t>(), 30000);
  EXPECT_GT(j["cas"].get<uint64_t>(), 0u);
}

TEST_F(CliTest, BinaryRoundTripWithHex) {
  const std::string key_hex = "00ff0a5c";
  const std::string val_hex = "000102fffe0d0a80";
  ASSERT_EQ(Cli({"set", name(), key_hex, val_hex, "--hex"}).code, 0);
  Result r = Cli({"get", name(), key_hex, "--hex"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, val_hex + "\n");
  r = Cli({"get", name(), key_hex, "--hex", "--json"});
  json j = Json(r);
  EXPECT_EQ(j["key_hex"], key_hex);
  EXPECT_EQ(j["value_hex"], val_hex);
  EXPECT_FALSE(j.contains("value"));
  r = Cli({"get", name(), "--hex", key_hex});
  EXPECT_EQ(r.out, val_hex + "\n");
  r = Cli({"keys", name()});
  EXPECT_NE(r.out.find("\\x00\\xff\\x0a\\\\\t-1\t8\n"), std::string::npos) << r.out;
  // A raw get gives the bytes themselves.
  ASSERT_EQ(Cli({"set", name(), "raw", "--value-file", "-"}, std::string("a\0b\n", 4)).code, 0);
  r = Cli({"get", name(), "raw"});
  EXPECT_EQ(r.out, std::string("a\0b\n", 4));
}

TEST_F(CliTest, ValueFile) {
  const std::string path = testing::TempDir() + "/cli_value_" + std::to_string(getpid());
  {
    FILE* f = fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    fputs("from a file\n", f);
    fclose(f);
  }
  ASSERT_EQ(Cli({"set", name(), "f", "--value-file", path}).code, 0);
  EXPECT_EQ(Cli({"get", name(), "f"}).out, "from a file\n");
  unlink(path.c_str());
  EXPECT_EQ(Cli({"set", name(), "f", "--value-file", path}).code, 4);
  EXPECT_EQ(Cli({"set", name(), "f", "v", "--value-file", path}).code, 2);
}

TEST_F(CliTest, SetConditions) {
  EXPECT_EQ(Cli({"set", name(), "k", "v", "--xx"}).code, 1);
  EXPECT_EQ(Cli({"set", name(), "k", "v", "--nx"}).code, 0);
  EXPECT_EQ(Cli({"set", name(), "k", "v2", "--nx"}).code, 1);
  EXPECT_EQ(Cli({"add", name(), "k", "v3"}).code, 1);
  EXPECT_EQ(Cli({"add", name(), "k2", "v3"}).code, 0);
  EXPECT_EQ(Cli({"set", name(), "k", "v4", "--xx"}).code, 0);
  EXPECT_EQ(Cli({"get", name(), "k"}).out, "v4");
  const uint64_t cas = Json(Cli({"get", name(), "k", "--json"}))["cas"];
  Result r = Cli({"set", name(), "k", "v5", "--cas", std::to_string(cas + 1)});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(Cli({"set", name(), "k", "v5", "--cas", std::to_string(cas)}).code, 0);
  EXPECT_EQ(Cli({"get", name(), "k"}).out, "v5");
}

TEST_F(CliTest, KeepTtlAndNoevict) {
  ASSERT_EQ(Cli({"set", name(), "k", "v", "--ttl", "1h"}).code, 0);
  ASSERT_EQ(Cli({"set", name(), "k", "w", "--keepttl", "--noevict"}).code, 0);
  EXPECT_GT(std::stoll(Cli({"ttl", name(), "k"}).out), 3000000);
  ASSERT_EQ(Cli({"set", name(), "k", "x"}).code, 0);
  EXPECT_EQ(Cli({"ttl", name(), "k"}).out, "-1\n");
}

TEST_F(CliTest, Del) {
  ASSERT_EQ(Cli({"set", name(), "k", "v"}).code, 0);
  const uint64_t cas = Json(Cli({"get", name(), "k", "--json"}))["cas"];
  EXPECT_EQ(Cli({"del", name(), "k", "--cas", std::to_string(cas + 1)}).code, 1);
  EXPECT_EQ(Cli({"del", name(), "k", "--cas", std::to_string(cas)}).code, 0);
  EXPECT_EQ(Cli({"del", name(), "k"}).code, 1);
  EXPECT_EQ(Cli({"get", name(), "k"}).code, 1);
}

TEST_F(CliTest, Incr) {
  Result r = Cli({"incr", name(), "c", "--initial", "10"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "10\n");
  EXPECT_EQ(Cli({"incr", name(), "c"}).out, "11\n");
  EXPECT_EQ(Cli({"incr", name(), "c", "--by", "5"}).out, "16\n");
  EXPECT_EQ(Cli({"incr", name(), "c", "--by=-20"}).out, "-4\n");
  json j = Json(Cli({"incr", name(), "c", "--json"}));
  EXPECT_EQ(j["key"], "c");
  EXPECT_EQ(j["value"], -3);
  EXPECT_EQ(Cli({"get", name(), "c"}).out, "-3");
  ASSERT_EQ(Cli({"incr", name(), "t", "--ttl", "5m"}).code, 0);
  EXPECT_GT(std::stoll(Cli({"ttl", name(), "t"}).out), 290000);
  ASSERT_EQ(Cli({"set", name(), "s", "abc"}).code, 0);
  EXPECT_EQ(Cli({"incr", name(), "s"}).code, 4);
}

TEST_F(CliTest, TtlAndTouch) {
  ASSERT_EQ(Cli({"set", name(), "k", "v"}).code, 0);
  EXPECT_EQ(Cli({"ttl", name(), "k"}).out, "-1\n");
  ASSERT_EQ(Cli({"touch", name(), "k", "--ttl", "500ms"}).code, 0);
  json j = Json(Cli({"ttl", name(), "k", "--json"}));
  EXPECT_EQ(j["key"], "k");
  EXPECT_GT(j["ttl_ms"].get<int64_t>(), 0);
  EXPECT_LE(j["ttl_ms"].get<int64_t>(), 500);
  ASSERT_EQ(Cli({"touch", name(), "k", "--ttl", "0"}).code, 0);
  EXPECT_EQ(Cli({"ttl", name(), "k"}).out, "-1\n");
  ASSERT_EQ(Cli({"touch", name(), "k", "--ttl", "2"}).code, 0);  // bare number: seconds
  EXPECT_GT(std::stoll(Cli({"ttl", name(), "k"}).out), 1000);
  EXPECT_EQ(Cli({"ttl", name(), "nope"}).code, 1);
  EXPECT_EQ(Cli({"touch", name(), "nope", "--ttl", "1s"}).code, 1);
}

TEST_F(CliTest, Keys) {
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(Cli({"set", name(), "user:" + std::to_string(i), std::string(i, 'x')}).code, 0);
  }
  ASSERT_EQ(Cli({"set", name(), "other", "v", "--ttl", "1h"}).code, 0);
  Result r = Cli({"keys", name()});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out.rfind("key\tttl\tsize\n", 0), 0u);
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 22);
  EXPECT_NE(r.out.find("user:7\t-1\t7\n"), std::string::npos);
  json j = Json(Cli({"keys", name(), "--prefix", "user:", "--json"}));
  ASSERT_TRUE(j.is_array());
  EXPECT_EQ(j.size(), 20u);
  for (const json& e : j) {
    const std::string k = e["key"];
    EXPECT_EQ(k.rfind("user:", 0), 0u);
    EXPECT_EQ(e["size"], std::stoul(k.substr(5)));
    EXPECT_EQ(e["ttl_ms"], -1);
  }
  j = Json(Cli({"keys", name(), "--prefix", "other", "--json"}));
  ASSERT_EQ(j.size(), 1u);
  EXPECT_GT(j[0]["ttl_ms"].get<int64_t>(), 3000000);
  j = Json(Cli({"keys", name(), "--limit", "5", "--json"}));
  EXPECT_EQ(j.size(), 5u);
}

TEST_F(CliTest, Stats) {
  ASSERT_EQ(Cli({"set", name(), "k", "v"}).code, 0);
  ASSERT_EQ(Cli({"get", name(), "k"}).code, 0);
  ASSERT_EQ(Cli({"get", name(), "nope"}).code, 1);
  json j = Json(Cli({"stats", name(), "--json"}));
  for (const char* f : {"memory_bytes", "memory_used", "items", "capacity_items", "gets", "hits",
                        "misses", "sets", "deletes", "incrs", "cas_failures", "evictions",
                        "expirations", "recovered_processes", "attached_processes"}) {
    EXPECT_TRUE(j.contains(f)) << f;
  }
  EXPECT_EQ(j["items"], 1);
  EXPECT_EQ(j["hits"], 1);
  EXPECT_EQ(j["misses"], 1);
  EXPECT_EQ(j["sets"], 1);
  EXPECT_EQ(j, Json(Cli({"stats", name(), "--format", "json"})));
  Result r = Cli({"stats", name()});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("items"), std::string::npos);
  r = Cli({"stats", name(), "--format", "prometheus"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("# TYPE shmkv_hits_total counter\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("shmkv_items{segment=\"" + name() + "\"} 1\n"), std::string::npos);
  EXPECT_EQ(r.out.find("janitor"), std::string::npos);
  const Result promtool = RunProgram({"promtool", "check", "metrics"}, r.out);
  EXPECT_EQ(promtool.code, 0) << promtool.out << promtool.err;
  EXPECT_EQ(promtool.out + promtool.err, "") << "promtool has remarks";
}

TEST_F(CliTest, CheckAndRecover) {
  ASSERT_EQ(Cli({"set", name(), "k", "v"}).code, 0);
  Result r = Cli({"check", name()});
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("OK"), std::string::npos);
  json j = Json(Cli({"check", name(), "--offline", "--json"}));
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["offline"], true);
  EXPECT_EQ(j["problems"], 0);
  EXPECT_EQ(j["leaked_blocks"], 0);
  EXPECT_EQ(j["slots_live"], 1);
  r = Cli({"recover", name()});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "0\n");
}

TEST_F(CliTest, InfoShowsGeometryCreatorAndProcesses) {
  Result r = Cli({"info", name()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("layout version  " + std::to_string(shmkv::internal::kLayoutVersion) + "\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("huge pages      "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mode            0600"), std::string::npos) << r.out;
  // A process attached to the segment shows up, alive.
  shmkv_t* kv = nullptr;
  ASSERT_EQ(shmkv_open(name().c_str(), nullptr, &kv), 0);
  json j = Json(Cli({"info", name(), "--json"}));
  EXPECT_EQ(j["layout_version"], shmkv::internal::kLayoutVersion);
  EXPECT_TRUE(j["huge_page_bytes"].is_number_unsigned()) << j.dump();
  EXPECT_GT(j["memory_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["evict_policy"], "allkeys");
  EXPECT_EQ(j["attached_processes"], 1);
  ASSERT_EQ(j["processes"].size(), 1u);
  EXPECT_EQ(j["processes"][0]["pid"], getpid());
  EXPECT_EQ(j["processes"][0]["alive"], true);
  EXPECT_EQ(j["boot_id"].get<std::string>().size(), 36u);
  shmkv_close(kv);
  EXPECT_EQ(Json(Cli({"info", name(), "--json"}))["attached_processes"], 0);
}

TEST_F(CliTest, StatsWatchRepeatsWithRates) {
  ASSERT_EQ(Cli({"incr", name(), "c"}).code, 0);
  Result r = Cli({"stats", name(), "--json", "--watch", "50ms", "--count", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    const json j = json::parse(line);  // one object per line
    EXPECT_EQ(j["incrs"], 1);
    EXPECT_EQ(j["attached_processes"], 0);  // the CLI attaches read-only
    ++n;
  }
  EXPECT_EQ(n, 3);
  r = Cli({"stats", name(), "--watch", "50ms", "--count", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("gets/s"), std::string::npos) << r.out;
  EXPECT_EQ(Cli({"stats", name(), "--watch", "soon"}).code, 2);
}

TEST_F(CliTest, DumpLoadRoundTripsBinaryValuesTtlsAndFlags) {
  // Keys and values with NUL and high bytes, an empty value, a TTL, flags.
  ASSERT_EQ(Cli({"set", name(), "6b00ff", "00ff0001", "--hex", "--ttl", "1h", "--flags", "7"}).code,
            0);
  ASSERT_EQ(Cli({"set", name(), "plain", ""}).code, 0);
  ASSERT_EQ(Cli({"set", name(), "text", "hello world"}).code, 0);
  Result dump = Cli({"dump", name()});
  ASSERT_EQ(dump.code, 0) << dump.err;
  EXPECT_EQ(dump.out.rfind("shmkv-dump 2\n", 0), 0u) << dump.out;
  ScopedSegmentName other("cli-load");
  ASSERT_EQ(Cli({"create", other.name(), "--memory", "4M"}).code, 0);
  Result load = Cli({"load", other.name()}, dump.out);
  ASSERT_EQ(load.code, 0) << load.err;
  EXPECT_NE(load.err.find("loaded 3 entries"), std::string::npos) << load.err;
  json j = Json(Cli({"get", other.name(), "6b00ff", "--hex", "--json"}));
  EXPECT_EQ(j["value_hex"], "00ff0001");
  EXPECT_EQ(j["flags"], 7);
  EXPECT_GT(j["ttl_ms"].get<int64_t>(), 3500000);
  EXPECT_LE(j["ttl_ms"].get<int64_t>(), 3600000);
  EXPECT_EQ(Cli({"get", other.name(), "plain"}).out, "");
  EXPECT_EQ(Cli({"get", other.name(), "text"}).out, "hello world");
  EXPECT_EQ(Json(Cli({"ttl", other.name(), "text", "--json"}))["ttl_ms"], -1);
  // --nx keeps what exists.
  ASSERT_EQ(Cli({"set", other.name(), "text", "changed"}).code, 0);
  load = Cli({"load", other.name(), "-", "--nx"}, dump.out);
  ASSERT_EQ(load.code, 0) << load.err;
  EXPECT_EQ(Cli({"get", other.name(), "text"}).out, "changed");
  // Not a dump: usage error, nothing stored.
  EXPECT_EQ(Cli({"load", other.name()}, "hello\n").code, 2);
  EXPECT_EQ(Cli({"load", other.name()}, "shmkv-dump 1\nzz 00 -1 0\n").code, 2);
  EXPECT_EQ(Cli({"load", other.name()}, "shmkv-dump 2\n6b 00 -1 0 sticky\n").code, 2);
  EXPECT_EQ(Cli({"load", other.name()}, "shmkv-dump 2\n6b 00 -1 0\n").code, 2);
}

TEST_F(CliTest, DumpLoadKeepsNoEvictAndReadsVersion1) {
  ASSERT_EQ(Cli({"set", name(), "flag:dark-mode", "on", "--noevict"}).code, 0);
  ASSERT_EQ(Cli({"set", name(), "page:1", "cached"}).code, 0);
  EXPECT_EQ(Json(Cli({"get", name(), "flag:dark-mode", "--json"}))["noevict"], true);
  EXPECT_EQ(Json(Cli({"get", name(), "page:1", "--json"}))["noevict"], false);
  Result dump = Cli({"dump", name()});
  ASSERT_EQ(dump.code, 0) << dump.err;
  EXPECT_NE(dump.out.find(" noevict\n"), std::string::npos) << dump.out;
  ScopedSegmentName other("cli-load2");
  ASSERT_EQ(Cli({"create", other.name(), "--memory", "4M"}).code, 0);
  ASSERT_EQ(Cli({"load", other.name()}, dump.out).code, 0);
  json keys = Json(Cli({"keys", other.name(), "--json"}));
  ASSERT_EQ(keys.size(), 2u) << keys;
  for (const json& k : keys) EXPECT_EQ(k["noevict"], k["key"] == "flag:dark-mode") << k;
  // A version 1 file (no OPTIONS column) still loads.
  ASSERT_EQ(Cli({"load", other.name()}, "shmkv-dump 1\n7631 6f6c64 -1 5\n").code, 0);
  json j = Json(Cli({"get", other.name(), "v1", "--json"}));
  EXPECT_EQ(j["value"], "old");
  EXPECT_EQ(j["flags"], 5);
  // copy keeps it too.
  ScopedSegmentName copy("cli-copy2");
  ASSERT_EQ(Cli({"copy", other.name(), copy.name(), "--memory", "4M"}).code, 0);
  EXPECT_EQ(Json(Cli({"get", copy.name(), "flag:dark-mode", "--json"}))["noevict"], true);
}

TEST_F(CliTest, CopyIntoALargerSegment) {
  for (int i = 0; i < 200; ++i)
    ASSERT_EQ(Cli({"set", name(), "k" + std::to_string(i), "v" + std::to_string(i)}).code, 0);
  ASSERT_EQ(Cli({"set", name(), "ttl", "x", "--ttl", "1h", "--flags", "3"}).code, 0);
  ScopedSegmentName big("cli-copy");
  Result r = Cli({"copy", name(), big.name(), "--memory", "16M"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("copied 201 entries"), std::string::npos) << r.out;
  EXPECT_EQ(Json(Cli({"info", big.name(), "--json"}))["memory_bytes"], 16u << 20);
  EXPECT_EQ(Cli({"get", big.name(), "k123"}).out, "v123");
  json j = Json(Cli({"get", big.name(), "ttl", "--json"}));
  EXPECT_EQ(j["flags"], 3);
  EXPECT_GT(j["ttl_ms"].get<int64_t>(), 3500000);
  EXPECT_EQ(Json(Cli({"check", big.name(), "--offline", "--json"}))["ok"], true);
  // DEST must be new.
  EXPECT_EQ(Cli({"copy", name(), big.name()}).code, 1);
}

TEST_F(CliTest, CheckFindsACorruptedKey) {
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(Cli({"set", name(), "key" + std::to_string(i), "value"}).code, 0);
  }
  // Overwrite the bytes of one stored key in the segment file: the entry no
  // longer hashes to its slot.
  const std::string path = "/dev/shm/" + name();
  const int fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  std::string data(static_cast<size_t>(st.st_size), '\0');
  ASSERT_EQ(pread(fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
  const size_t at = data.find("key17value");
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(pwrite(fd, "zzzzz", 5, static_cast<off_t>(at)), 5);
  close(fd);
  Result r = Cli({"check", name()});
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("PROBLEMS FOUND"), std::string::npos) << r.out;
  json j = Json(Cli({"check", name(), "--json"}));
  EXPECT_EQ(j["ok"], false);
  EXPECT_GE(j["problems"].get<uint64_t>(), 1u);
  EXPECT_FALSE(j["first_problem"].get<std::string>().empty());
}

// Every command works on a segment that another process is writing, and a
// reader stalled in the middle of a scan (a dump whose output pipe is full)
// does not hold the writer back.
TEST(CliUnderLoad, CommandsWorkWhileAWriterRunsAndNeverBlockIt) {
  ScopedSegmentName seg("cli-load");
  ASSERT_EQ(Cli({"create", seg.name(), "--memory", "32M"}).code, 0);
  // The writer's progress, shared with this process.
  auto* ops = static_cast<std::atomic<uint64_t>*>(mmap(nullptr, sizeof(std::atomic<uint64_t>),
                                                       PROT_READ | PROT_WRITE,
                                                       MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(ops, MAP_FAILED);
  new (ops) std::atomic<uint64_t>(0);
  const pid_t writer = fork();
  ASSERT_GE(writer, 0);
  if (writer == 0) {
    shmkv_t* kv = nullptr;
    if (shmkv_open(seg.c_str(), nullptr, &kv) != 0) _exit(3);
    const std::string value(200, 'v');
    for (uint64_t i = 0;; ++i) {  // until SIGKILL
      const std::string key = "w:" + std::to_string(i % 20000);
      if (shmkv_set(kv, key.data(), key.size(), value.data(), value.size(), 0) != 0) _exit(4);
      char buf[256];
      size_t len;
      shmkv_get(kv, key.data(), key.size(), buf, sizeof buf, &len, nullptr);
      shmkv_incr(kv, "w:count", 7, 1, 0, 0, nullptr);
      ops->fetch_add(1, std::memory_order_relaxed);
    }
  }
  auto wait_for_ops = [&](uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (ops->load() < n && std::chrono::steady_clock::now() < deadline) sched_yield();
    return ops->load() >= n;
  };
  ASSERT_TRUE(wait_for_ops(30000));  // every key written at least once

  // Read commands: well-formed output while the data changes underneath.
  json keys = Json(Cli({"keys", seg.name(), "--prefix", "w:", "--json"}));
  EXPECT_GE(keys.size(), 20000u);
  for (const json& k : keys) {
    if (k["key"] != "w:count") {
      EXPECT_EQ(k["size"], 200) << k;
    }
  }
  const json s1 = Json(Cli({"stats", seg.name(), "--json"}));
  EXPECT_TRUE(wait_for_ops(ops->load() + 1000));
  const json s2 = Json(Cli({"stats", seg.name(), "--json"}));
  EXPECT_GT(s2["sets"].get<uint64_t>(), s1["sets"].get<uint64_t>());
  EXPECT_EQ(s2["attached_processes"], 1);
  const json info = Json(Cli({"info", seg.name(), "--json"}));
  ASSERT_EQ(info["processes"].size(), 1u);
  EXPECT_EQ(info["processes"][0]["pid"], writer);
  EXPECT_EQ(info["processes"][0]["alive"], true);
  const json check = Json(Cli({"check", seg.name(), "--json"}));
  EXPECT_EQ(check["ok"], true) << check;
  EXPECT_EQ(Json(Cli({"get", seg.name(), "w:17", "--json"}))["value"], std::string(200, 'v'));
  EXPECT_EQ(Cli({"incr", seg.name(), "w:count", "--by", "1000000"}).code, 0);
  EXPECT_GE(std::stoull(Cli({"get", seg.name(), "w:count"}).out), 1000000u);

  // dump | load under load.
  const Result dump = Cli({"dump", seg.name(), "--prefix", "w:"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  ScopedSegmentName copy("cli-load-copy");
  ASSERT_EQ(Cli({"create", copy.name(), "--memory", "32M"}).code, 0);
  const Result load = Cli({"load", copy.name()}, dump.out);
  ASSERT_EQ(load.code, 0) << load.err;
  EXPECT_GE(Json(Cli({"stats", copy.name(), "--json"}))["items"].get<uint64_t>(), 20000u);

  // A dump stalled mid-scan: nobody reads its stdout, so it blocks in
  // write() with the pipe full, holding whatever a reader holds.
  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  const pid_t stalled = fork();
  ASSERT_GE(stalled, 0);
  if (stalled == 0) {
    dup2(out[1], 1);
    execl(SHMKV_CLI_PATH, SHMKV_CLI_PATH, "dump", seg.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  char first[4096];
  ASSERT_GT(read(out[0], first, sizeof first), 0);  // it has started
  // The pipe refills (64 KiB < the ~9 MiB dump), and stays full: the writer
  // must still make progress.
  const uint64_t before = ops->load();
  EXPECT_TRUE(wait_for_ops(before + 50000)) << "the writer stalled behind a stalled dump";
  EXPECT_EQ(waitpid(stalled, nullptr, WNOHANG), 0) << "the dump was not stalled";
  // Drain it: it completes normally.
  std::string rest;
  ssize_t n;
  while ((n = read(out[0], first, sizeof first)) > 0) rest.append(first, static_cast<size_t>(n));
  close(out[0]);
  int status = 0;
  ASSERT_EQ(waitpid(stalled, &status, 0), stalled);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_GT(rest.size(), 20000u * 400);  // at least 20000 entries of 200-byte values in hex

  kill(writer, SIGKILL);
  waitpid(writer, nullptr, 0);
  EXPECT_EQ(Cli({"recover", seg.name()}).code, 0);
  EXPECT_EQ(Json(Cli({"check", seg.name(), "--json"}))["ok"], true);
  munmap(ops, sizeof(std::atomic<uint64_t>));
}

TEST_F(CliTest, Destroy) {
  EXPECT_EQ(Cli({"destroy", name()}).code, 2);
  EXPECT_EQ(Cli({"stats", name()}).code, 0);
  EXPECT_EQ(Cli({"destroy", name(), "--yes"}).code, 0);
  EXPECT_EQ(Cli({"stats", name()}).code, 3);
  EXPECT_EQ(Cli({"destroy", name(), "--yes"}).code, 3);
}

}  // namespace
