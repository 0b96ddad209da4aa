// One-time tokens shared by processes: issue, redeem once, and what is
// refused (a replay, an expired token, a duplicate id, a race).
//
//   one_time_tokens [SEGMENT]
//
// With SEGMENT, the tokens go into that existing segment; without, the
// program creates a private one and removes it at the end. It walks through
//
//   1. issue     a password-reset token: ADD with a TTL, value = the grant
//   2. redeem    get its grant and delete it in one atomic step
//   3. replay    the same token again: refused
//   4. expiry    a token with a 300 ms TTL, redeemed too late: refused
//   5. duplicate ADD of an id that is live: refused, the first grant stands
//   6. race      kRacers forked processes redeem one token at once: one wins
//
// and exits 0 when every step gave the expected answer.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "common/say.h"
#include "shmkv/cache.h"
#include "tokens.h"

namespace {

using namespace std::chrono_literals;
using one_time_tokens::TokenStore;

constexpr int kRacers = 4;
constexpr auto kShortTtl = 300ms;

using shmkv_examples::Say;

class Walkthrough {
 public:
  Walkthrough(const std::string& name, shmkv::Cache* cache)
      : name_(name), cache_(cache), tokens_(cache) {}

  int Run() {
    IssueRedeemReplay();
    Expiry();
    Duplicate();
    Race();
    Say("%s", failures_ == 0 ? "all steps gave the expected answer" : "SOME STEPS FAILED");
    return failures_ == 0 ? 0 : 1;
  }

 private:
  void Check(bool ok, const std::string& what) {
    Say("  %s %s", ok ? "ok  " : "FAIL", what.c_str());
    failures_ += !ok;
  }
  static std::string Describe(const shmkv::Result<std::string>& r) {
    if (r) return "redeemed, grants \"" + *r + "\"";
    if (r.IsNotFound()) return "refused (unknown, expired or already used)";
    return "error: " + r.error().message() + " (" + shmkv_last_error() + ")";
  }

  void IssueRedeemReplay() {
    Say("1. issue a password-reset token (ADD, TTL 15 min)");
    auto id = tokens_.Issue("reset-password user=alice", 15min);
    if (!id) {
      Check(false, "issue: " + id.error().message() + " (" + shmkv_last_error() + ")");
      return;
    }
    Say("   token %s", id->c_str());
    Say("2. redeem it");
    auto first = tokens_.Redeem(*id);
    Check(first && *first == "reset-password user=alice", Describe(first));
    Say("3. replay the same token");
    auto again = tokens_.Redeem(*id);
    Check(again.IsNotFound(), Describe(again));
  }

  void Expiry() {
    Say("4. a download ticket valid for %lld ms, redeemed after it lapsed",
        static_cast<long long>(kShortTtl.count()));
    auto id = tokens_.Issue("download report-2024.pdf", kShortTtl);
    if (!id) {
      Check(false, "issue: " + id.error().message());
      return;
    }
    std::this_thread::sleep_for(kShortTtl);
    // The segment's clock has a resolution of a few ms: wait until the
    // entry reads as gone.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (cache_->Ttl(TokenStore::Key(*id)).ok() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
    }
    auto late = tokens_.Redeem(*id);
    Check(late.IsNotFound(), Describe(late));
  }

  void Duplicate() {
    Say("5. ADD refuses an id that is live: an invitation code issued twice");
    const std::string code = "invite-" + std::to_string(getpid());
    const std::error_code ec1 = tokens_.IssueWithId(code, "join team=blue", 1h);
    Check(!ec1, "first issue of " + code + ": " + (ec1 ? ec1.message() : "stored"));
    const std::error_code ec2 = tokens_.IssueWithId(code, "join team=red", 1h);
    Check(ec2 == shmkv::Errc::kExists,
          "second issue of " + code + ": " + (ec2 ? ec2.message() : "stored (wrong)"));
    auto grant = tokens_.Redeem(code);
    Check(grant && *grant == "join team=blue", "the first grant stands: " + Describe(grant));
  }

  // Each racer is a process of its own with its own handle, opened by name.
  // Exit status: 0 redeemed, 1 refused, 2 error.
  void Race() {
    Say("6. %d processes redeem the same token at once", kRacers);
    auto id = tokens_.Issue("redeem gift-card 50 EUR", 1min);
    if (!id) {
      Check(false, "issue: " + id.error().message());
      return;
    }
    std::vector<pid_t> racers;
    for (int i = 0; i < kRacers; ++i) {
      const pid_t pid = fork();
      if (pid < 0) {
        Check(false, "fork: " + std::generic_category().message(errno));
        break;
      }
      if (pid == 0) {
        int rc = 2;
        {
          auto cache = shmkv::Cache::Open(name_);
          if (!cache) {
            Say("   racer %d: cannot open %s: %s", i, name_.c_str(),
                cache.error().message().c_str());
          } else {
            TokenStore mine(&*cache);
            auto r = mine.Redeem(*id);
            Say("   racer %d (pid %d): %s", i, static_cast<int>(getpid()), Describe(r).c_str());
            rc = r ? 0 : r.IsNotFound() ? 1 : 2;
          }
        }
        _exit(rc);
      }
      racers.push_back(pid);
    }
    int winners = 0, refused = 0;
    for (const pid_t pid : racers) {
      int status = 0;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ++winners;
      if (WIFEXITED(status) && WEXITSTATUS(status) == 1) ++refused;
    }
    Check(winners == 1 && refused == kRacers - 1,
          std::to_string(winners) + " redeemed it, " + std::to_string(refused) + " were refused");
  }

  const std::string name_;
  shmkv::Cache* cache_;
  TokenStore tokens_;
  int failures_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const bool keep = argc > 1;
  const std::string name = keep ? argv[1] : "shmkv-tokens-" + std::to_string(getpid());
  int rc = 1;
  {
    shmkv::Options options;
    options.memory_bytes = 4ull << 20;
    options.create = !keep;
    options.exclusive = !keep;
    auto cache = shmkv::Cache::Open(name, options);
    if (!cache) {
      Say("cannot %s segment %s: %s (%s)", keep ? "open" : "create", name.c_str(),
          cache.error().message().c_str(), shmkv_last_error());
      return 1;
    }
    Say("one-time tokens in segment '%s'", name.c_str());
    rc = Walkthrough(name, &*cache).Run();
  }
  if (!keep) {
    if (std::error_code ec = shmkv::Cache::Unlink(name)) {
      Say("cannot remove segment %s: %s", name.c_str(), ec.message().c_str());
      return 1;
    }
  }
  return rc;
}
