// Model-based property test: seeded random sequences of every verb (get, set
// with and without TTL, add, replace, cas store, delete, cas delete, incr,
// touch, ttl, clear, scan) against a reference model (a hash map plus the
// fake clock, advanced randomly). On a segment large enough that nothing is
// evicted every answer must match the model exactly. On a tiny segment a key
// the model holds may have been evicted, but a key the model does not hold
// must never appear, and a value that is returned must be the model's.
#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "gtest/gtest.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"
#include "testing.h"

namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;

struct Entry {
  std::string value;
  int64_t expiry = 0;                      // fake-clock ms; 0 = none
  uint64_t cas = 0;                        // 0 = not known yet
  uint64_t stale_cas = 0;                  // the token before the last write: must not come back
  std::optional<uint32_t> user_flags = 0;  // unknown after an incr
};

// -?[0-9]{1,19} within int64 (the model never writes 19-digit numbers that
// overflow, whose treatment the contract leaves open).
std::optional<int64_t> ParseNumber(const std::string& s) {
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && s[i] == '-') {
    neg = true;
    ++i;
  }
  const size_t digits = s.size() - i;
  if (digits < 1 || digits > 19) return std::nullopt;
  __int128 v = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
    v = v * 10 + (s[i] - '0');
  }
  if (neg) v = -v;
  if (v < std::numeric_limits<int64_t>::min() || v > std::numeric_limits<int64_t>::max())
    return std::nullopt;
  return static_cast<int64_t>(v);
}

struct Params {
  uint64_t seed;
  bool exact;  // nothing may be evicted
  int ops;
};

void PrintTo(const Params& p, std::ostream* os) {
  *os << "{seed " << p.seed << (p.exact ? ", exact" : ", tiny") << ", " << p.ops << " ops}";
}

class ModelTest : public ::testing::TestWithParam<Params> {
 protected:
  void SetUp() override {
    const Params& p = GetParam();
    rng_.seed(p.seed);
    exact_ = p.exact;
    now_ = 10'000;
    shmkv::testing::SetFakeNowMs(now_);
    shmkv_options_t o = exact_ ? SmallOptions(16u << 20, 16384) : SmallOptions(1u << 20, 48);
    ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &kv_), 0) << shmkv_last_error();
    for (int i = 0; i < 180; ++i) keys_.push_back("key:" + std::to_string(i));
    for (int i = 0; i < 20; ++i) {
      std::string k("bin\0", 4);
      k.push_back(static_cast<char>(i));
      k.push_back('\0');
      k.push_back(static_cast<char>(0xff - i));
      keys_.push_back(k);
    }
    keys_.push_back(std::string(1, '\0'));
    keys_.push_back(std::string(250, 'L'));
  }
  void TearDown() override {
    if (kv_ != nullptr) {
      shmkv::internal::Census c;
      EXPECT_EQ(shmkv::internal::TakeCensus(kv_, &c), 0);
      shmkv::test::ExpectCleanCensus(c);
      EXPECT_EQ(c.slots_live, c.blocks_linked);
      shmkv_close(kv_);
    }
    shmkv::testing::SetFakeNowMs(-1);
  }

  uint64_t Rand(uint64_t n) { return rng_() % n; }

  std::string RandomValue() {
    switch (Rand(6)) {
      case 0:
        return std::to_string(static_cast<int64_t>(Rand(2000)) - 1000);
      case 1:
        return "000" + std::to_string(Rand(100));
      case 2: {
        const int64_t edge =
            Rand(2) ? std::numeric_limits<int64_t>::max() - static_cast<int64_t>(Rand(3))
                    : std::numeric_limits<int64_t>::min() + static_cast<int64_t>(Rand(3));
        return std::to_string(edge);
      }
      default: {
        std::string v(Rand(301), '\0');
        for (char& c : v) c = static_cast<char>(rng_());
        return v;
      }
    }
  }
  uint64_t RandomTtl() {
    switch (Rand(4)) {
      case 0:
      case 1:
        return 0;
      case 2:
        return 1 + Rand(50);
      default:
        return 1 + Rand(3000);
    }
  }

  // The live model entry, erasing it if it expired.
  Entry* Live(const std::string& k) {
    auto it = model_.find(k);
    if (it == model_.end()) return nullptr;
    if (it->second.expiry != 0 && now_ >= it->second.expiry) {
      model_.erase(it);
      return nullptr;
    }
    return &it->second;
  }
  // The library says the key is absent while the model has it.
  bool AcceptEvicted(const std::string& k, const char* op) {
    if (exact_) {
      ADD_FAILURE() << op << ": key the model holds is missing (nothing may be evicted), seed "
                    << GetParam().seed << " op " << op_index_;
      return false;
    }
    model_.erase(k);
    ++evicted_seen_;
    return true;
  }
  void Written(Entry* e) {
    if (e->cas != 0) e->stale_cas = e->cas;
    e->cas = 0;
  }
  void LearnCas(Entry* e, uint64_t cas) {
    EXPECT_NE(cas, 0u);
    if (e->cas != 0) {
      EXPECT_EQ(cas, e->cas) << "cas changed without a write, op " << op_index_;
    } else {
      EXPECT_NE(cas, e->stale_cas) << "cas did not change on a write, op " << op_index_;
    }
    e->cas = cas;
  }
  int64_t Remaining(const Entry& e) const { return e.expiry == 0 ? -1 : e.expiry - now_; }
  void Put(const std::string& k, const std::string& v, uint64_t ttl, uint32_t flags, uint64_t cas) {
    Entry& e = model_[k];
    const uint64_t old = e.cas;
    e.value = v;
    e.expiry = ttl == 0 ? 0 : now_ + static_cast<int64_t>(ttl);
    e.stale_cas = old != 0 ? old : e.stale_cas;
    e.cas = cas;
    e.user_flags = flags;
  }

  void DoGet(const std::string& k) {
    std::string buf(512, '\0');
    size_t len = 0;
    shmkv_item_info_t info;
    info.struct_size = sizeof(info);
    const int rc = shmkv_get(kv_, k.data(), k.size(), buf.data(), buf.size(), &len, &info);
    Entry* e = Live(k);
    if (rc == SHMKV_ENOTFOUND) {
      if (e != nullptr) AcceptEvicted(k, "get");
      return;
    }
    ASSERT_EQ(rc, 0) << "get, op " << op_index_;
    ASSERT_NE(e, nullptr) << "get returned a key the model does not hold, op " << op_index_;
    buf.resize(len);
    ASSERT_TRUE(buf == e->value) << "get returned a wrong value, op " << op_index_;
    EXPECT_EQ(info.value_len, e->value.size());
    EXPECT_EQ(info.ttl_ms, Remaining(*e)) << "op " << op_index_;
    if (e->user_flags) {
      EXPECT_EQ(info.user_flags, *e->user_flags) << "op " << op_index_;
    }
    LearnCas(e, info.cas);
  }

  void DoStore(const std::string& k, uint32_t mode, bool use_cas) {
    const std::string v = RandomValue();
    const uint64_t ttl = RandomTtl();
    const uint32_t flags = Rand(3) == 0 ? static_cast<uint32_t>(rng_()) : 0;
    shmkv_write_opts_t w;
    shmkv_write_opts_init(&w);
    w.mode = mode;
    w.ttl_ms = ttl;
    w.user_flags = flags;
    Entry* e = Live(k);
    bool cas_matches = false;
    if (use_cas) {
      if (e != nullptr && e->cas == 0) {
        DoGet(k);  // learn the token
        e = Live(k);
      }
      cas_matches = e != nullptr && Rand(2) == 0;
      w.expect_cas =
          cas_matches ? e->cas : (e != nullptr ? e->cas + 1 + Rand(1000) : 1 + Rand(1u << 30));
    }
    uint64_t new_cas = 0;
    const int rc = shmkv_store(kv_, k.data(), k.size(), v.data(), v.size(), &w, &new_cas);
    if (e == nullptr) {
      // Absent: SET/ADD store, REPLACE and any expect_cas fail.
      int want = 0;
      if (use_cas || mode == SHMKV_REPLACE) want = SHMKV_ENOTFOUND;
      ASSERT_EQ(rc, want) << "store mode " << mode << " cas " << use_cas << ", op " << op_index_;
    } else {
      int want = 0;
      if (mode == SHMKV_ADD) want = SHMKV_EEXIST;
      if (use_cas && !cas_matches) want = SHMKV_ECAS;
      if (mode == SHMKV_ADD && use_cas) want = cas_matches ? SHMKV_EEXIST : SHMKV_ECAS;
      if (rc != want) {
        // Evicted meanwhile: then it behaves as absent.
        int absent = (use_cas || mode == SHMKV_REPLACE) ? SHMKV_ENOTFOUND : 0;
        if (mode == SHMKV_ADD && !use_cas) absent = 0;
        if (!exact_ && rc == absent) {
          AcceptEvicted(k, "store");
          if (rc == 0) Put(k, v, ttl, flags, new_cas);
          return;
        }
        if (mode == SHMKV_ADD && use_cas && (rc == SHMKV_EEXIST || rc == SHMKV_ECAS)) return;
        FAIL() << "store mode " << mode << " cas " << use_cas << " match " << cas_matches << ": rc "
               << rc << " want " << want << ", op " << op_index_;
      }
      if (rc != 0) return;
    }
    if (rc == 0) {
      EXPECT_NE(new_cas, 0u);
      if (e != nullptr) {
        EXPECT_NE(new_cas, e->cas);
      }
      Put(k, v, ttl, flags, new_cas);
    }
  }

  void DoSet(const std::string& k) {
    const std::string v = RandomValue();
    const uint64_t ttl = RandomTtl();
    ASSERT_EQ(shmkv_set(kv_, k.data(), k.size(), v.data(), v.size(), ttl), 0)
        << shmkv_last_error() << ", op " << op_index_;
    Entry* e = Live(k);
    const uint64_t stale = e != nullptr && e->cas != 0 ? e->cas : 0;
    Put(k, v, ttl, 0, 0);
    if (stale != 0) model_[k].stale_cas = stale;
  }

  void DoDelete(const std::string& k, bool use_cas) {
    Entry* e = Live(k);
    uint64_t expect = 0;
    bool match = false;
    if (use_cas) {
      if (e != nullptr && e->cas == 0) {
        DoGet(k);
        e = Live(k);
      }
      match = e != nullptr && Rand(2) == 0;
      expect = match ? e->cas : (e != nullptr ? e->cas + 7 : 99);
    }
    const int rc = shmkv_delete(kv_, k.data(), k.size(), expect);
    if (e == nullptr) {
      ASSERT_EQ(rc, SHMKV_ENOTFOUND) << "delete, op " << op_index_;
      return;
    }
    const int want = use_cas && !match ? SHMKV_ECAS : 0;
    if (rc == SHMKV_ENOTFOUND && AcceptEvicted(k, "delete")) return;
    ASSERT_EQ(rc, want) << "delete cas " << use_cas << ", op " << op_index_;
    if (rc == 0) model_.erase(k);
  }

  void DoIncr(const std::string& k) {
    const int64_t delta = static_cast<int64_t>(Rand(21)) - 10;
    const int64_t initial = 1'000'000 + static_cast<int64_t>(Rand(1000));
    const uint64_t ttl = RandomTtl();
    int64_t result = 0;
    const int rc = shmkv_incr(kv_, k.data(), k.size(), delta, initial, ttl, &result);
    Entry* e = Live(k);
    auto create = [&] {
      ASSERT_EQ(rc, 0) << "incr create, op " << op_index_;
      ASSERT_EQ(result, initial);
      Put(k, std::to_string(initial), ttl, 0, 0);
      model_[k].user_flags.reset();
    };
    if (e == nullptr) {
      create();
      return;
    }
    const std::optional<int64_t> n = ParseNumber(e->value);
    int want = 0;
    int64_t want_result = 0;
    if (!n) {
      want = SHMKV_ENOTNUM;
    } else if (__builtin_add_overflow(*n, delta, &want_result)) {
      want = SHMKV_EOVERFLOW;
    }
    if (!exact_ && rc == 0 && result == initial && !(want == 0 && want_result == initial)) {
      AcceptEvicted(k, "incr");
      create();
      return;
    }
    if (!exact_ && rc == 0 && want == 0 && want_result == initial) {
      // Ambiguous: the entry was incremented in place to exactly `initial`
      // (keeping its expiry), or it had been evicted and incr created it
      // anew (with `ttl`). The clock has not moved: the TTL tells which.
      int64_t t = 0;
      ASSERT_EQ(shmkv_ttl(kv_, k.data(), k.size(), &t), 0) << "op " << op_index_;
      const int64_t fresh = ttl == 0 ? -1 : static_cast<int64_t>(ttl);
      if (t != Remaining(*e)) {
        ASSERT_EQ(t, fresh) << "incr to " << initial << ": neither the old TTL nor the new, op "
                            << op_index_;
        AcceptEvicted(k, "incr");
        create();
        return;
      }
    }
    ASSERT_EQ(rc, want) << "incr on '" << e->value << "' + " << delta << ", op " << op_index_;
    if (rc != 0) return;
    ASSERT_EQ(result, want_result) << "op " << op_index_;
    e->value = std::to_string(want_result);
    e->user_flags.reset();
    Written(e);  // keeps its expiry
  }

  void DoTouch(const std::string& k) {
    const uint64_t ttl = RandomTtl();
    const int rc = shmkv_touch(kv_, k.data(), k.size(), ttl);
    Entry* e = Live(k);
    if (e == nullptr) {
      ASSERT_EQ(rc, SHMKV_ENOTFOUND) << "touch, op " << op_index_;
      return;
    }
    if (rc == SHMKV_ENOTFOUND && AcceptEvicted(k, "touch")) return;
    ASSERT_EQ(rc, 0) << "touch, op " << op_index_;
    e->expiry = ttl == 0 ? 0 : now_ + static_cast<int64_t>(ttl);
    Written(e);
  }

  void DoTtl(const std::string& k) {
    int64_t t = 12345;
    const int rc = shmkv_ttl(kv_, k.data(), k.size(), &t);
    Entry* e = Live(k);
    if (e == nullptr) {
      ASSERT_EQ(rc, SHMKV_ENOTFOUND) << "ttl of a key the model does not hold, op " << op_index_;
      return;
    }
    if (rc == SHMKV_ENOTFOUND && AcceptEvicted(k, "ttl")) return;
    ASSERT_EQ(rc, 0);
    EXPECT_EQ(t, Remaining(*e)) << "op " << op_index_;
  }

  static int Collect(const void* key, size_t key_len, const shmkv_item_info_t* info, void* ctx) {
    auto* out = static_cast<std::vector<std::pair<std::string, shmkv_item_info_t>>*>(ctx);
    out->emplace_back(std::string(static_cast<const char*>(key), key_len), *info);
    return 0;
  }

  void CheckScan() {
    std::vector<std::pair<std::string, shmkv_item_info_t>> seen;
    uint64_t cursor = 0;
    const size_t limit = 1 + Rand(64);
    do {
      ASSERT_EQ(shmkv_scan(kv_, &cursor, nullptr, 0, limit, Collect, &seen), 0);
    } while (cursor != 0);
    std::unordered_set<std::string> seen_keys;
    for (const auto& [k, info] : seen) {
      Entry* e = Live(k);
      ASSERT_NE(e, nullptr) << "scan returned a key the model does not hold, op " << op_index_;
      EXPECT_EQ(info.value_len, e->value.size()) << "op " << op_index_;
      EXPECT_EQ(info.ttl_ms, Remaining(*e)) << "op " << op_index_;
      if (e->cas != 0) {
        EXPECT_EQ(info.cas, e->cas) << "op " << op_index_;
      }
      seen_keys.insert(k);
    }
    std::vector<std::string> missing;
    for (const auto& [k, e] : model_)
      if ((e.expiry == 0 || now_ < e.expiry) && seen_keys.count(k) == 0) missing.push_back(k);
    for (const std::string& k : missing) {
      if (exact_) {
        ADD_FAILURE() << "scan missed a live key, op " << op_index_;
      } else {
        DoGet(k);  // it must really be gone then
        EXPECT_EQ(model_.count(k), 0u)
            << "scan missed a key that get still finds, op " << op_index_;
      }
    }
    shmkv_stats_t s;
    s.struct_size = sizeof(s);
    ASSERT_EQ(shmkv_stats(kv_, &s), 0);
    EXPECT_GE(s.items, seen_keys.size());
  }

  void Run() {
    const int ops = GetParam().ops;
    for (op_index_ = 0; op_index_ < ops; ++op_index_) {
      // Time moves on: mostly a little, sometimes over many TTLs at once.
      const uint64_t step = Rand(100) == 0 ? Rand(5000) : Rand(8);
      now_ += static_cast<int64_t>(step);
      shmkv::testing::SetFakeNowMs(now_);
      const std::string& k = keys_[Rand(keys_.size())];
      const uint64_t op = Rand(1000);
      if (op < 250) {
        DoGet(k);
      } else if (op < 450) {
        DoSet(k);
      } else if (op < 510) {
        DoStore(k, SHMKV_ADD, false);
      } else if (op < 570) {
        DoStore(k, SHMKV_REPLACE, false);
      } else if (op < 650) {
        DoStore(k, static_cast<uint32_t>(Rand(3)), true);
      } else if (op < 720) {
        DoDelete(k, false);
      } else if (op < 760) {
        DoDelete(k, true);
      } else if (op < 880) {
        DoIncr(k);
      } else if (op < 930) {
        DoTouch(k);
      } else if (op < 990) {
        DoTtl(k);
      } else if (op < 999) {
        CheckScan();
      } else if (Rand(4) == 0) {
        ASSERT_EQ(shmkv_clear(kv_), 0);
        model_.clear();
      } else {
        CheckScan();
      }
      if (HasFatalFailure() || ::testing::Test::HasFailure()) {
        FAIL() << "stopping at op " << op_index_ << " (seed " << GetParam().seed << ")";
      }
    }
    CheckScan();
    if (exact_) {
      shmkv_stats_t s;
      s.struct_size = sizeof(s);
      ASSERT_EQ(shmkv_stats(kv_, &s), 0);
      EXPECT_EQ(s.evictions, 0u);
    } else {
      RecordProperty("evicted_seen", evicted_seen_);
      EXPECT_GT(evicted_seen_, 0) << "the tiny segment never evicted: the variant tests nothing";
    }
  }

  ScopedSegmentName seg_{"model"};
  shmkv_t* kv_ = nullptr;
  std::mt19937_64 rng_;
  bool exact_ = true;
  int64_t now_ = 0;
  int op_index_ = 0;
  int evicted_seen_ = 0;
  std::vector<std::string> keys_;
  std::unordered_map<std::string, Entry> model_;
};

TEST_P(ModelTest, RandomOperationsMatchTheModel) { Run(); }

INSTANTIATE_TEST_SUITE_P(Exact, ModelTest,
                         ::testing::Values(Params{1, true, 20000}, Params{2, true, 20000},
                                           Params{3, true, 20000}, Params{42, true, 20000}),
                         [](const auto& info) { return "Seed" + std::to_string(info.param.seed); });

INSTANTIATE_TEST_SUITE_P(Tiny, ModelTest,
                         ::testing::Values(Params{11, false, 20000}, Params{12, false, 20000},
                                           Params{13, false, 20000}),
                         [](const auto& info) { return "Seed" + std::to_string(info.param.seed); });

}  // namespace
