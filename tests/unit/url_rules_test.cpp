#include <gtest/gtest.h>

#include "p2p/util/url_rules.hpp"

using p2p::util::check_absolute_http_url;

TEST(UrlRules, AcceptsAbsoluteHttpUrls) {
  for (const char* url : {"https://payer.example.com", "http://127.0.0.1:8080/fhir", "https://a.example.com/x/y?z=1",
                          "HTTPS://A.EXAMPLE.COM/", "http://[::1]:9000/fhir"}) {
    EXPECT_EQ(check_absolute_http_url(url), std::nullopt) << url;
  }
}

TEST(UrlRules, RejectsEverythingElseWithAReason) {
  struct Case {
    const char* url;
    const char* reason;
  };
  const Case cases[] = {
      {"ftp://a.example.com", "must use http or https, not \"ftp\""},
      {"https://user:pw@a.example.com", "must not carry user or password in the URL"},
      {"https:///path-only", "must name a host, e.g. https://payer.example.com/..."},
      {"//a.example.com/x", "must be an absolute URL such as https://payer.example.com/fhir (mismatch)"},
      {"not a url", "must be an absolute URL such as https://payer.example.com/fhir (mismatch)"},
      {"", "must be an absolute URL such as https://payer.example.com/fhir (mismatch)"},
  };
  for (const auto& c : cases) EXPECT_EQ(check_absolute_http_url(c.url), std::optional<std::string>(c.reason)) << c.url;
}

TEST(UrlRules, NormalizesIssuersByTrailingSlash) {
  EXPECT_EQ(p2p::util::normalize_issuer("https://a.example.com/issuer/"), "https://a.example.com/issuer");
  EXPECT_EQ(p2p::util::normalize_issuer("https://a.example.com/issuer//"), "https://a.example.com/issuer");
  EXPECT_EQ(p2p::util::normalize_issuer("https://a.example.com/issuer"), "https://a.example.com/issuer");
}

TEST(UrlRules, RedactsPasswords) {
  EXPECT_EQ(p2p::util::redact_url_password("postgresql://p2p:hunter2@db:5432/p2p"), "postgresql://p2p:***@db:5432/p2p");
  EXPECT_EQ(p2p::util::redact_url_password("postgresql://db/p2p?user=p2p&password=hunter2"),
            "postgresql://db/p2p?user=p2p&password=***");
  EXPECT_EQ(p2p::util::redact_url_password("postgresql://p2p@db/p2p"), "postgresql://p2p@db/p2p");
}

// Issue #9 (11): the plain-http guard compared case-sensitively, so HTTP://... got past it.
TEST(UrlRules, PlainHttpIsRecognisedWhateverTheCaseOfTheScheme) {
  for (const char* url : {"http://a.example/fhir", "HTTP://a.example/fhir", "Http://a.example", "hTTp://127.0.0.1:80/"}) {
    EXPECT_TRUE(p2p::util::is_plain_http(url)) << url;
  }
  for (const char* url : {"https://a.example/fhir", "HTTPS://a.example", "httpx://a", "http:/a", "", "ftp://a"}) {
    EXPECT_FALSE(p2p::util::is_plain_http(url)) << url;
  }
}

TEST(UrlRules, QueryValuesKeepOnlyUnreservedCharactersAsThemselves) {
  EXPECT_EQ(p2p::util::query_value("http://p2p.example/CodeSystem|add-payer"), "http%3A%2F%2Fp2p.example%2FCodeSystem%7Cadd-payer");
  EXPECT_EQ(p2p::util::query_value("ge2026-12-02T01:02:03Z"), "ge2026-12-02T01%3A02%3A03Z");
  EXPECT_EQ(p2p::util::query_value("a b&c=d+e~_."), "a%20b%26c%3Dd%2Be~_.");
  EXPECT_EQ(p2p::util::query_value(""), "");
}
