#include "http_client.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>

#include <curl/curl.h>
#include <unistd.h>

namespace p2p::test {
namespace {

std::mutex capture_mutex;
std::multiset<int> captured_ports;  // one entry per ServiceProcess on the port

// Appends the response to $P2P_TEST_LOG_DIR/responses-<pid>.log when it came from the service under test.
void capture_response(const std::string& method, const std::string& url, CURL* curl, const HttpResult& result) {
  const char* dir = std::getenv("P2P_TEST_LOG_DIR");
  long port = 0;
  if (dir == nullptr || *dir == '\0' || curl_easy_getinfo(curl, CURLINFO_PRIMARY_PORT, &port) != CURLE_OK) return;
  std::lock_guard lock(capture_mutex);
  if (!captured_ports.contains(static_cast<int>(port))) return;
  std::ofstream out(std::string(dir) + "/responses-" + std::to_string(::getpid()) + ".log", std::ios::app);
  out << "=== " << method << " " << url << " -> " << result.status << (result.error.empty() ? "" : " " + result.error)
      << "\n";
  for (const auto& [name, value] : result.headers) out << name << ": " << value << "\n";
  out << "\n" << result.body << "\n";
}

size_t append_body(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

size_t append_header(char* data, size_t size, size_t count, void* user) {
  std::string line(data, size * count);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.pop_back();
    (*static_cast<std::map<std::string, std::string>*>(user))[name] = value;
  }
  return size * count;
}

}  // namespace

void capture_responses_from_port(int port, bool capture) {
  std::lock_guard lock(capture_mutex);
  if (capture) {
    captured_ports.insert(port);
  } else if (auto found = captured_ports.find(port); found != captured_ports.end()) {
    captured_ports.erase(found);
  }
}

HttpResult http_request(const std::string& method, const std::string& url, const std::vector<std::string>& headers,
                        const std::string& body, long timeout_seconds, const std::string& ca_file) {
  HttpResult result;
  CURL* curl = curl_easy_init();
  curl_slist* list = nullptr;
  for (const auto& header : headers) list = curl_slist_append(list, header.c_str());
  list = curl_slist_append(list, "Expect:");  // no 100-continue round trip
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "HEAD") curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  if (!body.empty()) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &result.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, append_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &result.headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, timeout_seconds);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  // Every peer of the tests is on this machine: never a proxy from the environment (http_proxy, ...).
  curl_easy_setopt(curl, CURLOPT_PROXY, "");
  if (!ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file.c_str());
  const CURLcode code = curl_easy_perform(curl);
  if (code == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.status);
  } else {
    result.error = curl_easy_strerror(code);
  }
  capture_response(method, url, curl, result);
  curl_slist_free_all(list);
  curl_easy_cleanup(curl);
  return result;
}

}  // namespace p2p::test
