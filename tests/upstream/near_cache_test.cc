// shmkv::NearCache (libshmkv_upstream) against a real redis-server that
// each test starts on a free port. The daemon's side (shmkvd --upstream)
// is played by the test through the C API: it configures the segment,
// publishes UP with a heartbeat that stays fresh for the whole test (a lag
// bound of an hour), and deletes local keys where an invalidation would.
//
// Checks the protocol of near_cache.h: a miss is fetched once and then
// served locally, with the TTL of the key in Redis capped by
// max_local_ttl; negatives are not cached; writes go to Redis first; while
// the state is not UP nothing local is read or kept; a placeholder of
// another process makes Get wait, then read Redis without caching; an
// invalidation or a generation change between the Redis reply and the CAS
// leaves nothing cached; Throttle decides as shmkv_throttle does; Redis
// failures are errors with a message that leave no placeholder behind,
// and the next call after Redis is back works.
//
// The races are forced with ReplyRelay (support/redis_server.h): the near
// cache talks to Redis through it, and while it holds Redis's replies the
// test knows that Redis has executed the GET (reply bytes arrived) and that
// the client has not read the answer yet (it is still in the relay). The step
// under test (a write in Redis and the local delete of an invalidation, a
// new generation) happens then, and only after it is the reply released.
// No sleeps: every wait polls a condition until a deadline.
#include "shmkv/near_cache.h"

#include <unistd.h>

#include <atomic>
#include <charconv>
#include <climits>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "shmkv/cache.h"
#include "shmkv/shmkv.h"
#include "support/redis_server.h"

namespace {

using namespace std::chrono_literals;
using shmkv::Cache;
using shmkv::Errc;
using shmkv::ItemInfo;
using shmkv::NearCache;
using shmkv::NearCacheOptions;
using shmkv::Result;
using shmkv::test::RedisServer;
using shmkv::test::ReplyRelay;

constexpr uint64_t kLagMs = 3'600'000;

std::string UniqueSegment() {
  static std::atomic<int> n{0};
  return "shmkv-test-near-" + std::to_string(getpid()) + "-" + std::to_string(n++);
}

// Polls until `done` holds; false after 10 s.
bool WaitFor(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// A Get's value, or what went wrong, for comparisons that must not crash.
std::string Str(const Result<std::string>& r) {
  return r ? *r : "<error: " + r.error().message() + ">";
}

uint64_t ParseU64(std::string_view s) {
  uint64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() ? v : 0;
}

class NearCacheTest : public ::testing::Test {
 protected:
  struct Entry {
    std::string value;
    ItemInfo info;
  };

  void SetUp() override {
    if (!RedisServer::Installed()) GTEST_SKIP() << "redis-server is not installed";
    ASSERT_TRUE(redis_.Start()) << redis_.error();
    (void)Cache::Unlink(segment_);
    shmkv::Options o;
    o.memory_bytes = 4u << 20;
    o.max_key_len = 64;
    o.create = true;
    Result<Cache> c = Cache::Open(segment_, o);
    ASSERT_TRUE(c) << c.error().message();
    daemon_ = std::make_unique<Cache>(std::move(*c));
    Publish(redis_.url());
  }
  void TearDown() override {
    daemon_.reset();
    (void)Cache::Unlink(segment_);
  }

  // What shmkvd --upstream does once its stream is current.
  void Publish(const std::string& url, uint64_t lag_ms = kLagMs, const char* prefixes = "") {
    ASSERT_EQ(shmkv_upstream_configure(kv(), url.c_str(), prefixes, lag_ms), 0)
        << shmkv_last_error();
    ASSERT_EQ(shmkv_upstream_set_state(kv(), SHMKV_UPSTREAM_UP), 0);
    ASSERT_EQ(shmkv_upstream_heartbeat(kv(), 0), 0);
  }
  shmkv_t* kv() { return daemon_->c_handle(); }

  // The local entry at key, as any process of the host sees it.
  std::optional<Entry> Local(std::string_view key) {
    Entry e;
    if (daemon_->Get(key, &e.value, &e.info)) return std::nullopt;
    return e;
  }
  std::string LocalValue(std::string_view key) {
    std::optional<Entry> e = Local(key);
    return e ? e->value : "<absent>";
  }
  // A placeholder as another process's fetch or write puts it.
  uint64_t PutPlaceholder(std::string_view key, shmkv::WriteMode mode) {
    shmkv::WriteOptions w;
    w.mode = mode;
    w.ttl = 60s;
    w.user_flags = SHMKV_UPSTREAM_PLACEHOLDER;
    w.no_evict = true;
    Result<uint64_t> cas = daemon_->Store(key, "", w);
    EXPECT_TRUE(cas) << cas.error().message();
    return cas ? *cas : 0;
  }
  uint64_t SegmentGets() {
    Result<shmkv_stats_t> s = daemon_->Stats();
    return s ? s->gets : 0;
  }

  // Redis as seen directly (not through the near cache or a relay).
  shmkv::upstream::RedisReplyPtr R(const std::vector<std::string_view>& args) {
    shmkv::upstream::RedisReplyPtr r = redis_.Command(args);
    EXPECT_NE(r, nullptr) << "Redis did not answer " << args[0];
    return r;
  }
  std::optional<std::string> RedisValue(std::string_view key) {
    shmkv::upstream::RedisReplyPtr r = R({"GET", key});
    if (r == nullptr || r->type != REDIS_REPLY_STRING) return std::nullopt;
    return std::string(r->str, r->len);
  }
  long long RedisInt(const std::vector<std::string_view>& args) {
    shmkv::upstream::RedisReplyPtr r = R(args);
    return r != nullptr && r->type == REDIS_REPLY_INTEGER ? r->integer : LLONG_MIN;
  }
  void RedisSet(std::string_view key, std::string_view value) {
    shmkv::upstream::RedisReplyPtr r = R({"SET", key, value});
    ASSERT_TRUE(r != nullptr && r->type == REDIS_REPLY_STATUS);
  }

  // Another process's fetch of key (value in Redis) in flight: the cas of
  // its placeholder.
  uint64_t AnotherProcessFetches(std::string_view key, std::string_view value) {
    RedisSet(key, value);
    return PutPlaceholder(key, shmkv::WriteMode::kAdd);
  }
  // Runs `get` (a Get of a key that holds another process's placeholder) on
  // a thread; once it polls the placeholder (two reads of the key), runs
  // `meanwhile` here, then waits for `get` to return.
  void WhileGetWaits(const std::function<void()>& get, const std::function<void()>& meanwhile) {
    const uint64_t gets = SegmentGets();
    std::thread t(get);
    const bool waiting = WaitFor([&] { return SegmentGets() >= gets + 2; });
    meanwhile();
    t.join();
    ASSERT_TRUE(waiting) << "the Get did not poll the placeholder";
  }

  // The near caches opened from now on talk to Redis through relay_.
  void ThroughRelay() {
    relay_ = std::make_unique<ReplyRelay>(redis_.port());
    ASSERT_TRUE(relay_->ok());
    Publish(relay_->url());
  }
  // Runs `call` (near cache calls to Redis) on a thread with Redis's replies
  // held; once a reply is held (Redis has executed the command, the client
  // has not read the answer), runs `meanwhile` here, then releases the
  // reply and waits for `call` to return.
  void WhileAReplyIsHeld(
      const std::function<void()>& call, const std::function<void()>& meanwhile = [] {}) {
    relay_->Hold();
    std::thread t(call);
    const bool replied = WaitFor([&] { return relay_->held_bytes() > 0; });
    meanwhile();
    relay_->Release();
    t.join();
    ASSERT_TRUE(replied) << "no reply was held";
  }

  std::string segment_ = UniqueSegment();
  RedisServer redis_;
  std::unique_ptr<Cache> daemon_;
  std::unique_ptr<ReplyRelay> relay_;  // see ThroughRelay()
};

TEST_F(NearCacheTest, AMissIsFetchedOnceThenServedLocally) {
  RedisSet("user:1", "alice");
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  Result<std::string> v = nc->Get("user:1");
  ASSERT_TRUE(v) << nc->last_error();
  EXPECT_EQ(*v, "alice");
  EXPECT_EQ(nc->stats().fetches, 1u);
  EXPECT_EQ(nc->stats().local_hits, 0u);
  std::optional<Entry> e = Local("user:1");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->value, "alice");
  EXPECT_EQ(e->info.user_flags, 0u);
  EXPECT_FALSE(e->info.no_evict);

  // Changed in Redis with no invalidation yet: the local copy answers.
  RedisSet("user:1", "bob");
  v = nc->Get("user:1");
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, "alice");
  EXPECT_EQ(nc->stats().local_hits, 1u);
  EXPECT_EQ(nc->stats().fetches, 1u);

  // The invalidation deletes it: Redis again.
  ASSERT_FALSE(daemon_->Delete("user:1"));
  v = nc->Get("user:1");
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, "bob");
  EXPECT_EQ(nc->stats().fetches, 2u);
  EXPECT_EQ(nc->stats().bypasses, 0u);
}

TEST_F(NearCacheTest, AMissingKeyIsNotFoundAndNotCached) {
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  EXPECT_TRUE(nc->Get("nope").IsNotFound());
  EXPECT_FALSE(Local("nope"));  // the placeholder is gone too
  EXPECT_TRUE(nc->Get("nope").IsNotFound());
  EXPECT_EQ(nc->stats().fetches, 2u);
  EXPECT_EQ(nc->stats().local_hits, 0u);
}

TEST_F(NearCacheTest, TheLocalTtlIsTheRedisTtlCappedByMaxLocalTtl) {
  ASSERT_NE(R({"SET", "short", "v", "PX", "5000"}), nullptr);
  ASSERT_NE(R({"SET", "long", "v", "PX", "600000"}), nullptr);
  RedisSet("forever", "v");
  NearCacheOptions o;
  o.max_local_ttl = 10s;
  Result<NearCache> nc = NearCache::Open(segment_, o);
  ASSERT_TRUE(nc) << nc.error().message();
  for (const char* key : {"short", "long", "forever"}) ASSERT_TRUE(nc->Get(key)) << key;
  std::optional<Entry> s = Local("short"), l = Local("long"), f = Local("forever");
  ASSERT_TRUE(s && l && f);
  EXPECT_LE(s->info.ttl, 5000ms);
  EXPECT_GT(s->info.ttl, 3000ms);
  EXPECT_LE(l->info.ttl, 10s);
  EXPECT_GT(l->info.ttl, 8s);
  EXPECT_LE(f->info.ttl, 10s);
  EXPECT_GT(f->info.ttl, 8s);
}

TEST_F(NearCacheTest, SetWritesRedisThenKeepsACopy) {
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  ASSERT_FALSE(nc->Set("s:1", "v1", 30s)) << nc->last_error();
  EXPECT_EQ(RedisValue("s:1"), "v1");
  const long long pttl = RedisInt({"PTTL", "s:1"});
  EXPECT_GT(pttl, 20000);
  EXPECT_LE(pttl, 30000);
  std::optional<Entry> e = Local("s:1");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->value, "v1");
  EXPECT_EQ(e->info.user_flags, 0u);
  EXPECT_LE(e->info.ttl, 30s);
  EXPECT_GT(e->info.ttl, 20s);
  Result<std::string> v = nc->Get("s:1");
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, "v1");
  EXPECT_EQ(nc->stats().local_hits, 1u);
  EXPECT_EQ(nc->stats().fetches, 0u);

  // No TTL in Redis; max_local_ttl (60 s by default) locally.
  ASSERT_FALSE(nc->Set("s:2", "v2"));
  EXPECT_EQ(RedisInt({"PTTL", "s:2"}), -1);
  e = Local("s:2");
  ASSERT_TRUE(e);
  EXPECT_LE(e->info.ttl, 60s);
  EXPECT_GT(e->info.ttl, 50s);

  EXPECT_EQ(nc->Set("s:3", "v", -1ms), Errc::kInvalid);
  EXPECT_EQ(nc->Set("", "v"), Errc::kInvalid);
  EXPECT_EQ(RedisInt({"EXISTS", "s:3"}), 0);
}

TEST_F(NearCacheTest, DeleteRunsInRedisAndDropsTheLocalCopy) {
  RedisSet("d", "v");
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  ASSERT_TRUE(nc->Get("d"));
  ASSERT_TRUE(Local("d"));
  EXPECT_FALSE(nc->Delete("d")) << nc->last_error();
  EXPECT_EQ(RedisInt({"EXISTS", "d"}), 0);
  EXPECT_FALSE(Local("d"));
  EXPECT_EQ(nc->Delete("d"), Errc::kNotFound);
}

TEST_F(NearCacheTest, IncrRunsInRedisAndDropsTheLocalCopy) {
  RedisSet("n", "41");
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  ASSERT_TRUE(nc->Get("n"));
  Result<int64_t> r = nc->Incr("n");
  ASSERT_TRUE(r) << nc->last_error();
  EXPECT_EQ(*r, 42);
  EXPECT_FALSE(Local("n"));
  EXPECT_EQ(RedisValue("n"), "42");
  EXPECT_EQ(Str(nc->Get("n")), "42");
  r = nc->Incr("fresh", -5);  // Redis's rule: a missing key counts from 0
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, -5);

  RedisSet("word", "abc");
  EXPECT_EQ(nc->Incr("word").error(), Errc::kNotNumber);
  EXPECT_NE(nc->last_error().find("not an integer"), std::string::npos) << nc->last_error();
  RedisSet("max", "9223372036854775807");
  EXPECT_EQ(nc->Incr("max").error(), Errc::kOverflow);
  EXPECT_NE(nc->last_error().find("overflow"), std::string::npos) << nc->last_error();
  EXPECT_EQ(RedisValue("max"), "9223372036854775807");
  EXPECT_EQ(nc->stats().redis_errors, 0u);
}

TEST_F(NearCacheTest, TouchRunsInRedisAndDropsTheLocalCopy) {
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  ASSERT_FALSE(nc->Set("t", "v"));
  ASSERT_TRUE(Local("t"));
  EXPECT_FALSE(nc->Touch("t", 5s)) << nc->last_error();
  const long long pttl = RedisInt({"PTTL", "t"});
  EXPECT_GT(pttl, 3000);
  EXPECT_LE(pttl, 5000);
  EXPECT_FALSE(Local("t"));

  ASSERT_TRUE(nc->Get("t"));
  ASSERT_TRUE(Local("t"));
  EXPECT_FALSE(nc->Touch("t", 0ms));  // persist
  EXPECT_EQ(RedisInt({"PTTL", "t"}), -1);
  EXPECT_FALSE(Local("t"));
  EXPECT_FALSE(nc->Touch("t", 0ms));  // no TTL already: still there

  EXPECT_EQ(nc->Touch("missing", 1s), Errc::kNotFound);
  EXPECT_EQ(nc->Touch("missing", 0ms), Errc::kNotFound);
  EXPECT_EQ(nc->Touch("t", -1ms), Errc::kInvalid);
}

TEST_F(NearCacheTest, WhileNotUpNothingLocalIsReadOrKept) {
  RedisSet("b", "v1");
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  ASSERT_TRUE(nc->Get("b"));
  ASSERT_TRUE(Local("b"));

  ASSERT_EQ(shmkv_upstream_set_state(kv(), SHMKV_UPSTREAM_DOWN), 0);
  RedisSet("b", "v2");
  Result<std::string> v = nc->Get("b");
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, "v2");               // not the local copy
  EXPECT_EQ(LocalValue("b"), "v1");  // which a read leaves alone
  RedisSet("b2", "x");
  EXPECT_EQ(Str(nc->Get("b2")), "x");
  EXPECT_FALSE(Local("b2"));
  ASSERT_FALSE(nc->Set("b", "v3"));
  EXPECT_FALSE(Local("b"));  // a write drops it
  EXPECT_EQ(RedisValue("b"), "v3");
  EXPECT_EQ(nc->stats().bypasses, 3u);
  EXPECT_EQ(nc->stats().local_hits, 0u);

  // UP with a heartbeat older than the lag bound is not current either.
  Publish(redis_.url(), 1);
  ASSERT_TRUE(WaitFor([&] {
    uint32_t state = 0;
    return shmkv_upstream_state(kv(), &state, nullptr) == 0 && state != SHMKV_UPSTREAM_UP;
  }));
  EXPECT_EQ(Str(nc->Get("b")), "v3");
  EXPECT_FALSE(Local("b"));
  EXPECT_EQ(nc->stats().bypasses, 4u);
}

TEST_F(NearCacheTest, AKeyTooLongForTheSegmentIsServedFromRedisOnly) {
  const std::string key(65, 'k');  // the segment's max_key_len is 64
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  ASSERT_FALSE(nc->Set(key, "v")) << nc->last_error();
  EXPECT_EQ(RedisValue(key), "v");
  EXPECT_EQ(Str(nc->Get(key)), "v");
  EXPECT_EQ(Str(nc->Get(key)), "v");
  EXPECT_EQ(nc->stats().bypasses, 3u);
  EXPECT_EQ(nc->stats().local_hits, 0u);
  EXPECT_EQ(daemon_->Stats()->items, 0u);
  EXPECT_FALSE(nc->Delete(key));
  EXPECT_EQ(RedisInt({"EXISTS", key}), 0);
}

TEST_F(NearCacheTest, OnlyKeysUnderTheTrackedPrefixesAreKeptLocally) {
  Publish(redis_.url(), kLagMs, "user: sess:");
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  RedisSet("user:1", "tracked");
  RedisSet("other:1", "untracked");
  for (int i = 0; i < 2; ++i) {
    Result<std::string> a = nc->Get("user:1");
    Result<std::string> b = nc->Get("other:1");
    ASSERT_TRUE(a && b) << nc->last_error();
    EXPECT_EQ(*a, "tracked");
    EXPECT_EQ(*b, "untracked");
  }
  // No invalidation would ever reach a copy of other:1: it is not kept.
  EXPECT_EQ(LocalValue("user:1"), "tracked");
  EXPECT_EQ(LocalValue("other:1"), "<absent>");
  ASSERT_FALSE(nc->Set("other:2", "w")) << nc->last_error();
  EXPECT_EQ(LocalValue("other:2"), "<absent>");
  EXPECT_EQ(RedisValue("other:2"), "w");
  EXPECT_EQ(nc->stats().local_hits, 1u);  // the second Get of user:1
  // A daemon restarted with other prefixes: the next call follows them.
  Publish(redis_.url(), kLagMs, "other:");
  ASSERT_TRUE(nc->Get("other:1"));
  EXPECT_EQ(LocalValue("other:1"), "untracked");
}

TEST_F(NearCacheTest, ADaemonPointedAtAnotherRedisIsFollowed) {
  // A failover: the daemon is restarted against the new master.
  RedisServer second;
  ASSERT_TRUE(second.Start()) << second.error();
  RedisSet("k:failover", "old master");
  shmkv::upstream::RedisReplyPtr r = second.Command({"SET", "k:failover", "new master"});
  ASSERT_TRUE(r != nullptr && r->type == REDIS_REPLY_STATUS);
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  Result<std::string> v = nc->Get("k:failover");
  ASSERT_TRUE(v) << nc->last_error();
  EXPECT_EQ(*v, "old master");
  Publish(second.url());
  (void)daemon_->Delete("k:failover");  // the new daemon's flush
  v = nc->Get("k:failover");
  ASSERT_TRUE(v) << nc->last_error();
  EXPECT_EQ(*v, "new master");
  ASSERT_FALSE(nc->Set("k:written", "after")) << nc->last_error();
  r = second.Command({"GET", "k:written"});
  ASSERT_TRUE(r != nullptr && r->type == REDIS_REPLY_STRING);
  EXPECT_EQ(std::string(r->str, r->len), "after");
  EXPECT_EQ(RedisValue("k:written"), std::nullopt);  // not the old master
}

TEST_F(NearCacheTest, KeysAndValuesAreBinary) {
  const std::string key("bin\0\r\n\xff key", 12);
  std::string value;
  for (int i = 0; i < 256; ++i) value.push_back(static_cast<char>(i));
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  ASSERT_FALSE(nc->Set(key, value)) << nc->last_error();
  EXPECT_EQ(RedisValue(key), value);
  EXPECT_EQ(LocalValue(key), value);
  EXPECT_EQ(Str(nc->Get(key)), value);
  EXPECT_EQ(nc->stats().local_hits, 1u);

  const std::string key2("\0\0", 2), value2("a\0b\r\n", 5);
  ASSERT_NE(R({"SET", key2, value2}), nullptr);
  EXPECT_EQ(Str(nc->Get(key2)), value2);
  EXPECT_EQ(LocalValue(key2), value2);
  EXPECT_EQ(nc->stats().fetches, 1u);
}

TEST_F(NearCacheTest, APlaceholderOfAnotherProcessMakesGetWaitThenReadRedis) {
  const uint64_t held = AnotherProcessFetches("p", "from-redis");
  NearCacheOptions o;
  o.fetch_wait = 150ms;
  Result<NearCache> nc = NearCache::Open(segment_, o);
  ASSERT_TRUE(nc) << nc.error().message();
  const auto start = std::chrono::steady_clock::now();
  Result<std::string> v = nc->Get("p");
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(v) << nc->last_error();
  EXPECT_EQ(*v, "from-redis");
  EXPECT_GE(waited, 150ms);
  std::optional<Entry> e = Local("p");  // the other fetch's placeholder, untouched
  ASSERT_TRUE(e);
  EXPECT_EQ(e->info.cas, held);
  EXPECT_EQ(e->info.user_flags, SHMKV_UPSTREAM_PLACEHOLDER);
  EXPECT_EQ(nc->stats().fetches, 1u);
  EXPECT_EQ(nc->stats().local_hits, 0u);
}

TEST_F(NearCacheTest, AGetWaitingOnAPlaceholderReturnsTheValueThatReplacesIt) {
  const uint64_t held = AnotherProcessFetches("p", "from-redis");
  NearCacheOptions o;
  o.fetch_wait = 10s;
  Result<NearCache> nc = NearCache::Open(segment_, o);
  ASSERT_TRUE(nc) << nc.error().message();
  const auto other_fetch_completes = [&] {
    shmkv::WriteOptions w;
    w.expect_cas = held;
    EXPECT_TRUE(daemon_->Store("p", "from-the-other-fetch", w));
  };
  std::optional<Result<std::string>> v;
  ASSERT_NO_FATAL_FAILURE(WhileGetWaits([&] { v.emplace(nc->Get("p")); }, other_fetch_completes));
  ASSERT_TRUE(*v);
  EXPECT_EQ(**v, "from-the-other-fetch");
  EXPECT_EQ(nc->stats().local_hits, 1u);
  EXPECT_EQ(nc->stats().fetches, 0u);
}

TEST_F(NearCacheTest, AGetWaitingOnAPlaceholderThatVanishesFetchesItself) {
  const uint64_t held = AnotherProcessFetches("p", "from-redis");
  NearCacheOptions o;
  o.fetch_wait = 10s;
  Result<NearCache> nc = NearCache::Open(segment_, o);
  ASSERT_TRUE(nc) << nc.error().message();
  const auto other_fetch_found_nothing = [&] { EXPECT_FALSE(daemon_->Delete("p", held)); };
  std::optional<Result<std::string>> v;
  ASSERT_NO_FATAL_FAILURE(
      WhileGetWaits([&] { v.emplace(nc->Get("p")); }, other_fetch_found_nothing));
  ASSERT_TRUE(*v);
  EXPECT_EQ(**v, "from-redis");
  std::optional<Entry> e = Local("p");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->value, "from-redis");
  EXPECT_EQ(nc->stats().fetches, 1u);
}

// The race the placeholder exists for. Redis has executed the GET (its
// reply is in the relay) when another host writes the key and the
// invalidation deletes the local placeholder; the reply reaches the client
// only then. Its CAS must fail: the old value is returned (the read
// happened before the write) but not kept.
TEST_F(NearCacheTest, AnInvalidationBetweenTheReplyAndTheCasLeavesNothingCached) {
  ASSERT_NO_FATAL_FAILURE(ThroughRelay());
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();

  // Held and released with nothing in between, the reply is kept.
  RedisSet("control", "v");
  std::optional<Result<std::string>> v;
  ASSERT_NO_FATAL_FAILURE(WhileAReplyIsHeld([&] { v.emplace(nc->Get("control")); }));
  ASSERT_TRUE(*v);
  EXPECT_EQ(LocalValue("control"), "v");

  RedisSet("k", "old");
  std::optional<Entry> placeholder;
  const auto another_hosts_write = [&] {
    placeholder = Local("k");
    RedisSet("k", "new");                // another host's write
    EXPECT_FALSE(daemon_->Delete("k"));  // and its invalidation
  };
  ASSERT_NO_FATAL_FAILURE(WhileAReplyIsHeld([&] { v.emplace(nc->Get("k")); }, another_hosts_write));
  ASSERT_TRUE(placeholder);
  EXPECT_EQ(placeholder->info.user_flags, SHMKV_UPSTREAM_PLACEHOLDER);
  ASSERT_TRUE(*v) << nc->last_error();
  EXPECT_EQ(**v, "old");
  EXPECT_FALSE(Local("k"));
  EXPECT_EQ(nc->stats().not_cached, 1u);
  EXPECT_EQ(Str(nc->Get("k")), "new");
  EXPECT_EQ(LocalValue("k"), "new");

  // The same for a Set: its placeholder deleted while Redis's OK is held.
  std::error_code set_result;
  ASSERT_NO_FATAL_FAILURE(WhileAReplyIsHeld([&] { set_result = nc->Set("w", "mine"); },
                                            [&] { EXPECT_FALSE(daemon_->Delete("w")); }));
  EXPECT_FALSE(set_result);
  EXPECT_EQ(RedisValue("w"), "mine");
  EXPECT_FALSE(Local("w"));
  EXPECT_EQ(nc->stats().not_cached, 2u);
}

// Two Sets of one key on the host: the second's placeholder replaces the
// first's while the first's Redis write is in flight. Redis may apply the
// first write last, so the first, finding its placeholder replaced, drops
// whatever is at the key rather than leave the second's (maybe older) copy.
TEST_F(NearCacheTest, ASetWhosePlaceholderWasReplacedDropsTheKey) {
  ASSERT_NO_FATAL_FAILURE(ThroughRelay());
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  const auto other_sets_placeholder = [&] { PutPlaceholder("w", shmkv::WriteMode::kSet); };
  std::error_code set_result;
  ASSERT_NO_FATAL_FAILURE(
      WhileAReplyIsHeld([&] { set_result = nc->Set("w", "first"); }, other_sets_placeholder));
  EXPECT_FALSE(set_result);
  EXPECT_FALSE(Local("w"));
  EXPECT_EQ(nc->stats().not_cached, 1u);
}

// The stream lost and regained (a new generation) between the placeholder
// and the CAS: invalidations may have been missed, so the copy made
// meanwhile is deleted again.
TEST_F(NearCacheTest, AGenerationChangeBetweenPlaceholderAndCasDropsTheCopy) {
  ASSERT_NO_FATAL_FAILURE(ThroughRelay());
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  RedisSet("g", "v");
  const auto new_generation = [&] {
    ASSERT_EQ(shmkv_upstream_set_state(kv(), SHMKV_UPSTREAM_UP), 0);
  };

  std::optional<Result<std::string>> v;
  ASSERT_NO_FATAL_FAILURE(WhileAReplyIsHeld([&] { v.emplace(nc->Get("g")); }, new_generation));
  ASSERT_TRUE(*v) << nc->last_error();
  EXPECT_EQ(**v, "v");
  EXPECT_FALSE(Local("g"));
  EXPECT_EQ(nc->stats().not_cached, 1u);

  std::error_code set_result;
  ASSERT_NO_FATAL_FAILURE(
      WhileAReplyIsHeld([&] { set_result = nc->Set("g2", "x"); }, new_generation));
  EXPECT_FALSE(set_result);
  EXPECT_EQ(RedisValue("g2"), "x");
  EXPECT_FALSE(Local("g2"));
  EXPECT_EQ(nc->stats().not_cached, 2u);

  // With the generation unchanged, the same steps keep the copy.
  EXPECT_EQ(Str(nc->Get("g")), "v");
  EXPECT_EQ(LocalValue("g"), "v");
}

TEST_F(NearCacheTest, ATimeoutIsAnErrorThatLeavesNoPlaceholder) {
  ASSERT_NO_FATAL_FAILURE(ThroughRelay());
  NearCacheOptions o;
  o.io_timeout = 300ms;
  Result<NearCache> nc = NearCache::Open(segment_, o);
  ASSERT_TRUE(nc) << nc.error().message();
  RedisSet("k", "v");
  relay_->Hold();
  Result<std::string> v = nc->Get("k");
  EXPECT_EQ(v.error(), std::errc::timed_out);
  EXPECT_NE(nc->last_error().find("no reply"), std::string::npos) << nc->last_error();
  EXPECT_FALSE(Local("k"));
  EXPECT_EQ(nc->Set("k2", "x"), std::errc::timed_out);
  EXPECT_FALSE(Local("k2"));
  EXPECT_EQ(nc->stats().redis_errors, 2u);
  relay_->Release();
  v = nc->Get("k");  // on a new connection
  ASSERT_TRUE(v) << nc->last_error();
  EXPECT_EQ(*v, "v");
  EXPECT_EQ(LocalValue("k"), "v");
}

TEST_F(NearCacheTest, RedisDownIsAnErrorWithAMessageAndRedisBackWorksAgain) {
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  ASSERT_FALSE(nc->Set("k", "v1"));
  const int port = redis_.port();
  redis_.Kill();

  Result<std::string> v = nc->Get("other");
  EXPECT_EQ(v.error(), std::errc::connection_refused);
  EXPECT_NE(nc->last_error().find("127.0.0.1"), std::string::npos) << nc->last_error();
  EXPECT_FALSE(Local("other"));
  EXPECT_EQ(nc->Set("k2", "x"), std::errc::connection_refused);
  EXPECT_FALSE(Local("k2"));
  EXPECT_EQ(nc->Incr("n").error(), std::errc::connection_refused);
  EXPECT_EQ(nc->Delete("k"), std::errc::connection_refused);
  EXPECT_FALSE(Local("k"));  // dropped all the same
  EXPECT_EQ(nc->stats().redis_errors, 4u);

  ASSERT_TRUE(redis_.Start(port)) << redis_.error();
  ASSERT_FALSE(nc->Set("k3", "y")) << nc->last_error();
  EXPECT_EQ(Str(nc->Get("k3")), "y");
  EXPECT_EQ(nc->stats().local_hits, 1u);

  // Restarted while the connection was idle: the next call reconnects.
  redis_.Kill();
  ASSERT_TRUE(redis_.Start(port)) << redis_.error();
  EXPECT_FALSE(nc->Set("k4", "z")) << nc->last_error();
  Result<int64_t> n = nc->Incr("n");
  ASSERT_TRUE(n) << nc->last_error();
  EXPECT_EQ(*n, 1);
  EXPECT_EQ(nc->stats().redis_errors, 4u);
}

TEST_F(NearCacheTest, AnErrorReplyLeavesNoPlaceholder) {
  ASSERT_NE(R({"LPUSH", "list", "x"}), nullptr);
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  Result<std::string> v = nc->Get("list");
  EXPECT_EQ(v.error(), std::errc::io_error);
  EXPECT_NE(nc->last_error().find("WRONGTYPE"), std::string::npos) << nc->last_error();
  EXPECT_FALSE(Local("list"));
}

TEST_F(NearCacheTest, ThrottleDecidesAsShmkvThrottle) {
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  struct Case {
    uint64_t rate;
    std::chrono::milliseconds period;
    uint64_t burst;
  };
  // Intervals of hours and decades, so that the time the calls take
  // changes no decision. 1 h / 7 is not a whole number of microseconds;
  // 50 years x 2 needs more than the 53 bits of a Lua number.
  const std::chrono::milliseconds kFiftyYears(50LL * 365 * 86'400'000);
  const Case cases[] = {{7, std::chrono::hours(1), 3}, {1, kFiftyYears, 2}};
  for (const Case& c : cases) {
    // Different keys: an allowed Throttle drops the local copy of its key.
    const std::string key = "lim:" + std::to_string(c.period.count());
    const std::string local_key = "here:" + key;
    const uint64_t interval = static_cast<uint64_t>(c.period.count()) * 1'000'000 / c.rate;
    const std::chrono::milliseconds interval_ms(interval / 1'000'000);
    for (uint64_t i = 0; i < c.burst + 2; ++i) {
      SCOPED_TRACE("period " + std::to_string(c.period.count()) + " call " + std::to_string(i));
      Result<shmkv::ThrottleDecision> here =
          daemon_->Throttle(local_key, c.rate, c.period, c.burst);
      Result<shmkv::ThrottleDecision> there = nc->Throttle(key, c.rate, c.period, c.burst);
      ASSERT_TRUE(here);
      ASSERT_TRUE(there) << nc->last_error();
      EXPECT_EQ(there->allowed, i < c.burst);
      EXPECT_EQ(there->allowed, here->allowed);
      EXPECT_EQ(there->remaining, here->remaining);
      EXPECT_EQ(there->remaining, i < c.burst ? c.burst - 1 - i : 0);
      if (!there->allowed) {
        EXPECT_LE(there->retry_after, interval_ms + 1ms);  // rounded up
        EXPECT_GT(there->retry_after, interval_ms - 10s);
        EXPECT_NEAR(static_cast<double>(there->retry_after.count()),
                    static_cast<double>(here->retry_after.count()), 1000.0);
      } else {
        EXPECT_EQ(there->retry_after, 0ms);
      }
    }
    // Redis holds the TAT in decimal ns: now + burst x interval, and the
    // key expires then.
    shmkv::upstream::RedisReplyPtr time = R({"TIME"});
    ASSERT_TRUE(time != nullptr && time->type == REDIS_REPLY_ARRAY && time->elements == 2);
    const uint64_t now_ns =
        ParseU64({time->element[0]->str, time->element[0]->len}) * 1'000'000'000 +
        ParseU64({time->element[1]->str, time->element[1]->len}) * 1000;
    const std::optional<std::string> tat_text = RedisValue(key);
    ASSERT_TRUE(tat_text);
    const uint64_t tat = ParseU64(*tat_text);
    const uint64_t ahead = c.burst * interval;
    ASSERT_GT(tat, now_ns) << *tat_text;
    EXPECT_LE(tat - now_ns, ahead);
    EXPECT_GT(tat - now_ns, ahead - 10'000'000'000ull);
    const long long pttl = RedisInt({"PTTL", key});
    EXPECT_NEAR(static_cast<double>(pttl), static_cast<double>((tat - now_ns) / 1'000'000), 1000.0);
  }
  EXPECT_EQ(nc->stats().redis_errors, 0u);
}

TEST_F(NearCacheTest, ThrottleRefusesWhatShmkvThrottleRefuses) {
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  struct Case {
    uint64_t rate;
    long long period_ms;
    uint64_t burst;
  };
  const long long kMaxPeriod = (1LL << 62) / 1'000'000;
  const Case bad[] = {
      {0, 1000, 1},          {1, 0, 1},
      {1, 1000, 0},          {1, -5, 1},
      {1001, 1, 1},  // under a microsecond per request
      {1, 1000, UINT64_MAX}, {1, kMaxPeriod + 1, 1},
      {1, kMaxPeriod, 2},
  };
  for (const Case& c : bad) {
    SCOPED_TRACE(std::to_string(c.rate) + " per " + std::to_string(c.period_ms) + " ms, burst " +
                 std::to_string(c.burst));
    EXPECT_EQ(nc->Throttle("lim", c.rate, std::chrono::milliseconds(c.period_ms), c.burst).error(),
              Errc::kInvalid);
    EXPECT_FALSE(nc->last_error().empty());
    int allowed = 0;
    uint64_t retry = 0, remaining = 0;
    EXPECT_EQ(shmkv_throttle(kv(), "lim", 3, c.rate, c.period_ms < 0 ? 0 : c.period_ms, c.burst,
                             &allowed, &retry, &remaining),
              SHMKV_EINVAL);
  }
  EXPECT_EQ(RedisInt({"EXISTS", "lim"}), 0);
  EXPECT_EQ(nc->Throttle("", 1, 1s, 1).error(), Errc::kInvalid);
  // The limits themselves are accepted.
  EXPECT_TRUE(nc->Throttle("lim", 1000, 1ms, 1));
  EXPECT_TRUE(nc->Throttle("lim2", 1, std::chrono::milliseconds(kMaxPeriod), 1));

  RedisSet("word", "abc");
  EXPECT_EQ(nc->Throttle("word", 1, 1s, 1).error(), Errc::kNotNumber);
  EXPECT_EQ(RedisValue("word"), "abc");
  ASSERT_NE(R({"LPUSH", "list", "x"}), nullptr);
  EXPECT_EQ(nc->Throttle("list", 1, 1s, 1).error(), Errc::kNotNumber);
  EXPECT_EQ(nc->stats().redis_errors, 0u);
}

TEST_F(NearCacheTest, ThrottleLoadsItsScriptAgainAfterAFlush) {
  Result<NearCache> nc = NearCache::Open(segment_);
  ASSERT_TRUE(nc) << nc.error().message();
  Result<shmkv::ThrottleDecision> d = nc->Throttle("lim", 1, 1h, 3);
  ASSERT_TRUE(d) << nc->last_error();
  EXPECT_EQ(d->remaining, 2u);
  ASSERT_NE(R({"SCRIPT", "FLUSH"}), nullptr);
  d = nc->Throttle("lim", 1, 1h, 3);
  ASSERT_TRUE(d) << nc->last_error();
  EXPECT_EQ(d->remaining, 1u);
}

TEST_F(NearCacheTest, OpenRefusesASegmentThatIsNotANearCache) {
  const std::string plain = UniqueSegment();
  shmkv::Options o;
  o.memory_bytes = 1u << 20;
  o.create = true;
  Result<Cache> c = Cache::Open(plain, o);
  ASSERT_TRUE(c) << c.error().message();
  std::string why;
  EXPECT_EQ(NearCache::Open(plain, {}, &why).error(), Errc::kInvalid);
  EXPECT_NE(why.find("not a near cache"), std::string::npos) << why;
  (void)Cache::Unlink(plain);
  EXPECT_EQ(NearCache::Open(UniqueSegment()).error(), Errc::kNoSegment);
  NearCacheOptions bad;
  bad.io_timeout = 0ms;
  EXPECT_EQ(NearCache::Open(segment_, bad).error(), Errc::kInvalid);
}

TEST_F(NearCacheTest, OpenFailsWhenRedisIsDown) {
  redis_.Kill();
  std::string why;
  EXPECT_EQ(NearCache::Open(segment_, {}, &why).error(), std::errc::connection_refused);
  EXPECT_NE(why.find("127.0.0.1"), std::string::npos) << why;
}

}  // namespace
