#pragma once
// Small OpenSSL helpers: digests, constant-time comparison, random identifiers.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace p2p::util {

using Sha256Digest = std::array<std::uint8_t, 32>;

Sha256Digest sha256(std::string_view data);
// `size` bytes as lower-case hex (two digits a byte).
std::string to_hex(const std::uint8_t* bytes, std::size_t size);
// The same digits appended to `out`.
void append_hex(std::string& out, const std::uint8_t* bytes, std::size_t size);
// SHA-256 of `data` as 64 lower-case hex digits.
std::string sha256_hex(std::string_view data);
// Compares without an early exit, so timing does not reveal where two digests differ.
bool constant_time_equal(const Sha256Digest& a, const Sha256Digest& b);
// `bytes` random bytes from OpenSSL's CSPRNG, as lower-case hex.
std::string random_hex(std::size_t bytes);

}  // namespace p2p::util
