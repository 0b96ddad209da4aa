// A program outside the shmkv tree that uses the installed C++ API: opens
// (or creates) the segment named on the command line, stores a key, reads it
// back and counts with Incr. Built by CMakeLists.txt (find_package) and by
// Makefile (pkg-config); see scripts/package.sh.
//
//   consumer_cc SEGMENT
#include <shmkv/cache.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " SEGMENT\n";
    return 2;
  }
  shmkv::Options options;
  options.memory_bytes = 4 << 20;
  options.create = true;
  auto cache = shmkv::Cache::Open(argv[1], options);
  if (!cache) {
    std::cerr << "open " << argv[1] << ": " << cache.error().message() << "\n";
    return 1;
  }

  if (auto ec = cache->Set("consumer:cc", "hello from C++")) {
    std::cerr << "set: " << ec.message() << "\n";
    return 1;
  }
  auto value = cache->Get("consumer:cc");
  if (!value || *value != "hello from C++") {
    std::cerr << "get: " << (value ? *value : value.error().message()) << "\n";
    return 1;
  }
  auto runs = cache->Incr("consumer:runs", 1, /*initial=*/1);
  if (!runs) {
    std::cerr << "incr: " << runs.error().message() << "\n";
    return 1;
  }
  std::cout << "C++: shmkv " << shmkv_version() << ": consumer:cc = " << *value
            << ", consumer:runs = " << *runs << "\n";
  return 0;
}
