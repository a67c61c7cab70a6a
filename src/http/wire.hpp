#pragma once
// The pure, Beast-facing pieces of the HTTP server: how a request parser is configured, how a parsed
// wire request becomes a p2p::http::Request, and which bodies count as JSON. Private to src/ (it
// includes Boost.Beast); the server and the HTTP fuzzer share it so that the fuzzer exercises exactly
// the parser setup the server uses.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/system/error_code.hpp>

#include "p2p/http/message.hpp"
#include "p2p/http/server.hpp"

namespace p2p::http::wire {

using WireRequest = boost::beast::http::request<boost::beast::http::string_body>;
using RequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

// Applies the server's limits to a fresh parser: header_limit_bytes and body_limit_bytes.
void configure_parser(RequestParser& parser, const ServerOptions& options);

// Whether a Content-Type names JSON: application/json or application/<anything>+json, any case,
// parameters (e.g. "; charset=utf-8") ignored.
bool is_json_media_type(std::string_view content_type);

// The handler-facing request. Moves the body out of `wire`; header names become lower case; the
// target is split at the first '?' into path and query.
Request to_request(WireRequest& wire, std::string_view request_id, std::string remote);

// The outcome of parsing one request from a complete byte buffer.
struct ParseResult {
  boost::system::error_code error;  // set when the bytes are not one valid request within the limits
  std::size_t consumed = 0;         // bytes used by the request (the rest belongs to the next one)
  bool got_some = false;            // the parser saw at least part of a request
  bool complete = false;            // the whole message was parsed (error is then empty)
  std::optional<WireRequest> request;  // set once the header was read, even when the body then failed
};

// Parses the first request in `bytes` with a parser configured by configure_parser(), feeding it the
// way http::read would (Beast's basic_parser::put in a loop). The end of `bytes` is the end of the
// stream: empty input gives http::error::end_of_stream, a truncated message partial_message, and a
// body without Content-Length or chunking ends there.
ParseResult parse_request(std::string_view bytes, const ServerOptions& options);

}  // namespace p2p::http::wire
