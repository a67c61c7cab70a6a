#pragma once
// A FHIR server's REST endpoint as this service calls it: its base URL, the Authorization header value
// to send (when one is configured) and the FHIR JSON headers. The target FHIR server
// (exchange.fhirPersistenceUrl + exchange.fhirPersistenceAuthorization) is one, shared by the job
// runner (which writes the member's records and Tasks there) and the notifications (which keep the
// Subscription and read Tasks there), so both call it the same way.
#include <string>
#include <string_view>

#include "p2p/http/client.hpp"

namespace p2p::http {

class FhirEndpoint {
 public:
  FhirEndpoint(std::string_view base_url, std::string authorization);

  // A request for `path` under the base ("" = the base itself, as for a transaction), accepting FHIR
  // JSON; with a body, sent as FHIR JSON.
  ClientRequest request(std::string method, std::string_view path, std::string body = {}) const;

  const std::string& base() const { return base_; }

 private:
  std::string base_;           // without trailing slashes
  std::string authorization_;  // the Authorization header value, or empty
};

}  // namespace p2p::http
