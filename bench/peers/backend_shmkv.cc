// shmkv through its C API (the ABI every binding uses).
#include <algorithm>
#include <cstdio>

#include "backend.h"
#include "shmkv/shmkv.h"

namespace peers {
namespace {

class ShmkvBackend final : public Backend {
 public:
  explicit ShmkvBackend(std::string dir) : dir_(std::move(dir)) {}
  ~ShmkvBackend() override { Close(); }

  std::string Open(const StoreSpec& spec) override {
    name_ = dir_ + "/peers-" + spec.name;
    shmkv_options_t o;
    shmkv_options_init(&o);
    o.flags = SHMKV_OPEN_CREATE | SHMKV_OPEN_EXCL;
    if (spec.evicting) {
      // Holds about evict_items values, then evicts on every insert.
      o.max_items = spec.evict_items;
      o.memory_bytes = std::max<uint64_t>(1 << 20, spec.evict_items * (spec.value_len + 128));
    } else {
      // Room to spare, so that nothing is ever evicted: the index is a
      // bucketized table that evicts when a key's bucket pair is full, which
      // happens for a few keys in 100 000 at load 0.5 (max_items = 1.5x the
      // items); at 3x it did not happen in our tests.
      o.max_items = ShmkvMaxItems(spec.items);
      o.memory_bytes = EstimateBytes(spec);
    }
    o.max_value_len = std::max<uint32_t>(spec.value_len, 1024);
    shmkv_unlink(name_.c_str());
    if (int rc = shmkv_open(name_.c_str(), &o, &owner_)) {
      return "shmkv_open " + name_ + ": " + shmkv_strerror(rc) + " (" + shmkv_last_error() + ")";
    }
    return "";
  }

  std::string Attach() override {
    if (int rc = shmkv_open(name_.c_str(), nullptr, &kv_)) {
      return "shmkv_open " + name_ + ": " + shmkv_strerror(rc) + " (" + shmkv_last_error() + ")";
    }
    return "";
  }

  void Detach() override {
    shmkv_close(kv_);
    kv_ = nullptr;
  }

  void Close() override {
    Detach();
    if (owner_ != nullptr) {
      shmkv_close(owner_);
      owner_ = nullptr;
      shmkv_unlink(name_.c_str());
    }
  }

  bool CanPipeline(OpType t) const override { return t == OpType::kGet; }

  void Run(const Op* ops, size_t n, bool pipelined, char* buf, size_t cap, Outcome* out) override {
    if (pipelined && RunMGet(ops, n, buf, cap, out)) return;
    for (size_t i = 0; i < n; ++i) {
      const Op& op = ops[i];
      int rc = 0;
      switch (op.type) {
        case OpType::kGet: {
          size_t len = 0;
          rc = shmkv_get(kv_, op.key.data(), op.key.size(), buf, cap, &len, nullptr);
          break;
        }
        case OpType::kSet:
          rc = shmkv_set(kv_, op.key.data(), op.key.size(), op.value.data(), op.value.size(), 0);
          break;
        case OpType::kDel:
          rc = shmkv_delete(kv_, op.key.data(), op.key.size(), 0);
          break;
        case OpType::kIncr: {
          int64_t result = 0;
          rc = shmkv_incr(kv_, op.key.data(), op.key.size(), 1, 0, 0, &result);
          break;
        }
      }
      if (rc == 0) {
        ++out->found;
      } else if (rc == SHMKV_ENOTFOUND) {
        ++out->not_found;
      } else {
        ++out->errors;
      }
    }
  }

  // All of a batch's gets in one shmkv_mget (each value into its own slice
  // of buf). False, doing nothing, if the batch holds anything else.
  bool RunMGet(const Op* ops, size_t n, char* buf, size_t cap, Outcome* out) {
    constexpr size_t kMax = 64;
    if (n > kMax) return false;
    const void* keys[kMax] = {};
    size_t klens[kMax] = {}, caps[kMax] = {}, lens[kMax] = {};
    void* bufs[kMax] = {};
    int rcs[kMax] = {};
    const size_t slice = cap / n;
    for (size_t i = 0; i < n; ++i) {
      if (ops[i].type != OpType::kGet) return false;
      keys[i] = ops[i].key.data();
      klens[i] = ops[i].key.size();
      bufs[i] = buf + i * slice;
      caps[i] = slice;
    }
    if (shmkv_mget(kv_, n, keys, klens, bufs, caps, lens, rcs, nullptr) != 0) {
      out->errors += n;
      return true;
    }
    for (size_t i = 0; i < n; ++i) {
      if (rcs[i] == 0) {
        ++out->found;
      } else if (rcs[i] == SHMKV_ENOTFOUND) {
        ++out->not_found;
      } else {
        ++out->errors;
      }
    }
    return true;
  }

  uint64_t EstimateBytes(const StoreSpec& spec) const override {
    // A block (32-B header, key, value) in a size class, with slack for the
    // class spacing, plus an index of 16-B slots at load 0.75 of max_items.
    const uint64_t block = spec.key_len + spec.value_len + 32;
    const uint64_t index = ShmkvIndexBytes(spec.items);
    return std::max<uint64_t>(64ull << 20, spec.items * block * 3 / 2 + index + (32ull << 20));
  }

 private:
  std::string dir_;
  std::string name_;
  shmkv_t* owner_ = nullptr;  // the driver's handle: keeps the segment until Close
  shmkv_t* kv_ = nullptr;     // this process's handle
};

}  // namespace

uint64_t ShmkvMaxItems(uint64_t items) { return items * 3 + 1024; }
uint64_t ShmkvIndexBytes(uint64_t items) { return ShmkvMaxItems(items) * 4 / 3 * 16; }

std::unique_ptr<Backend> MakeShmkv(const std::string& dir) {
  return std::make_unique<ShmkvBackend>(dir);
}

}  // namespace peers
