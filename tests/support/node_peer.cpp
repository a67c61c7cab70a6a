#include "node_peer.hpp"

#include <optional>
#include <utility>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <sstream>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

#include "p2p/util/crypto.hpp"

namespace p2p::test {
namespace {

// How long a peer may take to print its ready line (Medplum's FHIR server starts in seconds), and
// how many times a peer that stalls is started.
constexpr std::chrono::seconds kReadyTimeout{30};
constexpr int kStartAttempts = 3;

}  // namespace

NodePeer::NodePeer(const std::string& script, const std::vector<std::string>& args) {
  // A peer that stalls before its ready line (seen rarely on a loaded machine: node alive, nothing
  // printed after its imports) is stopped and started again; one that fails outright is not retried.
  for (int attempt = 1;; ++attempt) {
    const auto problem = launch(script, args);
    if (!problem) return;
    const std::string message = "test peer " + script + " did not start (" + problem->first + "): " + problem->second +
                                "\n" + log();
    if (!keep_log_) ::unlink(log_path_.c_str());
    if (!problem->first.starts_with("no ready line") || attempt == kStartAttempts) throw std::runtime_error(message);
    std::fprintf(stderr, "%s\nstarting it again (attempt %d of %d)\n", message.c_str(), attempt + 1, kStartAttempts);
  }
}

std::optional<std::pair<std::string, std::string>> NodePeer::launch(const std::string& script,
                                                                    const std::vector<std::string>& args) {
  const std::string path = std::string(P2P_SOURCE_DIR) + "/tests/peers/" + script;
  // scripts/test.sh sets P2P_TEST_LOG_DIR to keep the test run's logs (the peers see it too).
  const char* log_dir = std::getenv("P2P_TEST_LOG_DIR");
  keep_log_ = log_dir != nullptr && *log_dir != '\0';
  log_path_ = (keep_log_ ? std::string(log_dir) + "/peer-" + script.substr(0, script.find('.')) + "-"
                         : std::string("/tmp/p2p-peer-")) +
              util::random_hex(6) + ".log";
  std::vector<std::string> strings = {"node", path};
  strings.insert(strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {  // only async-signal-safe calls until exec: everything above was prepared before fork
    ::dup2(out[1], STDOUT_FILENO);
    const int log = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(log, STDERR_FILENO);
    ::close(out[0]);
    ::execvp("node", argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  // The first line on stdout is the ready line (the peer logs to stderr). A peer that neither prints
  // it nor exits within kReadyTimeout is stopped: the test fails with its log, not at ctest's timeout.
  const auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
  std::string line;
  std::string problem;
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      problem = "no ready line within " + std::to_string(kReadyTimeout.count()) + " s";
      break;
    }
    pollfd readable{out[0], POLLIN, 0};
    const int polled = ::poll(&readable, 1, static_cast<int>(left.count()));
    if (polled < 0 && errno != EINTR) {
      problem = std::string("poll failed: ") + std::strerror(errno);
      break;
    }
    if (polled <= 0) continue;  // interrupted, or the deadline: checked above
    char c = 0;
    const ssize_t got = ::read(out[0], &c, 1);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      problem = "its stdout closed before the ready line (it exited?)";
      break;
    }
    if (c == '\n') break;
    line.push_back(c);
  }
  ::close(out[0]);
  if (problem.empty()) ready_ = nlohmann::json::parse(line, nullptr, false);
  if (problem.empty() && ready_.is_object() && ready_.value("ready", false)) return std::nullopt;
  // The destructor does not run for a constructor that throws: stop the peer here.
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return std::make_pair(problem.empty() ? std::string("not a ready line") : problem, line);
}

NodePeer::~NodePeer() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) ::usleep(20000);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, WNOHANG);
  }
  if (!keep_log_) ::unlink(log_path_.c_str());
}

std::string NodePeer::log() const {
  std::ifstream input(log_path_);
  std::stringstream content;
  content << input.rdbuf();
  return content.str();
}

}  // namespace p2p::test
