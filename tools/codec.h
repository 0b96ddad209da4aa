// Byte-string helpers of the shmkv CLI: hex in and out, UTF-8 validation
// (nlohmann/json refuses invalid UTF-8), and an escaped printable form for
// keys in text listings.
#ifndef SHMKV_TOOLS_CODEC_H_
#define SHMKV_TOOLS_CODEC_H_

#include <optional>
#include <string>
#include <string_view>

namespace shmkv_cli {

// "48690a" -> "Hi\n". Case-insensitive; an odd length or a non-hex digit
// gives nullopt. An optional "0x" prefix is accepted.
std::optional<std::string> HexDecode(std::string_view hex);
// Lower-case hex, two digits a byte.
std::string HexEncode(std::string_view bytes);
// True when bytes is well-formed UTF-8 (no overlongs, no surrogates).
bool IsValidUtf8(std::string_view bytes);
// Printable ASCII stays as it is except '\', which becomes "\\"; every
// other byte becomes "\xHH". Unambiguous, one line, tab-free.
std::string EscapeBytes(std::string_view bytes);

}  // namespace shmkv_cli

#endif  // SHMKV_TOOLS_CODEC_H_
