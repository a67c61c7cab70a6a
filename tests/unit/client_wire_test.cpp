// The HTTP client's pure pieces (src/http/client_wire.hpp): where a request goes, read from its URL,
// and the request written for the wire. The client's behaviour on a real connection is in
// http_client_test.cpp.
#include "http/client_wire.hpp"

#include <string>

#include <gtest/gtest.h>

namespace p2p::http {
namespace {

using client_wire::make_request;
using client_wire::parse_target;

ClientRequest get(std::string url) {
  ClientRequest request;
  request.url = std::move(url);
  return request;
}

FetchError::Kind kind_of_failure(const ClientRequest& request) {
  try {
    (void)parse_target(request);
  } catch (const FetchError& error) {
    return error.kind();
  }
  ADD_FAILURE() << request.url << " was accepted";
  return FetchError::Kind::kConnect;
}

TEST(ClientWire, AnEmptyPathOrARootPathIsSentAsOneSlash) {
  EXPECT_EQ(parse_target(get("http://payer.example")).target, "/");
  EXPECT_EQ(parse_target(get("http://payer.example/")).target, "/");
  EXPECT_EQ(parse_target(get("http://payer.example?x=1")).target, "/?x=1");
  EXPECT_EQ(parse_target(get("http://payer.example")).where, "GET http://payer.example/");
}

TEST(ClientWire, TheTargetKeepsPathAndQueryAsEncodedAndDropsTheFragment) {
  const auto target =
      parse_target(get("https://payer.example/fhir/Patient/m%201/%24everything?_count=100&page=2#frag"));
  EXPECT_TRUE(target.tls);
  EXPECT_EQ(target.target, "/fhir/Patient/m%201/%24everything?_count=100&page=2");
  // What errors name: the method, origin and path, never the query (it may carry a patient id).
  EXPECT_EQ(target.where, "GET https://payer.example/fhir/Patient/m%201/%24everything");
}

TEST(ClientWire, TheHostHeaderNamesThePortOnlyWhenItIsNotTheSchemesDefault) {
  auto target = parse_target(get("https://payer.example:443/fhir"));
  EXPECT_EQ(target.port, "443");
  EXPECT_EQ(target.host_header, "payer.example");
  EXPECT_EQ(target.origin, "https://payer.example:443");
  target = parse_target(get("http://payer.example/fhir"));
  EXPECT_EQ(target.port, "80");
  EXPECT_EQ(target.host_header, "payer.example");
  target = parse_target(get("http://payer.example:8080/fhir"));
  EXPECT_EQ(target.host_header, "payer.example:8080");
  EXPECT_EQ(target.endpoint, "payer.example:8080");
  EXPECT_EQ(target.origin, "http://payer.example:8080");
}

TEST(ClientWire, AnIpv6HostIsConnectedToWithoutBracketsAndNamedWithThem) {
  const auto target = parse_target(get("http://[::1]:8080/fhir"));
  EXPECT_EQ(target.host, "::1");
  EXPECT_TRUE(client_wire::is_ip_address(target.host));
  EXPECT_EQ(target.host_header, "[::1]:8080");
  EXPECT_EQ(target.origin, "http://[::1]:8080");
  EXPECT_FALSE(client_wire::is_ip_address("payer.example"));
  EXPECT_TRUE(client_wire::is_ip_address("127.0.0.1"));
}

TEST(ClientWire, UrlsTheClientCannotOrMustNotUseAreRefusedAsProtocolErrors) {
  using Kind = FetchError::Kind;
  EXPECT_EQ(kind_of_failure(get("payer.example/fhir")), Kind::kProtocol);          // not absolute
  EXPECT_EQ(kind_of_failure(get("ftp://payer.example/fhir")), Kind::kProtocol);    // not http(s)
  EXPECT_EQ(kind_of_failure(get("http:///fhir")), Kind::kProtocol);                // no host
  EXPECT_EQ(kind_of_failure(get("http://payer.example:0/fhir")), Kind::kProtocol);  // port 0
  EXPECT_EQ(kind_of_failure(get("https://user:secret@payer.example/fhir")), Kind::kProtocol);
  try {
    (void)parse_target(get("https://user:secret@payer.example/fhir"));
    ADD_FAILURE() << "a URL with credentials was accepted";
  } catch (const FetchError& error) {
    EXPECT_EQ(std::string(error.what()).find("secret"), std::string::npos) << error.what();  // not repeated
  }
}

TEST(ClientWire, TheRequestCarriesTheDefaultsTheCallersHeadersAndItsOwnFraming) {
  ClientRequest request = get("http://payer.example:8080/fhir");
  request.method = "POST";
  request.body = R"({"resourceType":"Bundle"})";
  request.headers = {{"Content-Type", "application/fhir+json"},
                     {"User-Agent", "payer-portal/2"},
                     {"Content-Length", "1"},  // the client's own framing wins
                     {"Transfer-Encoding", "chunked"}};
  ClientOptions options;
  options.user_agent = "p2p-exchange-test";
  const auto target = parse_target(request);
  const auto wire = make_request(request, target, options);
  EXPECT_EQ(wire.method_string(), "POST");
  EXPECT_EQ(wire.target(), "/fhir");
  EXPECT_EQ(wire[boost::beast::http::field::host], "payer.example:8080");
  EXPECT_EQ(wire[boost::beast::http::field::user_agent], "payer-portal/2");
  EXPECT_EQ(wire[boost::beast::http::field::accept_encoding], "gzip");
  EXPECT_EQ(wire[boost::beast::http::field::content_type], "application/fhir+json");
  EXPECT_EQ(wire[boost::beast::http::field::content_length], std::to_string(request.body.size()));
  EXPECT_EQ(wire.count(boost::beast::http::field::transfer_encoding), 0U);
  // The body is a view of the request's, not a copy.
  EXPECT_EQ(wire.body().data(), request.body.data());
  EXPECT_EQ(wire.body().size(), request.body.size());
  // Without the caller's: the configured User-Agent.
  const ClientRequest plain = get("http://payer.example/fhir/metadata");
  const auto defaults = make_request(plain, parse_target(plain), options);
  EXPECT_EQ(defaults[boost::beast::http::field::user_agent], "p2p-exchange-test");
  EXPECT_EQ(defaults[boost::beast::http::field::host], "payer.example");
  EXPECT_EQ(defaults.method_string(), "GET");
}

TEST(ClientWire, AMethodOrHeaderThatWouldSplitTheRequestIsRefused) {
  const ClientOptions options;
  ClientRequest request = get("http://payer.example/fhir");
  request.method = "GET /admin HTTP/1.1\r\nX:";
  EXPECT_THROW((void)make_request(request, parse_target(request), options), FetchError);
  request.method = "GET";
  request.headers = {{"X-Bad Name", "1"}};
  EXPECT_THROW((void)make_request(request, parse_target(request), options), FetchError);
  request.headers = {{"Authorization", "Bearer abc\r\nX-Injected: 1"}};
  try {
    (void)make_request(request, parse_target(request), options);
    ADD_FAILURE() << "a header value with a line break was sent";
  } catch (const FetchError& error) {
    EXPECT_EQ(error.kind(), FetchError::Kind::kProtocol);
    EXPECT_EQ(std::string(error.what()).find("abc"), std::string::npos) << "the value may be a credential";
  }
  request.headers = {{"X-Trace", std::string("a\0b", 3)}};
  EXPECT_THROW((void)make_request(request, parse_target(request), options), FetchError);
  // A message HTTP does not allow (TRACE with a body) is refused before it is sent, naming where.
  request.headers.clear();
  request.method = "TRACE";
  request.body = "x";
  try {
    (void)make_request(request, parse_target(request), options);
    ADD_FAILURE() << "TRACE with a body was accepted";
  } catch (const FetchError& error) {
    EXPECT_EQ(error.kind(), FetchError::Kind::kProtocol);
    EXPECT_NE(std::string(error.what()).find("TRACE http://payer.example/fhir"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace p2p::http
