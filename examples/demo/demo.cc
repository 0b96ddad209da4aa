// The shmkv quick-start demo: several processes share one segment.
//
// The parent creates a segment with a unique name and forks kWorkers worker
// processes. Each worker attaches to the segment by name, as unrelated
// processes on one host (PHP-FPM or gunicorn workers, cron jobs) would, and
// uses it for the four classic jobs of a host-local cache:
//
//   1. hit counters   Incr("page:/home") from every worker, no lost update
//   2. web sessions   Set("session:<id>", ttl); the other workers find them
//                     with Scan, read them and Touch them (sliding expiry)
//   3. cache-aside    a slow fake database behind Get / ADD lease / Set:
//                     every profile is loaded once, however many ask at once
//   4. rate limiter   Incr that creates the counter with a TTL: a fixed
//                     window of kRateLimit requests, shared by all workers
//
// The workers meet at barriers that are themselves counters in the segment.
// At the end the parent checks that the totals are exact, prints the
// segment's statistics and removes the segment. Exit status 0 means every
// check held.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "common/say.h"
#include "shmkv/cache.h"

namespace {

using namespace std::chrono_literals;

constexpr int kWorkers = 4;
constexpr int kPageViewsPerWorker = 25'000;
constexpr std::array<std::string_view, 3> kPages = {"page:/home", "page:/products", "page:/cart"};
constexpr std::array<std::string_view, kWorkers> kUserNames = {"alice", "bob", "carol", "dave"};
constexpr auto kSessionTtl = 60s;
constexpr int kProfiles = 6;
constexpr int kLookupsPerWorker = 12;
constexpr auto kDatabaseLatency = 80ms;
constexpr auto kLeaseTtl = 5s;  // a lease whose holder died frees itself
constexpr int kRateLimit = 10;  // requests per window, all workers together
constexpr auto kRateWindow = 2s;
constexpr int kRequestsPerWorker = 6;
constexpr std::string_view kRateKey = "ratelimit:api-key-42";

using shmkv_examples::Say;

int64_t ToInt(std::string_view s) {
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::string Str(std::string_view s) { return std::string(s); }

// A worker process: its own handle on the segment, opened by name.
class Worker {
 public:
  Worker(int id, shmkv::Cache cache) : id_(id), pid_(getpid()), cache_(std::move(cache)) {}

  void Run(int total_workers);

 private:
  [[noreturn]] void Die(const char* what, std::error_code ec) {
    Say("%s FAILED: %s: %s", tag().c_str(), what, ec.message().c_str());
    _exit(2);
  }
  template <typename T>
  T Must(shmkv::Result<T> r, const char* what) {
    if (!r) Die(what, r.error());
    return std::move(r).value();
  }
  void Must(std::error_code ec, const char* what) {
    if (ec) Die(what, ec);
  }
  std::string tag() const {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "[worker %d pid %d]", id_, static_cast<int>(pid_));
    return buf;
  }

  void Barrier(std::string_view name, int n);
  void CountPageViews();
  std::string CreateSession();
  void VisitOtherSessions(const std::string& mine);
  void LookUpProfiles();
  std::string GetOrLoadProfile(int user, bool* loaded, bool* waited);
  void CallRateLimitedApi();

  const int id_;
  const pid_t pid_;
  shmkv::Cache cache_;
};

// All workers wait here until n of them have arrived. The barrier is a
// counter in the segment; a worker that died would leave the others waiting,
// so they give up after a while.
void Worker::Barrier(std::string_view name, int n) {
  const std::string key = "demo:barrier:" + Str(name);
  Must(cache_.Incr(key, 1, 1), "barrier incr");
  std::string v;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!(!cache_.Get(key, &v) && ToInt(v) >= n)) {
    if (std::chrono::steady_clock::now() > deadline) {
      Die("barrier", std::make_error_code(std::errc::timed_out));
    }
    std::this_thread::sleep_for(1ms);
  }
}

// 1. Hit counters: every worker increments the same three keys.
void Worker::CountPageViews() {
  for (int i = 0; i < kPageViewsPerWorker; ++i) {
    // initial = 1: the first incr of a missing key creates it holding 1.
    Must(cache_.Incr(kPages[(i + id_) % kPages.size()], 1, 1), "incr page counter");
  }
  std::string home;
  Must(cache_.Get(kPages[0], &home), "get page:/home");
  Say("%s counted %d page views; page:/home reads %s so far (other workers count too)",
      tag().c_str(), kPageViewsPerWorker, home.c_str());
}

// 2. Web sessions: a random id, a value, a TTL.
std::string Worker::CreateSession() {
  std::random_device rd;
  char id[16];
  std::snprintf(id, sizeof(id), "%08x", rd());
  std::string key = "session:" + std::string(id);
  char value[128];
  std::snprintf(value, sizeof(value), "user=%s;cart=%d items;created by pid %d",
                kUserNames[id_].data(), id_ + 1, static_cast<int>(pid_));
  Must(cache_.Set(key, value, kSessionTtl), "set session");
  Say("%s logged %s in: %s = \"%s\" (ttl %lld s)", tag().c_str(), kUserNames[id_].data(),
      key.c_str(), value, static_cast<long long>(kSessionTtl.count()));
  return key;
}

void Worker::VisitOtherSessions(const std::string& mine) {
  std::set<std::string> keys;  // a scan may visit a key twice
  Must(cache_.Scan("session:",
                   [&](std::string_view key, const shmkv::ItemInfo&) {
                     keys.emplace(key);
                     return true;
                   }),
       "scan sessions");
  std::string seen;
  for (const std::string& key : keys) {
    if (key == mine) continue;
    shmkv::ItemInfo info;
    std::string value;
    Must(cache_.Get(key, &value, &info), "get session");
    // A request of that user landed on this worker: slide its expiry.
    Must(cache_.Touch(key, kSessionTtl), "touch session");
    const std::string_view user = std::string_view(value).substr(5, value.find(';') - 5);
    const std::string_view by = std::string_view(value).substr(value.rfind(' ') + 1);
    seen += (seen.empty() ? "" : ", ") + Str(user) + " (pid " + Str(by) + ", ttl was " +
            std::to_string(info.ttl.count()) + " ms)";
  }
  Say("%s sees the sessions of %s; touched them back to %lld s", tag().c_str(), seen.c_str(),
      static_cast<long long>(kSessionTtl.count()));
}

// 3. Cache-aside in front of a slow database. On a miss, the worker that wins
// ADD of the lease key loads the value; the others wait for it instead of
// all hitting the database at once (no stampede).
std::string SlowDatabase(int user, pid_t loader) {
  std::this_thread::sleep_for(kDatabaseLatency);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "profile of user %d, loaded from the database by pid %d", user,
                static_cast<int>(loader));
  return buf;
}

std::string Worker::GetOrLoadProfile(int user, bool* loaded, bool* waited) {
  const std::string key = "user:" + std::to_string(user) + ":profile";
  const std::string lease = "lease:" + key;
  std::string value;
  for (;;) {
    std::error_code ec = cache_.Get(key, &value);
    if (!ec) return value;
    if (ec != shmkv::Errc::kNotFound) Die("get profile", ec);

    shmkv::WriteOptions add;
    add.mode = shmkv::WriteMode::kAdd;
    add.ttl = kLeaseTtl;
    auto lease_taken = cache_.Store(lease, std::to_string(pid_), add);
    if (lease_taken) {
      // The previous lease holder may have filled the cache between our Get
      // and our ADD: check again before going to the database.
      ec = cache_.Get(key, &value);
      if (ec && ec != shmkv::Errc::kNotFound) Die("get profile", ec);
      if (ec) {
        value = SlowDatabase(user, pid_);
        Must(cache_.Incr("demo:db_calls", 1, 1), "count db call");
        Must(cache_.Set(key, value, 10min), "set profile");
        *loaded = true;
      }
      Must(cache_.Delete(lease), "release lease");
      return value;
    }
    if (lease_taken.error() != shmkv::Errc::kExists) Die("take lease", lease_taken.error());
    *waited = true;  // another worker is loading it
    std::this_thread::sleep_for(5ms);
  }
}

void Worker::LookUpProfiles() {
  int from_db = 0, waits = 0;
  std::set<std::string> loaders;
  for (int i = 0; i < kLookupsPerWorker; ++i) {
    // Workers 0 and 3 start on the same profile at the same time.
    const int user = (i + 2 * id_) % kProfiles + 1;
    bool loaded = false, waited = false;
    const std::string v = GetOrLoadProfile(user, &loaded, &waited);
    from_db += loaded;
    waits += waited;
    const std::string loader = v.substr(v.rfind(' ') + 1);
    if (loader != std::to_string(pid_)) loaders.insert(loader);
  }
  std::string others;
  for (const std::string& p : loaders) others += (others.empty() ? "" : ", ") + p;
  Say("%s %d profile lookups: %d loaded from the database, %d from the cache (loaded by pids "
      "%s); found another worker's lease %d times and waited",
      tag().c_str(), kLookupsPerWorker, from_db, kLookupsPerWorker - from_db,
      others.empty() ? "-" : others.c_str(), waits);
}

// 4. Rate limiter: a fixed window. The first incr creates the counter with
// the window's TTL; later ones keep that TTL.
void Worker::CallRateLimitedApi() {
  int allowed = 0;
  int64_t count = 0;
  for (int i = 0; i < kRequestsPerWorker; ++i) {
    count = Must(cache_.Incr(kRateKey, 1, 1, kRateWindow), "rate limit incr");
    const bool ok = count <= kRateLimit;
    allowed += ok;
    Must(cache_.Incr(ok ? "demo:api:allowed" : "demo:api:rejected", 1, 1), "count request");
  }
  Say("%s %d API requests: %d allowed, %d rejected (window count now %lld, limit %d per %lld s)",
      tag().c_str(), kRequestsPerWorker, allowed, kRequestsPerWorker - allowed,
      static_cast<long long>(count), kRateLimit, static_cast<long long>(kRateWindow.count()));
}

void Worker::Run(int total_workers) {
  Barrier("start", total_workers);
  CountPageViews();
  Barrier("counted", total_workers);

  const std::string session = CreateSession();
  Barrier("sessions", total_workers);
  VisitOtherSessions(session);

  LookUpProfiles();
  Barrier("profiles", total_workers);

  CallRateLimitedApi();
  Barrier("api", total_workers);

  if (id_ == 0) {
    Must(cache_.Delete(session), "delete session");
    Say("%s logged %s out: deleted %s", tag().c_str(), kUserNames[id_].data(), session.c_str());
  }
}

// The parent's view at the end.
class Summary {
 public:
  explicit Summary(shmkv::Cache& cache) : cache_(cache) {}

  void Check(bool ok, const char* fmt, ...) __attribute__((format(printf, 3, 4))) {
    char buf[512];
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(buf, sizeof(buf), fmt, args);
    va_end(args);
    Say("  %s %s", ok ? "ok  " : "FAIL", buf);
    failures_ += !ok;
  }
  int64_t Counter(std::string_view key) {
    std::string v;
    return cache_.Get(key, &v) ? 0 : ToInt(v);
  }
  int failures() const { return failures_; }

 private:
  shmkv::Cache& cache_;
  int failures_ = 0;
};

// keep: the segment exists already (scripts/demo.sh has shmkvd create it)
// and is left in place for `shmkv stats`; else the demo creates its own.
int RunParent(const std::string& name, bool keep) {
  shmkv::Options options;
  options.memory_bytes = 16ull << 20;
  options.create = !keep;
  options.exclusive = !keep;
  auto opened = shmkv::Cache::Open(name, options);
  if (!opened) {
    Say("cannot create segment %s: %s (%s)", name.c_str(), opened.error().message().c_str(),
        shmkv_last_error());
    return 1;
  }
  shmkv::Cache& cache = *opened;
  auto opened_stats = cache.Stats();
  Say("shmkv %s: segment '%s' (%llu MiB), %d worker processes", shmkv_version(), name.c_str(),
      static_cast<unsigned long long>((opened_stats ? opened_stats->memory_bytes : 0) >> 20),
      kWorkers);

  std::vector<pid_t> children;
  for (int id = 0; id < kWorkers; ++id) {
    const pid_t pid = fork();
    if (pid < 0) {
      Say("fork failed: %s", std::generic_category().message(errno).c_str());
      break;
    }
    if (pid == 0) {
      int rc = 0;
      {
        // A fresh handle, opened by name like an unrelated process would.
        // (An inherited handle would work too: its first call in the child
        // registers the child.)
        auto mine = shmkv::Cache::Open(name);
        if (!mine) {
          Say("[worker %d] cannot open %s: %s", id, name.c_str(), mine.error().message().c_str());
          rc = 2;
        } else {
          Worker(id, std::move(mine).value()).Run(kWorkers);
        }
      }
      _exit(rc);  // never return into the parent's code (its handle, its atexit)
    }
    children.push_back(pid);
  }
  int failed_workers = kWorkers - static_cast<int>(children.size());
  for (pid_t pid : children) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed_workers;
  }

  Say("%s", "");
  Say("summary (parent pid %d):", static_cast<int>(getpid()));
  Summary s(cache);
  s.Check(failed_workers == 0, "%d of %d workers finished", kWorkers - failed_workers, kWorkers);

  // 1. Counters: exactly one increment per page view, none lost.
  int64_t total = 0;
  std::string per_page;
  bool pages_ok = true;
  for (size_t p = 0; p < kPages.size(); ++p) {
    int64_t expected = 0;
    for (int id = 0; id < kWorkers; ++id) {
      for (int i = 0; i < kPageViewsPerWorker; ++i) expected += (i + id) % kPages.size() == p;
    }
    const int64_t got = s.Counter(kPages[p]);
    pages_ok = pages_ok && got == expected;
    total += got;
    per_page += (p ? ", " : "") + Str(kPages[p]) + " " + std::to_string(got);
  }
  s.Check(pages_ok && total == int64_t{kWorkers} * kPageViewsPerWorker,
          "hit counters: %s = %lld, exactly %d workers x %d page views", per_page.c_str(),
          static_cast<long long>(total), kWorkers, kPageViewsPerWorker);

  // 2. Sessions: one per worker, minus the one that logged out.
  std::set<std::string> sessions;
  std::error_code ec = cache.Scan("session:", [&](std::string_view key, const shmkv::ItemInfo&) {
    sessions.emplace(key);
    return true;
  });
  std::string listed;
  for (const std::string& k : sessions) {
    auto ttl = cache.Ttl(k);
    listed += (listed.empty() ? "" : ", ") + k + " (ttl " +
              (ttl ? std::to_string(ttl->count()) : "?") + " ms)";
  }
  s.Check(!ec && sessions.size() == kWorkers - 1,
          "sessions: %zu live (%d created, 1 logged out): %s", sessions.size(), kWorkers,
          listed.c_str());

  // 3. Cache-aside: one database call per profile, however many asked.
  const int64_t db_calls = s.Counter("demo:db_calls");
  s.Check(db_calls == kProfiles, "cache-aside: %lld database calls for %d lookups of %d profiles",
          static_cast<long long>(db_calls), kWorkers * kLookupsPerWorker, kProfiles);

  // 4. Rate limiter: the window admitted exactly kRateLimit requests. (All
  // requests are made within a few ms of each other, far inside the window.)
  const int64_t allowed = s.Counter("demo:api:allowed");
  const int64_t rejected = s.Counter("demo:api:rejected");
  s.Check(allowed == kRateLimit && allowed + rejected == int64_t{kWorkers} * kRequestsPerWorker,
          "rate limiter: %lld allowed, %lld rejected of %d requests (limit %d per window)",
          static_cast<long long>(allowed), static_cast<long long>(rejected),
          kWorkers * kRequestsPerWorker, kRateLimit);
  if (auto ttl = cache.Ttl(kRateKey)) {
    std::this_thread::sleep_for(ttl->count() >= 0 ? *ttl + 20ms : 0ms);
  }
  auto next = cache.Incr(kRateKey, 1, 1, kRateWindow);
  s.Check(next && *next == 1,
          "rate limiter: after the window expired, the next request opens a "
          "new window (count %lld)",
          next ? static_cast<long long>(*next) : -1LL);

  if (auto st = cache.Stats()) {
    Say("  stats: gets %llu (hits %llu, misses %llu), sets %llu, incrs %llu, deletes %llu, "
        "items %llu, memory used %llu KiB of %llu KiB, attached processes %llu",
        static_cast<unsigned long long>(st->gets), static_cast<unsigned long long>(st->hits),
        static_cast<unsigned long long>(st->misses), static_cast<unsigned long long>(st->sets),
        static_cast<unsigned long long>(st->incrs), static_cast<unsigned long long>(st->deletes),
        static_cast<unsigned long long>(st->items),
        static_cast<unsigned long long>(st->memory_used >> 10),
        static_cast<unsigned long long>(st->memory_bytes >> 10),
        static_cast<unsigned long long>(st->attached_processes));
  } else {
    s.Check(false, "stats: %s", st.error().message().c_str());
  }
  return s.failures() == 0 ? 0 : 1;
}

}  // namespace

// shmkv_demo [SEGMENT]: with SEGMENT, use that existing segment and leave
// it in place; without, create a private one and remove it at the end.
int main(int argc, char** argv) {
  const bool keep = argc > 1;
  const std::string name = keep ? argv[1] : "shmkv-demo-" + std::to_string(getpid());
  int rc = 1;
  try {
    rc = RunParent(name, keep);
  } catch (const std::exception& e) {  // std::bad_alloc: still remove the segment
    Say("demo failed: %s", e.what());
  }
  if (keep) {
    Say("segment '%s' kept; %s", name.c_str(), rc == 0 ? "all checks passed" : "CHECKS FAILED");
    return rc;
  }
  // The parent's handle is closed by now; remove the name (the workers are
  // gone too, so this frees the memory).
  if (std::error_code ec = shmkv::Cache::Unlink(name)) {
    Say("cannot remove segment %s: %s", name.c_str(), ec.message().c_str());
    return 1;
  }
  Say("segment '%s' removed; %s", name.c_str(), rc == 0 ? "all checks passed" : "CHECKS FAILED");
  return rc;
}
