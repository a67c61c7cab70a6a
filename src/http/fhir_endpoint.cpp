#include "p2p/http/fhir_endpoint.hpp"

#include <utility>

#include "p2p/util/text.hpp"

namespace p2p::http {

FhirEndpoint::FhirEndpoint(std::string_view base_url, std::string authorization)
    : base_(util::without_trailing_slashes(std::string(base_url))), authorization_(std::move(authorization)) {}

ClientRequest FhirEndpoint::request(std::string method, std::string_view path, std::string body) const {
  ClientRequest request;
  request.method = std::move(method);
  request.url = path.empty() ? base_ : base_ + "/" + std::string(path);
  request.headers.emplace_back("Accept", "application/fhir+json");
  if (!body.empty()) request.headers.emplace_back("Content-Type", "application/fhir+json");
  if (!authorization_.empty()) request.headers.emplace_back("Authorization", authorization_);
  request.body = std::move(body);
  return request;
}

}  // namespace p2p::http
