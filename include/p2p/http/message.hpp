#pragma once
// The request and response as handlers see them: plain values, no Beast types, so handlers and their
// tests compile without Boost.Beast. The server converts to and from the wire.
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace p2p::http {

struct Request {
  std::string method;  // upper case, e.g. "GET"
  std::string target;  // as received: path and query
  std::string path;    // percent-encoded path, without the query
  std::string query;   // percent-encoded query, without '?'
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  std::string body;
  std::string request_id;
  std::string remote_address;

  // The first header with this (case-insensitive) name.
  std::optional<std::string_view> header(std::string_view name) const;
  // The decoded value of a query parameter.
  std::optional<std::string> query_param(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  Response& set_header(std::string name, std::string value);
  std::optional<std::string_view> header(std::string_view name) const;

  static Response json(int status, const nlohmann::json& body);
  static Response text(int status, std::string body, std::string content_type = "text/plain; charset=utf-8");
};

// Path parameters of the matched route, by the names in its template, percent-decoded.
using PathParams = std::map<std::string, std::string, std::less<>>;

}  // namespace p2p::http
