#include "p2p/fhir/source_url.hpp"

#include <algorithm>
#include <cctype>

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <boost/url/url_view.hpp>

#include "p2p/util/text.hpp"
#include "p2p/util/url_rules.hpp"

namespace p2p::fhir {
namespace {

namespace urls = boost::urls;

// Normalises scheme, host and path for the checks, but leaves the query as the server wrote it:
// Boost.URL's query normalisation decodes every character a query may hold unencoded, so
// `identifier=a%26b` would become `identifier=a&b` (two parameters) and `_since=...%2B02:00` a `+`
// that servers read as a space.
void normalize_keeping_query(urls::url& url) {
  url.normalize_scheme();
  url.normalize_authority();
  url.normalize_path();
  url.normalize_fragment();
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::uint16_t effective_port(const urls::url_view& url) {
  if (url.has_port()) return url.port_number();
  return url.scheme_id() == urls::scheme::https ? 443 : 80;
}

bool default_port(const urls::url_view& url) {
  return effective_port(url) == (url.scheme_id() == urls::scheme::https ? 443 : 80);
}

urls::url parse_endpoint(std::string_view fhir_endpoint) {
  auto parsed = urls::parse_absolute_uri(fhir_endpoint);
  if (!parsed) throw SourceUrlError("the OIDC server's fhirEndpoint is not an absolute URL");
  urls::url endpoint(*parsed);
  endpoint.normalize();
  if (endpoint.scheme_id() != urls::scheme::http && endpoint.scheme_id() != urls::scheme::https) {
    throw SourceUrlError("the OIDC server's fhirEndpoint must use http or https");
  }
  endpoint.remove_query();
  // The base path ends with '/', so relative requests resolve below it. Built from text: Boost.URL
  // 1.81's set_encoded_path("/") on a URL with an authority gives "/./", which refused every request to
  // a FHIR endpoint at a server's root.
  std::string path(endpoint.encoded_path());
  if (path.empty() || path.back() != '/') path += '/';
  const std::string text = std::string(endpoint.scheme()) + "://" + std::string(endpoint.encoded_authority()) + path;
  auto rebuilt = urls::parse_absolute_uri(text);
  if (!rebuilt) throw SourceUrlError("the OIDC server's fhirEndpoint is not an absolute URL");
  return urls::url(*rebuilt);
}

// `candidate` (absolute, normalised) must be under `endpoint`.
// With `allow_endpoint_itself`, the endpoint's own path is accepted too (HAPI-style paging links such
// as {base}?_getpages=...).
void check_under(const urls::url_view_base& endpoint, const urls::url_view_base& candidate, bool allow_endpoint_itself) {
  if (candidate.scheme_id() != endpoint.scheme_id()) {
    throw SourceUrlError("it must use the FHIR endpoint's scheme (" + std::string(endpoint.scheme()) + ")");
  }
  if (candidate.has_userinfo()) throw SourceUrlError("it must not carry user or password");
  if (lower(candidate.encoded_host()) != lower(endpoint.encoded_host()) ||
      effective_port(candidate) != effective_port(endpoint)) {
    throw SourceUrlError("it must stay on the FHIR endpoint's host and port (" + std::string(endpoint.encoded_host_and_port()) + ")");
  }
  if (candidate.has_fragment()) throw SourceUrlError("it must not have a #fragment");
  const std::string path = lower(candidate.encoded_path());
  // Encoded slashes, backslashes and dots could be decoded by a server into a path outside the endpoint.
  for (const char* forbidden : {"%2f", "%5c", "\\", "%2e"}) {
    if (path.find(forbidden) != std::string::npos) {
      throw SourceUrlError("its path must not contain encoded slashes, backslashes or dots");
    }
  }
  const std::string base(endpoint.encoded_path());
  const std::string_view candidate_path = candidate.encoded_path();
  const std::string_view base_itself = std::string_view(base).substr(0, base.size() - 1);
  if (allow_endpoint_itself && (candidate_path == base || candidate_path == base_itself)) return;
  if (!candidate_path.starts_with(base) || candidate_path.size() == base.size()) {
    throw SourceUrlError("it must be a path under the FHIR endpoint " + std::string(endpoint.buffer()));
  }
}

}  // namespace

SourceEndpointProblem source_endpoint_problem(const std::optional<std::string>& fhir_endpoint, bool allow_plain_http) {
  if (!fhir_endpoint) return SourceEndpointProblem::kMissing;
  if (util::check_absolute_http_url(*fhir_endpoint)) return SourceEndpointProblem::kNotAbsoluteHttp;
  if (!allow_plain_http && util::is_plain_http(*fhir_endpoint)) return SourceEndpointProblem::kPlainHttp;
  return SourceEndpointProblem::kNone;
}

bool is_fhir_id(std::string_view id) {
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '.';
  });
}

bool is_patient_id(std::string_view id) { return is_fhir_id(id) && id.find_first_not_of('.') != std::string_view::npos; }

std::string resolve_bundle_request(std::string_view fhir_endpoint, std::string_view bundle_request,
                                   std::string_view source_patient_id) {
  const urls::url endpoint = parse_endpoint(fhir_endpoint);
  std::string request(bundle_request);
  if (request.empty()) {
    if (!is_patient_id(source_patient_id)) {
      throw SourceUrlError("sourcePayer.patientId must be a FHIR id (1-64 of A-Z a-z 0-9 - .), not . or ..");
    }
    request = "Patient/" + std::string(source_patient_id) + "/$everything";
  }
  if (std::any_of(request.begin(), request.end(), [](unsigned char c) { return c <= 0x20 || c == 0x7f; })) {
    throw SourceUrlError("fhirBundleRequest must not contain spaces or control characters");
  }
  auto reference = urls::parse_uri_reference(request);
  if (!reference) throw SourceUrlError("fhirBundleRequest is not a valid URL or relative path");
  if (!reference->has_scheme() && reference->has_authority()) {
    throw SourceUrlError("fhirBundleRequest must be a path relative to the FHIR endpoint or an absolute URL under it");
  }
  if (reference->has_scheme() && reference->scheme_id() != urls::scheme::http &&
      reference->scheme_id() != urls::scheme::https) {
    throw SourceUrlError("fhirBundleRequest must use http or https");
  }
  urls::url resolved;
  const auto result = urls::resolve(endpoint, *reference, resolved);
  if (!result) throw SourceUrlError("fhirBundleRequest cannot be resolved against the FHIR endpoint");
  normalize_keeping_query(resolved);
  try {
    check_under(endpoint, resolved, false);
  } catch (const SourceUrlError& error) {
    throw SourceUrlError(std::string("fhirBundleRequest is refused: ") + error.what());
  }
  return std::string(resolved.buffer());
}

std::string member_match_url(std::string_view fhir_endpoint) {
  return resolve_bundle_request(fhir_endpoint, "Patient/$member-match", "");
}

std::string patient_by_identifier_url(std::string_view fhir_endpoint, std::string_view system, std::string_view value) {
  // FHIR search escaping first (\ , $ | are separators in a token value), then URL encoding.
  const auto escaped = [](std::string_view text) {
    std::string out;
    for (const char c : text) {
      if (c == '\\' || c == ',' || c == '$' || c == '|') out += '\\';
      out += c;
    }
    return out;
  };
  const std::string token = system.empty() ? escaped(value) : escaped(system) + "|" + escaped(value);
  return resolve_bundle_request(fhir_endpoint, "Patient?identifier=" + util::query_value(token), "");
}

std::string everything_url(std::string_view fhir_endpoint, std::string_view patient_id,
                           const std::optional<std::string>& since) {
  if (!is_patient_id(patient_id)) {
    throw SourceUrlError("the member's Patient id at the source is not a FHIR id");
  }
  std::string request = "Patient/" + std::string(patient_id) + "/$everything";
  if (since) request += "?_since=" + util::query_value(*since);
  return resolve_bundle_request(fhir_endpoint, request, "");
}

std::string export_kickoff_url(std::string_view fhir_endpoint, std::string_view patient_id,
                               const std::vector<std::string>& types, const std::optional<std::string>& since) {
  if (!is_patient_id(patient_id)) {
    throw SourceUrlError("the member's Patient id at the source is not a FHIR id");
  }
  std::string request = "Patient/" + std::string(patient_id) + "/$export";
  char separator = '?';
  if (!types.empty()) {
    request += "?_type=";
    for (std::size_t i = 0; i < types.size(); ++i) request += (i > 0 ? "," : "") + util::query_value(types[i]);
    separator = '&';
  }
  if (since) request += std::string(1, separator) + "_since=" + util::query_value(*since);
  return resolve_bundle_request(fhir_endpoint, request, "");
}

std::string require_under_endpoint(std::string_view fhir_endpoint, std::string_view url) {
  return SourceEndpoint(fhir_endpoint).require_under(url);
}

SourceEndpoint::SourceEndpoint(std::string_view fhir_endpoint) : endpoint_(parse_endpoint(fhir_endpoint).buffer()) {}

std::string SourceEndpoint::require_under(std::string_view url) const {
  const urls::url_view endpoint = urls::parse_absolute_uri(endpoint_).value();  // parsed and normalised before
  auto parsed = urls::parse_absolute_uri(url);
  if (!parsed) throw SourceUrlError("the next link is not an absolute URL");
  urls::url candidate(*parsed);
  normalize_keeping_query(candidate);
  try {
    check_under(endpoint, candidate, true);
  } catch (const SourceUrlError& error) {
    throw SourceUrlError(std::string("the next link is refused: ") + error.what());
  }
  return std::string(candidate.buffer());
}


FhirBase::FhirBase(std::string_view base) {
  auto parsed = urls::parse_absolute_uri(base);
  if (!parsed || base.empty()) return;
  host_ = lower(parsed->encoded_host());
  port_ = effective_port(*parsed);
  default_port_ = default_port(*parsed);
  path_ = util::without_trailing_slashes(std::string(parsed->encoded_path()));
  known_ = true;
}

std::optional<std::string> FhirBase::relative(std::string_view url) const {
  if (!known_) return std::nullopt;
  auto parsed = urls::parse_absolute_uri(url);
  if (!parsed || parsed->has_userinfo() || parsed->has_fragment()) return std::nullopt;
  if (parsed->scheme_id() != urls::scheme::http && parsed->scheme_id() != urls::scheme::https) {
    return std::nullopt;
  }
  if (lower(parsed->encoded_host()) != host_) return std::nullopt;
  if (effective_port(*parsed) != port_ && !(default_port(*parsed) && default_port_)) return std::nullopt;
  std::string_view path = parsed->encoded_path();
  if (!path.starts_with(path_) || path.size() == path_.size() || path[path_.size()] != '/') return std::nullopt;
  path.remove_prefix(path_.size());
  while (path.starts_with('/')) path.remove_prefix(1);
  std::string relative(path);
  if (parsed->has_query()) relative += "?" + std::string(parsed->encoded_query());
  return relative;
}

}  // namespace p2p::fhir
