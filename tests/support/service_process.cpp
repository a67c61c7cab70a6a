#include "service_process.hpp"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "http_client.hpp"
#include "p2p/util/crypto.hpp"

namespace p2p::test {
namespace {

// The first launch and up to 3 relaunches on a new port when another process took the probed one.
constexpr int kLaunchAttempts = 4;
// How long the constructor waits for a service on a port it picked to listen (or to stop) before
// leaving it to the test: the service binds its port at start-up, before it needs the database.
constexpr std::chrono::seconds kListenTimeout{30};

// src/main.cpp logs "listening on http://HOST:PORT (API docs at http://HOST:PORT/)" once it listens
// (info level: it reaches the log file within a second).
bool says_listening(const std::string& text, int port) {
  const std::string address_end = ":" + std::to_string(port) + " (API docs at ";
  for (auto at = text.find("listening on "); at != std::string::npos; at = text.find("listening on ", at + 1)) {
    const auto line_end = text.find('\n', at);
    const auto found = text.find(address_end, at);
    if (found != std::string::npos && (line_end == std::string::npos || found < line_end)) return true;
  }
  return false;
}

// Server::listen (src/http/server.cpp) fails with "cannot listen on HOST:PORT: <reason> (...)"; main
// logs it and exits with 1.
bool cannot_listen(const std::string& text, int port) {
  const auto at = text.find("cannot listen on ");
  return at != std::string::npos && text.find(":" + std::to_string(port) + ": ", at) != std::string::npos;
}

}  // namespace

// A port is handed to the service (or a peer's redirect URI) some time before it is bound. One from the
// ephemeral range (ip_local_port_range, where bind(0) would take it) can be taken meanwhile by any
// outgoing connection on the machine, e.g. a libpq connection of a test running beside this one; below
// that range only another explicit bind can take it. So the port is drawn at random below the range and
// checked by binding it; bind(0) is the fallback.
int ServiceProcess::free_port() {
  const auto bind_port = [](int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    int bound = -1;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
      socklen_t length = sizeof(address);
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
      bound = ntohs(address.sin_port);
    }
    ::close(fd);
    return bound;
  };
  int ephemeral_start = 32768;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral_start;
  const int low = std::max(1024, ephemeral_start - 12000);
  if (ephemeral_start - low >= 1000) {
    thread_local std::mt19937 random(std::random_device{}());  // (instances are started from several threads)
    std::uniform_int_distribution<int> pick(low, ephemeral_start - 1);
    for (int attempt = 0; attempt < 50; ++attempt) {
      const int port = bind_port(pick(random));
      if (port > 0) return port;
    }
  }
  return bind_port(0);
}

ServiceProcess::ServiceProcess(std::map<std::string, std::string> env, std::vector<std::string> args) {
  const bool choose_port = !env.contains("P2P_HTTP_PORT");
  if (!env.contains("P2P_SWAGGER_UI_DIR")) env["P2P_SWAGGER_UI_DIR"] = std::string(P2P_SOURCE_DIR) + "/tests/peers/node_modules/swagger-ui-dist";
  env["PATH"] = "/usr/bin:/bin";
  // scripts/test.sh sets P2P_TEST_LOG_DIR to keep every service log for scripts/check-secrets.sh.
  const char* log_dir = std::getenv("P2P_TEST_LOG_DIR");
  keep_log_ = log_dir != nullptr && *log_dir != '\0';
  if (const auto level = env.find("P2P_LOG_LEVEL"); level != env.end()) {
    static const std::set<std::string> kQuiet = {"warn", "warning", "err", "error", "critical", "off"};
    logs_listening_ = !kQuiet.contains(level->second);
  }
  for (int attempt = 1;; ++attempt) {
    if (choose_port) env["P2P_HTTP_PORT"] = std::to_string(free_port());
    launch(env, args);
    if (!choose_port || !logs_listening_ || attempt == kLaunchAttempts) break;
    if (await_listening(std::chrono::steady_clock::now() + kListenTimeout) || running() || !cannot_listen(log(), port_)) {
      break;
    }
    // Another process took the port between free_port() and the service's bind: this attempt has
    // exited; start again on a new port (its log stays with the others when they are kept).
    capture_responses_from_port(port_, false);
    if (!keep_log_) ::unlink(log_path_.c_str());
  }
}

void ServiceProcess::launch(const std::map<std::string, std::string>& env, const std::vector<std::string>& args) {
  port_ = std::stoi(env.at("P2P_HTTP_PORT"));
  pid_ = -1;
  exit_code_.reset();
  listening_ = false;
  log_path_ = (keep_log_ ? std::string(std::getenv("P2P_TEST_LOG_DIR")) + "/service-" : std::string("/tmp/p2p-e2e-")) +
              util::random_hex(6) + ".log";
  capture_responses_from_port(port_, true);

  std::vector<std::string> env_strings;
  for (const auto& [key, value] : env) env_strings.push_back(key + "=" + value);
  std::vector<char*> envp;
  for (auto& entry : env_strings) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = {P2P_BINARY};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);

  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    const int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
}

bool ServiceProcess::await_listening(std::chrono::steady_clock::time_point deadline) {
  while (!listening_) {
    const bool ended = !running();  // looked at before the log, which is complete once the process ended
    if (says_listening(log(), port_)) {
      listening_ = true;
      break;
    }
    if (ended || std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

ServiceProcess::~ServiceProcess() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait_exit(std::chrono::seconds(10));
  }
  capture_responses_from_port(port_, false);
  if (!keep_log_) ::unlink(log_path_.c_str());
}

std::string ServiceProcess::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

bool ServiceProcess::wait_for(const std::string& path, long status, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Until the service says it listens on port_, an answer there may come from another process that
  // holds the port (this service then fails with "cannot listen on ...").
  if (logs_listening_ && !await_listening(deadline)) return false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) return false;
    if (http_request("GET", url(path), {}, {}, 2).status == status) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

void ServiceProcess::send_signal(int signal_number) {
  if (running()) ::kill(pid_, signal_number);
}

std::optional<int> ServiceProcess::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!exit_code_) {
    int status = 0;
    const pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return exit_code_;
}

bool ServiceProcess::running() { return !wait_exit(std::chrono::milliseconds(0)).has_value(); }

bool ServiceProcess::wait_for_log(const std::string& text, std::chrono::seconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (log().find(text) == std::string::npos) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

std::string ServiceProcess::log() const {
  std::ifstream input(log_path_);
  std::stringstream content;
  content << input.rdbuf();
  return content.str();
}

}  // namespace p2p::test
