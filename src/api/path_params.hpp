#pragma once
// Reading ids out of path and query parameters, with errors that say what a valid id looks like.
#include <charconv>
#include <string>
#include <string_view>

#include "p2p/http/problem.hpp"
#include "p2p/http/router.hpp"

namespace p2p::api {

// `text` as a positive integer; ApiError(400) naming the parameter `name` otherwise.
template <typename Int = int>
inline Int parse_positive_integer(const std::string& text, std::string_view name) {
  Int value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < 1) {
    const std::string shown = text.size() > 40 ? text.substr(0, 40) + "..." : text;
    throw http::ApiError(400, std::string(name) + " must be a positive integer such as 1, got \"" + shown + "\"");
  }
  return value;
}

// The path parameter as a positive integer; ApiError(400) naming it otherwise.
template <typename Int = int>
inline Int parse_positive_id(const http::PathParams& params, std::string_view name) {
  return parse_positive_integer<Int>(params.find(name)->second, name);
}

}  // namespace p2p::api
