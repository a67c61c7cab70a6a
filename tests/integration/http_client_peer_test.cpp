// HttpClient against the real FHIR test peer (tests/peers/fhir-server.mjs, Medplum's FHIR router
// behind node:http): create a Patient, read it back, and keep one connection for both.
#include "p2p/http/client.hpp"

#include "node_peer.hpp"


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

// The FHIR test peer (node tests/peers/fhir-server.mjs), stopped when the test ends.
class FhirPeer {
 public:
  FhirPeer() : peer_("fhir-server.mjs", {"--port", "0", "--quiet"}), base_(peer_.ready().at("base").get<std::string>()) {}
  const std::string& base() const { return base_; }

 private:
  p2p::test::NodePeer peer_;
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
