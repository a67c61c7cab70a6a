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
  // Starts the binary with `env` (P2P_HTTP_PORT is set to a free port unless given) and `args`. When
  // it picks the port, it waits until the service listens (or stops): a port probed free can be taken
  // by another process (a parallel test's service) before the service binds it, and then the service,
  // which exits with "cannot listen on ...", is started again on a new free port (up to 3 times).
  explicit ServiceProcess(std::map<std::string, std::string> env, std::vector<std::string> args = {});
  ~ServiceProcess();
  ServiceProcess(const ServiceProcess&) = delete;
  ServiceProcess& operator=(const ServiceProcess&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& path) const;

  // Polls GET path until it answers `status`; false on timeout or when the process exits. It first
  // waits for the service's own "listening on ...:<port>" log line, so the answer is from this process
  // and not from another one on the port (unless P2P_LOG_LEVEL hides info lines).
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
  // Forks and executes the binary with `env` (P2P_HTTP_PORT set), logging to a new file.
  void launch(const std::map<std::string, std::string>& env, const std::vector<std::string>& args);
  // Polls the log until the service says it listens on port_ (true), or until it has exited or the
  // deadline passed (false).
  bool await_listening(std::chrono::steady_clock::time_point deadline);

  pid_t pid_ = -1;
  int port_ = 0;
  std::optional<int> exit_code_;
  std::string log_path_;
  bool keep_log_ = false;  // P2P_TEST_LOG_DIR is set: the log stays for scripts/check-secrets.sh
  bool logs_listening_ = true;  // its log level shows the "listening on" info line
  bool listening_ = false;      // the log said so
};

}  // namespace p2p::test
