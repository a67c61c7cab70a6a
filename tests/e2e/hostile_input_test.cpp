// Clients that misbehave: oversized headers, slow-loris connections, garbage instead of HTTP. Each is
// bounded, and the service keeps serving everybody else.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "e2e_fixture.hpp"
#include "raw_socket.hpp"

using nlohmann::json;
using namespace p2p::test;
using namespace std::chrono_literals;

namespace {

class HostileInputTest : public ServiceTest {
 protected:
  void SetUp() override {
    config_path_ = "/tmp/" + database_.name() + ".json";
    std::ofstream(config_path_) << R"({"http": {"headerTimeoutSeconds": 1, "readTimeoutSeconds": 2}})";
    start({}, {"--config", config_path_});
  }
  void TearDown() override { std::filesystem::remove(config_path_); }
  std::string config_path_;
};

}  // namespace

TEST_F(HostileInputTest, OversizedHeadersAreRefusedWith431) {
  const auto result = http_request("GET", service_->url("/api/oidc_servers"),
                                   {kAuthHeader, "X-Padding: " + std::string(20000, 'a')});
  EXPECT_EQ(result.status, 431);
  EXPECT_EQ(result.header("content-type"), "application/problem+json");
  EXPECT_EQ(json::parse(result.body)["detail"], "the request headers are larger than the limit of 16384 bytes");
  EXPECT_EQ(get("/api/oidc_servers").status, 200);
}

TEST_F(HostileInputTest, SlowLorisConnectionsAreCutOffWhileOthersAreServed) {
  std::vector<int> slow;
  for (int i = 0; i < 20; ++i) {
    const int fd = connect_to(service_->port());
    ASSERT_GE(fd, 0);
    const std::string partial = "GET /api/oidc_servers HTTP/1.1\r\nHost: x\r\n";  // never finished
    ASSERT_EQ(::send(fd, partial.data(), partial.size(), 0), static_cast<ssize_t>(partial.size()));
    slow.push_back(fd);
  }
  // Everyone else is served meanwhile.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(get("/api/oidc_servers").status, 200);
  const auto started = std::chrono::steady_clock::now();
  for (int fd : slow) {
    const auto answer = read_until_closed(fd);
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 408") || answer.empty()) << answer;
    ::close(fd);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s) << "the header timeout (1 s) closes them";
  EXPECT_EQ(get("/healthz").status, 200);
}

TEST_F(HostileInputTest, GarbageIsABadRequestNotACrash) {
  for (const std::string& garbage : {std::string("NOT HTTP AT ALL\r\n\r\n"), std::string("GET / HTTP/9.9\r\n\r\n"),
                                    std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),
                                    std::string("GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n")}) {
    const int fd = connect_to(service_->port());
    ASSERT_GE(fd, 0);
    ::send(fd, garbage.data(), garbage.size(), 0);
    ::shutdown(fd, SHUT_WR);
    const auto answer = read_until_closed(fd);
    ::close(fd);
    EXPECT_TRUE(answer.empty() || answer.starts_with("HTTP/1.1 400")) << answer;
  }
  EXPECT_TRUE(service_->running());
  EXPECT_EQ(get("/api/oidc_servers").status, 200);
}
