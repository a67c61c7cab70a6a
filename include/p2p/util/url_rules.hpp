#pragma once
// URL rules shared by config validation, the store and the notifier: what counts as an acceptable
// endpoint URL, issuer normalisation, redaction of credentials before a URL is logged, query values. Parsing uses Boost.URL.
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

// A value for a URL's query (a FHIR search parameter's, say `system|code`), percent-encoded: every
// character but the unreserved ones.
std::string query_value(std::string_view value);

}  // namespace p2p::util
