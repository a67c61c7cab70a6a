#pragma once
// Expected failures a handler reports to the caller. Thrown as ApiError anywhere below a handler and
// turned into one application/problem+json (RFC 9457) response in exactly one place: the server.
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "p2p/http/message.hpp"

namespace p2p::http {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string detail, std::vector<std::pair<std::string, std::string>> headers = {})
      : std::runtime_error(detail), status_(status), detail_(std::move(detail)), headers_(std::move(headers)) {}

  int status() const { return status_; }
  const std::string& detail() const { return detail_; }
  const std::vector<std::pair<std::string, std::string>>& headers() const { return headers_; }

 private:
  int status_;
  std::string detail_;
  std::vector<std::pair<std::string, std::string>> headers_;
};

// The standard reason phrase ("Not Found") used as the problem's title.
std::string_view reason_phrase(int status);

// A problem+json response. `instance` is the request path, `request_id` the request's id.
Response problem_response(int status, std::string_view detail, std::string_view instance,
                          std::string_view request_id);

}  // namespace p2p::http
