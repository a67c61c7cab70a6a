#pragma once
// A real SMTP server for tests (tests/peers/smtp-server.mjs: smtp-server + mailparser) that records
// every message it accepts; its control API lists them.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "eventually.hpp"
#include "http_client.hpp"
#include "node_peer.hpp"

namespace p2p::test {

// An SMTP peer; `port` 0 picks a free one, a fixed port lets a test stop and restart it in place.
class SmtpPeer {
 public:
  explicit SmtpPeer(std::vector<std::string> args = {}, int port = 0) {
    args.insert(args.begin(), {"--port", std::to_string(port)});
    peer_ = std::make_unique<NodePeer>("smtp-server.mjs", args);
  }
  int port() const { return peer_->ready()["port"].get<int>(); }
  std::string control() const { return peer_->ready()["control"].get<std::string>(); }
  std::vector<nlohmann::json> messages() const {
    const auto result = http_get(control() + "/messages");
    const auto list = nlohmann::json::parse(result.body, nullptr, false);
    EXPECT_TRUE(list.is_array()) << result.status << " " << result.body;
    return list.is_array() ? list.get<std::vector<nlohmann::json>>() : std::vector<nlohmann::json>{};
  }
  std::vector<nlohmann::json> rejections() const {
    return nlohmann::json::parse(http_get(control() + "/rejections").body).get<std::vector<nlohmann::json>>();
  }
  void reset() const { EXPECT_EQ(http_request("POST", control() + "/__control/reset").status, 200); }
  // Waits until at least `count` messages arrived, then returns them all.
  std::vector<nlohmann::json> wait_for(std::size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(10)) const {
    std::vector<nlohmann::json> current;
    eventually([&] { return (current = messages()).size() >= count; }, timeout);
    return current;
  }
  std::string log() const { return peer_->log(); }

 private:
  std::unique_ptr<NodePeer> peer_;
};

}  // namespace p2p::test
