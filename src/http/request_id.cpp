#include "p2p/http/request_id.hpp"

#include <algorithm>
#include <cctype>

#include "p2p/util/crypto.hpp"

namespace p2p::http {

bool is_valid_request_id(std::string_view id) {
  return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

std::string request_id_for(std::optional<std::string_view> presented) {
  if (presented && is_valid_request_id(*presented)) return std::string(*presented);
  return util::random_hex(16);
}

}  // namespace p2p::http
