// memcached over a unix socket with libmemcached (ASCII protocol, the
// default of memcached 1.6). One plain connection per process, and for the
// pipelined shape a second one with MEMCACHED_BEHAVIOR_NOREPLY and
// MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, on which a batch is:
//   sets and deletes  sent with "noreply" into the output buffer;
//   gets              one multi-key "get k1 k2 ... kn" (memcached_mget), the
//                     way memcached clients batch reads; it sends the buffer
//                     and its reply comes after every command before it, so
//                     the batch is done when it has been read. A batch with
//                     no get ends with a get of an absent key for that.
//   incr              not pipelined: libmemcached waits for each reply.
// (Buffered requests *with* replies, libmemcached's other way to pipeline,
// closed the connection and hit an assertion in libmemcached 1.1.4 once a
// batch held more than a few KiB.) A noreply write's outcome is unknown: it
// counts as done, so the p16 shape cannot check its sets and deletes.
#include <libmemcached/memcached.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend.h"

namespace peers {
namespace {

class MemcachedBackend final : public Backend {
 public:
  explicit MemcachedBackend(std::string socket) : socket_(std::move(socket)) {}
  ~MemcachedBackend() override { Detach(); }

  std::string Open(const StoreSpec&) override {
    if (std::string err = Attach(); !err.empty()) return err;
    const memcached_return_t rc = memcached_flush(memc_, 0);
    std::string err;
    if (rc != MEMCACHED_SUCCESS) err = "memcached flush_all: " + Error(memc_, rc);
    Detach();
    return err;
  }

  std::string Attach() override {
    memc_ = Connect(false);
    buffered_ = Connect(true);
    if (memc_ == nullptr || buffered_ == nullptr) {
      Detach();
      return "memcached " + socket_ + ": cannot create a client";
    }
    // memcached_server_add_unix_socket does not connect: check that it works.
    const memcached_return_t rc = memcached_version(memc_);
    if (rc != MEMCACHED_SUCCESS) {
      std::string err = "memcached " + socket_ + ": " + Error(memc_, rc);
      Detach();
      return err;
    }
    return "";
  }

  void Detach() override {
    if (memc_ != nullptr) memcached_free(memc_);
    if (buffered_ != nullptr) memcached_free(buffered_);
    memc_ = buffered_ = nullptr;
  }

  void Close() override {
    if (Attach().empty()) {
      memcached_flush(memc_, 0);
      Detach();
    }
  }

  void Run(const Op* ops, size_t n, bool pipelined, char* buf, size_t cap, Outcome* out) override {
    if (!pipelined) {
      for (size_t i = 0; i < n; ++i) One(memc_, ops[i], buf, cap, out);
      return;
    }
    keys_.clear();
    lens_.clear();
    bool writes = false;
    for (size_t i = 0; i < n; ++i) {
      const Op& op = ops[i];
      if (op.type == OpType::kGet) {
        keys_.push_back(op.key.data());
        lens_.push_back(op.key.size());
      } else if (op.type == OpType::kIncr) {
        One(memc_, op, buf, cap, out);
      } else {
        One(buffered_, op, buf, cap, out);
        writes = true;
      }
    }
    if (!keys_.empty()) {
      MultiGet(buf, cap, out);
    } else if (writes) {
      Outcome sync;
      One(buffered_, {OpType::kGet, "sync:absent:key", {}}, buf, cap, &sync);
      out->errors += sync.errors;
    }
  }

  bool CanPipeline(OpType t) const override { return t != OpType::kIncr; }
  bool RoundTrip() const override { return true; }

  uint64_t EstimateBytes(const StoreSpec& spec) const override {
    return spec.items * (spec.key_len + spec.value_len + 80);
  }

 private:
  memcached_st* Connect(bool buffered) {
    memcached_st* m = memcached_create(nullptr);
    if (m == nullptr) return nullptr;
    if (memcached_server_add_unix_socket(m, socket_.c_str()) != MEMCACHED_SUCCESS) {
      memcached_free(m);
      return nullptr;
    }
    if (buffered) {
      memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 1);
      memcached_behavior_set(m, MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 1);
    }
    return m;
  }

  static std::string Error(memcached_st* m, memcached_return_t rc) {
    const char* e = memcached_last_error_message(m);
    return e != nullptr ? e : memcached_strerror(m, rc);
  }

  static void One(memcached_st* m, const Op& op, char* buf, size_t cap, Outcome* out) {
    memcached_return_t rc = MEMCACHED_SUCCESS;
    switch (op.type) {
      case OpType::kGet: {
        size_t len = 0;
        uint32_t flags = 0;
        char* v = memcached_get(m, op.key.data(), op.key.size(), &len, &flags, &rc);
        if (v != nullptr) {
          std::memcpy(buf, v, std::min(cap, len));
          std::free(v);
        }
        break;
      }
      case OpType::kSet:
        rc = memcached_set(m, op.key.data(), op.key.size(), op.value.data(), op.value.size(), 0, 0);
        break;
      case OpType::kDel:
        rc = memcached_delete(m, op.key.data(), op.key.size(), 0);
        break;
      case OpType::kIncr: {
        uint64_t value = 0;
        rc = memcached_increment(m, op.key.data(), op.key.size(), 1, &value);
        break;
      }
    }
    if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_BUFFERED || rc == MEMCACHED_STORED ||
        rc == MEMCACHED_DELETED) {
      ++out->found;
    } else if (rc == MEMCACHED_NOTFOUND) {
      ++out->not_found;
    } else {
      ++out->errors;
    }
  }

  // On the pipelined connection, after the batch's buffered writes.
  void MultiGet(char* buf, size_t cap, Outcome* out) {
    memcached_st* m = buffered_;
    memcached_return_t rc = memcached_mget(m, keys_.data(), lens_.data(), keys_.size());
    if (rc != MEMCACHED_SUCCESS) {
      out->errors += keys_.size();
      return;
    }
    uint64_t hits = 0;
    memcached_result_st result;
    memcached_result_create(m, &result);
    while (memcached_fetch_result(m, &result, &rc) != nullptr) {
      const size_t len = memcached_result_length(&result);
      std::memcpy(buf, memcached_result_value(&result), std::min(cap, len));
      ++hits;
    }
    memcached_result_free(&result);
    if (rc != MEMCACHED_END && rc != MEMCACHED_NOTFOUND && rc != MEMCACHED_SUCCESS) {
      out->errors += keys_.size() - hits;
      out->found += hits;
      return;
    }
    out->found += hits;
    out->not_found += keys_.size() - hits;
  }

  std::string socket_;
  memcached_st* memc_ = nullptr;
  memcached_st* buffered_ = nullptr;
  std::vector<const char*> keys_;
  std::vector<size_t> lens_;
};

}  // namespace

std::unique_ptr<Backend> MakeMemcached(const std::string& socket) {
  return std::make_unique<MemcachedBackend>(socket);
}

}  // namespace peers
