#include "segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <boost/interprocess/file_mapping.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <thread>

#include "atomics.h"
#include "clock.h"

namespace shmkv::internal {
namespace ipc = boost::interprocess;

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kMinMemory = kMiB;
constexpr uint64_t kMaxMemory = 1ull << 40;
constexpr uint64_t kMinPage = 64 * 1024;
constexpr uint64_t kMaxPage = 16 * kMiB;

uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

std::string Str(uint64_t v) { return std::to_string(v); }

// Size classes, multiples of kBlockUnit: 16-, 32-, then 64-byte steps up to
// 512, then four steps per doubling (about 1.19-1.25x; three from 64 KiB)
// up to the page size; above it, "run" classes of whole pages (2, 3, 4, 5,
// 7, 9, ... pages, about 1.25x apart) up to max_block.
uint32_t BuildClasses(uint64_t page, uint64_t max_block, uint32_t* sizes) {
  uint32_t n = 0;
  // Small blocks in steps of 16, 32, then 64 bytes: a 16-byte key with a
  // 64-byte value and the 32-byte header fill a class of 112 exactly.
  for (uint64_t s = 64; s <= 512 && s <= page; s += s < 128 ? 16 : s < 256 ? 32 : 64)
    sizes[n++] = static_cast<uint32_t>(s);
  // Then 4 classes a doubling (at most 25 % lost), 3 from 64 KiB (33 %):
  // the same 56 classes up to a 2-MiB page as before the small steps.
  for (uint64_t base = 512; base < page && n < kMaxClasses; base *= 2) {
    const int steps = base < 64 * 1024 ? 4 : 3;
    for (int q = 1; q <= steps && n < kMaxClasses; ++q) {
      const uint64_t s = AlignUp(base + base * q / steps, kBlockUnit);
      if (s > page) break;
      sizes[n++] = static_cast<uint32_t>(s);
    }
  }
  if (sizes[n - 1] != page && n < kMaxClasses) sizes[n++] = static_cast<uint32_t>(page);
  // Until one holds max_block (m grows by more than one page past 8: the
  // last class is sizes[n - 1], not m - 1 pages).
  for (uint64_t m = 2; sizes[n - 1] < max_block && n < kMaxClasses;
       m = std::max(m + 1, m * 5 / 4)) {
    if (page * m > (1ull << 31)) break;
    sizes[n++] = static_cast<uint32_t>(page * m);
  }
  return n;
}

std::string ReadBootId() {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(f, id);
  return id;
}

enum class NameKind { kShm, kFile };

int ParseName(const char* name, NameKind* kind, std::string* normalized, std::string* why) {
  if (name == nullptr || *name == '\0') {
    *why = "segment name is empty";
    return SHMKV_EINVAL;
  }
  const std::string n(name);
  const bool is_path = n.rfind("./", 0) == 0 || n.find('/', 1) != std::string::npos;
  if (is_path) {
    if (n.size() > 4000) {
      *why = "segment path is longer than 4000 bytes";
      return SHMKV_EINVAL;
    }
    if (n.back() == '/') {
      *why = "segment path '" + n + "' names a directory";
      return SHMKV_EINVAL;
    }
    *kind = NameKind::kFile;
    *normalized = n;
    return 0;
  }
  const std::string bare = n[0] == '/' ? n.substr(1) : n;
  if (bare.empty() || bare.size() > 200) {
    *why = "segment name must be 1 to 200 characters of [A-Za-z0-9._-]";
    return SHMKV_EINVAL;
  }
  for (char c : bare) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      *why = "segment name '" + n + "' has a character outside [A-Za-z0-9._-]";
      return SHMKV_EINVAL;
    }
  }
  if (bare == "." || bare == "..") {
    *why = "segment name cannot be '.' or '..'";
    return SHMKV_EINVAL;
  }
  *kind = NameKind::kShm;
  *normalized = bare;
  return 0;
}

int MapErrno(int e) {
  if (e == ENOENT) return SHMKV_ENOSEG;
  if (e == EACCES || e == EPERM) return SHMKV_EACCES;
  return e;
}

}  // namespace

int PlanLayout(const shmkv_options_t& o, Header* h, std::string* why) {
  std::memset(static_cast<void*>(h), 0, sizeof(*h));
  const uint64_t mem = o.memory_bytes ? o.memory_bytes : 64 * kMiB;
  if (mem < kMinMemory) {
    *why = "memory_bytes " + Str(mem) + " is below the minimum of 1 MiB";
    return SHMKV_EINVAL;
  }
  if (mem > kMaxMemory) {
    *why = "memory_bytes " + Str(mem) + " is above the maximum of 1 TiB";
    return SHMKV_EINVAL;
  }
  const uint32_t max_key = o.max_key_len ? o.max_key_len : 250;
  if (max_key > kMaxKeyLenLimit) {
    *why = "max_key_len " + Str(max_key) + " is above the limit of 4096";
    return SHMKV_EINVAL;
  }
  uint64_t max_val = o.max_value_len ? o.max_value_len : kMiB;
  if (o.evict_policy > SHMKV_EVICT_NONE) {
    *why = "evict_policy " + Str(o.evict_policy) + " is not one of SHMKV_EVICT_*";
    return SHMKV_EINVAL;
  }
  if (o.mode > 07777) {
    *why = "mode " + Str(o.mode) + " is not a file mode";
    return SHMKV_EINVAL;
  }
  const uint64_t items = o.max_items ? o.max_items : mem / 256;
  // The index (16 B a slot at load 0.75) may take at most half the segment.
  const uint64_t slots = (items * 4 + 2) / 3;
  if (slots * 16 > mem / 2) {
    *why = "max_items " + Str(items) + " does not fit in memory_bytes " + Str(mem) + " (at most " +
           Str(mem / 2 / 16 * 3 / 4) + ")";
    return SHMKV_EINVAL;
  }
  const uint64_t n_buckets = std::max<uint64_t>(16, (slots + 3) / 4);
  const uint64_t n_procs = std::clamp<uint64_t>(mem >> 15, 128, 4096);
  const uint64_t n_parts = std::min<uint64_t>(n_procs * 2, kMaxParticipants);

  h->proc_off = kHeaderSize;
  h->n_procs = n_procs;
  h->part_off = AlignUp(h->proc_off + n_procs * sizeof(ProcRecord), kCacheLine);
  h->n_parts = n_parts;
  h->index_off = AlignUp(h->part_off + n_parts * sizeof(ParticipantRecord), 4096);
  h->n_buckets = n_buckets;
  const uint64_t after_index = AlignUp(h->index_off + n_buckets * sizeof(Bucket), 4096);
  if (after_index >= mem) {
    *why = "memory_bytes " + Str(mem) + " is too small for max_items " + Str(items);
    return SHMKV_EINVAL;
  }
  const uint64_t rem = mem - after_index;

  // Pages: a power of two from 64 KiB to 2 MiB, at most 1/16 of the data
  // area (classes own whole pages and trade them by draining: more pages,
  // finer trades). Blocks larger than a page span several contiguous pages.
  max_val = std::min<uint64_t>(max_val, rem / 4);
  const uint64_t max_block = kBlockHeaderSize + max_key + max_val;
  uint64_t page = kMinPage;
  while (page < max_block && page < 2 * kMiB) page *= 2;
  while (page > kMinPage && rem / page < 16) page /= 2;
  uint32_t shift = 0;
  while ((1ull << shift) < page) ++shift;

  const uint64_t bitmap_words = (page / 64 + 63) / 64;
  const uint64_t per_page = page + 8 + bitmap_words * 8;
  // The data area starts on an OS page; on a huge page (2 MiB) when its pages
  // are huge pages (then it has 16 of them at least).
  const uint64_t align = page >= 2 * kMiB ? 2 * kMiB : 4096;
  uint64_t n_pages = rem / per_page;
  for (;;) {
    if (n_pages < 2) {
      *why = "memory_bytes " + Str(mem) + " leaves no room for data after the index";
      return SHMKV_EINVAL;
    }
    const uint64_t ptab = after_index;
    const uint64_t bitmaps = AlignUp(ptab + n_pages * 8, kCacheLine);
    const uint64_t data = AlignUp(bitmaps + n_pages * bitmap_words * 8, align);
    if (data + n_pages * page <= mem) {
      h->ptab_off = ptab;
      h->bitmap_off = bitmaps;
      h->data_off = data;
      break;
    }
    --n_pages;
  }
  h->bitmap_words = bitmap_words;
  h->n_pages = n_pages;
  h->page_shift = shift;
  h->n_classes = BuildClasses(page, max_block, h->class_size);

  // max_value_len: at most a quarter of the data area (after rounding to
  // whole pages), and within the largest class.
  max_val = std::min<uint64_t>(max_val, n_pages * page / 4);
  max_val =
      std::min<uint64_t>(max_val, h->class_size[h->n_classes - 1] - kBlockHeaderSize - max_key);

  h->magic = kMagic;
  h->layout_version = kLayoutVersion;
  h->abi_fingerprint = AbiFingerprint();
  h->total_size = mem;
  h->max_items = items;
  h->max_key_len = max_key;
  h->max_value_len = static_cast<uint32_t>(max_val);
  h->evict_policy = o.evict_policy;
  h->mode = o.mode ? o.mode : 0600;
  return 0;
}

int ValidateHeader(const Header& h, uint64_t file_size, std::string* why) {
  auto bad = [why](const std::string& msg) {
    *why = "bad segment: " + msg;
    return SHMKV_EBADSEG;
  };
  if (h.magic != kMagic) return bad("wrong magic (not an shmkv segment)");
  if (h.layout_version != kLayoutVersion)
    return bad("layout version " + Str(h.layout_version) + ", this library reads version " +
               Str(kLayoutVersion));
  if (h.abi_fingerprint != AbiFingerprint())
    return bad("ABI fingerprint mismatch (built for another platform or layout)");
  if (h.total_size != file_size)
    return bad("header says " + Str(h.total_size) + " bytes but the file has " + Str(file_size));
  auto in_range = [&](uint64_t off, uint64_t count, uint64_t elem) {
    if (off > file_size || count > file_size || elem > file_size) return false;
    if (count != 0 && elem > (file_size - off) / count) return false;
    return true;
  };
  if (h.page_shift < 16 || h.page_shift > 24) return bad("page size out of range");
  const uint64_t page = 1ull << h.page_shift;
  if (h.n_procs == 0 || !in_range(h.proc_off, h.n_procs, sizeof(ProcRecord)) ||
      h.proc_off < kHeaderSize || h.proc_off % kCacheLine != 0)
    return bad("process table out of bounds");
  if (h.n_parts == 0 || h.n_parts > kMaxParticipants ||
      !in_range(h.part_off, h.n_parts, sizeof(ParticipantRecord)) || h.part_off % kCacheLine != 0)
    return bad("participant table out of bounds");
  if (h.n_buckets < 2 || h.n_buckets > (1ull << 32) ||
      !in_range(h.index_off, h.n_buckets, sizeof(Bucket)) || h.index_off % kCacheLine != 0)
    return bad("index out of bounds");
  if (h.n_pages < 1 || h.n_pages > (1ull << 32) || !in_range(h.ptab_off, h.n_pages, 8) ||
      h.ptab_off % 8 != 0)
    return bad("page table out of bounds");
  if (h.bitmap_words != (page / 64 + 63) / 64 ||
      !in_range(h.bitmap_off, h.n_pages, h.bitmap_words * 8) || h.bitmap_off % 8 != 0)
    return bad("page bitmaps out of bounds");
  if (!in_range(h.data_off, h.n_pages, page) || h.data_off % 64 != 0 ||
      (h.data_off + h.n_pages * page) / kBlockUnit > ref::kOffMask)
    return bad("data area out of bounds");
  if (h.n_classes == 0 || h.n_classes > kMaxClasses) return bad("size class count");
  uint32_t prev = 0;
  for (uint32_t c = 0; c < h.n_classes; ++c) {
    const uint32_t s = h.class_size[c];
    // At least 64 bytes: the page bitmaps have a bit per 64 bytes.
    if (s <= prev || s < 64 || s % kBlockUnit != 0 ||
        (s > page && (s % page != 0 || s / page > h.n_pages)))
      return bad("size class table");
    prev = s;
  }
  if (h.max_key_len == 0 || h.max_key_len > kMaxKeyLenLimit) return bad("max_key_len");
  if (uint64_t{h.max_value_len} + h.max_key_len + kBlockHeaderSize > h.class_size[h.n_classes - 1])
    return bad("max_value_len does not fit the largest size class");
  if (h.evict_policy > SHMKV_EVICT_NONE) return bad("eviction policy");
  return 0;
}

// Holds the Boost objects that own the mapping and the file descriptor.
struct Segment::Impl {
  std::optional<ipc::shared_memory_object> shm;
  std::optional<ipc::file_mapping> file;
  ipc::mapped_region region;
  int map_fd = -1;
};

Segment::~Segment() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

int Segment::ReopenLockFd() {
  if (read_only_) return 0;
  if (lock_fd_ >= 0) ::close(lock_fd_);
  // A fresh open file description of the same file: OFD locks taken on it
  // belong to this process alone (the inherited one is shared with the
  // parent after fork).
  const std::string path = "/proc/self/fd/" + std::to_string(impl_->map_fd);
  lock_fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  return lock_fd_ < 0 ? errno : 0;
}

void Segment::DropLockFd() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
  lock_fd_ = -1;
}

bool TryLockByte(int fd, off_t byte) {
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  return ::fcntl(fd, F_OFD_SETLK, &fl) == 0;
}

void UnlockByte(int fd, off_t byte) {
  struct flock fl = {};
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  ::fcntl(fd, F_OFD_SETLK, &fl);
}

bool ByteLockedByOther(int fd, off_t byte) {
  struct flock fl = {};
  fl.l_type = F_RDLCK;  // a read probe works on read-only fds too
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  if (::fcntl(fd, F_OFD_GETLK, &fl) != 0) return true;  // unknown: assume alive
  return fl.l_type != F_UNLCK;
}

namespace {

void FillFreshHeader(Header* planned, bool keep_seed, uint64_t seed) {
  planned->hash_seed =
      keep_seed ? seed : std::random_device{}() * 0x9E3779B97F4A7C15ull ^ MonotonicNs(true);
  planned->epoch_ns = MonotonicNs(true);
  const std::string boot = ReadBootId();
  std::memset(planned->boot_id, 0, sizeof(planned->boot_id));
  std::memcpy(planned->boot_id, boot.data(), std::min(boot.size(), sizeof(planned->boot_id) - 1));
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  planned->created_realtime_ns = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
  planned->creator_pid = static_cast<uint32_t>(::getpid());
  planned->cas_next = 1;
}

// Writes the header of a segment whose other bytes are zero, then publishes
// it. Zero is the empty/free/unassigned encoding everywhere.
void Publish(unsigned char* base, const Header& planned) {
  Header* h = reinterpret_cast<Header*>(base);
  const uint32_t zero_state = kInitializing;
  std::memcpy(static_cast<void*>(h), &planned, sizeof(Header));
  h->init_state = zero_state;
  // release: publishes the header and the zeroed regions; pairs with the
  // acquire load in the attach loop.
  StoreRelease32(&h->init_state, kReady);
}

}  // namespace

int Segment::Open(const char* name, const shmkv_options_t* opts, std::unique_ptr<Segment>* out,
                  std::string* why) {
  NameKind kind;
  std::string norm;
  if (int rc = ParseName(name, &kind, &norm, why)) return rc;
  const uint32_t flags = opts ? opts->flags : 0;
  if (flags & ~uint32_t{SHMKV_OPEN_CREATE | SHMKV_OPEN_EXCL | SHMKV_OPEN_READONLY |
                        SHMKV_OPEN_PRECISE_CLOCK}) {
    *why = "unknown flags in options.flags";
    return SHMKV_EINVAL;
  }
  const bool create = flags & SHMKV_OPEN_CREATE;
  const bool excl = flags & SHMKV_OPEN_EXCL;
  const bool read_only = flags & SHMKV_OPEN_READONLY;
  if (create && read_only) {
    *why = "SHMKV_OPEN_CREATE and SHMKV_OPEN_READONLY exclude each other";
    return SHMKV_EINVAL;
  }
  Header planned;
  if (create) {
    if (int rc = PlanLayout(*opts, &planned, why)) return rc;
  }

  std::unique_ptr<Segment> seg(new Segment());
  seg->impl_ = std::make_unique<Impl>();
  seg->read_only_ = read_only;
  seg->name_ = norm;
  Impl& im = *seg->impl_;
  const ipc::mode_t access = read_only ? ipc::read_only : ipc::read_write;
  bool created = false;

  try {
    if (create) {
      try {
        if (kind == NameKind::kShm) {
          ipc::permissions perm(planned.mode);
          im.shm.emplace(ipc::create_only, norm.c_str(), ipc::read_write, perm);
          im.map_fd = im.shm->get_mapping_handle().handle;
        } else {
          const int fd = ::open(norm.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, planned.mode);
          if (fd < 0) {
            if (errno == EEXIST) throw ipc::interprocess_exception(ipc::already_exists_error);
            const int e = errno;
            *why = "cannot create " + norm + ": " + ErrnoText(e);
            return MapErrno(e);
          }
          ::close(fd);
          im.file.emplace(norm.c_str(), ipc::read_write);
          im.map_fd = im.file->get_mapping_handle().handle;
        }
        created = true;
        ::fchmod(im.map_fd, planned.mode);  // the mode exactly, whatever the umask
      } catch (const ipc::interprocess_exception& e) {
        if (e.get_error_code() != ipc::already_exists_error) throw;
        if (excl) {
          *why = "segment '" + norm + "' already exists";
          return SHMKV_EEXIST;
        }
      }
    }
    if (!created) {
      if (kind == NameKind::kShm) {
        im.shm.emplace(ipc::open_only, norm.c_str(), access);
        im.map_fd = im.shm->get_mapping_handle().handle;
      } else {
        im.file.emplace(norm.c_str(), access);
        im.map_fd = im.file->get_mapping_handle().handle;
      }
    }
  } catch (const ipc::interprocess_exception& e) {
    int err = e.get_native_error();
    if (e.get_error_code() == ipc::not_found_error) err = ENOENT;
    if (e.get_error_code() == ipc::security_error) err = EACCES;
    if (err == 0) err = EIO;
    const int rc = MapErrno(err);
    if (rc == SHMKV_ENOSEG)
      *why = "segment '" + norm + "' does not exist";
    else if (rc == SHMKV_EACCES)
      *why = "permission denied opening segment '" + norm + "'" +
             (read_only ? "" : " for writing (SHMKV_OPEN_READONLY needs only read access)");
    else
      *why = "cannot open segment '" + norm + "': " + e.what();
    return rc;
  }

  auto unlink_created = [&]() {
    if (!created) return;
    if (kind == NameKind::kShm)
      ipc::shared_memory_object::remove(norm.c_str());
    else
      ::unlink(norm.c_str());
  };

  if (!read_only) {
    if (int rc = seg->ReopenLockFd()) {
      *why = std::string("cannot reopen the segment for locking: ") + ErrnoText(rc);
      unlink_created();
      return rc;
    }
  }

  // Huge pages come from the file system under the segment (README "Huge
  // pages"), never from madvise here: MADV_HUGEPAGE cannot act on pages that
  // posix_fallocate already allocated, and MADV_COLLAPSE on a tmpfs mounted
  // huge=always was seen (Linux 6.18) to leave the mapping on pages the file
  // no longer had: writes through it reached neither read() nor other
  // processes.
  auto map = [&](uint64_t bytes, ipc::mode_t mode) {
    if (im.shm)
      im.region = ipc::mapped_region(*im.shm, mode, 0, bytes);
    else
      im.region = ipc::mapped_region(*im.file, mode, 0, bytes);
  };
  // Reserves the pages now (tmpfs is sparse: a later fault under memory
  // pressure would be SIGBUS), maps, and publishes a fresh header.
  auto initialise = [&](uint64_t old_size) -> int {
    if (old_size > planned.total_size) {
      // Never shrink a file others may have mapped (SIGBUS): take its size.
      shmkv_options_t bigger = *opts;
      bigger.memory_bytes = old_size;
      if (int rc = PlanLayout(bigger, &planned, why)) return rc;
    }
    int rc = ::posix_fallocate(im.map_fd, 0, static_cast<off_t>(planned.total_size));
    if (rc == EOPNOTSUPP || rc == EINVAL)  // hugetlbfs: reserved at mmap instead
      rc = ::ftruncate(im.map_fd, static_cast<off_t>(planned.total_size)) ? errno : 0;
    if (rc != 0) {
      *why = "cannot reserve " + Str(planned.total_size) + " bytes for segment '" + norm +
             "': " + ErrnoText(rc);
      return rc;
    }
    map(planned.total_size, ipc::read_write);
    if (old_size != 0) std::memset(im.region.get_address(), 0, planned.total_size);
    FillFreshHeader(&planned, false, 0);
    Publish(static_cast<unsigned char*>(im.region.get_address()), planned);
    return 0;
  };

  try {
    // A creator that lost its init lock stalled so long that an attacher
    // took over initialisation: it then attaches like everyone else.
    if (created && TryLockByte(seg->lock_fd_, kInitLockByte)) {
      if (int rc = initialise(0)) {
        unlink_created();
        return rc;
      }
      UnlockByte(seg->lock_fd_, kInitLockByte);
    } else {
      // Attach: wait until a racing creator has published the header; take
      // over if it died; wipe a segment left by a previous boot.
      const auto start = std::chrono::steady_clock::now();
      const int probe_fd = seg->lock_fd_ >= 0 ? seg->lock_fd_ : im.map_fd;
      for (;;) {
        struct stat st;
        if (::fstat(im.map_fd, &st) != 0) {
          *why = std::string("cannot stat segment: ") + ErrnoText(errno);
          return errno;
        }
        const uint64_t fsize = static_cast<uint64_t>(st.st_size);
        const auto waited = std::chrono::steady_clock::now() - start;
        if (fsize >= kHeaderSize) {
          if (im.region.get_size() != fsize) map(fsize, access);
          auto* h = static_cast<Header*>(im.region.get_address());
          const uint32_t state = LoadAcquire32(&h->init_state);
          const uint64_t magic = LoadRelaxed(&h->magic);
          if (magic != 0 && magic != kMagic) {
            // Not a segment being created (its creator writes the magic with
            // the rest of the header): someone else's file. Never touch it.
            *why = "bad segment: wrong magic (not an shmkv segment)";
            return SHMKV_EBADSEG;
          }
          if (state == kReady || state == kSuperseded) {
            if (int rc = ValidateHeader(*h, fsize, why)) return rc;
            const std::string boot = ReadBootId();
            if (boot.empty() || std::strncmp(h->boot_id, boot.c_str(), sizeof(h->boot_id)) == 0)
              break;
            if (read_only) {
              *why = "segment '" + norm +
                     "' is from a previous boot; open it read-write once to reset it";
              return SHMKV_EBADSEG;
            }
            if (TryLockByte(seg->lock_fd_, kInitLockByte)) {
              // Re-check under the lock: another attacher may have wiped it
              // already, and others may be using the fresh segment.
              const bool still_old =
                  std::strncmp(h->boot_id, boot.c_str(), sizeof(h->boot_id)) != 0;
              if (still_old && Cas32(&h->init_state, state, kInitializing)) {
                // A cache does not outlive a reboot: start empty, same geometry.
                Header fresh = *h;
                std::memset(im.region.get_address(), 0, fsize);
                FillFreshHeader(&fresh, true, fresh.hash_seed);
                std::memset(fresh.retired, 0, sizeof(fresh.retired));
                fresh.recovered = 0;
                Publish(static_cast<unsigned char*>(im.region.get_address()), fresh);
              }
              UnlockByte(seg->lock_fd_, kInitLockByte);
            }
            continue;
          }
        }
        if (waited > std::chrono::seconds(2) && !ByteLockedByOther(probe_fd, kInitLockByte)) {
          // Nobody is initialising it and nobody did: its creator died.
          if (create && TryLockByte(seg->lock_fd_, kInitLockByte)) {
            if (int rc = initialise(fsize)) return rc;
            UnlockByte(seg->lock_fd_, kInitLockByte);
            break;
          }
          *why = "segment '" + norm +
                 "' was never initialised (its creator died while creating it); "
                 "unlink it and create it again";
          return SHMKV_EBADSEG;
        }
        if (waited > std::chrono::seconds(30)) {
          *why = "timed out waiting for segment '" + norm + "' to be initialised";
          return SHMKV_EBUSY;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  } catch (const ipc::interprocess_exception& e) {
    *why = "cannot map segment '" + norm + "': " + e.what();
    unlink_created();
    return e.get_native_error() ? e.get_native_error() : EIO;
  }

  seg->base_ = static_cast<unsigned char*>(im.region.get_address());
  seg->size_ = im.region.get_size();
  *out = std::move(seg);
  return 0;
}

int Segment::Unlink(const char* name, std::string* why) {
  NameKind kind;
  std::string norm;
  if (int rc = ParseName(name, &kind, &norm, why)) return rc;
  int rc = 0;
  if (kind == NameKind::kShm) {
    rc = ::shm_unlink(norm.c_str()) == 0 ? 0 : errno;
  } else {
    rc = ::unlink(norm.c_str()) == 0 ? 0 : errno;
  }
  if (rc != 0) {
    *why = "cannot unlink segment '" + norm + "': " + ErrnoText(rc);
    return MapErrno(rc);
  }
  return 0;
}

uint64_t MappedHugeBytes(const void* base, uint64_t size) {
  // smaps counts only what this process has mapped so far: read one byte of
  // every 2 MiB first, which maps a whole huge page where there is one (the
  // file's pages are all allocated at creation, so a read allocates nothing).
  const auto* bytes = static_cast<const volatile unsigned char*>(base);
  for (uint64_t off = 0; off < size; off += uint64_t{2} << 20) (void)bytes[off];
  std::FILE* f = std::fopen("/proc/self/smaps", "re");
  if (f == nullptr) return 0;
  const auto lo = reinterpret_cast<uintptr_t>(base);
  const uintptr_t hi = lo + size;
  uint64_t kib = 0;
  bool inside = false;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    uintptr_t a = 0, b = 0;
    // A mapping's first line: "start-end perms offset dev inode path".
    if (std::sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &a, &b) == 2) {
      inside = a >= lo && b <= hi && a < b;
      continue;
    }
    if (!inside) continue;
    uint64_t v = 0;
    for (const char* field :
         {"ShmemPmdMapped:", "FilePmdMapped:", "Shared_Hugetlb:", "Private_Hugetlb:"}) {
      const size_t n = std::strlen(field);
      if (std::strncmp(line, field, n) == 0 && std::sscanf(line + n, "%" SCNu64, &v) == 1) kib += v;
    }
  }
  std::fclose(f);
  return kib * 1024;
}

}  // namespace shmkv::internal
