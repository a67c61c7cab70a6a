#pragma once
// E-mail addresses the service sends to and from. Pure.
#include <string_view>

namespace p2p::mail {

// A plain addr-spec (local@domain, no display name, no quoted local part, no IP literal): what the
// service sends to and from. Rejects anything with spaces, control characters, <>, "", or a bad domain.
bool is_valid_email_address(std::string_view address);

}  // namespace p2p::mail
