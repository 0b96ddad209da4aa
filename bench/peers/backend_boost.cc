// What a C++ developer writes by hand to share a map between processes: a
// boost::unordered_map in a Boost.Interprocess managed_shared_memory
// segment, with strings from the segment's allocator, guarded by one
// interprocess_sharable_mutex (shared lock for reads, exclusive for writes).
// A get copies the value out under the shared lock, as it must: the entry
// may be changed or freed as soon as the lock is released.
#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/sync/interprocess_sharable_mutex.hpp>
#include <boost/interprocess/sync/scoped_lock.hpp>
#include <boost/interprocess/sync/sharable_lock.hpp>
#include <boost/unordered_map.hpp>
#include <charconv>
#include <cstring>
#include <functional>
#include <new>
#include <optional>

#include "backend.h"

namespace peers {
namespace {

namespace bip = boost::interprocess;

using Manager = bip::managed_shared_memory::segment_manager;
using CharAlloc = bip::allocator<char, Manager>;
using ShmString = bip::basic_string<char, std::char_traits<char>, CharAlloc>;

std::string_view View(const ShmString& s) { return {s.data(), s.size()}; }

struct BytesHash {
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  size_t operator()(const ShmString& s) const noexcept { return (*this)(View(s)); }
};
struct BytesEq {
  bool operator()(const ShmString& a, const ShmString& b) const { return View(a) == View(b); }
  bool operator()(std::string_view a, const ShmString& b) const { return a == View(b); }
  bool operator()(const ShmString& a, std::string_view b) const { return View(a) == b; }
};

using Entry = std::pair<const ShmString, ShmString>;
using EntryAlloc = bip::allocator<Entry, Manager>;
using ShmMap = boost::unordered_map<ShmString, ShmString, BytesHash, BytesEq, EntryAlloc>;

struct Root {
  explicit Root(const EntryAlloc& a) : map(0, BytesHash(), BytesEq(), a) {}
  bip::interprocess_sharable_mutex mutex;
  ShmMap map;
  // The evicting store's FIFO of inserted keys (fixed length), shared by
  // every process, under the exclusive lock.
  bip::offset_ptr<char> ring;
  uint64_t ring_len = 0, ring_pos = 0;
  uint32_t key_len = 0;
};

class BoostMapBackend final : public Backend {
 public:
  ~BoostMapBackend() override { Close(); }

  std::string Open(const StoreSpec& spec) override {
    spec_ = spec;
    name_ = "peers-" + spec.name;
    bip::shared_memory_object::remove(name_.c_str());
    try {
      owner_.emplace(bip::create_only, name_.c_str(), EstimateBytes(spec));
      Root* root = owner_->construct<Root>("root")(EntryAlloc(owner_->get_segment_manager()));
      const uint64_t n = spec.evicting ? spec.evict_items : spec.items;
      root->map.reserve(n);
      if (spec.evicting) {
        root->key_len = spec.key_len;
        root->ring_len = spec.evict_items;
        root->ring = static_cast<char*>(owner_->allocate(spec.evict_items * spec.key_len));
        std::memset(root->ring.get(), 0, spec.evict_items * spec.key_len);
      }
    } catch (const std::exception& e) {
      owner_.reset();
      return "boost segment " + name_ + ": " + e.what();
    }
    return "";
  }

  std::string Attach() override {
    try {
      seg_.emplace(bip::open_only, name_.c_str());
      root_ = seg_->find<Root>("root").first;
      if (root_ == nullptr) return "boost segment " + name_ + ": no root";
    } catch (const std::exception& e) {
      seg_.reset();
      return "boost segment " + name_ + ": " + e.what();
    }
    alloc_.emplace(seg_->get_segment_manager());
    return "";
  }

  void Detach() override {
    root_ = nullptr;
    alloc_.reset();
    seg_.reset();
  }

  void Close() override {
    Detach();
    if (owner_) {
      owner_.reset();
      bip::shared_memory_object::remove(name_.c_str());
    }
  }

  void Run(const Op* ops, size_t n, bool, char* buf, size_t cap, Outcome* out) override {
    for (size_t i = 0; i < n; ++i) {
      try {
        One(ops[i], buf, cap, out);
      } catch (const std::bad_alloc&) {
        ++out->errors;  // the segment is full
      } catch (const bip::interprocess_exception&) {
        ++out->errors;
      }
    }
  }

  uint64_t EstimateBytes(const StoreSpec& spec) const override {
    const uint64_t n = spec.evicting ? spec.evict_items * 2 : spec.items;
    // Node, bucket, two strings with their allocator headers; then slack for
    // the best-fit allocator's fragmentation.
    return n * (spec.key_len + spec.value_len + 160) * 3 / 2 + (64ull << 20);
  }

 private:
  void One(const Op& op, char* buf, size_t cap, Outcome* out) {
    ShmMap& map = root_->map;
    if (op.type == OpType::kGet) {
      bip::sharable_lock<bip::interprocess_sharable_mutex> lock(root_->mutex);
      auto it = map.find(op.key, BytesHash(), BytesEq());
      if (it == map.end()) {
        ++out->not_found;
        return;
      }
      std::memcpy(buf, it->second.data(), std::min(cap, it->second.size()));
      ++out->found;
      return;
    }
    bip::scoped_lock<bip::interprocess_sharable_mutex> lock(root_->mutex);
    auto it = map.find(op.key, BytesHash(), BytesEq());
    switch (op.type) {
      case OpType::kGet:
        break;
      case OpType::kSet:
        if (it != map.end()) {
          it->second.assign(op.value.data(), op.value.size());
        } else {
          map.emplace(ShmString(op.key.data(), op.key.size(), *alloc_),
                      ShmString(op.value.data(), op.value.size(), *alloc_));
          if (spec_.evicting) EvictOldest(op.key);
        }
        ++out->found;
        break;
      case OpType::kDel:
        if (it == map.end()) {
          ++out->not_found;
        } else {
          map.erase(it);
          ++out->found;
        }
        break;
      case OpType::kIncr: {
        int64_t v = 0;
        if (it == map.end()) {
          map.emplace(ShmString(op.key.data(), op.key.size(), *alloc_), ShmString("0", *alloc_));
        } else if (ParseInt(View(it->second), &v)) {
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

  // Under the exclusive lock: forget the key inserted ring_len inserts ago.
  void EvictOldest(std::string_view inserted) {
    Root& r = *root_;
    if (inserted.size() != r.key_len) return;
    char* slot = r.ring.get() + r.ring_pos * r.key_len;
    if (slot[0] != 0) {
      auto old = r.map.find(std::string_view(slot, r.key_len), BytesHash(), BytesEq());
      if (old != r.map.end()) r.map.erase(old);
    }
    std::memcpy(slot, inserted.data(), r.key_len);
    r.ring_pos = (r.ring_pos + 1) % r.ring_len;
  }

  StoreSpec spec_;
  std::string name_;
  std::optional<bip::managed_shared_memory> owner_;  // the driver's mapping
  std::optional<bip::managed_shared_memory> seg_;    // this process's mapping
  std::optional<CharAlloc> alloc_;
  Root* root_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> MakeBoostMap() { return std::make_unique<BoostMapBackend>(); }

}  // namespace peers
