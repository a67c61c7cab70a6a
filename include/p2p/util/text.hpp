#pragma once
// Small text helpers shared by modules that quote untrusted input in messages.
#include <cstddef>
#include <string_view>

namespace p2p::util {

// The longest prefix of `text` of at most `max_bytes` bytes that does not end inside a UTF-8 sequence.
inline std::string_view utf8_prefix(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  std::size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

}  // namespace p2p::util
