#include "p2p/util/url_rules.hpp"

#include <cctype>

#include <boost/url/encode.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <boost/url/url.hpp>

namespace p2p::util {

std::optional<std::string> check_absolute_http_url(std::string_view url) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed) {
    return "must be an absolute URL such as https://payer.example.com/fhir (" + parsed.error().message() + ")";
  }
  const auto scheme = parsed->scheme_id();
  if (scheme != boost::urls::scheme::http && scheme != boost::urls::scheme::https) {
    return "must use http or https, not \"" + std::string(parsed->scheme()) + "\"";
  }
  if (!parsed->has_authority() || parsed->encoded_host().empty()) {
    return "must name a host, e.g. https://payer.example.com/...";
  }
  if (parsed->has_userinfo()) {
    return "must not carry user or password in the URL";
  }
  return std::nullopt;
}

bool is_plain_http(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() < kScheme.size()) return false;
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(url[i])) != kScheme[i]) return false;
  }
  return true;
}

std::string normalize_issuer(std::string_view issuer) {
  while (!issuer.empty() && issuer.back() == '/') issuer.remove_suffix(1);
  return std::string(issuer);
}

std::string redact_url_password(std::string_view url) {
  auto parsed = boost::urls::parse_uri_reference(url);
  if (!parsed) return "<unparseable URL>";
  boost::urls::url copy(*parsed);
  if (copy.has_password()) copy.set_password("***");
  // libpq URLs may carry the password as a query parameter too.
  for (auto param : copy.params()) {
    if (param.key == "password") {
      copy.params().set("password", "***");
      break;
    }
  }
  return std::string(copy.buffer());
}

std::string query_value(std::string_view value) { return boost::urls::encode(value, boost::urls::unreserved_chars); }

}  // namespace p2p::util
