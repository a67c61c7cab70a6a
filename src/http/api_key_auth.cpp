#include "p2p/http/api_key_auth.hpp"

#include <algorithm>
#include <cctype>
#include <optional>
#include <string>

namespace p2p::http {

ApiKeyAuth::ApiKeyAuth(bool enabled, const std::vector<std::string>& keys) : enabled_(enabled) {
  for (const auto& key : keys) digests_.push_back(util::sha256(key));
}

ApiKeyAuth::Outcome ApiKeyAuth::check(std::optional<std::string_view> header) const {
  if (!enabled_) return Outcome::kAccepted;
  if (!header) return Outcome::kMissing;
  std::string_view value = *header;
  constexpr std::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !std::equal(kScheme.begin(), kScheme.end(), value.begin(),
                  [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); })) {
    return Outcome::kInvalid;
  }
  value.remove_prefix(kScheme.size());
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  const auto presented = util::sha256(value);
  bool accepted = false;
  for (const auto& digest : digests_) accepted |= util::constant_time_equal(digest, presented);  // no early exit
  return accepted ? Outcome::kAccepted : Outcome::kInvalid;
}

}  // namespace p2p::http
