#include <gtest/gtest.h>

#include "p2p/fhir/source_url.hpp"

using p2p::fhir::require_under_endpoint;
using p2p::fhir::resolve_bundle_request;
using p2p::fhir::SourceUrlError;

namespace {
const std::string kEndpoint = "https://sourcepayerA.com/fhir-endpoint";

std::string refusal(const std::string& request) {
  try {
    return "accepted " + resolve_bundle_request(kEndpoint, request, "m-1");
  } catch (const SourceUrlError& error) {
    return error.what();
  }
}
}  // namespace

TEST(SourceUrl, ResolvesRequestsUnderTheEndpoint) {
  EXPECT_EQ(resolve_bundle_request(kEndpoint, "", "m-1"), "https://sourcepayera.com/fhir-endpoint/Patient/m-1/$everything");
  EXPECT_THROW(resolve_bundle_request(kEndpoint, "", "a b/c"), SourceUrlError) << "not a FHIR id";
  EXPECT_EQ(resolve_bundle_request(kEndpoint + "/", "Patient/m-1/$everything?_count=50", "m-1"),
            "https://sourcepayera.com/fhir-endpoint/Patient/m-1/$everything?_count=50");
  EXPECT_EQ(resolve_bundle_request(kEndpoint, "Observation?patient=m-1&_count=100", "m-1"),
            "https://sourcepayera.com/fhir-endpoint/Observation?patient=m-1&_count=100");
  EXPECT_EQ(resolve_bundle_request(kEndpoint, "https://SOURCEPAYERA.com:443/fhir-endpoint/Patient/m-1", "m-1"),
            "https://sourcepayera.com:443/fhir-endpoint/Patient/m-1");
  EXPECT_EQ(resolve_bundle_request(kEndpoint, "/fhir-endpoint/Coverage?beneficiary=m-1", "m-1"),
            "https://sourcepayera.com/fhir-endpoint/Coverage?beneficiary=m-1");
}

TEST(SourceUrl, RefusesEverythingThatLeavesTheEndpoint) {
  const std::pair<std::string, std::string> cases[] = {
      {"https://evil.example.com/fhir-endpoint/Patient/1",
       "fhirBundleRequest is refused: it must stay on the FHIR endpoint's host and port (sourcepayera.com)"},
      {"https://sourcepayerA.com:8443/fhir-endpoint/Patient/1",
       "fhirBundleRequest is refused: it must stay on the FHIR endpoint's host and port (sourcepayera.com)"},
      {"http://sourcepayerA.com/fhir-endpoint/Patient/1",
       "fhirBundleRequest is refused: it must use the FHIR endpoint's scheme (https)"},
      {"https://user:pw@sourcepayerA.com/fhir-endpoint/Patient/1", "fhirBundleRequest is refused: it must not carry user or password"},
      {"//evil.example.com/x", "fhirBundleRequest must be a path relative to the FHIR endpoint or an absolute URL under it"},
      {"../admin", "fhirBundleRequest is refused: it must be a path under the FHIR endpoint https://sourcepayera.com/fhir-endpoint/"},
      {"Patient/../../admin", "fhirBundleRequest is refused: it must be a path under the FHIR endpoint https://sourcepayera.com/fhir-endpoint/"},
      {"/other/Patient/1", "fhirBundleRequest is refused: it must be a path under the FHIR endpoint https://sourcepayera.com/fhir-endpoint/"},
      {"/fhir-endpoint-evil/Patient/1", "fhirBundleRequest is refused: it must be a path under the FHIR endpoint https://sourcepayera.com/fhir-endpoint/"},
      {"Patient/%2e%2e/%2e%2e/admin", "fhirBundleRequest is refused: it must be a path under the FHIR endpoint https://sourcepayera.com/fhir-endpoint/"},
      {"Patient%2F..%2F..%2Fadmin", "fhirBundleRequest is refused: it must be a path under the FHIR endpoint https://sourcepayera.com/fhir-endpoint/"},
      {"Patient/x%5c..%5c..%5cadmin", "fhirBundleRequest is refused: its path must not contain encoded slashes, backslashes or dots"},
      {"file:///etc/passwd", "fhirBundleRequest must use http or https"},
      {"gopher://sourcepayerA.com/fhir-endpoint", "fhirBundleRequest must use http or https"},
      {"Patient/1#frag", "fhirBundleRequest is refused: it must not have a #fragment"},
      {"Patient/1 HTTP/1.1\r\nHost: evil", "fhirBundleRequest must not contain spaces or control characters"},
      {"?_count=5", "fhirBundleRequest is refused: it must be a path under the FHIR endpoint https://sourcepayera.com/fhir-endpoint/"},
  };
  for (const auto& [request, reason] : cases) EXPECT_EQ(refusal(request), reason) << request;
}

TEST(SourceUrl, NextLinksMustStayUnderTheEndpoint) {
  EXPECT_EQ(require_under_endpoint(kEndpoint, "https://sourcepayerA.com/fhir-endpoint?_getpages=abc&_offset=50"),
            "https://sourcepayera.com/fhir-endpoint?_getpages=abc&_offset=50")
      << "HAPI-style paging links point at the base itself";
  EXPECT_EQ(require_under_endpoint(kEndpoint, "https://sourcepayera.com/fhir-endpoint/Patient/1/$everything?_offset=50"),
            "https://sourcepayera.com/fhir-endpoint/Patient/1/$everything?_offset=50");
  EXPECT_THROW(require_under_endpoint(kEndpoint, "https://evil.example.com/fhir-endpoint?page=2"), SourceUrlError);
  EXPECT_THROW(require_under_endpoint(kEndpoint, "Patient?page=2"), SourceUrlError);
  EXPECT_THROW(require_under_endpoint(kEndpoint, "https://sourcepayerA.com/other?page=2"), SourceUrlError);
}

// A job reads its endpoint once and checks every page's next link against it: one SourceEndpoint,
// link after link, answers each as the rules say (nothing of one check stays for the next), root paths
// included (Boost.URL 1.81's "/./").
TEST(SourceUrl, AnEndpointReadOnceChecksEveryLinkAsTheRulesSay) {
  const p2p::fhir::SourceEndpoint endpoint(kEndpoint);
  const p2p::fhir::SourceEndpoint root("https://root.example");
  for (int round = 0; round < 2; ++round) {
    EXPECT_EQ(endpoint.require_under("https://sourcepayerA.com/fhir-endpoint?_getpages=abc&_offset=50"),
              "https://sourcepayera.com/fhir-endpoint?_getpages=abc&_offset=50");
    EXPECT_EQ(endpoint.require_under("https://sourcepayera.com/fhir-endpoint/Patient/1/$everything?_offset=50"),
              "https://sourcepayera.com/fhir-endpoint/Patient/1/$everything?_offset=50");
    EXPECT_THROW(endpoint.require_under("https://evil.example.com/fhir-endpoint?page=2"), SourceUrlError);
    // Boost.URL's normalisation decodes %2F before the dot segments go: what stays under the endpoint
    // is kept, what climbs out of it is refused.
    EXPECT_EQ(endpoint.require_under("https://sourcepayera.com/fhir-endpoint/a%2fb"), "https://sourcepayera.com/fhir-endpoint/a/b");
    EXPECT_THROW(endpoint.require_under("https://sourcepayera.com/fhir-endpoint/..%2f..%2fadmin"), SourceUrlError);
    EXPECT_THROW(endpoint.require_under("https://sourcepayera.com/fhir-endpoint/x%5c..%5cadmin"), SourceUrlError);
    EXPECT_THROW(endpoint.require_under("https://sourcepayera.com/fhir-endpoint/x#f"), SourceUrlError);
    EXPECT_THROW(endpoint.require_under("Patient?page=2"), SourceUrlError);
    EXPECT_EQ(root.require_under("https://root.example/Patient/1/$everything?page=2"),
              "https://root.example/Patient/1/$everything?page=2");
    EXPECT_EQ(root.require_under("https://ROOT.example:443/?page=2"), "https://root.example:443/?page=2");
    EXPECT_THROW(root.require_under("https://root.example:444/Patient/1"), SourceUrlError);
    EXPECT_THROW(root.require_under("http://root.example/Patient/1"), SourceUrlError);
  }
  EXPECT_THROW(p2p::fhir::SourceEndpoint("not a url"), SourceUrlError);
}

// Issue #9 (1): Boost.URL 1.81 turns a base path "/" into "/./", so an endpoint at a server's root
// refused every request ("must be a path under the FHIR endpoint https://host/./").
TEST(SourceUrl, AnEndpointAtTheServersRootWorks) {
  for (const std::string endpoint : {"https://root.example", "https://root.example/", "https://root.example:8443",
                                     "http://127.0.0.1:4000/"}) {
    const std::string origin = endpoint.back() == '/' ? endpoint.substr(0, endpoint.size() - 1) : endpoint;
    EXPECT_EQ(resolve_bundle_request(endpoint, "", "m-1"), origin + "/Patient/m-1/$everything") << endpoint;
    EXPECT_EQ(resolve_bundle_request(endpoint, "Observation?patient=m-1", "m-1"), origin + "/Observation?patient=m-1")
        << endpoint;
    EXPECT_EQ(resolve_bundle_request(endpoint, "/Coverage?beneficiary=m-1", "m-1"), origin + "/Coverage?beneficiary=m-1")
        << endpoint;
    EXPECT_EQ(resolve_bundle_request(endpoint, origin + "/Patient/m-1", "m-1"), origin + "/Patient/m-1") << endpoint;
    EXPECT_EQ(require_under_endpoint(endpoint, origin + "/Patient/m-1/$everything?_offset=40"),
              origin + "/Patient/m-1/$everything?_offset=40")
        << endpoint;
    EXPECT_EQ(require_under_endpoint(endpoint, origin + "/?_getpages=abc"), origin + "/?_getpages=abc") << endpoint;
    EXPECT_EQ(require_under_endpoint(endpoint, origin + "?_getpages=abc"), origin + "?_getpages=abc") << endpoint;
    // Still a guard: another host, scheme or port, user info and fragments are refused.
    EXPECT_THROW(require_under_endpoint(endpoint, "https://evil.example/Patient/1"), SourceUrlError) << endpoint;
    EXPECT_THROW(resolve_bundle_request(endpoint, "//evil.example/Patient/1", "m-1"), SourceUrlError) << endpoint;
    EXPECT_THROW(require_under_endpoint(endpoint, "https://user:pw@root.example/Patient/1"), SourceUrlError) << endpoint;
    EXPECT_THROW(require_under_endpoint(endpoint, origin + "/Patient/1#x"), SourceUrlError) << endpoint;
  }
  EXPECT_THROW(require_under_endpoint("https://root.example", "https://root.example:444/Patient/1"), SourceUrlError);
  EXPECT_THROW(require_under_endpoint("https://root.example", "http://root.example/Patient/1"), SourceUrlError);
}

TEST(SourceUrl, OneRuleSaysWhetherAnEndpointCanBeASource) {
  using p2p::fhir::SourceEndpointProblem;
  using p2p::fhir::source_endpoint_problem;
  EXPECT_EQ(source_endpoint_problem(std::nullopt, false), SourceEndpointProblem::kMissing);
  EXPECT_EQ(source_endpoint_problem("sourcepayer.example.com/fhir", false), SourceEndpointProblem::kNotAbsoluteHttp);
  EXPECT_EQ(source_endpoint_problem("ftp://sourcepayer.example.com/fhir", true), SourceEndpointProblem::kNotAbsoluteHttp);
  EXPECT_EQ(source_endpoint_problem("HTTP://sourcepayer.example.com/fhir", false), SourceEndpointProblem::kPlainHttp);
  EXPECT_EQ(source_endpoint_problem("http://127.0.0.1:8080/fhir", true), SourceEndpointProblem::kNone);
  EXPECT_EQ(source_endpoint_problem("https://sourcepayer.example.com", false), SourceEndpointProblem::kNone);
}

TEST(SourceUrl, ThePayerMediatedRequestsAreBuiltUnderTheEndpoint) {
  using p2p::fhir::everything_url;
  using p2p::fhir::member_match_url;
  using p2p::fhir::patient_by_identifier_url;
  for (const std::string endpoint : {"https://old.example/fhir", "https://old.example/fhir/", "https://old.example",
                                     "https://old.example/"}) {
    const std::string base = endpoint.ends_with("/") ? endpoint.substr(0, endpoint.size() - 1) : endpoint;
    EXPECT_EQ(member_match_url(endpoint), base + "/Patient/$member-match") << endpoint;
    EXPECT_EQ(everything_url(endpoint, "pat1", std::nullopt), base + "/Patient/pat1/$everything") << endpoint;
    EXPECT_EQ(everything_url(endpoint, "pat1", "2026-09-01T00:00:00+02:00"),
              base + "/Patient/pat1/$everything?_since=2026-09-01T00%3A00%3A00%2B02%3A00")
        << endpoint;
    // system|value, every reserved character encoded: a member identifier cannot add parameters.
    EXPECT_EQ(patient_by_identifier_url(endpoint, "http://old.example/id", "55678&_count=1"),
              base + "/Patient?identifier=http%3A%2F%2Fold.example%2Fid%7C55678%26_count%3D1")
        << endpoint;
    EXPECT_EQ(patient_by_identifier_url(endpoint, "", "55678"), base + "/Patient?identifier=55678") << endpoint;
    // FHIR's own escapes for a token's separators (a , would be OR, a | a new system).
    EXPECT_EQ(patient_by_identifier_url(endpoint, "urn:x", "a,b|c"),
              base + "/Patient?identifier=urn%3Ax%7Ca%5C%2Cb%5C%7Cc")
        << endpoint;
  }
  EXPECT_THROW(everything_url("https://old.example/fhir", "..", std::nullopt), SourceUrlError);
  EXPECT_THROW(everything_url("https://old.example/fhir", "a/b", std::nullopt), SourceUrlError);
}

TEST(SourceUrl, QueriesAreKeptAsTheServerEncodedThem) {
  // An encoded & or + in a query value is data: decoding it would split a parameter or make a space.
  const std::string next = "https://old.example/fhir/Patient?identifier=a%26b&_since=2026-09-01T00%3A00%3A00%2B02%3A00";
  EXPECT_EQ(require_under_endpoint("https://old.example/fhir", next), next);
  EXPECT_EQ(resolve_bundle_request("https://old.example/fhir", "Observation?code=a%2Cb%26c", "m-1"),
            "https://old.example/fhir/Observation?code=a%2Cb%26c");
}

TEST(SourceUrl, TheExportKickOffCarriesTheTypesAndSince) {
  EXPECT_EQ(p2p::fhir::export_kickoff_url("https://old.example/fhir", "pat1", {"Observation", "Patient"}, std::nullopt),
            "https://old.example/fhir/Patient/pat1/$export?_type=Observation,Patient");
  EXPECT_EQ(p2p::fhir::export_kickoff_url("https://old.example/", "pat1", {}, "2026-01-05T10:00:00Z"),
            "https://old.example/Patient/pat1/$export?_since=2026-01-05T10%3A00%3A00Z");
  EXPECT_THROW(p2p::fhir::export_kickoff_url("https://old.example/fhir", "..", {}, std::nullopt), SourceUrlError);
}
