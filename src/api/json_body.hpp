#pragma once
// JSON response bodies in the contract's key order (nlohmann::ordered_json), with unset values as null.
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "p2p/http/message.hpp"

namespace p2p::api {

inline nlohmann::ordered_json nullable(const std::optional<std::string>& value) {
  return value ? nlohmann::ordered_json(*value) : nlohmann::ordered_json(nullptr);
}

inline http::Response json_response(int status, std::string body) {
  return http::Response::text(status, std::move(body), "application/json");
}

inline http::Response json_response(int status, const nlohmann::ordered_json& body) {
  return json_response(status, body.dump());
}

}  // namespace p2p::api
