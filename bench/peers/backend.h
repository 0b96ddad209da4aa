// The interface every store in the peer comparison implements: shmkv and
// each peer, with its real client. A store is created once by the driver
// (Open), filled, and then used by one or two processes, each of which
// attaches on its own after fork() (Attach), as unrelated processes would.
#ifndef SHMKV_BENCH_PEERS_BACKEND_H_
#define SHMKV_BENCH_PEERS_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace peers {

enum class OpType : uint8_t { kGet, kSet, kDel, kIncr };

struct Op {
  OpType type;
  std::string_view key;
  std::string_view value;  // kSet only
};

// What a batch of ops did. Writes sent without waiting for their reply
// (memcached's buffered pipeline) count as found: their outcome is unknown.
struct Outcome {
  uint64_t found = 0;      // get hit, delete of a present key, set or incr done
  uint64_t not_found = 0;  // get miss, delete of an absent key
  uint64_t errors = 0;     // anything else (out of memory, protocol error)

  void Add(const Outcome& o) {
    found += o.found;
    not_found += o.not_found;
    errors += o.errors;
  }
};

struct StoreSpec {
  std::string name;         // unique in this run; usable in a shm object name
  uint64_t items = 0;       // items it must hold without evicting any
  uint32_t key_len = 16;    // every key has this length
  uint32_t value_len = 64;  // largest value
  // The store of the "SET new" workload: small, and full, so that every
  // insert evicts. shmkv, Redis and memcached evict on their own (a small
  // segment, maxmemory, -m); the maps and the Boost map cannot, so they
  // erase the key inserted evict_items inserts ago (a FIFO of keys, in the
  // segment for the Boost map).
  bool evicting = false;
  uint64_t evict_items = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Creates the store (in the driver, before any worker). "" or what failed.
  virtual std::string Open(const StoreSpec& spec) = 0;
  // Connects or maps in the calling process (a forked worker, or the driver
  // when it fills or checks the store). "" or what failed.
  virtual std::string Attach() = 0;
  virtual void Detach() = 0;
  // Removes the store and what it holds (driver).
  virtual void Close() = 0;
  // Runs n ops. pipelined: send them all, then read all replies (only for
  // servers; see CanPipeline). A get copies the value into buf (cap bytes).
  virtual void Run(const Op* ops, size_t n, bool pipelined, char* buf, size_t cap,
                   Outcome* out) = 0;
  // Whether Run(pipelined) really pipelines ops of this type.
  virtual bool CanPipeline(OpType) const { return false; }
  // True for the in-process maps: one process only, run in the driver.
  virtual bool InProcess() const { return false; }
  // True for the servers: an op is a round trip of microseconds, timed on
  // its own (unless pipelined); other stores are timed in batches (kBatch).
  virtual bool RoundTrip() const { return false; }
  // Roughly what the store will need in RAM, for the free-memory check.
  virtual uint64_t EstimateBytes(const StoreSpec& spec) const = 0;
};

// The max_items a non-evicting shmkv store of `items` keys is created with
// (3x: no bucket pair ever fills), and the bytes of its index (16-B slots at
// load 0.75 of that).
uint64_t ShmkvMaxItems(uint64_t items);
uint64_t ShmkvIndexBytes(uint64_t items);
// dir: where its segments go (a path); empty: POSIX shm names (/dev/shm).
std::unique_ptr<Backend> MakeShmkv(const std::string& dir);
std::unique_ptr<Backend> MakeRedis(const std::string& socket);
std::unique_ptr<Backend> MakeMemcached(const std::string& socket);
std::unique_ptr<Backend> MakeBoostMap();
std::unique_ptr<Backend> MakeStdMap();
std::unique_ptr<Backend> MakeFlatMap();  // nullptr when built without Abseil

// Reads a decimal int64 from a value ("0", "-12"); false if it is not one.
bool ParseInt(std::string_view s, int64_t* out);

}  // namespace peers

#endif  // SHMKV_BENCH_PEERS_BACKEND_H_
