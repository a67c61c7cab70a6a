#pragma once
// A blocking HTTP client for tests (libcurl), so test code stays independent of the server's Beast code.
#include <map>
#include <string>
#include <vector>

namespace p2p::test {

struct HttpResult {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string error;  // transport failure (then status is 0)

  std::string header(const std::string& lower_name) const {
    auto found = headers.find(lower_name);
    return found == headers.end() ? std::string() : found->second;
  }
};

HttpResult http_request(const std::string& method, const std::string& url,
                        const std::vector<std::string>& headers = {}, const std::string& body = {},
                        long timeout_seconds = 30);

inline HttpResult http_get(const std::string& url, const std::vector<std::string>& headers = {}) {
  return http_request("GET", url, headers);
}

}  // namespace p2p::test
