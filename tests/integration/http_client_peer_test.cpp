// HttpClient against the real FHIR test peer (tests/peers/fhir-server.mjs, Medplum's FHIR router
// behind node:http): create a Patient, read it back, and keep one connection for both.
#include "p2p/http/client.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

namespace {

namespace asio = boost::asio;
using p2p::http::ClientOptions;
using p2p::http::ClientRequest;
using p2p::http::ClientResponse;
using p2p::http::HttpClient;
using nlohmann::json;
using namespace std::chrono_literals;

// `node tests/peers/fhir-server.mjs --port 0 --quiet` as a child process, stopped with SIGTERM.
class FhirPeer {
 public:
  FhirPeer() {
    const std::string script = std::string(P2P_SOURCE_DIR) + "/tests/peers/fhir-server.mjs";
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::close(out[0]);
      ::close(out[1]);
      ::execlp("node", "node", script.c_str(), "--port", "0", "--quiet", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(out[1]);
    stdout_ = out[0];
    const json ready = json::parse(read_line(30s));
    if (!ready.value("ready", false)) throw std::runtime_error("the FHIR peer did not report ready: " + ready.dump());
    base_ = ready.at("base").get<std::string>();
  }
  ~FhirPeer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (stdout_ >= 0) ::close(stdout_);
  }
  FhirPeer(const FhirPeer&) = delete;
  FhirPeer& operator=(const FhirPeer&) = delete;

  // e.g. "http://127.0.0.1:41234/fhir"
  const std::string& base() const { return base_; }

 private:
  std::string read_line(std::chrono::milliseconds timeout) {
    const auto give_up = std::chrono::steady_clock::now() + timeout;
    std::string line;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - std::chrono::steady_clock::now());
      pollfd fd{stdout_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&fd, 1, static_cast<int>(left.count())) <= 0) {
        throw std::runtime_error("node tests/peers/fhir-server.mjs printed no ready line within " +
                                 std::to_string(timeout.count()) + " ms (is node installed and `npm ci --prefix tests/peers` run?)");
      }
      char c = 0;
      const auto n = ::read(stdout_, &c, 1);
      if (n <= 0) throw std::runtime_error("node tests/peers/fhir-server.mjs exited before it was ready");
      if (c == '\n') return line;
      line += c;
    }
  }

  pid_t pid_ = -1;
  int stdout_ = -1;
  std::string base_;
};

ClientResponse fetch(asio::io_context& io, HttpClient& client, ClientRequest request) {
  auto future = asio::co_spawn(io, client.send(std::move(request)), asio::use_future);
  io.restart();
  while (future.wait_for(0s) != std::future_status::ready) {
    if (io.run_one_for(20s) == 0 && future.wait_for(0s) != std::future_status::ready) {
      throw std::runtime_error("the request did not finish");
    }
  }
  return future.get();
}

TEST(HttpClientFhirPeer, CreatesAPatientAndReadsItBackOnOneConnection) {
  FhirPeer peer;
  asio::io_context io;
  HttpClient client(io.get_executor(), ClientOptions{.connect_timeout_seconds = 5, .read_timeout_seconds = 10});
  const json patient = {{"resourceType", "Patient"},
                        {"name", json::array({{{"family", "Chalmers"}, {"given", json::array({"Peter"})}}})},
                        {"birthDate", "1974-12-25"}};

  const auto created = fetch(io, client,
                             {.method = "POST",
                              .url = peer.base() + "/Patient",
                              .headers = {{"Content-Type", "application/fhir+json"}, {"Accept", "application/fhir+json"}},
                              .body = patient.dump()});

  ASSERT_EQ(created.status, 201) << created.body;
  const json stored = json::parse(created.body);
  const std::string id = stored.at("id").get<std::string>();
  const std::string version = stored.at("meta").at("versionId").get<std::string>();
  EXPECT_EQ(created.header("Location"), peer.base() + "/Patient/" + id + "/_history/" + version);
  EXPECT_EQ(created.header("ETag"), "W/\"" + version + "\"");

  const auto read = fetch(io, client,
                          {.url = peer.base() + "/Patient/" + id, .headers = {{"Accept", "application/fhir+json"}}});

  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_TRUE(read.header("content-type").value_or("").starts_with("application/fhir+json"))
      << read.header("content-type").value_or("(none)");
  const json fetched = json::parse(read.body);
  EXPECT_EQ(fetched.at("resourceType"), "Patient");
  EXPECT_EQ(fetched.at("id"), id);
  EXPECT_EQ(fetched.at("name"), patient.at("name"));
  EXPECT_EQ(fetched.at("birthDate"), "1974-12-25");
  EXPECT_EQ(client.stats().requests, 2U);
  EXPECT_EQ(client.stats().connections_opened, 1U);  // node keeps the connection alive; the client reuses it
}

TEST(HttpClientFhirPeer, MissingResourceIsA404ResponseWithAnOperationOutcome) {
  FhirPeer peer;
  asio::io_context io;
  HttpClient client(io.get_executor(), ClientOptions{.connect_timeout_seconds = 5, .read_timeout_seconds = 10});

  const auto missing = fetch(io, client,
                             {.url = peer.base() + "/Patient/does-not-exist",
                              .headers = {{"Accept", "application/fhir+json"}}});

  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(json::parse(missing.body).at("resourceType"), "OperationOutcome");
}

}  // namespace
