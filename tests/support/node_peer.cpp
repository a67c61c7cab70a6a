#include "node_peer.hpp"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

#include "p2p/util/crypto.hpp"

namespace p2p::test {

NodePeer::NodePeer(const std::string& script, const std::vector<std::string>& args) {
  const std::string path = std::string(P2P_SOURCE_DIR) + "/tests/peers/" + script;
  // scripts/test.sh sets P2P_TEST_LOG_DIR to keep the test run's logs (the peers see it too).
  const char* log_dir = std::getenv("P2P_TEST_LOG_DIR");
  keep_log_ = log_dir != nullptr && *log_dir != '\0';
  log_path_ = (keep_log_ ? std::string(log_dir) + "/peer-" + script.substr(0, script.find('.')) + "-"
                         : std::string("/tmp/p2p-peer-")) +
              util::random_hex(6) + ".log";
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    const int log = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(log, STDERR_FILENO);
    ::close(out[0]);
    std::vector<std::string> strings = {"node", path};
    strings.insert(strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    ::execvp("node", argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  // The first line on stdout is the ready line (the peer logs to stderr).
  std::string line;
  char c = 0;
  while (::read(out[0], &c, 1) == 1 && c != '\n') line.push_back(c);
  ::close(out[0]);
  ready_ = nlohmann::json::parse(line, nullptr, false);
  if (!ready_.is_object() || !ready_.value("ready", false)) {
    throw std::runtime_error("test peer " + script + " did not start: " + line + "\n" + log());
  }
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
