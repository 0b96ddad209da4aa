// Redis over a unix socket with hiredis: one connection per process, each
// command sent with the binary-safe argv form. Pipelined: all commands of the
// batch are appended to the output buffer, sent in one write, and then the
// replies are read in order.
#include <hiredis/hiredis.h>

#include <algorithm>
#include <cstring>

#include "backend.h"

namespace peers {
namespace {

class RedisBackend final : public Backend {
 public:
  explicit RedisBackend(std::string socket) : socket_(std::move(socket)) {}
  ~RedisBackend() override { Detach(); }

  std::string Open(const StoreSpec&) override {
    // The instance is this run's own (started by scripts/bench.sh): start empty.
    if (std::string err = Attach(); !err.empty()) return err;
    std::string err = Simple("FLUSHALL");
    Detach();
    return err;
  }

  std::string Attach() override {
    c_ = redisConnectUnix(socket_.c_str());
    if (c_ == nullptr || c_->err) {
      std::string err = "redis " + socket_ + ": " + (c_ ? c_->errstr : "out of memory");
      Detach();
      return err;
    }
    return "";
  }

  void Detach() override {
    if (c_ != nullptr) redisFree(c_);
    c_ = nullptr;
  }

  void Close() override {
    if (Attach().empty()) {
      Simple("FLUSHALL");
      Detach();
    }
  }

  void Run(const Op* ops, size_t n, bool pipelined, char* buf, size_t cap, Outcome* out) override {
    if (!pipelined) {
      for (size_t i = 0; i < n; ++i) {
        Append(ops[i]);
        if (!Reply(ops[i], buf, cap, out)) {
          out->errors += n - i - 1;
          return;
        }
      }
      return;
    }
    for (size_t i = 0; i < n; ++i) Append(ops[i]);
    for (size_t i = 0; i < n; ++i) {
      if (!Reply(ops[i], buf, cap, out)) {
        out->errors += n - i - 1;
        return;
      }
    }
  }

  bool CanPipeline(OpType) const override { return true; }
  bool RoundTrip() const override { return true; }

  uint64_t EstimateBytes(const StoreSpec& spec) const override {
    return spec.items * (spec.key_len + spec.value_len + 80);
  }

 private:
  void Append(const Op& op) {
    const char* argv[3] = {};
    size_t len[3] = {};
    int argc = 2;
    switch (op.type) {
      case OpType::kGet:
        argv[0] = "GET";
        break;
      case OpType::kSet:
        argv[0] = "SET";
        argv[2] = op.value.data();
        len[2] = op.value.size();
        argc = 3;
        break;
      case OpType::kDel:
        argv[0] = "DEL";
        break;
      case OpType::kIncr:
        argv[0] = "INCR";
        break;
    }
    len[0] = std::strlen(argv[0]);
    argv[1] = op.key.data();
    len[1] = op.key.size();
    redisAppendCommandArgv(c_, argc, argv, len);
  }

  // Reads the reply of op; false if the connection failed.
  bool Reply(const Op& op, char* buf, size_t cap, Outcome* out) {
    void* raw = nullptr;
    if (redisGetReply(c_, &raw) != REDIS_OK || raw == nullptr) {
      ++out->errors;
      return false;
    }
    auto* r = static_cast<redisReply*>(raw);
    switch (op.type) {
      case OpType::kGet:
        if (r->type == REDIS_REPLY_STRING) {
          std::memcpy(buf, r->str, std::min(cap, static_cast<size_t>(r->len)));
          ++out->found;
        } else if (r->type == REDIS_REPLY_NIL) {
          ++out->not_found;
        } else {
          ++out->errors;
        }
        break;
      case OpType::kSet:
        (r->type == REDIS_REPLY_STATUS ? out->found : out->errors) += 1;
        break;
      case OpType::kDel:
        if (r->type != REDIS_REPLY_INTEGER) {
          ++out->errors;
        } else {
          (r->integer > 0 ? out->found : out->not_found) += 1;
        }
        break;
      case OpType::kIncr:
        (r->type == REDIS_REPLY_INTEGER ? out->found : out->errors) += 1;
        break;
    }
    freeReplyObject(r);
    return true;
  }

  std::string Simple(const char* cmd) {
    auto* r = static_cast<redisReply*>(redisCommand(c_, cmd));
    if (r == nullptr) return std::string("redis ") + cmd + ": " + c_->errstr;
    std::string err;
    if (r->type == REDIS_REPLY_ERROR) err = std::string("redis ") + cmd + ": " + r->str;
    freeReplyObject(r);
    return err;
  }

  std::string socket_;
  redisContext* c_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> MakeRedis(const std::string& socket) {
  return std::make_unique<RedisBackend>(socket);
}

}  // namespace peers
