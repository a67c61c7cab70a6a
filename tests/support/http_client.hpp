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

// `ca_file`: for https URLs, the PEM file of the CA certificates to trust instead of the system's.
HttpResult http_request(const std::string& method, const std::string& url,
                        const std::vector<std::string>& headers = {}, const std::string& body = {},
                        long timeout_seconds = 30, const std::string& ca_file = {});

// Marks a port on 127.0.0.1 as the service under test's (or no longer). When P2P_TEST_LOG_DIR is set,
// every response from such a port (status, headers, body) is appended to
// $P2P_TEST_LOG_DIR/responses-<pid>.log, which scripts/check-secrets.sh searches for leaked secrets.
void capture_responses_from_port(int port, bool capture);

inline HttpResult http_get(const std::string& url, const std::vector<std::string>& headers = {}) {
  return http_request("GET", url, headers);
}

}  // namespace p2p::test
