// The janitor's work (design-notes §4.11), as a library so that the daemon
// `shmkvd` is a thin loop over it and any process could do the same.
//
// Each Tick() does bounded work: it sweeps the next slice of the index for
// expired entries (sized so that a full pass takes `sweep_period`), runs
// recovery of dead processes (OFD locks released), evicts by each class's
// CLOCK hand while a class has fewer free blocks than its watermark, and
// rebuilds the allocation hints of a slice of pages. Clients never wait for
// it: every step is one of the lock-free helper operations clients use.
#ifndef SHMKV_SRC_JANITOR_H_
#define SHMKV_SRC_JANITOR_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shmkv/shmkv.h"

namespace shmkv::internal {

struct JanitorOptions {
  std::chrono::milliseconds interval{100};        // time between ticks
  std::chrono::milliseconds sweep_period{10000};  // one full pass over the index
  // Free blocks kept per size class in use, as a fraction of its blocks
  // (at least one page's worth of blocks is never required).
  double free_watermark = 0.005;
};

struct TickReport {
  uint64_t slots_swept = 0;
  uint64_t expired = 0;              // entries reclaimed by the sweep
  uint64_t recovered_processes = 0;  // dead processes recovered
  uint64_t evicted = 0;              // entries evicted to keep watermarks
  uint64_t pages_hinted = 0;         // pages whose hints were rebuilt
  uint64_t duration_ns = 0;
  bool pass_completed = false;  // the sweep wrapped around the index
};

// Memory of one size class, for metrics.
struct ClassUsage {
  uint32_t class_index;
  uint32_t block_size;
  uint64_t pages;
  uint64_t blocks;       // capacity of its pages
  uint64_t blocks_used;  // per the allocation hints (approximate under load)
};

class Janitor {
 public:
  // Becomes the janitor of kv's segment: takes the OFD lock on the
  // janitor byte of the segment file. SHMKV_EBUSY (with a message naming
  // the holder's pid when known) if another process is the janitor;
  // SHMKV_EREADONLY on a read-only handle. kv must outlive the Janitor.
  static int Acquire(shmkv_t* kv, const JanitorOptions& options, std::unique_ptr<Janitor>* out,
                     std::string* why);
  ~Janitor();  // gives the janitor lock back
  Janitor(const Janitor&) = delete;
  Janitor& operator=(const Janitor&) = delete;

  // One tick of bounded work. Returns 0 or an error code.
  int Tick(TickReport* report);

  const JanitorOptions& options() const { return options_; }
  // New timing and watermark for the following ticks (the daemon's SIGHUP),
  // without giving the janitor lock up.
  void set_options(const JanitorOptions& options) { options_ = options; }

 private:
  Janitor(shmkv_t* kv, const JanitorOptions& options) : kv_(kv), options_(options) {}
  shmkv_t* kv_;
  JanitorOptions options_;
  uint64_t sweep_cursor_ = 0;  // next slot of the expiry sweep
  uint64_t hint_cursor_ = 0;   // next page of the hint rebuild
};

// Per-class memory use of a segment (classes that own at least one page).
std::vector<ClassUsage> GetClassUsage(shmkv_t* kv);

// The pid recorded by the current janitor, 0 if none.
uint64_t JanitorPid(shmkv_t* kv);

}  // namespace shmkv::internal

#endif  // SHMKV_SRC_JANITOR_H_
