// The ceiling: what one process gets from an in-process hash map of the same
// data, with no sharing at all. std::unordered_map (node-based, one heap
// node per entry) and absl::flat_hash_map (open addressing, SIMD probing
// over control bytes). Both copy the value out on a get, as shmkv must.
#include <algorithm>
#include <charconv>
#include <cstring>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend.h"

#ifdef SHMKV_PEERS_HAVE_ABSL
#include "absl/container/flat_hash_map.h"
#endif

namespace peers {

bool ParseInt(std::string_view s, int64_t* out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

namespace {

struct TransparentHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using StdMap = std::unordered_map<std::string, std::string, TransparentHash, std::equal_to<>>;

// View: the map's heterogeneous lookup key (Debian's Abseil has its own
// absl::string_view, not std::string_view).
template <typename Map, typename View>
class LocalBackend final : public Backend {
 public:
  std::string Open(const StoreSpec& spec) override {
    spec_ = spec;
    map_.reserve(spec.evicting ? spec.evict_items : spec.items);
    if (spec.evicting) ring_.assign(spec.evict_items, std::string());
    return "";
  }
  std::string Attach() override { return ""; }
  void Detach() override {}
  void Close() override {
    Map().swap(map_);
    ring_.clear();
  }

  void Run(const Op* ops, size_t n, bool, char* buf, size_t cap, Outcome* out) override {
    for (size_t i = 0; i < n; ++i) {
      const Op& op = ops[i];
      auto it = map_.find(View(op.key.data(), op.key.size()));
      switch (op.type) {
        case OpType::kGet:
          if (it == map_.end()) {
            ++out->not_found;
          } else {
            std::memcpy(buf, it->second.data(), std::min(cap, it->second.size()));
            ++out->found;
          }
          break;
        case OpType::kSet:
          if (it != map_.end()) {
            it->second.assign(op.value);
          } else {
            map_.emplace(std::string(op.key), std::string(op.value));
            if (spec_.evicting) EvictOldest(op.key);
          }
          ++out->found;
          break;
        case OpType::kDel:
          if (it == map_.end()) {
            ++out->not_found;
          } else {
            map_.erase(it);
            ++out->found;
          }
          break;
        case OpType::kIncr: {
          int64_t v = 0;
          if (it == map_.end()) {
            map_.emplace(std::string(op.key), std::string("0"));
          } else if (ParseInt(it->second, &v)) {
            char digits[24];
            auto [end, ec] = std::to_chars(digits, digits + sizeof(digits), v + 1);
            it->second.assign(digits, end);
          } else {
            ++out->errors;
            break;
          }
          ++out->found;
          break;
        }
      }
    }
  }

  bool InProcess() const override { return true; }

  uint64_t EstimateBytes(const StoreSpec& spec) const override {
    return spec.items * (spec.key_len + spec.value_len + 120);
  }

 private:
  void EvictOldest(std::string_view inserted) {
    std::string& slot = ring_[ring_pos_];
    if (!slot.empty()) {
      auto old = map_.find(View(slot.data(), slot.size()));
      if (old != map_.end()) map_.erase(old);
    }
    slot.assign(inserted);
    ring_pos_ = (ring_pos_ + 1) % ring_.size();
  }

  StoreSpec spec_;
  Map map_;
  std::vector<std::string> ring_;
  size_t ring_pos_ = 0;
};

}  // namespace

std::unique_ptr<Backend> MakeStdMap() {
  return std::make_unique<LocalBackend<StdMap, std::string_view>>();
}

std::unique_ptr<Backend> MakeFlatMap() {
#ifdef SHMKV_PEERS_HAVE_ABSL
  using FlatMap = absl::flat_hash_map<std::string, std::string>;
  return std::make_unique<LocalBackend<FlatMap, absl::string_view>>();
#else
  return nullptr;
#endif
}

}  // namespace peers
