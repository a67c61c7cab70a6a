#pragma once
// The built p2p-exchange binary, started as a user would: its own process, a clean environment with
// the given P2P_* variables, stdout and stderr captured to a log file the test can read (kept in
// $P2P_TEST_LOG_DIR when that is set, deleted otherwise).
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace p2p::test {

class ServiceProcess {
 public:
  // Starts the binary with `env` (P2P_HTTP_PORT is set to a free port unless given) and `args`.
  explicit ServiceProcess(std::map<std::string, std::string> env, std::vector<std::string> args = {});
  ~ServiceProcess();
  ServiceProcess(const ServiceProcess&) = delete;
  ServiceProcess& operator=(const ServiceProcess&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& path) const;

  // Polls GET path until it answers `status`; false on timeout or when the process exits.
  bool wait_for(const std::string& path, long status, std::chrono::seconds timeout = std::chrono::seconds(30));
  void send_signal(int signal_number);
  // The exit code once the process has ended (128+N for a signal), or nullopt after the timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  bool running();
  std::string log() const;
  // Polls the log until it contains `text` (the access log line is written just after the response).
  bool wait_for_log(const std::string& text, std::chrono::seconds timeout = std::chrono::seconds(5)) const;
  const std::string& log_path() const { return log_path_; }

  // A free TCP port on 127.0.0.1.
  static int free_port();

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::optional<int> exit_code_;
  std::string log_path_;
  bool keep_log_ = false;  // P2P_TEST_LOG_DIR is set: the log stays for scripts/check-secrets.sh
};

}  // namespace p2p::test
