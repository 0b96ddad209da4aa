#include "tokens.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdint>

namespace one_time_tokens {

shmkv::Result<std::string> TokenStore::Issue(std::string_view grant,
                                             std::chrono::milliseconds ttl) noexcept {
  uint8_t bytes[16];
  const ssize_t n = getrandom(bytes, sizeof(bytes), 0);
  if (n != static_cast<ssize_t>(sizeof(bytes))) {
    return std::error_code(n < 0 ? errno : EIO, std::generic_category());
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (const uint8_t b : bytes) {
    id += kHex[b >> 4];
    id += kHex[b & 15];
  }
  if (std::error_code ec = IssueWithId(id, grant, ttl)) return ec;
  return id;
}

std::error_code TokenStore::IssueWithId(std::string_view id, std::string_view grant,
                                        std::chrono::milliseconds ttl) noexcept {
  // A token without expiry would stay redeemable for ever if it leaked.
  if (id.empty() || ttl.count() <= 0) return shmkv::Errc::kInvalid;
  shmkv::WriteOptions add;
  add.mode = shmkv::WriteMode::kAdd;
  add.ttl = ttl;
  return cache_->Store(Key(id), grant, add).error();
}

shmkv::Result<std::string> TokenStore::Redeem(std::string_view id, bool* lost_race) noexcept {
  if (lost_race != nullptr) *lost_race = false;
  if (id.empty()) return shmkv::Errc::kNotFound;
  const std::string key = Key(id);
  std::string grant;
  for (;;) {
    shmkv::ItemInfo info;
    // kNotFound: never issued, expired, or redeemed before we looked.
    if (std::error_code ec = cache_->Get(key, &grant, &info)) return ec;
    // Only the entry we read may go: its cas is the proof.
    const std::error_code ec = cache_->Delete(key, info.cas);
    if (!ec) return grant;
    if (ec == shmkv::Errc::kNotFound) {
      // Another process deleted it (or it expired) between our get and our
      // delete: that process redeemed it, not us.
      if (lost_race != nullptr) *lost_race = true;
      return ec;
    }
    // The entry changed between get and delete (it was redeemed and issued
    // again under the same id, or touched), or the delete met too much
    // contention: look again, the new entry decides.
    if (ec != shmkv::Errc::kCasMismatch && ec != shmkv::Errc::kBusy) return ec;
  }
}

}  // namespace one_time_tokens
