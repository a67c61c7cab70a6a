// The body of POST /api/oidc_servers/{server_id}/batch_job (api::parse_batch_job_body) and the SSRF
// guard that the route applies to it (fhir::resolve_bundle_request), plus the next-link guard
// (fhir::require_under_endpoint) on the same member-supplied string. http::ApiError and
// fhir::SourceUrlError are the expected failures; anything else escaping, or a URL accepted that is
// not under the endpoint, is a bug. The payer-mediated form (sourcePayer.memberMatch) must come out
// as HRex Parameters with four parameters and local references to the member, or be refused with 400.
// The same input is read as the member connect flow's body (api::parse_authorization_body): a returnUrl
// that oauth::return_url_allowed accepts must be on an allowed origin, under its path, and stay so once
// the callback adds its query parameters (no open redirect).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <nlohmann/json.hpp>

#include "api/batch_job_body.hpp"
#include "fuzz_check.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/http/problem.hpp"
#include "p2p/oauth/authorization_request.hpp"
#include "p2p/util/url_rules.hpp"

namespace {

using namespace p2p;

struct Endpoint {
  std::string_view url;          // as an admin configures it
  std::string_view scheme;       // what every accepted URL must have
  std::string_view host;
  std::uint16_t port;
  std::string_view base_path;    // accepted paths are under this (or, for next links, this itself)
};

constexpr Endpoint kEndpoints[] = {
    {"https://fhir.source.example/r4", "https", "fhir.source.example", 443, "/r4/"},
    {"http://127.0.0.1:8080/fhir/", "http", "127.0.0.1", 8080, "/fhir/"},
    {"https://FHIR.Source.example:8443", "https", "fhir.source.example", 8443, "/"},
};

std::string lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

// A URL the guard accepted must stay on the endpoint's scheme, host, port and path (a next link may
// also be the endpoint itself, e.g. HAPI's {base}?_getpages=...).
void check_accepted(const Endpoint& endpoint, const std::string& url, bool next_link) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  fuzz::check(parsed.has_value(), "accepted URL does not parse", url);
  fuzz::check(parsed->scheme() == endpoint.scheme, "accepted URL changes scheme", url);
  fuzz::check(!parsed->has_userinfo(), "accepted URL has user-info", url);
  fuzz::check(lower(parsed->encoded_host()) == endpoint.host, "accepted URL leaves the host", url);
  const std::uint16_t port = parsed->has_port() ? parsed->port_number() : (endpoint.scheme == "https" ? 443 : 80);
  fuzz::check(port == endpoint.port, "accepted URL changes port", url);
  const std::string_view path = parsed->encoded_path();
  const bool under = path.starts_with(endpoint.base_path) && path.size() > endpoint.base_path.size();
  const bool itself = path == endpoint.base_path || path == endpoint.base_path.substr(0, endpoint.base_path.size() - 1);
  fuzz::check(under || (next_link && itself), "accepted URL leaves the endpoint's path", url);
  fuzz::check(!util::check_absolute_http_url(url).has_value(), "accepted URL fails check_absolute_http_url", url);
  // Accepting is stable: the normalised URL is accepted again, unchanged.
  const auto again = fhir::require_under_endpoint(endpoint.url, url);
  fuzz::check(again == url, "require_under_endpoint is not idempotent", url);
}

void guard(const Endpoint& endpoint, const api::BatchJobBody& body) {
  try {
    const auto url = fhir::resolve_bundle_request(endpoint.url, body.bundle_request.value_or(""), body.source_patient_id);
    check_accepted(endpoint, url, false);
  } catch (const fhir::SourceUrlError&) {
  }
  if (body.bundle_request) {
    try {
      check_accepted(endpoint, fhir::require_under_endpoint(endpoint.url, *body.bundle_request), true);
    } catch (const fhir::SourceUrlError&) {
    }
    (void)util::check_absolute_http_url(*body.bundle_request);
    (void)util::redact_url_password(*body.bundle_request);
  }
}

// An allowed return URL goes back to the portal's origin, under the allowed path, whatever the
// callback appends.
void check_return_url(const std::string& url) {
  static const std::vector<std::string> allowed = {"https://portal.example/p2p/", "http://127.0.0.1:8090/done"};
  if (!oauth::return_url_allowed(url, allowed)) return;
  for (const std::string& sent : {url, oauth::with_query_parameters(url, {{"authorizationId", "a&b=c#d"}, {"error", "x"}})}) {
    auto parsed = boost::urls::parse_absolute_uri(sent);
    fuzz::check(parsed.has_value(), "an allowed return URL does not parse", sent);
    fuzz::check(!parsed->has_userinfo() && !parsed->has_fragment(), "an allowed return URL has user-info or a fragment", sent);
    const std::string host = lower(parsed->encoded_host());
    const std::string scheme = lower(parsed->scheme());
    const std::string_view path = parsed->encoded_path();
    const bool portal = scheme == "https" && host == "portal.example" &&
                        (!parsed->has_port() || parsed->port_number() == 443) && path.starts_with("/p2p/");
    const bool local = scheme == "http" && host == "127.0.0.1" && parsed->has_port() && parsed->port_number() == 8090 &&
                       (path == "/done" || path.starts_with("/done/"));
    fuzz::check(portal || local, "an allowed return URL leaves the allowed origins and paths", sent);
    fuzz::check(path.find("/../") == std::string_view::npos && !path.ends_with("/.."), "an allowed return URL climbs up", sent);
  }
}

void check_authorization_body(std::string_view text) {
  try {
    const auto body = api::parse_authorization_body(text);
    fuzz::check(fhir::is_fhir_id(body.target_patient_id), "accepted a target patientId that is not a FHIR id",
                body.target_patient_id);
    fuzz::check(!body.return_url.empty(), "accepted an empty returnUrl");
    check_return_url(body.return_url);
  } catch (const http::ApiError& error) {
    fuzz::check(error.status() == 400, "parse_authorization_body failed with a status other than 400", error.detail());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_authorization_body(text);
  api::BatchJobBody body;
  try {
    body = api::parse_batch_job_body(text);
  } catch (const http::ApiError& error) {
    fuzz::check(error.status() == 400, "parse_batch_job_body failed with a status other than 400", error.detail());
    return 0;
  }
  fuzz::check(fhir::is_fhir_id(body.target_patient_id), "accepted a target patientId that is not a FHIR id",
              body.target_patient_id);
  if (body.member_match_parameters) {
    const auto parameters = nlohmann::json::parse(*body.member_match_parameters, nullptr, false);
    fuzz::check(parameters.is_object() && parameters.value("resourceType", "") == "Parameters" &&
                    parameters["parameter"].is_array() && parameters["parameter"].size() == 4,
                "the member-match Parameters are not four parameters", *body.member_match_parameters);
    for (const auto& item : parameters["parameter"]) {
      const auto& resource = item["resource"];
      if (resource["resourceType"] == "Coverage") {
        fuzz::check(resource["beneficiary"]["reference"] == "Patient/member", "a coverage's beneficiary is not local",
                    *body.member_match_parameters);
      }
      if (resource["resourceType"] == "Consent") {
        fuzz::check(resource["patient"]["reference"] == "Patient/member", "the consent's patient is not local",
                    *body.member_match_parameters);
      }
    }
    fuzz::check(body.access_token.empty() && body.source_patient_id.empty() && !body.bundle_request,
                "the payer-mediated form kept member-mediated fields");
    return 0;
  }
  fuzz::check(!body.repeat_every_days, "the member-mediated form accepted repeatEveryDays");
  fuzz::check(!body.access_token.empty(), "accepted an empty oidcToken");
  fuzz::check(!body.refresh_token || !body.refresh_token->empty(), "kept an empty oidcRefreshToken");
  fuzz::check(fhir::is_fhir_id(body.source_patient_id), "accepted a source patientId that is not a FHIR id",
              body.source_patient_id);
  fuzz::check(fhir::is_fhir_id(body.target_patient_id), "accepted a target patientId that is not a FHIR id",
              body.target_patient_id);
  for (const auto& endpoint : kEndpoints) guard(endpoint, body);
  return 0;
}
