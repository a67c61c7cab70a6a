#pragma once
// The pure pieces of the HTTP client (client.cpp): where a request goes, read from its URL, and the
// HTTP/1.1 request written for it. No I/O. Private to src/http and its unit tests
// (tests/unit/client_wire_test.cpp): it includes Boost.Beast's message.
#include <cstddef>
#include <string>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/span_body.hpp>

#include "p2p/http/client.hpp"

namespace p2p::http::client_wire {

// The body is a view of ClientRequest::body, which the client keeps until the response is read: a
// transaction of ~150 KB is not copied again for the wire.
using WireRequest = boost::beast::http::request<boost::beast::http::span_body<const char>>;

// Where a request goes, taken from its URL.
struct Target {
  bool tls = false;
  std::string host;         // for DNS, SNI and the certificate check: decoded, IPv6 without brackets
  std::string port;         // numeric
  std::string host_header;  // the Host header: the port only when it is not the scheme's default
  std::string endpoint;     // "host:port" for connection errors
  std::string origin;       // "scheme://host:port": the pool key
  std::string target;       // the request target: path and query
  std::string where;        // "GET https://host/path" for exchange errors: no query, no credentials
  std::size_t max_response_bytes = 0;  // this request's limit, after decompression (set by the client)
};

// Throws FetchError (kProtocol) for a URL that is not absolute http(s), has no host, has credentials
// in it or a port that is not valid. An empty path is sent as "/".
Target parse_target(const ClientRequest& request);

// The request as it goes on the wire: the method and each header checked (a method or header name
// that is not an HTTP token, a header value with a line break or NUL: FetchError kProtocol), Host,
// User-Agent and Accept-Encoding: gzip set unless the request sets them, the framing
// (Content-Length, Transfer-Encoding) always the client's own. The body is a view of request.body.
WireRequest make_request(const ClientRequest& request, const Target& target, const ClientOptions& options);

// Whether a host is an IP address literal (the certificate is then checked against the address).
bool is_ip_address(const std::string& host);

}  // namespace p2p::http::client_wire
