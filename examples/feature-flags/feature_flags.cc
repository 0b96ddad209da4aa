// A worker that reads its feature flags and configuration from a shared
// shmkv segment on every request.
//
//   feature_flags SEGMENT [WORKER_ID]
//
// Each line on stdin is a request. For each one the worker reads every flag
// it knows from the segment (one batch get) and answers with one line on
// stdout: what it saw, and for a flag that is absent, its built-in default.
//
//   worker=1 pid=4711 request=3 flag:checkout_v2=on flag:dark_mode=off(default)
//   config:max_items=200
//
// The flags are ordinary entries, written by an operator or a deploy script
// with the CLI, without TTL and with --noevict so that a full cache never
// drops them:
//
//   shmkv set SEGMENT flag:checkout_v2 on --noevict
//
// A write is visible to every process as soon as `shmkv set` returns, so
// the next request of every worker sees the new value: nothing to reload,
// no restart, no polling. `shmkv del` removes a flag and the default
// applies again. bash examples/feature-flags/run.sh shows it with several
// workers. Exit status: 0 at end of input, 1 when the segment cannot be
// opened or read, 2 on a usage error.
#include <unistd.h>

#include <array>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shmkv/cache.h"

namespace {

struct Flag {
  std::string_view key;
  std::string_view default_value;  // when the key is absent
};

// The flags this service knows, with the behaviour it has without them.
constexpr std::array<Flag, 3> kFlags = {{
    {"flag:checkout_v2", "off"},
    {"flag:dark_mode", "off"},
    {"config:max_items", "50"},
}};

int Serve(const std::string& segment, const std::string& worker_id) {
  shmkv::Options options;
  options.read_only = true;  // a worker only reads its flags
  auto cache = shmkv::Cache::Open(segment, options);
  if (!cache) {
    std::cerr << "feature_flags: cannot open segment " << segment << ": " << cache.error().message()
              << " (" << shmkv_last_error() << ")\n";
    return 1;
  }
  std::array<std::string_view, kFlags.size()> keys;
  for (size_t i = 0; i < kFlags.size(); ++i) keys[i] = kFlags[i].key;
  std::vector<std::optional<std::string>> values;
  const int pid = static_cast<int>(getpid());
  std::string line;
  for (long request = 1; std::getline(std::cin, line); ++request) {
    if (std::error_code ec = cache->MGet(keys, &values)) {
      std::cerr << "feature_flags: worker " << worker_id << ": reading the flags: " << ec.message()
                << " (" << shmkv_last_error() << ")\n";
      return 1;
    }
    std::string answer = "worker=" + worker_id + " pid=" + std::to_string(pid) +
                         " request=" + std::to_string(request);
    for (size_t i = 0; i < kFlags.size(); ++i) {
      answer += ' ';
      answer += kFlags[i].key;
      answer += '=';
      if (values[i]) {
        answer += *values[i];
      } else {
        answer += kFlags[i].default_value;
        answer += "(default)";
      }
    }
    // One line per request, flushed at once: the caller waits for it.
    std::cout << answer << std::endl;
    if (!std::cout) {
      std::cerr << "feature_flags: worker " << worker_id << ": cannot write the answer\n";
      return 1;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: feature_flags SEGMENT [WORKER_ID]\n"
                 "Answers each line on stdin with the flags it reads from SEGMENT.\n";
    return 2;
  }
  return Serve(argv[1], argc > 2 ? argv[2] : "0");
}
