// Errors of the C++ API: std::error_code values in the "shmkv" category,
// whose values are the SHMKV_E* codes of the C API (positive values are
// errno codes and use std::generic_category()).
#ifndef SHMKV_ERROR_H_
#define SHMKV_ERROR_H_

#include <string>
#include <system_error>
#include <utility>
#include <variant>

#include "shmkv/export.h"
#include "shmkv/shmkv.h"

namespace shmkv {

enum class Errc : int {
  kNotFound = SHMKV_ENOTFOUND,
  kExists = SHMKV_EEXIST,
  kCasMismatch = SHMKV_ECAS,
  kTooSmall = SHMKV_ETOOSMALL,
  kInvalid = SHMKV_EINVAL,
  kKeyTooBig = SHMKV_EKEYTOOBIG,
  kValueTooBig = SHMKV_EVALTOOBIG,
  kNoSpace = SHMKV_ENOSPC,
  kNotNumber = SHMKV_ENOTNUM,
  kOverflow = SHMKV_EOVERFLOW,
  kNoSegment = SHMKV_ENOSEG,
  kAccess = SHMKV_EACCES,
  kBadSegment = SHMKV_EBADSEG,
  kReadOnly = SHMKV_EREADONLY,
  kBusy = SHMKV_EBUSY,
};

SHMKV_EXPORT const std::error_category& ErrorCategory() noexcept;

// Maps a C API return code to an error_code (0 -> no error).
inline std::error_code MakeErrorCode(int rc) noexcept {
  if (rc == 0) return {};
  if (rc > 0) return {rc, std::generic_category()};
  return {rc, ErrorCategory()};
}

inline std::error_code make_error_code(Errc e) noexcept {  // NOLINT: ADL hook
  return {static_cast<int>(e), ErrorCategory()};
}

// A value or an error. A miss is an error_code equal to Errc::kNotFound,
// which is cheap (no allocation) and easy to test: `if (r.IsNotFound())`.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) noexcept(std::is_nothrow_move_constructible_v<T>)  // NOLINT
      : v_(std::move(value)) {}
  Result(std::error_code ec) noexcept : v_(ec) {}      // NOLINT
  Result(Errc e) noexcept : v_(make_error_code(e)) {}  // NOLINT

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  bool IsNotFound() const noexcept { return error() == Errc::kNotFound; }
  std::error_code error() const noexcept { return ok() ? std::error_code{} : std::get<1>(v_); }
  T& value() & noexcept { return std::get<0>(v_); }
  const T& value() const& noexcept { return std::get<0>(v_); }
  T&& value() && noexcept { return std::get<0>(std::move(v_)); }
  T& operator*() & noexcept { return value(); }
  const T& operator*() const& noexcept { return value(); }
  T* operator->() noexcept { return &value(); }
  const T* operator->() const noexcept { return &value(); }

 private:
  std::variant<T, std::error_code> v_;
};

}  // namespace shmkv

template <>
struct std::is_error_code_enum<shmkv::Errc> : std::true_type {};

#endif  // SHMKV_ERROR_H_
