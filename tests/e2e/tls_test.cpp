// Inbound TLS on the API port (http.tls.certFile / http.tls.keyFile): the binary, started with a
// self-signed certificate made by the openssl CLI for this run, answers over HTTPS only, refuses to
// start with a missing or wrong key, and bounds slow TLS handshakes like slow request headers.
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "e2e_fixture.hpp"
#include "raw_socket.hpp"
#include "p2p/util/crypto.hpp"

using nlohmann::json;
using namespace p2p::test;
using namespace std::chrono_literals;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream input(path);
  std::stringstream content;
  content << input.rdbuf();
  return content.str();
}

void run(const std::string& command) {
  ASSERT_EQ(std::system((command + " 2>/dev/null").c_str()), 0) << command;
}

// A throwaway PKI for one test suite: a self-signed certificate for 127.0.0.1 and its key, a second
// unrelated key, and a file that is not PEM at all.
class Pki {
 public:
  Pki() : dir_("/tmp/p2p-tls-" + p2p::util::random_hex(6)) {
    std::filesystem::create_directories(dir_);
    run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1"
        " -addext subjectAltName=IP:127.0.0.1 -keyout " + key() + " -out " + cert());
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out " + other_key());
    std::ofstream(garbage()) << "this is not a certificate\n";
    // The key is a secret like any other: scripts/check-secrets.sh looks for its PEM body in the service's
    // logs and responses.
    if (const char* log_dir = std::getenv("P2P_TEST_LOG_DIR"); log_dir != nullptr && *log_dir != '\0') {
      std::ofstream secrets(std::string(log_dir) + "/secrets-tls-" + std::to_string(::getpid()) + ".txt",
                            std::ios::app);
      std::istringstream lines(read_file(key()));
      for (std::string line; std::getline(lines, line);) {
        if (!line.starts_with("-----") && line.size() >= 32) secrets << line << "\n";
      }
    }
  }
  ~Pki() { std::filesystem::remove_all(dir_); }
  std::string cert() const { return dir_ + "/cert.pem"; }
  std::string key() const { return dir_ + "/key.pem"; }
  std::string other_key() const { return dir_ + "/other-key.pem"; }
  std::string garbage() const { return dir_ + "/garbage.pem"; }

 private:
  std::string dir_;
};

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { pki_ = new Pki(); }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }

  void SetUp() override {
    config_path_ = "/tmp/" + database_.name() + ".json";
    std::ofstream(config_path_) << R"({"http": {"headerTimeoutSeconds": 1, "readTimeoutSeconds": 2}})";
  }
  void TearDown() override { std::filesystem::remove(config_path_); }

  std::map<std::string, std::string> tls_env(const std::string& cert, const std::string& key) {
    auto env = service_env(database_);
    env["P2P_TLS_CERT_FILE"] = cert;
    env["P2P_TLS_KEY_FILE"] = key;
    return env;
  }

  void start() {
    service_ = std::make_unique<ServiceProcess>(tls_env(pki_->cert(), pki_->key()),
                                                std::vector<std::string>{"--config", config_path_});
    ASSERT_TRUE(eventually([&] { return !service_->running() || https("GET", "/readyz").status == 200; }, 30s) &&
                service_->running())
        << "service did not become ready over https:\n" << service_->log();
  }

  std::string https_url(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(service_->port()) + path;
  }

  // A request over HTTPS that trusts only the test certificate (curl verifies it and the host name).
  HttpResult https(const std::string& method, const std::string& path, std::vector<std::string> headers = {},
                   const std::string& body = {}) {
    return http_request(method, https_url(path), headers, body, 10, pki_->cert());
  }

  // Runs the binary with a TLS setting that must stop it; returns {exit code, log}.
  std::pair<std::optional<int>, std::string> start_failing(const std::string& cert, const std::string& key) {
    ServiceProcess failing(tls_env(cert, key), {"--config", config_path_});
    const auto code = failing.wait_exit(20s);
    return {code, failing.log()};
  }

  static Pki* pki_;
  TestDatabase database_;
  std::string config_path_;
  std::unique_ptr<ServiceProcess> service_;
};

Pki* TlsTest::pki_ = nullptr;

}  // namespace

TEST_F(TlsTest, HealthAndTheAuthenticatedApiAnswerOverHttps) {
  start();
  EXPECT_TRUE(service_->wait_for_log("listening on https://127.0.0.1:" + std::to_string(service_->port()) +
                                     " (API docs at https://127.0.0.1:" + std::to_string(service_->port()) + "/)"))
      << service_->log();

  const auto health = https("GET", "/healthz");
  EXPECT_EQ(health.status, 200) << health.error;

  const auto servers = https("GET", "/api/oidc_servers", {kAuthHeader});
  ASSERT_EQ(servers.status, 200) << servers.error;
  EXPECT_EQ(json::parse(servers.body), json::parse(R"({"servers":[]})"));
  EXPECT_EQ(servers.header("cache-control"), "no-store");
  EXPECT_FALSE(servers.header("x-request-id").empty());

  const auto anonymous = https("GET", "/api/oidc_servers");
  EXPECT_EQ(anonymous.status, 401);
  EXPECT_EQ(anonymous.header("content-type"), "application/problem+json");

  // Without the test certificate as CA, curl refuses the self-signed certificate: verification is real.
  const auto unverified = http_request("GET", https_url("/healthz"));
  EXPECT_EQ(unverified.status, 0);
  EXPECT_FALSE(unverified.error.empty());
}

TEST_F(TlsTest, PlainHttpToTheTlsPortGetsNoHttpAnswer) {
  start();
  const auto plain = http_request("GET", service_->url("/healthz"), {}, {}, 5);
  EXPECT_EQ(plain.status, 0) << plain.body;

  const int fd = connect_to(service_->port());
  ASSERT_GE(fd, 0);
  const std::string request = "GET /api/oidc_servers HTTP/1.1\r\nHost: x\r\n" + kAuthHeader + "\r\n\r\n";
  ::send(fd, request.data(), request.size(), 0);
  const auto answer = read_until_closed(fd);
  ::close(fd);
  EXPECT_EQ(answer.find("HTTP/"), std::string::npos) << "a plain-text answer leaked from the TLS port: " << answer;
  EXPECT_EQ(answer.find("servers"), std::string::npos);

  EXPECT_TRUE(service_->running());
  EXPECT_EQ(https("GET", "/api/oidc_servers", {kAuthHeader}).status, 200);
}

TEST_F(TlsTest, SlowHandshakesAreCutOffWhileOthersAreServed) {
  start();
  std::vector<int> slow;
  for (int i = 0; i < 20; ++i) {
    const int fd = connect_to(service_->port());
    ASSERT_GE(fd, 0);
    if (i % 2 == 1) {
      // The first bytes of a TLS record header, then nothing.
      const std::string partial("\x16\x03\x01\x02\x00", 5);
      ASSERT_EQ(::send(fd, partial.data(), partial.size(), 0), static_cast<ssize_t>(partial.size()));
    }
    slow.push_back(fd);
  }
  for (int i = 0; i < 10; ++i) EXPECT_EQ(https("GET", "/api/oidc_servers", {kAuthHeader}).status, 200);
  const auto started = std::chrono::steady_clock::now();
  for (int fd : slow) {
    EXPECT_EQ(read_until_closed(fd), "") << "a stalled handshake gets no answer, only the close";
    ::close(fd);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s) << "the header timeout (1 s) bounds the handshake";
  EXPECT_EQ(https("GET", "/healthz").status, 200);
}

TEST_F(TlsTest, AnOversizedBodyIsRefusedWith413OverTls) {
  start();
  const auto result = https("POST", "/api/oidc_servers/1/batch_job", {kAuthHeader, "Content-Type: application/json"},
                            std::string(2 * 1024 * 1024, ' '));
  EXPECT_EQ(result.status, 413) << result.error;
  EXPECT_EQ(json::parse(result.body)["detail"], "the request body is larger than the limit of 1048576 bytes");
  EXPECT_EQ(https("GET", "/healthz").status, 200);
}

TEST_F(TlsTest, ShutsDownGracefully) {
  start();
  EXPECT_EQ(https("GET", "/healthz").status, 200);
  service_->send_signal(SIGTERM);
  EXPECT_EQ(service_->wait_exit(10s), 0) << service_->log();
  EXPECT_NE(service_->log().find("p2p-exchange stopped"), std::string::npos);
}

TEST_F(TlsTest, AMissingKeyFileStopsStartUpNamingIt) {
  const auto [code, log] = start_failing(pki_->cert(), "/nonexistent/p2p-tls/key.pem");
  EXPECT_EQ(code, 2);
  EXPECT_NE(log.find("http.tls.keyFile (from P2P_TLS_KEY_FILE): cannot be read: \"/nonexistent/p2p-tls/key.pem\" "
                     "must be a readable PEM file holding the certificate's unencrypted private key"),
            std::string::npos)
      << log;
}

TEST_F(TlsTest, AKeyOfAnotherCertificateStopsStartUp) {
  const auto [code, log] = start_failing(pki_->cert(), pki_->other_key());
  EXPECT_EQ(code, 1);
  EXPECT_NE(log.find("http.tls.keyFile \"" + pki_->other_key() + "\" does not match the certificate in "
                     "http.tls.certFile \"" + pki_->cert() + "\": give the private key of that certificate"),
            std::string::npos)
      << log;
}

TEST_F(TlsTest, AFileThatIsNotACertificateStopsStartUp) {
  const auto [code, log] = start_failing(pki_->garbage(), pki_->key());
  EXPECT_EQ(code, 1);
  EXPECT_NE(log.find("http.tls.certFile \"" + pki_->garbage() + "\" is not a usable certificate: "), std::string::npos)
      << log;
  EXPECT_NE(log.find("(it must be PEM: the server certificate first, then any intermediate CA certificates)"),
            std::string::npos)
      << log;
}
