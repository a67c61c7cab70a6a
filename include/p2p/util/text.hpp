#pragma once
// Small text helpers shared by modules that quote untrusted input in messages.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <string>
#include <string_view>

namespace p2p::util {

// The longest prefix of `text` of at most `max_bytes` bytes that does not end inside a UTF-8 sequence.
inline std::string_view utf8_prefix(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  std::size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

// ASCII case-insensitive equality (header names, schemes).
inline bool iequals(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](unsigned char x, unsigned char y) {
    return std::tolower(x) == std::tolower(y);
  });
}

// `text` without its trailing slashes ("https://x/fhir//" -> "https://x/fhir"; "/" -> "").
inline std::string without_trailing_slashes(std::string text) {
  while (!text.empty() && text.back() == '/') text.pop_back();
  return text;
}

}  // namespace p2p::util
