// A program outside the shmkv tree that uses the installed near cache
// (shmkv::NearCache, libshmkv_upstream): opens the segment named on the
// command line as a near cache. Without shmkvd --upstream on it, that must
// fail with Errc::kInvalid and say why; no Redis is needed. Built by
// CMakeLists.txt (find_package) and by Makefile (pkg-config); see
// scripts/package.sh.
//
//   consumer_near SEGMENT   (an existing segment that is not a near cache)
#include <shmkv/near_cache.h>

#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " SEGMENT\n";
    return 2;
  }
  std::string error;
  auto nc = shmkv::NearCache::Open(argv[1], {}, &error);
  if (nc) {
    std::cerr << "near cache " << argv[1] << ": opened, expected Errc::kInvalid\n";
    return 1;
  }
  if (nc.error() != shmkv::Errc::kInvalid || error.empty()) {
    std::cerr << "near cache " << argv[1] << ": " << nc.error().message() << " (" << error
              << "), expected Errc::kInvalid with a message\n";
    return 1;
  }
  std::cout << "near cache: shmkv " << shmkv_version() << ": " << argv[1]
            << ": Errc::kInvalid as expected: " << error << "\n";
  return 0;
}
