#include "http/client_wire.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string_view>

#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>

#include "p2p/util/text.hpp"

namespace p2p::http::client_wire {

namespace bhttp = boost::beast::http;
namespace urls = boost::urls;
using Kind = FetchError::Kind;
using util::iequals;

namespace {

bool is_token(std::string_view text) {
  constexpr std::string_view kSpecials = "!#$%&'*+-.^_`|~";
  return !text.empty() && std::all_of(text.begin(), text.end(), [&](unsigned char c) {
    return std::isalnum(c) != 0 || kSpecials.find(static_cast<char>(c)) != std::string_view::npos;
  });
}

}  // namespace

bool is_ip_address(const std::string& host) {
  boost::system::error_code error;
  (void)boost::asio::ip::make_address(host, error);
  return !error;
}

Target parse_target(const ClientRequest& request) {
  const auto parsed = urls::parse_uri(request.url);
  if (!parsed) {
    throw FetchError(Kind::kProtocol, "\"" + request.url.substr(0, 200) + "\" is not an absolute URL (" +
                                          parsed.error().message() + ")");
  }
  const urls::url_view& url = *parsed;
  Target target;
  std::uint16_t default_port = 0;
  if (url.scheme_id() == urls::scheme::http) {
    default_port = 80;
  } else if (url.scheme_id() == urls::scheme::https) {
    default_port = 443;
    target.tls = true;
  } else {
    throw FetchError(Kind::kProtocol,
                     "only http and https URLs are supported, not \"" + std::string(url.scheme()) + ":\"");
  }
  const std::string scheme = target.tls ? "https" : "http";
  if (url.encoded_host().empty()) throw FetchError(Kind::kProtocol, "the URL has no host: " + scheme + "://");
  if (url.has_userinfo()) {
    throw FetchError(Kind::kProtocol, "the URL of " + scheme + "://" + std::string(url.encoded_host()) +
                                          " has credentials in it; send them in an Authorization header instead");
  }
  target.host = url.host_address();
  std::uint16_t port = default_port;
  if (url.has_port() && !url.port().empty()) {
    port = url.port_number();
    if (port == 0) {
      throw FetchError(Kind::kProtocol, "the port \"" + std::string(url.port()) + "\" of " + scheme + "://" +
                                            std::string(url.encoded_host()) + " is not valid");
    }
  }
  target.port = std::to_string(port);
  const std::string encoded_host(url.encoded_host());
  target.host_header = port == default_port ? encoded_host : encoded_host + ":" + target.port;
  target.endpoint = encoded_host + ":" + target.port;
  target.origin = scheme + "://" + target.endpoint;
  const std::string path = url.encoded_path().empty() ? "/" : std::string(url.encoded_path());
  target.target = url.has_query() ? path + "?" + std::string(url.encoded_query()) : path;
  target.where = request.method + " " + scheme + "://" + target.host_header + path;
  return target;
}

WireRequest make_request(const ClientRequest& request, const Target& target, const ClientOptions& options) {
  if (!is_token(request.method)) {
    throw FetchError(Kind::kProtocol, "\"" + request.method.substr(0, 40) + "\" is not an HTTP method");
  }
  WireRequest wire;
  wire.version(11);
  wire.method_string(request.method);
  wire.target(target.target);
  wire.set(bhttp::field::host, target.host_header);
  wire.set(bhttp::field::user_agent, options.user_agent);
  wire.set(bhttp::field::accept_encoding, "gzip");
  for (const auto& [name, value] : request.headers) {
    if (!is_token(name)) throw FetchError(Kind::kProtocol, "\"" + name.substr(0, 60) + "\" is not a header name");
    // The value is not quoted: it may be a credential.
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      throw FetchError(Kind::kProtocol, "the value of the header " + name + " contains a line break or NUL");
    }
    if (iequals(name, "content-length") || iequals(name, "transfer-encoding")) continue;  // framing is ours
    if (iequals(name, "host") || iequals(name, "user-agent") || iequals(name, "accept-encoding")) {
      wire.set(name, value);
    } else {
      wire.insert(name, value);
    }
  }
  wire.body() = {request.body.data(), request.body.size()};
  try {
    wire.prepare_payload();
  } catch (const std::exception& error) {  // e.g. TRACE with a body
    throw FetchError(Kind::kProtocol, target.where + ": " + error.what());
  }
  return wire;
}

}  // namespace p2p::http::client_wire
