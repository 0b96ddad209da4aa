// Create, attach, validate and map a segment. The only file that includes
// Boost.Interprocess (its raw shared_memory_object / file_mapping and
// mapped_region layer; never the managed segment or its mutexes).
#ifndef SHMKV_SRC_SEGMENT_H_
#define SHMKV_SRC_SEGMENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <system_error>

#include "layout.h"
#include "shmkv/shmkv.h"

namespace shmkv::internal {

// strerror, thread-safe (std::strerror may share one buffer).
inline std::string ErrnoText(int e) { return std::generic_category().message(e); }

// What shmkv_open asked for, validated.
struct Geometry {
  uint64_t total_size;
  uint64_t max_items;
  uint32_t max_key_len, max_value_len;
  uint32_t evict_policy;
  uint32_t mode;
};

// Validates the options of a new segment and computes the region layout
// into a header (returns 0 or SHMKV_EINVAL with a message).
int PlanLayout(const shmkv_options_t& opts, Header* out, std::string* why);

// Checks a header against the file size it came from; on failure names the
// field that is wrong. Safe on arbitrary bytes.
int ValidateHeader(const Header& h, uint64_t file_size, std::string* why);

class Segment {
 public:
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // Opens or creates the segment `name` (see shmkv_open). On failure returns
  // an error code and a message in *why.
  static int Open(const char* name, const shmkv_options_t* opts, std::unique_ptr<Segment>* out,
                  std::string* why);
  static int Unlink(const char* name, std::string* why);

  unsigned char* base() const { return base_; }
  Header* header() const { return reinterpret_cast<Header*>(base_); }
  uint64_t size() const { return size_; }
  bool read_only() const { return read_only_; }
  // The fd of the segment's own open file description, for OFD locks
  // (-1 on read-only handles). Reopened after fork (ReopenLockFd).
  int lock_fd() const { return lock_fd_; }
  int ReopenLockFd();
  // Closes the lock fd without taking a new one (fork child: the inherited
  // fd shares the parent's open file description and so its locks).
  void DropLockFd();
  const std::string& name() const { return name_; }

 private:
  Segment() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  unsigned char* base_ = nullptr;
  uint64_t size_ = 0;
  bool read_only_ = false;
  int lock_fd_ = -1;
  std::string name_;
};

// OFD byte-range locks on the segment file (kernel-released on close and
// on death; per open file description, so fork and other fds are safe).
bool TryLockByte(int fd, off_t byte);
void UnlockByte(int fd, off_t byte);
// True if some other open file description holds a lock on the byte.
bool ByteLockedByOther(int fd, off_t byte);

// Bytes of the mapping [base, base + size) that huge pages back (a tmpfs
// mounted with huge=within_size or always, or hugetlbfs), from
// /proc/self/smaps after reading one byte of every 2 MiB; 0 if it cannot
// tell.
uint64_t MappedHugeBytes(const void* base, uint64_t size);

}  // namespace shmkv::internal

#endif  // SHMKV_SRC_SEGMENT_H_
