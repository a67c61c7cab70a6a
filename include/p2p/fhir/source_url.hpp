#pragma once
// Where the service may fetch from: the member's fhirBundleRequest and every Bundle.link "next" must
// stay under the source payer's FHIR endpoint (same scheme, host and port, path under the endpoint's
// path). This is the SSRF guard: a member-supplied URL can never make the service call anything else.
#include <stdexcept>
#include <string>
#include <string_view>

namespace p2p::fhir {

class SourceUrlError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A FHIR resource id: 1-64 of A-Z a-z 0-9 - . (FHIR R4 id datatype).
bool is_fhir_id(std::string_view id);

// The absolute URL to fetch first: `bundle_request` may be relative to the endpoint
// ("Patient/123/$everything") or absolute under it; empty means Patient/{patient_id}/$everything.
// Throws SourceUrlError saying why a request is refused.
std::string resolve_bundle_request(std::string_view fhir_endpoint, std::string_view bundle_request,
                                   std::string_view source_patient_id);

// Checks that an absolute URL (e.g. a next link) is under the endpoint; returns it normalised.
std::string require_under_endpoint(std::string_view fhir_endpoint, std::string_view url);

}  // namespace p2p::fhir
