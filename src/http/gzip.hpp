#pragma once
// Decoding a gzip response body for the outbound client (private to src/http), bounded so a small
// compressed body cannot expand without limit.
#include <cstddef>
#include <string>
#include <string_view>

namespace p2p::http {

// Whether a Content-Encoding value is gzip ("gzip" or "x-gzip", any case).
bool is_gzip(std::string_view content_encoding);

// Inflates a gzip body (one or more members). Throws FetchError: kTooLarge past `limit` bytes of
// output, kProtocol for a truncated or invalid body; `where` names the request in the message.
std::string gunzip(std::string_view input, std::size_t limit, const std::string& where);

}  // namespace p2p::http
