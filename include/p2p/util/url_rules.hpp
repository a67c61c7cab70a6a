#pragma once
// URL rules shared by config validation and the store: what counts as an acceptable endpoint URL,
// issuer normalisation, and redaction of credentials before a URL is logged. Parsing uses Boost.URL.
#include <optional>
#include <string>
#include <string_view>

namespace p2p::util {

// Empty when the URL is an absolute http(s) URL with a host and no user-info; otherwise the reason.
std::optional<std::string> check_absolute_http_url(std::string_view url);

// True when `url` uses plain http, whatever the case of its scheme (HTTP://, Http://).
bool is_plain_http(std::string_view url);

// Issuers are compared with trailing slashes removed (the seed: "any trailing slash will be ignored").
std::string normalize_issuer(std::string_view issuer);

// The URL with any password replaced by "***" (for logging database and SMTP URLs).
std::string redact_url_password(std::string_view url);

}  // namespace p2p::util
