// One-time tokens in a shared shmkv segment: password-reset links, e-mail
// confirmations, download tickets, anything that must be honoured once.
//
// A token is an entry "token:<id>" whose value is what the token grants.
// Issue stores it with ADD and a TTL, so that an id is never handed out
// twice while it is live and an unused token lapses on its own. Redeem is
// one atomic delete: the process whose delete removes the entry is the one
// that redeems it, whichever process (PHP worker, cron job, service) asks.
//
//   Redeem(id):
//     value, cas = Get("token:<id>")        miss: unknown, expired or used
//     Delete("token:<id>", expect_cas=cas)  ok: value is ours, exactly once
//                                           kNotFound: another redeemer won
//
// The cas check ties the value returned to the entry deleted: a plain
// delete after the get could remove an entry written after the get, and
// hand out a value that was never the deleted one's.
#ifndef SHMKV_EXAMPLES_ONE_TIME_TOKENS_TOKENS_H_
#define SHMKV_EXAMPLES_ONE_TIME_TOKENS_TOKENS_H_

#include <chrono>
#include <string>
#include <string_view>
#include <system_error>

#include "shmkv/cache.h"

namespace one_time_tokens {

inline constexpr std::string_view kKeyPrefix = "token:";

class TokenStore {
 public:
  // cache must outlive the store.
  explicit TokenStore(shmkv::Cache* cache) : cache_(cache) {}

  // Issues a token with a fresh random id (128 bits, hex) granting `grant`
  // for `ttl` (more than 0). Returns the id.
  shmkv::Result<std::string> Issue(std::string_view grant, std::chrono::milliseconds ttl) noexcept;

  // Issues a token with the caller's id. Errc::kExists if a live token
  // has that id already (the existing token is left as it is).
  std::error_code IssueWithId(std::string_view id, std::string_view grant,
                              std::chrono::milliseconds ttl) noexcept;

  // Redeems a token: returns its grant, and the token is gone for everyone.
  // Errc::kNotFound if there is no such live token: never issued, expired,
  // or redeemed already (here or in any other process). *lost_race, when
  // given, is set to whether the token was seen live but another redeemer
  // deleted it first.
  shmkv::Result<std::string> Redeem(std::string_view id, bool* lost_race = nullptr) noexcept;

  static std::string Key(std::string_view id) { return std::string(kKeyPrefix) + std::string(id); }

 private:
  shmkv::Cache* cache_;
};

}  // namespace one_time_tokens

#endif  // SHMKV_EXAMPLES_ONE_TIME_TOKENS_TOKENS_H_
