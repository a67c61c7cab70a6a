#pragma once
// Where the service may fetch from: the member's fhirBundleRequest and every Bundle.link "next" must
// stay under the source payer's FHIR endpoint (same scheme, host and port, path under the endpoint's
// path). This is the SSRF guard: a member-supplied URL can never make the service call anything else.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace p2p::fhir {

class SourceUrlError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Why an OIDC server definition's fhirEndpoint cannot be the source of an exchange: one rule for the
// API (which refuses the job) and the runner (which fails a job queued before the definition changed).
enum class SourceEndpointProblem { kNone, kMissing, kNotAbsoluteHttp, kPlainHttp };
SourceEndpointProblem source_endpoint_problem(const std::optional<std::string>& fhir_endpoint, bool allow_plain_http);

// A FHIR resource id: 1-64 of A-Z a-z 0-9 - . (FHIR R4 id datatype).
bool is_fhir_id(std::string_view id);
// A Patient id a URL can be built from: a FHIR id, and not "." or ".." (which the id pattern allows,
// and which a URL path would read as a step up).
bool is_patient_id(std::string_view id);

// The absolute URL to fetch first: `bundle_request` may be relative to the endpoint
// ("Patient/123/$everything") or absolute under it; empty means Patient/{patient_id}/$everything.
// Throws SourceUrlError saying why a request is refused.
std::string resolve_bundle_request(std::string_view fhir_endpoint, std::string_view bundle_request,
                                   std::string_view source_patient_id);

// The payer-mediated exchange's requests (HRex, PDex): Patient/$member-match, Patient?identifier=
// system|value (when the match gave no MemberId), and Patient/{id}/$everything with _since when given
// (a FHIR instant). Absolute, under the endpoint; `patient_id` must be a FHIR id (SourceUrlError).
std::string member_match_url(std::string_view fhir_endpoint);
std::string patient_by_identifier_url(std::string_view fhir_endpoint, std::string_view system, std::string_view value);
std::string everything_url(std::string_view fhir_endpoint, std::string_view patient_id,
                           const std::optional<std::string>& since);
// Bulk Data: Patient/{id}/$export?_type=A,B&_since=... (types each encoded, comma-separated).
std::string export_kickoff_url(std::string_view fhir_endpoint, std::string_view patient_id,
                               const std::vector<std::string>& types, const std::optional<std::string>& since);

// Checks that an absolute URL (e.g. a next link) is under the endpoint; returns it normalised.
std::string require_under_endpoint(std::string_view fhir_endpoint, std::string_view url);

// The same check against an endpoint read once (a job checks each page's next link: normalising the
// endpoint every time was a noticeable share of a page's cost). The constructor throws SourceUrlError
// as require_under_endpoint() does for an endpoint it cannot use.
class SourceEndpoint {
 public:
  explicit SourceEndpoint(std::string_view fhir_endpoint);
  std::string require_under(std::string_view url) const;

 private:
  std::string endpoint_;  // normalised, its path ending in '/'
};

// A FHIR server's base, recognised in any spelling of an absolute URL under it: scheme case, http or
// https, default port written or not, case of the host, extra slashes. For the references inside a
// source's pages (fhir/page_transform), which name a base more loosely than requests may.
class FhirBase {
 public:
  explicit FhirBase(std::string_view base);  // an empty or unparseable base recognises nothing

  // What follows the base ("Type/id...", with the query) when `url` is an absolute URL under it.
  std::optional<std::string> relative(std::string_view url) const;

 private:
  bool known_ = false;
  std::string host_;
  std::uint16_t port_ = 0;
  bool default_port_ = true;
  std::string path_;
};

}  // namespace p2p::fhir
