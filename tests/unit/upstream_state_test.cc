// The near-cache state in the header (shmkv_upstream_*), stepped with the
// fake clock: a fresh segment is not a near cache; configure publishes the
// address and prefixes with state DOWN; UP is effective only while the
// heartbeat is within the lag bound; every published change bumps the
// generation; the heartbeat never goes back; only writable handles may
// publish; bad arguments are refused with a reason.
#include <cstdint>
#include <string>

#include "gtest/gtest.h"
#include "handle.h"
#include "shmkv/shmkv.h"
#include "support/test_segment.h"
#include "testing.h"

namespace {

using shmkv::test::ScopedSegmentName;
using shmkv::test::SmallOptions;

constexpr int64_t kT0 = 9'000'000;

class UpstreamStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shmkv::testing::SetFakeNowMs(kT0);
    shmkv_options_t o = SmallOptions(2u << 20);
    ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &kv_), 0) << shmkv_last_error();
  }
  void TearDown() override {
    shmkv_close(kv_);
    shmkv::testing::SetFakeNowMs(-1);
  }
  void At(int64_t offset_ms) { shmkv::testing::SetFakeNowMs(kT0 + offset_ms); }
  uint32_t State(uint64_t* gen = nullptr) {
    uint32_t s = 99;
    EXPECT_EQ(shmkv_upstream_state(kv_, &s, gen), 0);
    return s;
  }
  shmkv_upstream_t Get() {
    shmkv_upstream_t u;
    u.struct_size = sizeof(u);
    EXPECT_EQ(shmkv_upstream_get(kv_, &u), 0) << shmkv_last_error();
    return u;
  }

  ScopedSegmentName seg_{"upstream"};
  shmkv_t* kv_ = nullptr;
};

TEST_F(UpstreamStateTest, AFreshSegmentIsNotANearCache) {
  uint64_t gen = 99;
  EXPECT_EQ(State(&gen), static_cast<uint32_t>(SHMKV_UPSTREAM_NONE));
  EXPECT_EQ(gen, 0u);
  const shmkv_upstream_t u = Get();
  EXPECT_EQ(u.url[0], '\0');
  EXPECT_EQ(u.heartbeat_age_ms, UINT64_MAX);
}

TEST_F(UpstreamStateTest, ConfigurePublishesTheAddressWithStateDown) {
  ASSERT_EQ(shmkv_upstream_configure(kv_, "redis://127.0.0.1:6390/2", "sess: user:", 500), 0)
      << shmkv_last_error();
  const shmkv_upstream_t u = Get();
  EXPECT_STREQ(u.url, "redis://127.0.0.1:6390/2");
  EXPECT_STREQ(u.prefixes, "sess: user:");
  EXPECT_EQ(u.max_lag_ms, 500u);
  EXPECT_EQ(u.state, static_cast<uint32_t>(SHMKV_UPSTREAM_DOWN));
  // A second handle (another process, say) sees the same.
  shmkv_t* other = nullptr;
  ASSERT_EQ(shmkv_open(seg_.c_str(), nullptr, &other), 0);
  shmkv_upstream_t o;
  o.struct_size = sizeof(o);
  ASSERT_EQ(shmkv_upstream_get(other, &o), 0);
  EXPECT_STREQ(o.url, u.url);
  shmkv_close(other);
}

TEST_F(UpstreamStateTest, UpIsEffectiveOnlyWhileTheHeartbeatIsFresh) {
  ASSERT_EQ(shmkv_upstream_configure(kv_, "redis://h:1", "", 100), 0);
  ASSERT_EQ(shmkv_upstream_set_state(kv_, SHMKV_UPSTREAM_UP), 0);
  // No heartbeat yet: not current.
  EXPECT_EQ(State(), static_cast<uint32_t>(SHMKV_UPSTREAM_DOWN));
  ASSERT_EQ(shmkv_upstream_heartbeat(kv_, 0), 0);
  EXPECT_EQ(State(), static_cast<uint32_t>(SHMKV_UPSTREAM_UP));
  At(100);
  EXPECT_EQ(State(), static_cast<uint32_t>(SHMKV_UPSTREAM_UP));
  EXPECT_EQ(Get().heartbeat_age_ms, 100u);
  At(101);  // beyond the lag bound
  EXPECT_EQ(State(), static_cast<uint32_t>(SHMKV_UPSTREAM_DOWN));
  // A heartbeat confirmed 30 ms ago: current again.
  ASSERT_EQ(shmkv_upstream_heartbeat(kv_, 30), 0);
  EXPECT_EQ(State(), static_cast<uint32_t>(SHMKV_UPSTREAM_UP));
  EXPECT_EQ(Get().heartbeat_age_ms, 30u);
  // An older confirmation does not move it back.
  ASSERT_EQ(shmkv_upstream_heartbeat(kv_, 90), 0);
  EXPECT_EQ(Get().heartbeat_age_ms, 30u);
}

TEST_F(UpstreamStateTest, EveryPublishedChangeBumpsTheGeneration) {
  uint64_t g0 = 0, g1 = 0, g2 = 0, g3 = 0;
  State(&g0);
  ASSERT_EQ(shmkv_upstream_configure(kv_, "redis://h:1", "", 100), 0);
  State(&g1);
  ASSERT_EQ(shmkv_upstream_set_state(kv_, SHMKV_UPSTREAM_UP), 0);
  State(&g2);
  ASSERT_EQ(shmkv_upstream_set_state(kv_, SHMKV_UPSTREAM_UP), 0);  // even the same state
  State(&g3);
  EXPECT_LT(g0, g1);
  EXPECT_LT(g1, g2);
  EXPECT_LT(g2, g3);
  ASSERT_EQ(shmkv_upstream_set_state(kv_, SHMKV_UPSTREAM_NONE), 0);
  EXPECT_EQ(State(), static_cast<uint32_t>(SHMKV_UPSTREAM_NONE));
}

TEST_F(UpstreamStateTest, AHalfWrittenConfigurationIsBusyNotAHang) {
  ASSERT_EQ(shmkv_upstream_configure(kv_, "redis://h:1", "p:", 100), 0);
  // As a daemon killed in the middle of configure leaves it.
  uint64_t* seq = &kv_->v.hdr->upstream_config_seq;
  *seq |= 1;
  shmkv_upstream_t u;
  u.struct_size = sizeof(u);
  EXPECT_EQ(shmkv_upstream_get(kv_, &u), SHMKV_EBUSY);
  EXPECT_NE(std::string(shmkv_last_error()).find("being changed"), std::string::npos);
  // The next configure completes it.
  ASSERT_EQ(shmkv_upstream_configure(kv_, "redis://h:2", "p:", 100), 0);
  EXPECT_STREQ(Get().url, "redis://h:2");
}

TEST_F(UpstreamStateTest, BadArgumentsAndReadOnlyHandles) {
  EXPECT_EQ(shmkv_upstream_configure(kv_, "", "", 100), SHMKV_EINVAL);
  EXPECT_EQ(shmkv_upstream_configure(kv_, nullptr, "", 100), SHMKV_EINVAL);
  EXPECT_EQ(shmkv_upstream_configure(kv_, std::string(300, 'u').c_str(), "", 100), SHMKV_EINVAL);
  EXPECT_NE(std::string(shmkv_last_error()).find("255"), std::string::npos);
  EXPECT_EQ(shmkv_upstream_configure(kv_, "redis://h:1", std::string(600, 'p').c_str(), 100),
            SHMKV_EINVAL);
  EXPECT_EQ(shmkv_upstream_configure(kv_, "redis://h:1", "", 0), SHMKV_EINVAL);
  EXPECT_EQ(shmkv_upstream_set_state(kv_, 7), SHMKV_EINVAL);
  shmkv_upstream_t u;
  u.struct_size = 8;
  EXPECT_EQ(shmkv_upstream_get(kv_, &u), SHMKV_EINVAL);
  uint32_t s;
  EXPECT_EQ(shmkv_upstream_state(kv_, nullptr, nullptr), SHMKV_EINVAL);
  EXPECT_EQ(shmkv_upstream_state(nullptr, &s, nullptr), SHMKV_EINVAL);
  // Nothing was published by any of them.
  EXPECT_EQ(State(), static_cast<uint32_t>(SHMKV_UPSTREAM_NONE));

  shmkv_options_t o;
  shmkv_options_init(&o);
  o.flags = SHMKV_OPEN_READONLY;
  shmkv_t* ro = nullptr;
  ASSERT_EQ(shmkv_open(seg_.c_str(), &o, &ro), 0);
  EXPECT_EQ(shmkv_upstream_configure(ro, "redis://h:1", "", 100), SHMKV_EREADONLY);
  EXPECT_EQ(shmkv_upstream_set_state(ro, SHMKV_UPSTREAM_UP), SHMKV_EREADONLY);
  EXPECT_EQ(shmkv_upstream_heartbeat(ro, 0), SHMKV_EREADONLY);
  EXPECT_EQ(shmkv_upstream_state(ro, &s, nullptr), 0);  // reading is fine
  shmkv_close(ro);
}

}  // namespace
