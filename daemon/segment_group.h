// The group of a segment, for `shmkvd --group` and `shmkv create --group`:
// workers of another user attach through group permissions.
#ifndef SHMKV_DAEMON_SEGMENT_GROUP_H_
#define SHMKV_DAEMON_SEGMENT_GROUP_H_

#include <sys/types.h>

#include <optional>
#include <string>

namespace shmkvd {

// A group name, or a numeric gid written in decimal; nullopt if neither.
std::optional<gid_t> ResolveGroup(const std::string& name);

// Gives segment `name` (a POSIX shm object or a file path, by the rule of
// shmkv_open) to group gid; the owner stays, the mode was set at creation.
// 0, or the errno of what failed with *why saying so.
int ChownSegment(const std::string& name, gid_t gid, std::string* why);

}  // namespace shmkvd

#endif  // SHMKV_DAEMON_SEGMENT_GROUP_H_
