#pragma once
// API-key authentication of callers: "Authorization: Bearer <key>". Keys are kept only as SHA-256
// digests and compared in constant time; the plain keys are not retained after construction.
#include <string_view>
#include <vector>

#include "p2p/util/crypto.hpp"

namespace p2p::http {

class ApiKeyAuth {
 public:
  // `enabled` false accepts every caller (auth.mode "none").
  ApiKeyAuth(bool enabled, const std::vector<std::string>& keys);

  enum class Outcome { kAccepted, kMissing, kInvalid };
  Outcome check(std::optional<std::string_view> authorization_header) const;
  bool enabled() const { return enabled_; }

 private:
  bool enabled_;
  std::vector<util::Sha256Digest> digests_;
};

}  // namespace p2p::http
