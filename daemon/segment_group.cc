#include "segment_group.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <vector>

namespace shmkvd {
namespace {

// The same rule as shmkv_open: "./x" or a '/' after the first character is
// a file path; anything else is a POSIX shm object.
bool IsFilePath(const std::string& name) {
  return name.rfind("./", 0) == 0 || name.find('/', 1) != std::string::npos;
}

}  // namespace

std::optional<gid_t> ResolveGroup(const std::string& name) {
  std::vector<char> buf(16384);
  struct group gr;
  struct group* found = nullptr;
  if (::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
    return found->gr_gid;
  }
  gid_t gid{};
  auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), gid);
  if (!name.empty() && ec == std::errc() && p == name.data() + name.size()) return gid;
  return std::nullopt;
}

int ChownSegment(const std::string& name, gid_t gid, std::string* why) {
  const int fd = IsFilePath(name) ? ::open(name.c_str(), O_RDONLY | O_CLOEXEC)
                                  : ::shm_open(name.c_str(), O_RDONLY, 0);
  if (fd < 0 || ::fchown(fd, static_cast<uid_t>(-1), gid) != 0) {
    const int e = errno;
    *why = std::string("cannot set the group of the segment: ") + std::strerror(e);
    if (fd >= 0) ::close(fd);
    return e;
  }
  ::close(fd);
  return 0;
}

}  // namespace shmkvd
