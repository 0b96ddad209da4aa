// shmkv: the command-line tool of a shmkv segment (DESIGN.md §8).
//
//   shmkv <command> <segment> [args] [options]
//
// Exit codes: 0 success; 1 a "no" answer (not found, exists, cas mismatch,
// check found problems); 2 usage error; 3 cannot open the segment
// (missing, permission, bad segment); 4 any other error.
#include "shmkv/shmkv.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "codec.h"
#include "metrics.h"
#include "options.h"
#include "segment_group.h"
#include "top.h"

namespace po = boost::program_options;
using nlohmann::json;

namespace shmkv_cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitNo = 1;
constexpr int kExitUsage = 2;
constexpr int kExitOpen = 3;
constexpr int kExitError = 4;

// Thrown to end the command with an exit code; message goes to stderr.
struct Exit {
  int code;
  std::string message;
};

[[noreturn]] void Usage(const std::string& message) { throw Exit{kExitUsage, message}; }

// "shmkv: <what>: <strerror> (<last_error>)", exit code from the error.
[[noreturn]] void Fail(const std::string& what, int rc, bool opening = false) {
  std::string msg = what + ": " + shmkv_strerror(rc);
  const std::string detail = shmkv_last_error();
  if (!detail.empty()) msg += " (" + detail + ")";
  int code = kExitError;
  if (rc == SHMKV_ENOTFOUND || rc == SHMKV_EEXIST || rc == SHMKV_ECAS) code = kExitNo;
  if (opening && (rc == SHMKV_ENOSEG || rc == SHMKV_EACCES || rc == SHMKV_EBADSEG)) {
    code = kExitOpen;
  }
  throw Exit{code, msg};
}

// One subcommand's command line: positional arguments, options, help.
class CommandLine {
 public:
  CommandLine(const char* command, const char* synopsis, const char* summary, const char* example)
      : command_(command),
        synopsis_(synopsis),
        summary_(summary),
        example_(example),
        options_("Options", 100) {
    options_.add_options()("help,h", "show this help");
  }
  po::options_description_easy_init Add() { return options_.add_options(); }
  // A required or optional positional argument, in order.
  void Positional(const char* name, bool required = true) {
    positional_names_.emplace_back(name, required);
  }
  // Parses args (after the command name). Prints help and returns false on --help.
  bool Parse(const std::vector<std::string>& args) {
    po::options_description all;
    all.add(options_);
    po::options_description hidden;
    po::positional_options_description pos;
    for (const auto& [name, required] : positional_names_) {
      hidden.add_options()(name.c_str(), po::value<std::string>());
      pos.add(name.c_str(), 1);
    }
    all.add(hidden);
    try {
      po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm_);
      po::notify(vm_);
    } catch (const po::error& e) {
      Usage(std::string(e.what()) + "\n(see shmkv " + command_ + " --help)");
    }
    if (vm_.count("help")) {
      std::cout << Help();
      return false;
    }
    for (const auto& [name, required] : positional_names_) {
      if (required && !vm_.count(name)) {
        Usage("missing argument " + Upper(name) + "\nusage: shmkv " + synopsis_);
      }
    }
    return true;
  }
  std::string Help() const {
    std::ostringstream o;
    o << "usage: shmkv " << synopsis_ << "\n\n"
      << summary_ << "\n\n"
      << options_ << "\nExample:\n  " << example_ << "\n";
    return o.str();
  }
  bool Has(const char* name) const { return vm_.count(name) != 0; }
  std::string Str(const char* name) const { return vm_[name].as<std::string>(); }
  bool Flag(const char* name) const { return Has(name) && vm_[name].as<bool>(); }

 private:
  static std::string Upper(std::string s) {
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
  }
  std::string command_, synopsis_, summary_, example_;
  po::options_description options_;
  std::vector<std::pair<std::string, bool>> positional_names_;
  po::variables_map vm_;
};

template <typename T>
T ParseInt(const CommandLine& cl, const char* name, int base = 10) {
  const std::string s = cl.Str(name);
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) {
    Usage("invalid value '" + s + "' for --" + name + ": expected an integer");
  }
  return v;
}

uint64_t ParseTtl(const CommandLine& cl, const char* name) {
  const std::string s = cl.Str(name);
  auto d = shmkvd::ParseDuration(s);
  if (!d) Usage("invalid value '" + s + "' for --" + name + ": expected a duration like 30s");
  return static_cast<uint64_t>(d->count());
}

uint64_t ParseSizeOption(const CommandLine& cl, const char* name) {
  const std::string s = cl.Str(name);
  auto v = shmkvd::ParseSize(s);
  if (!v) Usage("invalid value '" + s + "' for --" + name + ": expected a size like 64M");
  return *v;
}

// KEY (or another byte-string argument): text, or hex with --hex.
std::string Bytes(const CommandLine& cl, const char* name, bool hex) {
  const std::string s = cl.Str(name);
  if (!hex) return s;
  auto b = HexDecode(s);
  if (!b) Usage("invalid hex for " + std::string(name) + ": '" + s + "'");
  return *b;
}

// Puts a byte string into a JSON object as `field` (valid UTF-8) or
// `field`_hex.
void PutBytes(json& j, const std::string& field, const std::string& bytes) {
  if (IsValidUtf8(bytes)) {
    j[field] = bytes;
  } else {
    j[field + "_hex"] = HexEncode(bytes);
  }
}

void PrintJson(const json& j) { std::cout << j.dump(2) << "\n"; }

// An open handle, closed at scope end.
class Segment {
 public:
  explicit Segment(const std::string& name, uint32_t flags = 0) {
    shmkv_options_t o;
    shmkv_options_init(&o);
    o.flags = flags;
    const int rc = shmkv_open(name.c_str(), flags ? &o : nullptr, &kv_);
    if (rc != 0) Fail("cannot open segment " + name, rc, /*opening=*/true);
  }
  ~Segment() { shmkv_close(kv_); }
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  shmkv_t* get() const { return kv_; }

 private:
  shmkv_t* kv_ = nullptr;
};

// ---------------------------------------------------------------- create

int CmdCreate(const std::vector<std::string>& args) {
  CommandLine cl("create", "create SEGMENT [options]",
                 "Creates a new segment (fails with exit 1 if it exists).",
                 "shmkv create sessions --memory 256M --max-items 1000000 --mode 0660 --group web");
  cl.Positional("segment");
  cl.Add()("memory", po::value<std::string>()->default_value("64M"), "segment size (64K, 64M, 1G)")(
      "max-items", po::value<std::string>(), "index capacity (default memory / 256)")(
      "max-key-len", po::value<std::string>(), "longest key in bytes (default 250)")(
      "max-value-len", po::value<std::string>(), "largest value (default 1M)")(
      "mode", po::value<std::string>()->default_value("0600"), "file mode, octal")(
      "group", po::value<std::string>(), "group owning the segment (name or gid)")(
      "evict", po::value<std::string>()->default_value("allkeys"),
      "eviction policy: allkeys, volatile or none");
  if (!cl.Parse(args)) return kExitOk;
  const std::string name = cl.Str("segment");
  shmkv_options_t o;
  shmkv_options_init(&o);
  o.memory_bytes = ParseSizeOption(cl, "memory");
  if (cl.Has("max-items")) o.max_items = ParseSizeOption(cl, "max-items");
  auto u32 = [&](const char* opt) {
    const uint64_t v = ParseSizeOption(cl, opt);
    if (v > UINT32_MAX) Usage(std::string("--") + opt + " is too large");
    return static_cast<uint32_t>(v);
  };
  if (cl.Has("max-key-len")) o.max_key_len = u32("max-key-len");
  if (cl.Has("max-value-len")) o.max_value_len = u32("max-value-len");
  o.mode = ParseInt<uint32_t>(cl, "mode", 8);
  if (o.mode > 07777) Usage("invalid --mode: expected an octal file mode like 0660");
  const std::string evict = cl.Str("evict");
  if (evict == "allkeys") {
    o.evict_policy = SHMKV_EVICT_ALLKEYS;
  } else if (evict == "volatile") {
    o.evict_policy = SHMKV_EVICT_VOLATILE;
  } else if (evict == "none") {
    o.evict_policy = SHMKV_EVICT_NONE;
  } else {
    Usage("invalid --evict '" + evict + "': expected allkeys, volatile or none");
  }
  std::optional<gid_t> gid;
  if (cl.Has("group")) {
    gid = shmkvd::ResolveGroup(cl.Str("group"));
    if (!gid) Usage("unknown group '" + cl.Str("group") + "' for --group");
  }
  o.flags = SHMKV_OPEN_CREATE | SHMKV_OPEN_EXCL;
  shmkv_t* kv = nullptr;
  const int rc = shmkv_open(name.c_str(), &o, &kv);
  if (rc != 0) Fail("cannot create segment " + name, rc, /*opening=*/true);
  shmkv_close(kv);
  if (std::string why; gid) {
    if (const int e = shmkvd::ChownSegment(name, *gid, &why)) {
      shmkv_unlink(name.c_str());
      throw Exit{kExitError, "cannot set the group of segment " + name + ": " + std::strerror(e)};
    }
  }
  std::cout << "created segment " << name << "\n";
  return kExitOk;
}

// ---------------------------------------------------------------- get

int CmdGet(const std::vector<std::string>& args) {
  CommandLine cl("get", "get SEGMENT KEY [--hex] [--json]",
                 "Prints the value of KEY: its raw bytes (a newline is added only on a "
                 "terminal), hex with --hex, or a JSON object with --json. Exit 1 if not found.",
                 "shmkv get sessions user:42 --json");
  cl.Positional("segment");
  cl.Positional("key");
  cl.Add()("hex", po::bool_switch(), "KEY is hex; print the value as hex")(
      "json", po::bool_switch(), "print {key, value|value_hex, cas, ttl_ms, flags, noevict}");
  if (!cl.Parse(args)) return kExitOk;
  const bool hex = cl.Flag("hex");
  const std::string key = Bytes(cl, "key", hex);
  Segment seg(cl.Str("segment"));
  void* val = nullptr;
  size_t len = 0;
  shmkv_item_info_t info{};
  info.struct_size = sizeof info;
  const int rc = shmkv_get_alloc(seg.get(), key.data(), key.size(), &val, &len, &info);
  if (rc != 0) Fail("get " + EscapeBytes(key), rc);
  std::string value(static_cast<const char*>(val), len);
  shmkv_free(val);
  if (cl.Flag("json")) {
    json j = json::object();
    PutBytes(j, "key", key);
    PutBytes(j, "value", value);
    j["cas"] = info.cas;
    j["ttl_ms"] = info.ttl_ms;
    j["flags"] = info.user_flags;
    j["noevict"] = (info.write_flags & SHMKV_WRITE_NOEVICT) != 0;
    PrintJson(j);
  } else if (hex) {
    std::cout << HexEncode(value) << "\n";
  } else {
    std::cout.write(value.data(), static_cast<std::streamsize>(value.size()));
    if (::isatty(STDOUT_FILENO)) std::cout << "\n";
  }
  return kExitOk;
}

// ---------------------------------------------------------------- set / add

std::string ReadFile(const std::string& path) {
  if (path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Exit{kExitError, "cannot read " + path + ": " + std::strerror(errno)};
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int CmdSet(const std::vector<std::string>& args, bool add) {
  CommandLine cl(add ? "add" : "set",
                 add ? "add SEGMENT KEY [VALUE] [options]" : "set SEGMENT KEY [VALUE] [options]",
                 add ? "Stores VALUE under KEY only if KEY is absent (set --nx); exit 1 if present."
                     : "Stores VALUE under KEY. Exit 1 when --nx, --xx or --cas refuse the write.",
                 add ? "shmkv add sessions lock:job7 me --ttl 30s"
                     : "shmkv set sessions user:42 '{\"name\":\"ann\"}' --ttl 30s");
  cl.Positional("segment");
  cl.Positional("key");
  cl.Positional("value", false);
  auto o = cl.Add();
  o("ttl", po::value<std::string>(), "expire after this long (500ms, 30s, 5m, 1h; 0 = never)");
  if (!add) {
    o("nx", po::bool_switch(), "only if KEY is absent")(
        "xx", po::bool_switch(), "only if KEY is present")("cas", po::value<std::string>(),
                                                           "only if KEY's current cas is N");
  }
  o("flags", po::value<std::string>(), "32-bit user flags stored with the value")(
      "noevict", po::bool_switch(), "never evict this entry")("keepttl", po::bool_switch(),
                                                              "keep the TTL KEY has")(
      "hex", po::bool_switch(), "KEY and VALUE are hex")("value-file", po::value<std::string>(),
                                                         "read VALUE from PATH ('-' = stdin)");
  if (!cl.Parse(args)) return kExitOk;
  const bool hex = cl.Flag("hex");
  const std::string key = Bytes(cl, "key", hex);
  std::string value;
  if (cl.Has("value") == cl.Has("value-file")) Usage("give exactly one of VALUE and --value-file");
  if (cl.Has("value")) {
    value = Bytes(cl, "value", hex);
  } else {
    value = ReadFile(cl.Str("value-file"));
    if (hex) {
      std::string text;
      for (char c : value) {
        if (!std::isspace(static_cast<unsigned char>(c))) text += c;
      }
      auto b = HexDecode(text);
      if (!b) Usage("invalid hex in " + cl.Str("value-file"));
      value = *b;
    }
  }
  shmkv_write_opts_t w;
  shmkv_write_opts_init(&w);
  w.mode = add ? SHMKV_ADD : SHMKV_SET;
  if (!add) {
    if (cl.Flag("nx") && cl.Flag("xx")) Usage("--nx and --xx exclude each other");
    if (cl.Flag("nx")) w.mode = SHMKV_ADD;
    if (cl.Flag("xx")) w.mode = SHMKV_REPLACE;
    if (cl.Has("cas")) w.expect_cas = ParseInt<uint64_t>(cl, "cas");
  }
  if (cl.Has("ttl")) w.ttl_ms = ParseTtl(cl, "ttl");
  if (cl.Has("ttl") && cl.Flag("keepttl")) Usage("--ttl and --keepttl exclude each other");
  if (cl.Has("flags")) w.user_flags = ParseInt<uint32_t>(cl, "flags");
  if (cl.Flag("noevict")) w.flags |= SHMKV_WRITE_NOEVICT;
  if (cl.Flag("keepttl")) w.flags |= SHMKV_WRITE_KEEPTTL;
  Segment seg(cl.Str("segment"));
  uint64_t cas = 0;
  const int rc =
      shmkv_store(seg.get(), key.data(), key.size(), value.data(), value.size(), &w, &cas);
  if (rc != 0) Fail(std::string(add ? "add " : "set ") + EscapeBytes(key), rc);
  return kExitOk;
}

// ---------------------------------------------------------------- del

int CmdDel(const std::vector<std::string>& args) {
  CommandLine cl("del", "del SEGMENT KEY [--cas N] [--hex]",
                 "Deletes KEY. Exit 1 if not found or if --cas does not match.",
                 "shmkv del sessions user:42");
  cl.Positional("segment");
  cl.Positional("key");
  cl.Add()("cas", po::value<std::string>(), "only if KEY's current cas is N")(
      "hex", po::bool_switch(), "KEY is hex");
  if (!cl.Parse(args)) return kExitOk;
  const std::string key = Bytes(cl, "key", cl.Flag("hex"));
  const uint64_t cas = cl.Has("cas") ? ParseInt<uint64_t>(cl, "cas") : 0;
  Segment seg(cl.Str("segment"));
  const int rc = shmkv_delete(seg.get(), key.data(), key.size(), cas);
  if (rc != 0) Fail("del " + EscapeBytes(key), rc);
  return kExitOk;
}

// ---------------------------------------------------------------- incr

int CmdIncr(const std::vector<std::string>& args) {
  CommandLine cl("incr", "incr SEGMENT KEY [--by N] [--initial N] [--ttl D] [--json]",
                 "Adds N to the decimal integer under KEY and prints the new value. A missing "
                 "key is created holding --initial (the delta is not applied), with --ttl.",
                 "shmkv incr counters page:home --by=5 --initial 0 --ttl 1h");
  cl.Positional("segment");
  cl.Positional("key");
  cl.Add()("by", po::value<std::string>()->default_value("1"), "delta (negative: --by=-3)")(
      "initial", po::value<std::string>()->default_value("0"), "value of a missing key")(
      "ttl", po::value<std::string>(), "TTL of a created key")(
      "hex", po::bool_switch(), "KEY is hex")("json", po::bool_switch(), "print {key, value}");
  if (!cl.Parse(args)) return kExitOk;
  const std::string key = Bytes(cl, "key", cl.Flag("hex"));
  const int64_t by = ParseInt<int64_t>(cl, "by");
  const int64_t initial = ParseInt<int64_t>(cl, "initial");
  const uint64_t ttl = cl.Has("ttl") ? ParseTtl(cl, "ttl") : 0;
  Segment seg(cl.Str("segment"));
  int64_t result = 0;
  const int rc = shmkv_incr(seg.get(), key.data(), key.size(), by, initial, ttl, &result);
  if (rc != 0) Fail("incr " + EscapeBytes(key), rc);
  if (cl.Flag("json")) {
    json j = json::object();
    PutBytes(j, "key", key);
    j["value"] = result;
    PrintJson(j);
  } else {
    std::cout << result << "\n";
  }
  return kExitOk;
}

// ---------------------------------------------------------------- ttl / touch

int CmdTtl(const std::vector<std::string>& args) {
  CommandLine cl("ttl", "ttl SEGMENT KEY [--hex] [--json]",
                 "Prints the remaining TTL of KEY in milliseconds, -1 if it never expires. "
                 "Exit 1 if not found.",
                 "shmkv ttl sessions user:42");
  cl.Positional("segment");
  cl.Positional("key");
  cl.Add()("hex", po::bool_switch(), "KEY is hex")("json", po::bool_switch(),
                                                   "print {key, ttl_ms}");
  if (!cl.Parse(args)) return kExitOk;
  const std::string key = Bytes(cl, "key", cl.Flag("hex"));
  Segment seg(cl.Str("segment"));
  int64_t ttl = 0;
  const int rc = shmkv_ttl(seg.get(), key.data(), key.size(), &ttl);
  if (rc != 0) Fail("ttl " + EscapeBytes(key), rc);
  if (cl.Flag("json")) {
    json j = json::object();
    PutBytes(j, "key", key);
    j["ttl_ms"] = ttl;
    PrintJson(j);
  } else {
    std::cout << ttl << "\n";
  }
  return kExitOk;
}

int CmdTouch(const std::vector<std::string>& args) {
  CommandLine cl("touch", "touch SEGMENT KEY --ttl D [--hex]",
                 "Sets the TTL of KEY (--ttl 0: never expires). Exit 1 if not found.",
                 "shmkv touch sessions user:42 --ttl 5m");
  cl.Positional("segment");
  cl.Positional("key");
  cl.Add()("ttl", po::value<std::string>(), "new TTL (500ms, 30s, 5m, 1h; 0 = never)")(
      "hex", po::bool_switch(), "KEY is hex");
  if (!cl.Parse(args)) return kExitOk;
  if (!cl.Has("ttl")) Usage("touch needs --ttl");
  const std::string key = Bytes(cl, "key", cl.Flag("hex"));
  const uint64_t ttl = ParseTtl(cl, "ttl");
  Segment seg(cl.Str("segment"));
  const int rc = shmkv_touch(seg.get(), key.data(), key.size(), ttl);
  if (rc != 0) Fail("touch " + EscapeBytes(key), rc);
  return kExitOk;
}

// ---------------------------------------------------------------- keys

struct KeyRow {
  std::string key;
  int64_t ttl_ms;
  uint64_t size;
  uint32_t flags;
  uint64_t cas;
  bool noevict;
};

struct ScanState {
  std::vector<KeyRow>* rows;
  uint64_t limit;  // 0 = all
};

int CollectKey(const void* key, size_t key_len, const shmkv_item_info_t* info, void* ctx) {
  auto* st = static_cast<ScanState*>(ctx);
  st->rows->push_back(KeyRow{std::string(static_cast<const char*>(key), key_len), info->ttl_ms,
                             info->value_len, info->user_flags, info->cas,
                             (info->write_flags & SHMKV_WRITE_NOEVICT) != 0});
  return st->limit != 0 && st->rows->size() >= st->limit ? 1 : 0;
}

int CmdKeys(const std::vector<std::string>& args) {
  CommandLine cl("keys", "keys SEGMENT [--prefix P] [--limit N] [--hex] [--json]",
                 "Lists the keys (lock-free scan, writers are never blocked) in columns key, "
                 "ttl (ms, -1 = none), size (bytes). Keys are printed escaped: bytes outside "
                 "printable ASCII as \\xHH, '\\' as \\\\.",
                 "shmkv keys sessions --prefix user: --limit 20");
  cl.Positional("segment");
  cl.Add()("prefix", po::value<std::string>(), "only keys starting with P")(
      "limit", po::value<std::string>(), "at most N keys")("hex", po::bool_switch(), "P is hex")(
      "json", po::bool_switch(),
      "print an array of {key|key_hex, ttl_ms, size, flags, cas, noevict}");
  if (!cl.Parse(args)) return kExitOk;
  const std::string prefix = cl.Has("prefix") ? Bytes(cl, "prefix", cl.Flag("hex")) : "";
  const uint64_t limit = cl.Has("limit") ? ParseInt<uint64_t>(cl, "limit") : 0;
  Segment seg(cl.Str("segment"));
  std::vector<KeyRow> rows;
  ScanState st{&rows, limit};
  uint64_t cursor = 0;
  do {
    const int rc = shmkv_scan(seg.get(), &cursor, prefix.empty() ? nullptr : prefix.data(),
                              prefix.size(), 4096, CollectKey, &st);
    if (rc != 0) Fail("keys", rc);
  } while (cursor != 0 && (limit == 0 || rows.size() < limit));
  if (cl.Flag("json")) {
    json j = json::array();
    for (const KeyRow& r : rows) {
      json e = json::object();
      PutBytes(e, "key", r.key);
      e["ttl_ms"] = r.ttl_ms;
      e["size"] = r.size;
      e["flags"] = r.flags;
      e["cas"] = r.cas;
      e["noevict"] = r.noevict;
      j.push_back(std::move(e));
    }
    PrintJson(j);
  } else {
    std::cout << "key\tttl\tsize\n";
    for (const KeyRow& r : rows) {
      std::cout << EscapeBytes(r.key) << '\t' << r.ttl_ms << '\t' << r.size << '\n';
    }
  }
  return kExitOk;
}

// ---------------------------------------------------------------- stats

// The fields of shmkv_stats_t, by name (the JSON and text field names).
constexpr std::pair<const char*, uint64_t shmkv_stats_t::*> kStatsFields[] = {
    {"memory_bytes", &shmkv_stats_t::memory_bytes},
    {"memory_used", &shmkv_stats_t::memory_used},
    {"items", &shmkv_stats_t::items},
    {"capacity_items", &shmkv_stats_t::capacity_items},
    {"gets", &shmkv_stats_t::gets},
    {"hits", &shmkv_stats_t::hits},
    {"misses", &shmkv_stats_t::misses},
    {"sets", &shmkv_stats_t::sets},
    {"deletes", &shmkv_stats_t::deletes},
    {"incrs", &shmkv_stats_t::incrs},
    {"cas_failures", &shmkv_stats_t::cas_failures},
    {"evictions", &shmkv_stats_t::evictions},
    {"expirations", &shmkv_stats_t::expirations},
    {"recovered_processes", &shmkv_stats_t::recovered_processes},
    {"attached_processes", &shmkv_stats_t::attached_processes},
};

int CmdStats(const std::vector<std::string>& args) {
  CommandLine cl("stats", "stats SEGMENT [--format text|json|prometheus] [--json] [--watch D]",
                 "Prints the segment's counters (a lock-free read; the CLI attaches read-only, "
                 "so it is not counted). JSON fields are those of shmkv_stats_t; Prometheus "
                 "metric names are those of shmkvd --metrics-file. --watch prints them again "
                 "every D (text adds per-second rates; json prints one object per line).",
                 "shmkv stats sessions --watch 1s");
  cl.Positional("segment");
  cl.Add()("format", po::value<std::string>()->default_value("text"), "text, json or prometheus")(
      "json", po::bool_switch(), "same as --format json")(
      "watch", po::value<std::string>(),
      "repeat every DURATION (500ms, 2s, ...) until interrupted")(
      "count", po::value<std::string>(), "with --watch: stop after N reports");
  if (!cl.Parse(args)) return kExitOk;
  std::string format = cl.Flag("json") ? "json" : cl.Str("format");
  if (format != "text" && format != "json" && format != "prometheus") {
    Usage("invalid --format '" + format + "': expected text, json or prometheus");
  }
  std::optional<std::chrono::milliseconds> every;
  if (cl.Has("watch")) {
    every = shmkvd::ParseDuration(cl.Str("watch"));
    if (!every || every->count() <= 0) Usage("invalid --watch '" + cl.Str("watch") + "'");
  }
  uint64_t count = 0;  // 0: forever
  if (cl.Has("count")) {
    const auto n = shmkvd::ParseSize(cl.Str("count"));
    if (!n || *n == 0) Usage("invalid --count '" + cl.Str("count") + "'");
    count = *n;
  }
  const std::string name = cl.Str("segment");
  Segment seg(name, SHMKV_OPEN_READONLY);
  shmkv_stats_t prev{};
  auto prev_time = std::chrono::steady_clock::now();
  for (uint64_t report = 1;; ++report) {
    shmkv_stats_t s{};
    s.struct_size = sizeof s;
    const int rc = shmkv_stats(seg.get(), &s);
    if (rc != 0) Fail("stats", rc);
    const auto now = std::chrono::steady_clock::now();
    if (format == "json") {
      json j = json::object();
      for (const auto& [field, member] : kStatsFields) j[field] = s.*member;
      if (every) {
        std::cout << j.dump() << std::endl;  // one object per line
      } else {
        PrintJson(j);
      }
    } else if (format == "prometheus") {
      shmkvd::MetricsSnapshot m;
      m.segment = name;
      m.stats = s;
      // The janitor's own families and the per-class memory (which needs the
      // internal layout) are the daemon's; the CLI leaves them out.
      std::istringstream in(shmkvd::FormatPrometheus(m));
      std::string line;
      while (std::getline(in, line)) {
        if (line.find("shmkv_janitor_") != std::string::npos ||
            line.find("shmkv_memory_class_used_bytes") != std::string::npos) {
          continue;
        }
        std::cout << line << '\n';
      }
    } else {
      char buf[96];
      if (every && report > 1) {
        const double secs = std::chrono::duration<double>(now - prev_time).count();
        auto rate = [&](uint64_t a, uint64_t b) { return secs > 0 ? (a - b) / secs : 0.0; };
        std::snprintf(buf, sizeof buf, "--- %.1f s: %.0f gets/s, %.0f sets/s, %.0f incrs/s\n", secs,
                      rate(s.gets, prev.gets), rate(s.sets, prev.sets), rate(s.incrs, prev.incrs));
        std::cout << buf;
      }
      for (const auto& [field, member] : kStatsFields) {
        std::snprintf(buf, sizeof buf, "%-20s %" PRIu64 "\n", field, s.*member);
        std::cout << buf;
      }
      std::snprintf(buf, sizeof buf, "%-20s %.4f\n", "hit_ratio", shmkvd::HitRatio(s));
      std::cout << buf << std::flush;
    }
    if (!every || (count != 0 && report >= count)) break;
    prev = s;
    prev_time = now;
    std::this_thread::sleep_for(*every);
  }
  return kExitOk;
}

// ---------------------------------------------------------------- top

int CmdTop(const std::vector<std::string>& args) {
  CommandLine cl("top", "top SEGMENT [--interval D] [--iterations N]",
                 "A live view (read-only, lock-free: writers are never blocked) of the memory, "
                 "items and processes, ops per second by verb, hit ratio, evictions and "
                 "expirations, and memory by size class. Keys: q quit, p pause/resume, + / - "
                 "longer / shorter interval. Needs a terminal; `stats --watch` logs instead.",
                 "shmkv top sessions --interval 500ms");
  cl.Positional("segment");
  cl.Add()("interval", po::value<std::string>()->default_value("1s"),
           "refresh every DURATION (200ms, 1s, ...)")("iterations", po::value<std::string>(),
                                                      "stop after N refreshes (default: until q)");
  if (!cl.Parse(args)) return kExitOk;
  TopOptions o;
  o.segment = cl.Str("segment");
  const auto interval = shmkvd::ParseDuration(cl.Str("interval"));
  if (!interval || interval->count() <= 0) Usage("invalid --interval '" + cl.Str("interval") + "'");
  o.interval = *interval;
  if (cl.Has("iterations")) {
    o.iterations = ParseInt<uint64_t>(cl, "iterations");
    if (o.iterations == 0) Usage("invalid --iterations 0: expected at least 1");
  }
  if (!::isatty(STDOUT_FILENO) || !::isatty(STDIN_FILENO)) {
    Usage("top needs a terminal on stdin and stdout; to log the counters, use: shmkv stats " +
          o.segment + " --watch 1s");
  }
  Segment seg(o.segment, SHMKV_OPEN_READONLY);
  std::string error;
  if (!RunTop(seg.get(), o, &error)) throw Exit{kExitError, "top: " + error};
  return kExitOk;
}

// ---------------------------------------------------------------- check / recover / destroy

int CmdCheck(const std::vector<std::string>& args) {
  CommandLine cl("check", "check SEGMENT [--offline] [--json]",
                 "Checks the segment's invariants (read-only). Exit 1 if any problem is found. "
                 "--offline (nobody else attached) also accounts for every block (leaks).",
                 "shmkv check sessions --offline --json");
  cl.Positional("segment");
  cl.Add()("offline", po::bool_switch(), "also look for leaked blocks")("json", po::bool_switch(),
                                                                        "print the report as JSON");
  if (!cl.Parse(args)) return kExitOk;
  Segment seg(cl.Str("segment"));
  shmkv_check_report_t r{};
  r.struct_size = sizeof r;
  const int rc = shmkv_check(seg.get(), cl.Flag("offline") ? SHMKV_CHECK_OFFLINE : 0, &r);
  if (rc != 0) Fail("check", rc);
  const bool ok = r.problems == 0 && r.leaked_blocks == 0;
  if (cl.Flag("json")) {
    json j = {{"ok", ok},
              {"offline", cl.Flag("offline")},
              {"slots_live", r.slots_live},
              {"slots_pending", r.slots_pending},
              {"blocks_free", r.blocks_free},
              {"blocks_alloc", r.blocks_alloc},
              {"blocks_linked", r.blocks_linked},
              {"blocks_killed", r.blocks_killed},
              {"problems", r.problems},
              {"leaked_blocks", r.leaked_blocks}};
    const std::string first(r.first_problem, strnlen(r.first_problem, sizeof r.first_problem));
    if (IsValidUtf8(first)) {
      j["first_problem"] = first;
    } else {
      j["first_problem"] = EscapeBytes(first);
    }
    PrintJson(j);
  } else {
    std::cout << "slots_live     " << r.slots_live << "\nslots_pending  " << r.slots_pending
              << "\nblocks_free    " << r.blocks_free << "\nblocks_alloc   " << r.blocks_alloc
              << "\nblocks_linked  " << r.blocks_linked << "\nblocks_killed  " << r.blocks_killed
              << "\nproblems       " << r.problems << "\nleaked_blocks  " << r.leaked_blocks
              << "\n";
    if (r.first_problem[0] != '\0') std::cout << "first_problem  " << r.first_problem << "\n";
    std::cout << (ok ? "OK" : "PROBLEMS FOUND") << "\n";
  }
  return ok ? kExitOk : kExitNo;
}

// ---------------------------------------------------------------- dump / load
//
// The dump format, version 2: a text file of lines. The first line is
// "shmkv-dump 2"; lines starting with '#' are comments; every other line is
//   KEY_HEX VALUE_HEX TTL_MS FLAGS OPTIONS
// separated by single spaces: key and value in lowercase hex ("-" for an
// empty value), the remaining TTL in ms at dump time (-1 = none), the 32
// user flags in decimal, and the entry's options: "noevict" or "-".
// Binary-safe; `load` restores the remaining TTLs relative to the moment it
// runs. Version 1 files (the same lines without OPTIONS) still load.

constexpr const char* kDumpMagic = "shmkv-dump 2";
constexpr const char* kDumpMagicV1 = "shmkv-dump 1";

// Every live entry whose key starts with prefix, read entry by entry while
// writers go on (each entry is one atomic get; the whole is not a snapshot).
template <typename F>
void ForEachEntry(shmkv_t* kv, const std::string& prefix, const char* what, F&& f) {
  std::vector<KeyRow> rows;
  ScanState st{&rows, 0};
  uint64_t cursor = 0;
  do {
    const int rc = shmkv_scan(kv, &cursor, prefix.empty() ? nullptr : prefix.data(), prefix.size(),
                              4096, CollectKey, &st);
    if (rc != 0) Fail(what, rc);
  } while (cursor != 0);
  for (const KeyRow& r : rows) {
    void* val = nullptr;
    size_t len = 0;
    shmkv_item_info_t info{};
    info.struct_size = sizeof info;
    const int rc = shmkv_get_alloc(kv, r.key.data(), r.key.size(), &val, &len, &info);
    if (rc == SHMKV_ENOTFOUND) continue;  // deleted or expired since the scan
    if (rc != 0) Fail(what, rc);
    f(r.key, std::string_view(static_cast<const char*>(val), len), info);
    shmkv_free(val);
  }
}

int CmdDump(const std::vector<std::string>& args) {
  CommandLine cl("dump", "dump SEGMENT [--prefix P] [--hex] [--output FILE]",
                 "Writes every entry (key, value, remaining TTL, flags) in the versioned line "
                 "format `load` reads: first line \"shmkv-dump 2\", then one line per entry: "
                 "KEY_HEX VALUE_HEX TTL_MS FLAGS OPTIONS (\"-\" for an empty value, TTL -1 "
                 "= none, OPTIONS \"noevict\" or \"-\").",
                 "shmkv dump sessions --output sessions.dump");
  cl.Positional("segment");
  cl.Add()("prefix", po::value<std::string>(), "only keys starting with P")(
      "hex", po::bool_switch(), "P is hex")("output,o", po::value<std::string>(),
                                            "write to FILE instead of stdout");
  if (!cl.Parse(args)) return kExitOk;
  const std::string prefix = cl.Has("prefix") ? Bytes(cl, "prefix", cl.Flag("hex")) : "";
  Segment seg(cl.Str("segment"), SHMKV_OPEN_READONLY);
  std::ofstream file;
  if (cl.Has("output")) {
    file.open(cl.Str("output"), std::ios::binary | std::ios::trunc);
    if (!file) Fail("cannot write " + cl.Str("output"), errno);
  }
  std::ostream& out = cl.Has("output") ? static_cast<std::ostream&>(file) : std::cout;
  out << kDumpMagic << "\n";
  uint64_t n = 0;
  ForEachEntry(seg.get(), prefix, "dump",
               [&](const std::string& key, std::string_view val, const shmkv_item_info_t& info) {
                 out << HexEncode(key) << ' ' << (val.empty() ? "-" : HexEncode(val)) << ' '
                     << info.ttl_ms << ' ' << info.user_flags << ' '
                     << ((info.write_flags & SHMKV_WRITE_NOEVICT) ? "noevict" : "-") << '\n';
                 ++n;
               });
  out.flush();
  if (!out) Fail("dump: write failed", EIO);
  if (cl.Has("output")) std::cerr << "dumped " << n << " entries\n";
  return kExitOk;
}

int CmdLoad(const std::vector<std::string>& args) {
  CommandLine cl("load", "load SEGMENT [FILE] [--nx]",
                 "Stores the entries of a dump (FILE, or stdin if absent or \"-\") with their "
                 "remaining TTLs and flags. --nx keeps keys that already exist.",
                 "shmkv load sessions sessions.dump");
  cl.Positional("segment");
  cl.Positional("file", false);
  cl.Add()("nx", po::bool_switch(), "do not overwrite keys that exist");
  if (!cl.Parse(args)) return kExitOk;
  std::ifstream file;
  const bool from_file = cl.Has("file") && cl.Str("file") != "-";
  if (from_file) {
    file.open(cl.Str("file"), std::ios::binary);
    if (!file) Fail("cannot read " + cl.Str("file"), errno);
  }
  std::istream& in = from_file ? static_cast<std::istream&>(file) : std::cin;
  std::string line;
  if (!std::getline(in, line) || (line != kDumpMagic && line != kDumpMagicV1))
    Usage("not a shmkv dump (the first line must be \"" + std::string(kDumpMagic) + "\")");
  const bool v1 = line == kDumpMagicV1;
  Segment seg(cl.Str("segment"));
  uint64_t loaded = 0, kept = 0, lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string key_hex, val_hex, options = "-", rest;
    int64_t ttl = 0;
    uint32_t flags = 0;
    std::optional<std::string> key, val;
    if (fields >> key_hex >> val_hex >> ttl >> flags && (v1 || fields >> options) &&
        !(fields >> rest)) {
      key = HexDecode(key_hex);
      val = val_hex == "-" ? std::optional<std::string>("") : HexDecode(val_hex);
    }
    if (!key || !val || key->empty() || ttl < -1 || (options != "-" && options != "noevict"))
      Usage("line " + std::to_string(lineno) + " is not KEY_HEX VALUE_HEX TTL_MS FLAGS" +
            (v1 ? "" : " OPTIONS"));
    if (ttl == 0) continue;  // expired at dump time
    shmkv_write_opts_t o;
    shmkv_write_opts_init(&o);
    o.mode = cl.Flag("nx") ? SHMKV_ADD : SHMKV_SET;
    o.ttl_ms = ttl < 0 ? 0 : static_cast<uint64_t>(ttl);
    o.user_flags = flags;
    if (options == "noevict") o.flags |= SHMKV_WRITE_NOEVICT;
    const int rc =
        shmkv_store(seg.get(), key->data(), key->size(), val->data(), val->size(), &o, nullptr);
    if (rc == SHMKV_EEXIST) {
      ++kept;
      continue;
    }
    if (rc != 0) Fail("load: line " + std::to_string(lineno), rc);
    ++loaded;
  }
  std::cerr << "loaded " << loaded << " entries"
            << (kept ? ", kept " + std::to_string(kept) + " existing" : "") << "\n";
  return kExitOk;
}

int CmdCopy(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << "usage: shmkv copy SOURCE DEST [create options]\n\n"
                 "Creates DEST (exit 1 if it exists) with the options of `shmkv create` and "
                 "copies every entry of SOURCE into it with its remaining TTL and flags, while "
                 "SOURCE stays in use (each entry is copied atomically; the whole is not a "
                 "snapshot). The supported way to resize: copy into a larger segment, point "
                 "the clients at it, destroy the old one.\n\n"
                 "Create options: see `shmkv create --help`.\n\n"
                 "Example:\n  shmkv copy sessions sessions-big --memory 1G --mode 0660\n";
    return kExitOk;
  }
  const std::string source = args[0];
  Segment src(source, SHMKV_OPEN_READONLY);
  const std::vector<std::string> create_args(args.begin() + 1, args.end());
  if (int rc = CmdCreate(create_args); rc != kExitOk) return rc;
  Segment dst(create_args.at(0));
  uint64_t copied = 0, skipped = 0;
  ForEachEntry(src.get(), "", "copy",
               [&](const std::string& key, std::string_view val, const shmkv_item_info_t& info) {
                 if (info.ttl_ms == 0) return;  // expiring now
                 shmkv_write_opts_t o;
                 shmkv_write_opts_init(&o);
                 o.ttl_ms = info.ttl_ms < 0 ? 0 : static_cast<uint64_t>(info.ttl_ms);
                 o.user_flags = info.user_flags;
                 o.flags = info.write_flags & SHMKV_WRITE_NOEVICT;
                 const int rc = shmkv_store(dst.get(), key.data(), key.size(), val.data(),
                                            val.size(), &o, nullptr);
                 if (rc == SHMKV_EKEYTOOBIG || rc == SHMKV_EVALTOOBIG) {
                   ++skipped;  // DEST has smaller limits
                   return;
                 }
                 if (rc != 0) Fail("copy", rc);
                 ++copied;
               });
  std::cout << "copied " << copied << " entries"
            << (skipped ? " (" + std::to_string(skipped) + " above DEST's limits skipped)" : "")
            << "\n";
  return kExitOk;
}

// ---------------------------------------------------------------- info

std::string PolicyName(uint32_t p) {
  return p == SHMKV_EVICT_VOLATILE ? "volatile" : p == SHMKV_EVICT_NONE ? "none" : "allkeys";
}

std::string UpstreamStateName(uint32_t s) {
  return s == SHMKV_UPSTREAM_UP ? "up" : s == SHMKV_UPSTREAM_DOWN ? "down" : "none";
}

int CmdInfo(const std::vector<std::string>& args) {
  CommandLine cl("info", "info SEGMENT [--json]",
                 "Prints the segment's layout version, geometry, limits, creator, clock and "
                 "boot, janitor, and the attached processes with their liveness.",
                 "shmkv info sessions --json");
  cl.Positional("segment");
  cl.Add()("json", po::bool_switch(), "print the information as JSON");
  if (!cl.Parse(args)) return kExitOk;
  Segment seg(cl.Str("segment"), SHMKV_OPEN_READONLY);
  shmkv_info_t i{};
  i.struct_size = sizeof i;
  if (int rc = shmkv_info(seg.get(), &i)) Fail("info", rc);
  std::vector<shmkv_process_info_t> procs(i.process_slots);
  size_t n = 0;
  if (int rc = shmkv_processes(seg.get(), procs.data(), procs.size(), &n)) Fail("info", rc);
  procs.resize(std::min(n, procs.size()));
  shmkv_upstream_t up{};
  up.struct_size = sizeof up;
  if (int rc = shmkv_upstream_get(seg.get(), &up)) Fail("info", rc);
  const bool near_cache = up.url[0] != '\0';
  const bool beat = up.heartbeat_age_ms != UINT64_MAX;
  const time_t created = static_cast<time_t>(i.created_realtime_ns / 1000000000ull);
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&created));
  if (cl.Flag("json")) {
    json jp = json::array();
    for (const auto& p : procs)
      jp.push_back(
          {{"pid", p.pid}, {"alive", p.alive != 0}, {"attach_realtime_ns", p.attach_realtime_ns}});
    json j = {{"layout_version", i.layout_version},
              {"memory_bytes", i.memory_bytes},
              {"max_items", i.max_items},
              {"index_slots", i.index_slots},
              {"data_bytes", i.data_bytes},
              {"page_size", i.page_size},
              {"size_classes", i.size_classes},
              {"max_key_len", i.max_key_len},
              {"max_value_len", i.max_value_len},
              {"evict_policy", PolicyName(i.evict_policy)},
              {"mode", i.mode},
              {"creator_pid", i.creator_pid},
              {"created", when},
              {"created_realtime_ns", i.created_realtime_ns},
              {"clock_ms", i.clock_ms},
              {"boot_id", i.boot_id},
              {"janitor_pid", i.janitor_pid},
              {"superseded", i.superseded != 0},
              {"huge_page_bytes", i.huge_page_bytes},
              {"attached_processes", i.attached_processes},
              {"processes", jp},
              {"upstream", near_cache ? json{{"url", up.url},
                                             {"prefixes", up.prefixes},
                                             {"state", UpstreamStateName(up.state)},
                                             {"heartbeat_age_ms",
                                              beat ? json(up.heartbeat_age_ms) : json(nullptr)},
                                             {"max_lag_ms", up.max_lag_ms},
                                             {"generation", up.generation}}
                                      : json(nullptr)}};
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", i.mode);
  std::cout << "layout version  " << i.layout_version << "\nmemory          " << i.memory_bytes
            << " bytes (index " << i.index_slots << " slots, data " << i.data_bytes
            << " bytes in pages of " << i.page_size << ", " << i.size_classes
            << " size classes)\nmax items       " << i.max_items << "\nmax key/value   "
            << i.max_key_len << " / " << i.max_value_len << " bytes\neviction        "
            << PolicyName(i.evict_policy) << "\nmode            " << mode << "\ncreated         "
            << when << " by pid " << i.creator_pid << "\nclock           " << i.clock_ms
            << " ms since creation (boot " << i.boot_id << ")\njanitor         "
            << (i.janitor_pid ? std::to_string(i.janitor_pid) : "none") << "\nhuge pages      "
            << (i.huge_page_bytes ? std::to_string(i.huge_page_bytes >> 20) + " of " +
                                        std::to_string(i.memory_bytes >> 20) + " MiB"
                                  : "none (4-KiB pages; README \"Huge pages\")")
            << (i.superseded ? "\nsuperseded      yes (copied into a new segment)" : "");
  if (near_cache) {
    std::cout << "\nupstream        " << up.url << " "
              << (up.prefixes[0] ? "prefixes " + std::string(up.prefixes) : "every key") << ", "
              << UpstreamStateName(up.state) << ", heartbeat "
              << (beat ? std::to_string(up.heartbeat_age_ms) + " ms ago" : "never") << " (max lag "
              << up.max_lag_ms << " ms), generation " << up.generation;
  }
  std::cout << "\nprocesses       " << n << " attached\n";
  for (const auto& p : procs)
    std::cout << "  pid " << p.pid << (p.alive ? "  alive" : "  dead (not yet recovered)") << "\n";
  return kExitOk;
}

int CmdRecover(const std::vector<std::string>& args) {
  CommandLine cl("recover", "recover SEGMENT",
                 "Frees what dead processes held; prints how many processes were recovered.",
                 "shmkv recover sessions");
  cl.Positional("segment");
  if (!cl.Parse(args)) return kExitOk;
  Segment seg(cl.Str("segment"));
  uint32_t n = 0;
  const int rc = shmkv_recover(seg.get(), &n);
  if (rc != 0) Fail("recover", rc);
  std::cout << n << "\n";
  return kExitOk;
}

int CmdDestroy(const std::vector<std::string>& args) {
  CommandLine cl("destroy", "destroy SEGMENT --yes",
                 "Removes the segment's name. Processes that have it mapped keep using it "
                 "until they close it.",
                 "shmkv destroy sessions --yes");
  cl.Positional("segment");
  cl.Add()("yes", po::bool_switch(), "really destroy it");
  if (!cl.Parse(args)) return kExitOk;
  const std::string name = cl.Str("segment");
  if (!cl.Flag("yes")) Usage("destroy removes segment " + name + "; add --yes to confirm");
  const int rc = shmkv_unlink(name.c_str());
  if (rc != 0) Fail("cannot destroy segment " + name, rc, /*opening=*/true);
  return kExitOk;
}

// ---------------------------------------------------------------- main

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const std::vector<std::string>&);
};

const Command kCommands[] = {
    {"create", "create a new segment", CmdCreate},
    {"info", "print the segment's geometry, creator and processes", CmdInfo},
    {"get", "print a key's value", CmdGet},
    {"set", "store a value", [](const std::vector<std::string>& a) { return CmdSet(a, false); }},
    {"add", "store a value only if the key is absent",
     [](const std::vector<std::string>& a) { return CmdSet(a, true); }},
    {"del", "delete a key", CmdDel},
    {"incr", "add to an integer value", CmdIncr},
    {"ttl", "print a key's remaining TTL", CmdTtl},
    {"touch", "set a key's TTL", CmdTouch},
    {"keys", "list keys with TTL and size", CmdKeys},
    {"dump", "write every entry in the dump format", CmdDump},
    {"load", "store the entries of a dump", CmdLoad},
    {"copy", "copy every entry into a new (e.g. larger) segment", CmdCopy},
    {"stats", "print the segment's counters", CmdStats},
    {"top", "live view of rates, memory by size class and processes", CmdTop},
    {"check", "check the segment's consistency", CmdCheck},
    {"recover", "free what dead processes held", CmdRecover},
    {"destroy", "remove the segment", CmdDestroy},
};

std::string MainHelp() {
  std::string h =
      "usage: shmkv <command> SEGMENT [args] [options]\n"
      "       shmkv <command> --help\n\n"
      "Commands:\n";
  for (const Command& c : kCommands) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "  %-9s %s\n", c.name, c.summary);
    h += buf;
  }
  h += "\nDurations: 500ms 30s 5m 1h (a bare number is seconds). Sizes: 64K 64M 1G.\n"
       "Exit codes: 0 ok, 1 no (not found, exists, cas mismatch, check problems),\n"
       "2 usage, 3 cannot open the segment, 4 other error.\n\n"
       "Example:\n  shmkv set sessions user:42 hello --ttl 30s && shmkv get sessions user:42\n";
  return h;
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(MainHelp().c_str(), stderr);
    return kExitUsage;
  }
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(MainHelp().c_str(), stdout);
    return kExitOk;
  }
  if (cmd == "--version") {
    std::printf("shmkv %s\n", shmkv_version());
    return kExitOk;
  }
  const std::vector<std::string> args(argv + 2, argv + argc);
  for (const Command& c : kCommands) {
    if (cmd == c.name) {
      try {
        const int code = c.run(args);
        std::cout.flush();
        return code;
      } catch (const Exit& e) {
        std::cout.flush();
        std::fprintf(stderr, "shmkv: %s\n", e.message.c_str());
        return e.code;
      } catch (const std::exception& e) {
        std::cout.flush();
        std::fprintf(stderr, "shmkv: %s\n", e.what());
        return kExitError;
      }
    }
  }
  std::fprintf(stderr, "shmkv: unknown command '%s' (see shmkv --help)\n", cmd.c_str());
  return kExitUsage;
}

}  // namespace
}  // namespace shmkv_cli

int main(int argc, char** argv) { return shmkv_cli::Main(argc, argv); }
