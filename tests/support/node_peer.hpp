#pragma once
// A real third-party test peer from tests/peers (the Medplum FHIR server, oidc-provider, ...) run with
// Node as a child process. It prints one JSON line when ready; stopped (SIGTERM) when destroyed.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <sys/types.h>

namespace p2p::test {

class NodePeer {
 public:
  // `script` is relative to tests/peers, e.g. "fhir-server.mjs".
  NodePeer(const std::string& script, const std::vector<std::string>& args);
  ~NodePeer();
  NodePeer(const NodePeer&) = delete;
  NodePeer& operator=(const NodePeer&) = delete;

  // The ready line, e.g. {"ready":true,"port":...,"base":...}
  const nlohmann::json& ready() const { return ready_; }
  std::string log() const;

 private:
  // Starts the peer and reads its ready line; the problem and what it printed when it did not start.
  std::optional<std::pair<std::string, std::string>> launch(const std::string& script, const std::vector<std::string>& args);

  pid_t pid_ = -1;
  nlohmann::json ready_;
  std::string log_path_;
  bool keep_log_ = false;  // P2P_TEST_LOG_DIR is set
};

}  // namespace p2p::test
