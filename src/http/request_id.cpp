#include "p2p/http/request_id.hpp"

#include <algorithm>
#include <cctype>
#include <random>

#include "p2p/util/crypto.hpp"

namespace p2p::http {

bool is_valid_request_id(std::string_view id) {
  return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

std::string request_id_for(std::optional<std::string_view> presented) {
  if (presented && is_valid_request_id(*presented)) return std::string(*presented);
  // Ids correlate log lines; they need to be unique, not secret. A per-thread generator seeded from
  // OpenSSL keeps the CSPRNG (and its lock) off the per-request path.
  thread_local std::mt19937_64 generator = [] {
    const auto seed = util::random_hex(16);
    std::seed_seq sequence(seed.begin(), seed.end());
    return std::mt19937_64(sequence);
  }();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half) {
    auto bits = generator();
    for (int i = 0; i < 16; ++i, bits >>= 4) id[static_cast<std::size_t>(half * 16 + i)] = kHex[bits & 0xF];
  }
  return id;
}

}  // namespace p2p::http
