#include "p2p/http/router.hpp"

#include <algorithm>

#include <boost/url/decode_view.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/parse_path.hpp>
#include <boost/url/params_encoded_view.hpp>
#include <boost/url/parse_query.hpp>

#include "p2p/http/problem.hpp"

namespace p2p::http {
namespace {

std::vector<std::string> split_pattern(std::string_view pattern) {
  std::vector<std::string> segments;
  if (pattern.starts_with('/')) pattern.remove_prefix(1);
  while (true) {
    const auto slash = pattern.find('/');
    segments.emplace_back(pattern.substr(0, slash));
    if (slash == std::string_view::npos) break;
    pattern.remove_prefix(slash + 1);
  }
  return segments;
}

bool is_parameter(const std::string& segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

bool matches(const Route& route, const std::vector<std::string>& segments, PathParams* params) {
  if (route.segments.size() != segments.size()) return false;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const auto& expected = route.segments[i];
    if (is_parameter(expected)) {
      if (segments[i].empty()) return false;
      if (params != nullptr) params->emplace(expected.substr(1, expected.size() - 2), segments[i]);
    } else if (expected != segments[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

void Router::add(std::string method, std::string pattern, Handler handler, RouteOptions options) {
  auto segments = split_pattern(pattern);
  routes_.push_back({std::move(method), std::move(pattern), std::move(segments), std::move(handler), nullptr, options});
}

void Router::add(std::string method, std::string pattern, std::shared_ptr<const CoroutineHandler> handler,
                 RouteOptions options) {
  auto segments = split_pattern(pattern);
  options.blocking = false;
  routes_.push_back({std::move(method), std::move(pattern), std::move(segments), nullptr, std::move(handler), options});
}

RouteMatch Router::match(std::string_view method, std::string_view encoded_path) const {
  auto parsed = boost::urls::parse_path(encoded_path);
  if (!parsed || !encoded_path.starts_with('/')) {
    throw ApiError(400, "the request path is not a valid absolute path: check its percent-encoding");
  }
  std::vector<std::string> segments;
  for (auto segment : *parsed) {
    auto decoded = *segment;
    segments.emplace_back(decoded.begin(), decoded.end());
  }
  if (segments.empty()) segments.emplace_back();  // "/" is one empty segment, like the pattern "/"

  const std::string_view lookup_method = method == "HEAD" ? std::string_view("GET") : method;
  RouteMatch result;
  for (const auto& route : routes_) {
    if (!matches(route, segments, nullptr)) continue;
    if (route.method == lookup_method) {
      result.kind = RouteMatch::Kind::kFound;
      result.route = &route;
      matches(route, segments, &result.params);
      return result;
    }
    if (std::find(result.allowed_methods.begin(), result.allowed_methods.end(), route.method) ==
        result.allowed_methods.end()) {
      result.allowed_methods.push_back(route.method);
      if (route.method == "GET") result.allowed_methods.push_back("HEAD");
    }
  }
  result.kind = result.allowed_methods.empty() ? RouteMatch::Kind::kNotFound : RouteMatch::Kind::kMethodNotAllowed;
  return result;
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  auto parsed = boost::urls::parse_query(query);
  if (!parsed) throw ApiError(400, "the query string is malformed: check its percent-encoding");
  for (auto param : *parsed) {
    auto key = *param.key;
    if (!std::equal(key.begin(), key.end(), name.begin(), name.end())) continue;
    auto value = *param.value;
    return std::string(value.begin(), value.end());
  }
  return std::nullopt;
}

}  // namespace p2p::http
