#pragma once
// X-Request-Id: a caller's id is echoed when it is safe to log (1-128 of [A-Za-z0-9._-]); otherwise
// a random one is generated.
#include <optional>
#include <string>
#include <string_view>

namespace p2p::http {

bool is_valid_request_id(std::string_view id);
std::string request_id_for(std::optional<std::string_view> presented);

}  // namespace p2p::http
