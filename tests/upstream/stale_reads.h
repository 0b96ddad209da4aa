// The history check of two_hosts_test.cc: the operations of a workload
// run by processes on several hosts (segments in front of one Redis), each
// with its start and end on one clock (CLOCK_MONOTONIC: one machine), are
// checked against the guarantees of near_cache.h.
//
// Every Set writes a value no other Set writes, so a read names the write
// that produced it; a read that found nothing was produced by the initial
// state (every key absent) or by a Delete. For each read R of key k on
// host H that returned the value of write P (for "absent", the Delete of k
// that started before R ended and ended last, or the initial state):
//   (1) P started before R ended: no value from the future, none that was
//       never written to k;
//   (2) same host: no write W' of k by a process on H with W'.start >
//       P.end (W' known to be ordered after P) and W'.end < R.start: once
//       a write returned, no read on its host returns an older value;
//   (3) any host: no such W' with W'.end + bound < R.start: a copy is never
//       older than the bound (the daemon's --upstream-max-lag).
// The staleness of a read is R.start - W'.end for the earliest-ending such
// W' of another host; the report keeps its maximum. A write that failed
// may or may not have happened: it can produce a value, and it never ends
// (it is no W').
#ifndef SHMKV_TESTS_UPSTREAM_STALE_READS_H_
#define SHMKV_TESTS_UPSTREAM_STALE_READS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace shmkv::test {

enum class HistoryOp : uint8_t { kGet, kSet, kDelete };

enum class HistoryStatus : uint8_t {
  kOk,       // Get found a value; Set stored; Delete deleted
  kAbsent,   // Get found nothing; Delete found nothing to delete
  kError,    // the call failed
  kGarbage,  // Get returned a value that no Set of this workload writes
};

// One operation, as a process recorded it (trivially copyable: it is
// written into shared memory by forked workers).
struct HistoryEvent {
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  // The value: (writer, seq) of a Set's value or of the value a Get read.
  // Writers are numbered from 1.
  uint32_t writer = 0;
  uint32_t seq = 0;
  uint16_t process = 0;
  uint8_t host = 0;
  uint8_t key = 0;
  HistoryOp op = HistoryOp::kGet;
  HistoryStatus status = HistoryStatus::kOk;
};

struct StaleReadReport {
  uint64_t reads = 0;  // Gets that returned (a value, or absent)
  uint64_t absent_reads = 0;
  uint64_t sets = 0;
  uint64_t deletes = 0;
  uint64_t failed = 0;           // calls that returned an error
  uint64_t future_reads = 0;     // broke (1)
  uint64_t same_host_stale = 0;  // broke (2)
  uint64_t beyond_bound = 0;     // broke (3)
  // Reads older than a write of another host that had already ended
  // (within the bound: the invalidation delay at work), and the largest
  // such staleness.
  uint64_t cross_host_stale = 0;
  int64_t max_cross_host_staleness_ns = 0;
  std::vector<std::string> examples;  // the first violations, described

  uint64_t violations() const { return future_reads + same_host_stale + beyond_bound; }
};

// Checks every read of history; bound_ns is the bound of (3).
StaleReadReport CheckStaleReads(const std::vector<HistoryEvent>& history, int64_t bound_ns,
                                size_t max_examples = 10);

}  // namespace shmkv::test

#endif  // SHMKV_TESTS_UPSTREAM_STALE_READS_H_
