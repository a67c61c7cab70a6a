#pragma once
// Reading ids out of path parameters, with errors that say what a valid id looks like.
#include <charconv>
#include <string>
#include <string_view>

#include "p2p/http/problem.hpp"
#include "p2p/http/router.hpp"

namespace p2p::api {

// The parameter as a positive integer; ApiError(400) naming the parameter otherwise.
template <typename Int = int>
inline Int parse_positive_id(const http::PathParams& params, std::string_view name) {
  const std::string& text = params.find(name)->second;
  Int value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < 1) {
    const std::string shown = text.size() > 40 ? text.substr(0, 40) + "..." : text;
    throw http::ApiError(400, std::string(name) + " must be a positive integer such as 1, got \"" + shown + "\"");
  }
  return value;
}

}  // namespace p2p::api
