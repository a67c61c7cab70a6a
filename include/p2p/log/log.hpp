#pragma once
// Logging: one spdlog logger for the process, every line in UTC with the request id (or "-") of the
// work it belongs to. Secrets never reach these functions; callers log redacted values only.
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace p2p::log {

// Configures the default logger (stderr, UTC timestamps, request ids). Lines below warning level are
// written in batches at least every second; call shutdown() before exiting. Throws on an unknown level.
void init(std::string_view level);

// Writes what is buffered and stops the periodic flusher.
void shutdown();

// While alive, log lines written on this thread carry `request_id`.
class RequestIdScope {
 public:
  explicit RequestIdScope(std::string_view request_id);
  ~RequestIdScope();
  RequestIdScope(const RequestIdScope&) = delete;
  RequestIdScope& operator=(const RequestIdScope&) = delete;

 private:
  std::string previous_;
};

std::string_view current_request_id();

}  // namespace p2p::log
