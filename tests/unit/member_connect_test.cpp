// The member connect flow's pure parts: the authorization request (PKCE, the URL, the return-URL
// allow-list, discovery), the id token (JWS signature with the payer's JWK or JWK Set, then its
// claims) and where the member's Patient id comes from.
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "p2p/crypto/jws_verify.hpp"
#include "p2p/crypto/signing_keys.hpp"
#include "p2p/oauth/authorization_request.hpp"
#include "p2p/oauth/id_token.hpp"
#include "p2p/util/crypto.hpp"

namespace {

using nlohmann::json;
using p2p::crypto::base64url_encode;
using p2p::crypto::JwsError;
using p2p::crypto::verify_jws;
namespace oauth = p2p::oauth;

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

std::string bn_bytes(const EVP_PKEY* key, const char* name, std::size_t width = 0) {
  BIGNUM* number = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(key, name, &number), 1);
  std::string bytes(width ? width : static_cast<std::size_t>(BN_num_bytes(number)), '\0');
  BN_bn2binpad(number, reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  BN_free(number);
  return bytes;
}

// A test key with its public JWK, and a signer for any algorithm of its type.
struct TestKey {
  Pkey key;
  json jwk;
  std::size_t coordinate = 0;  // EC

  static TestKey rsa(const std::string& kid) {
    TestKey made{Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048))), {}, 0};
    made.jwk = {{"kty", "RSA"}, {"kid", kid}, {"use", "sig"},
                {"n", base64url_encode(bn_bytes(made.key.get(), OSSL_PKEY_PARAM_RSA_N))},
                {"e", base64url_encode(bn_bytes(made.key.get(), OSSL_PKEY_PARAM_RSA_E))}};
    return made;
  }
  static TestKey ec(const char* curve, const char* crv, std::size_t coordinate, const std::string& kid) {
    TestKey made{Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve)), {}, coordinate};
    made.jwk = {{"kty", "EC"}, {"kid", kid}, {"crv", crv},
                {"x", base64url_encode(bn_bytes(made.key.get(), OSSL_PKEY_PARAM_EC_PUB_X, coordinate))},
                {"y", base64url_encode(bn_bytes(made.key.get(), OSSL_PKEY_PARAM_EC_PUB_Y, coordinate))}};
    return made;
  }

  std::string sign(const json& header, const json& claims) const {
    const std::string alg = header.value("alg", "");
    const EVP_MD* md = alg.ends_with("256") ? EVP_sha256() : (alg.ends_with("384") ? EVP_sha384() : EVP_sha512());
    const std::string input = base64url_encode(header.dump()) + "." + base64url_encode(claims.dump());
    EVP_MD_CTX* context = EVP_MD_CTX_new();
    EVP_PKEY_CTX* key_context = nullptr;
    EXPECT_EQ(EVP_DigestSignInit(context, &key_context, md, nullptr, key.get()), 1);
    if (alg.starts_with("PS")) {
      EVP_PKEY_CTX_set_rsa_padding(key_context, RSA_PKCS1_PSS_PADDING);
      EVP_PKEY_CTX_set_rsa_pss_saltlen(key_context, RSA_PSS_SALTLEN_DIGEST);
    }
    std::size_t length = 0;
    const auto* data = reinterpret_cast<const unsigned char*>(input.data());
    EVP_DigestSign(context, nullptr, &length, data, input.size());
    std::string signature(length, '\0');
    EXPECT_EQ(EVP_DigestSign(context, reinterpret_cast<unsigned char*>(signature.data()), &length, data, input.size()), 1);
    signature.resize(length);
    EVP_MD_CTX_free(context);
    if (coordinate) {  // DER to R || S
      const auto* der = reinterpret_cast<const unsigned char*>(signature.data());
      ECDSA_SIG* parsed = d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(signature.size()));
      std::string raw(2 * coordinate, '\0');
      BN_bn2binpad(ECDSA_SIG_get0_r(parsed), reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(coordinate));
      BN_bn2binpad(ECDSA_SIG_get0_s(parsed), reinterpret_cast<unsigned char*>(raw.data()) + coordinate,
                   static_cast<int>(coordinate));
      ECDSA_SIG_free(parsed);
      signature = raw;
    }
    return input + "." + base64url_encode(signature);
  }
};

const json kClaims = {{"iss", "https://payer.example"}, {"sub", "member-1"}, {"aud", "p2p-client"},
                      {"exp", 2000000000}, {"iat", 1900000000}, {"nonce", "n-0S6_WzA2Mj"}};

std::string what_of(const std::string& token, const json& keys) {
  try {
    verify_jws(token, keys);
  } catch (const JwsError& error) {
    return error.what();
  }
  return "";
}

TEST(IdTokenSignature, VerifiesEveryAsymmetricAlgorithmWithTheKeyItsKidNames) {
  const TestKey rsa = TestKey::rsa("r1");
  const TestKey other = TestKey::rsa("r2");
  const TestKey p256 = TestKey::ec("P-256", "P-256", 32, "e1");
  const TestKey p384 = TestKey::ec("P-384", "P-384", 48, "e2");
  const json keys = {{"keys", {other.jwk, rsa.jwk, p256.jwk, p384.jwk}}};
  for (const char* alg : {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}) {
    const auto verified = verify_jws(rsa.sign({{"alg", alg}, {"kid", "r1"}}, kClaims), keys);
    EXPECT_EQ(verified.payload, kClaims) << alg;
  }
  EXPECT_EQ(verify_jws(p256.sign({{"alg", "ES256"}, {"kid", "e1"}}, kClaims), keys).payload, kClaims);
  EXPECT_EQ(verify_jws(p384.sign({{"alg", "ES384"}, {"kid", "e2"}}, kClaims), keys).payload, kClaims);
  // One JWK (the seed's jwkText) instead of a set; without a kid the only key of the type is used.
  EXPECT_EQ(verify_jws(rsa.sign({{"alg", "RS256"}}, kClaims), rsa.jwk).payload, kClaims);
}

TEST(IdTokenSignature, RefusesForgeriesAndAlgorithmsThatCheckNothing) {
  const TestKey rsa = TestKey::rsa("r1");
  const TestKey attacker = TestKey::rsa("r1");  // same kid, another key
  const json keys = {{"keys", {rsa.jwk}}};
  const std::string good = rsa.sign({{"alg", "RS256"}, {"kid", "r1"}}, kClaims);

  EXPECT_NE(what_of(attacker.sign({{"alg", "RS256"}, {"kid", "r1"}}, kClaims), keys).find("does not verify"),
            std::string::npos);
  // The payload changed after signing.
  json changed = kClaims;
  changed["sub"] = "someone-else";
  const auto dot = good.find('.');
  const auto last = good.rfind('.');
  const std::string swapped = good.substr(0, dot + 1) + base64url_encode(changed.dump()) + good.substr(last);
  EXPECT_NE(what_of(swapped, keys).find("does not verify"), std::string::npos);
  // "none" and HMAC (a public key used as a shared secret) are never accepted.
  const std::string header_none = base64url_encode(json{{"alg", "none"}}.dump());
  EXPECT_NE(what_of(header_none + "." + base64url_encode(kClaims.dump()) + ".", keys).find("not accepted"),
            std::string::npos);
  const std::string header_hs = base64url_encode(json{{"alg", "HS256"}, {"kid", "r1"}}.dump());
  EXPECT_NE(what_of(header_hs + "." + base64url_encode(kClaims.dump()) + ".AAAA", keys).find("not accepted"),
            std::string::npos);
  // A kid the payer does not have; an EC token against RSA keys; a key meant for encryption.
  EXPECT_NE(what_of(rsa.sign({{"alg", "RS256"}, {"kid", "r9"}}, kClaims), keys).find("kid"), std::string::npos);
  const TestKey p256 = TestKey::ec("P-256", "P-256", 32, "r1");
  EXPECT_NE(what_of(p256.sign({{"alg", "ES256"}, {"kid", "r1"}}, kClaims), keys).find("no key"), std::string::npos);
  json encryption = rsa.jwk;
  encryption["use"] = "enc";
  EXPECT_NE(what_of(good, encryption).find("no key"), std::string::npos);
  // A key whose alg says otherwise; a token naming no kid where several keys fit.
  json rs384_only = rsa.jwk;
  rs384_only["alg"] = "RS384";
  EXPECT_NE(what_of(good, rs384_only).find("no key"), std::string::npos);
  const TestKey second = TestKey::rsa("r2");
  EXPECT_NE(what_of(rsa.sign({{"alg", "RS256"}}, kClaims), json{{"keys", {rsa.jwk, second.jwk}}}).find("several"),
            std::string::npos);
  // Not a JWS at all, critical extensions, bad base64url.
  EXPECT_NE(what_of("a.b", keys).find("three"), std::string::npos);
  EXPECT_NE(what_of(rsa.sign({{"alg", "RS256"}, {"kid", "r1"}, {"crit", {"exp"}}}, kClaims), keys).find("critical"),
            std::string::npos);
  EXPECT_THROW(p2p::crypto::base64url_decode("ab+c"), JwsError);
  EXPECT_THROW(p2p::crypto::base64url_decode("abcde"), JwsError);
}

oauth::IdTokenExpectations expectations() {
  const auto digest = p2p::util::sha256("n-0S6_WzA2Mj");
  return {"https://payer.example/", "p2p-client", p2p::util::to_hex(digest.data(), digest.size()), 1950000000, 120};
}

std::string claim_error(const json& claims) {
  try {
    oauth::check_id_token_claims(claims, expectations());
  } catch (const oauth::IdTokenError& error) {
    return error.what();
  }
  return "";
}

TEST(IdTokenClaims, AcceptsTheTokenMeantForThisAuthorizationOnly) {
  EXPECT_EQ(claim_error(kClaims), "");  // the issuer compared without its trailing slash
  json several = kClaims;
  several["aud"] = {"p2p-client", "another"};
  several["azp"] = "p2p-client";
  EXPECT_EQ(claim_error(several), "");

  const auto with = [](const char* name, const json& value) {
    json changed = kClaims;
    changed[name] = value;
    return claim_error(changed);
  };
  EXPECT_NE(with("iss", "https://evil.example").find("issuer"), std::string::npos);
  EXPECT_NE(with("aud", "another-client").find("aud"), std::string::npos);
  EXPECT_NE(with("aud", json::array({"another", "p2p-client"})).find("azp"), std::string::npos);  // no azp
  EXPECT_NE(with("azp", "another").find("azp"), std::string::npos);
  EXPECT_NE(with("exp", 1949999000).find("expired"), std::string::npos);
  EXPECT_EQ(with("exp", 1949999900), "");  // within the leeway
  EXPECT_NE(with("iat", 1950001000).find("future"), std::string::npos);
  EXPECT_NE(with("nonce", "another-nonce").find("nonce"), std::string::npos);
  json no_nonce = kClaims;
  no_nonce.erase("nonce");
  EXPECT_NE(claim_error(no_nonce).find("nonce"), std::string::npos);
  json no_exp = kClaims;
  no_exp.erase("exp");
  EXPECT_NE(claim_error(no_exp).find("exp"), std::string::npos);
}

TEST(MemberPatientId, ComesFromSmartsPatientElseTheDefinitionsClaim) {
  EXPECT_EQ(oauth::patient_of_fhir_user("Patient/123"), "123");
  EXPECT_EQ(oauth::patient_of_fhir_user("https://payer.example/fhir/Patient/p-1.a"), "p-1.a");
  EXPECT_EQ(oauth::patient_of_fhir_user("Practitioner/9"), std::nullopt);
  EXPECT_EQ(oauth::patient_of_fhir_user("https://payer.example/fhir/RelatedPerson/9"), std::nullopt);
  EXPECT_EQ(oauth::patient_of_fhir_user("Patient/.."), std::nullopt);
  EXPECT_EQ(oauth::patient_of_fhir_user("Patient/a b"), std::nullopt);
  EXPECT_EQ(oauth::patient_of_fhir_user("javascript:x/Patient/1"), std::nullopt);
  EXPECT_EQ(oauth::patient_of_fhir_user("123"), std::nullopt);

  const json claims = {{"sub", "member-7"}, {"fhirUser", "Patient/p7"}};
  EXPECT_EQ(oauth::member_patient_id(std::string("smart-1"), &claims, "fhirUser"), "smart-1");
  EXPECT_EQ(oauth::member_patient_id(std::string(".."), &claims, "fhirUser"), std::nullopt);  // not taken, not skipped
  EXPECT_EQ(oauth::member_patient_id(std::nullopt, &claims, "fhirUser"), "p7");
  EXPECT_EQ(oauth::member_patient_id(std::nullopt, &claims, "sub"), "member-7");
  EXPECT_EQ(oauth::member_patient_id(std::nullopt, nullptr, "fhirUser"), std::nullopt);
  const json practitioner = {{"sub", "x"}, {"fhirUser", "Practitioner/1"}};
  EXPECT_EQ(oauth::member_patient_id(std::nullopt, &practitioner, "fhirUser"), std::nullopt);
}

TEST(AuthorizationRequest, PkceIsRfc7636sS256) {
  // RFC 7636 appendix B.
  EXPECT_EQ(oauth::pkce_s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
  const auto first = oauth::make_pkce();
  const auto second = oauth::make_pkce();
  EXPECT_EQ(first.verifier.size(), 43u);
  EXPECT_NE(first.verifier, second.verifier);
  EXPECT_EQ(first.challenge, oauth::pkce_s256_challenge(first.verifier));
}

TEST(AuthorizationRequest, TheUrlCarriesEveryParameterEncodedAfterTheEndpointsOwnQuery) {
  oauth::AuthorizationRequest request{"https://payer.example/authorize?tenant=a%26b", "code", "p2p client",
                                      "https://p2p.example/oauth/callback", "openid fhirUser patient/*.read",
                                      "st4te", "ch4llenge", "n0nce", std::nullopt};
  EXPECT_EQ(oauth::authorization_url(request),
            "https://payer.example/authorize?tenant=a%26b&response_type=code&client_id=p2p%20client"
            "&redirect_uri=https%3A%2F%2Fp2p.example%2Foauth%2Fcallback&scope=openid%20fhirUser%20patient%2F%2A.read"
            "&state=st4te&code_challenge=ch4llenge&code_challenge_method=S256&nonce=n0nce");
  request.authorization_endpoint = "https://payer.example/authorize";
  request.scope = "openid offline_access";
  request.aud = "https://payer.example/fhir";
  const std::string url = oauth::authorization_url(request);
  EXPECT_NE(url.find("/authorize?response_type=code&"), std::string::npos);
  EXPECT_NE(url.find("&aud=https%3A%2F%2Fpayer.example%2Ffhir"), std::string::npos);
  EXPECT_NE(url.find("&prompt=consent"), std::string::npos);  // offline_access needs the member's consent
}

TEST(AuthorizationRequest, ScopesAreMatchedWholeOrByPrefix) {
  const std::string scopes = "openid fhirUser launch/patient patient/*.read offline_access";
  EXPECT_TRUE(oauth::has_scope(scopes, "openid"));
  EXPECT_TRUE(oauth::has_scope(scopes, "offline_access"));
  EXPECT_FALSE(oauth::has_scope(scopes, "open"));
  EXPECT_FALSE(oauth::has_scope(scopes, "launch"));
  EXPECT_FALSE(oauth::has_scope("openidx", "openid"));
  EXPECT_TRUE(oauth::has_scope_starting(scopes, "launch"));
  EXPECT_TRUE(oauth::has_scope_starting(scopes, "patient/"));
  EXPECT_FALSE(oauth::has_scope_starting(scopes, "user/"));
  EXPECT_FALSE(oauth::has_scope_starting("", "launch"));
}

TEST(AuthorizationRequest, ReturnUrlsMustBeUnderAnAllowedOriginAndPath) {
  const std::vector<std::string> allowed = {"https://portal.example/p2p/", "https://Portal2.example:8443/done",
                                            "http://127.0.0.1:8090/"};
  EXPECT_TRUE(oauth::return_url_allowed("https://portal.example/p2p/done", allowed));
  EXPECT_TRUE(oauth::return_url_allowed("https://portal.example:443/p2p/done?member=1", allowed));
  EXPECT_TRUE(oauth::return_url_allowed("https://portal2.example:8443/done", allowed));
  EXPECT_TRUE(oauth::return_url_allowed("https://portal2.example:8443/done/x", allowed));
  EXPECT_TRUE(oauth::return_url_allowed("http://127.0.0.1:8090/p2p/done", allowed));  // a root path allows all
  EXPECT_TRUE(oauth::return_url_allowed("http://127.0.0.1:8090", allowed));

  EXPECT_FALSE(oauth::return_url_allowed("https://portal2.example:8443/doneevil", allowed));
  EXPECT_FALSE(oauth::return_url_allowed("https://portal.example/p2p", allowed));        // above the prefix
  EXPECT_FALSE(oauth::return_url_allowed("https://portal.example/other", allowed));
  EXPECT_FALSE(oauth::return_url_allowed("https://portal.example.evil/p2p/done", allowed));
  EXPECT_FALSE(oauth::return_url_allowed("https://evil@portal.example/p2p/done", allowed));
  EXPECT_FALSE(oauth::return_url_allowed("http://portal.example/p2p/done", allowed));    // another scheme
  EXPECT_FALSE(oauth::return_url_allowed("https://portal.example:8443/p2p/done", allowed));  // another port
  EXPECT_FALSE(oauth::return_url_allowed("https://portal.example/p2p/../admin", allowed));
  EXPECT_FALSE(oauth::return_url_allowed("https://portal.example/p2p/%2e%2e/admin", allowed));
  EXPECT_FALSE(oauth::return_url_allowed("https://portal.example/p2p/..%2fadmin", allowed));
  EXPECT_FALSE(oauth::return_url_allowed("https://portal.example/p2p/done#x", allowed));
  EXPECT_FALSE(oauth::return_url_allowed("//portal.example/p2p/done", allowed));
  EXPECT_FALSE(oauth::return_url_allowed("javascript:alert(1)", allowed));
  EXPECT_FALSE(oauth::return_url_allowed("https://portal.example/p2p/done", {}));
}

TEST(AuthorizationRequest, QueryParametersAreAddedBeforeAFragment) {
  EXPECT_EQ(oauth::with_query_parameters("https://portal.example/done", {{"a", "1 2"}, {"b", "x&y"}}),
            "https://portal.example/done?a=1%202&b=x%26y");
  EXPECT_EQ(oauth::with_query_parameters("https://portal.example/done?lang=en", {{"a", "1"}}),
            "https://portal.example/done?lang=en&a=1");
  EXPECT_EQ(oauth::with_query_parameters("https://portal.example/done?", {{"a", "1"}}), "https://portal.example/done?a=1");
}

TEST(AuthorizationRequest, DiscoveryNeedsItsEndpointsAndSaysWhichIsMissing) {
  const json oidc = {{"issuer", "https://payer.example"},
                     {"authorization_endpoint", "https://payer.example/auth"},
                     {"token_endpoint", "https://payer.example/token"},
                     {"jwks_uri", "https://payer.example/jwks"}};
  const auto server = oauth::read_discovery(oidc);
  EXPECT_EQ(server.authorization_endpoint, "https://payer.example/auth");
  EXPECT_EQ(server.jwks_uri, "https://payer.example/jwks");
  EXPECT_FALSE(server.smart);
  json smart = oidc;
  smart["capabilities"] = {"launch-standalone", "context-standalone-patient"};
  EXPECT_TRUE(oauth::read_discovery(smart).smart);
  json missing = oidc;
  missing.erase("authorization_endpoint");
  try {
    oauth::read_discovery(missing);
    FAIL() << "a document without an authorization_endpoint was accepted";
  } catch (const oauth::ConnectError& error) {
    EXPECT_NE(std::string(error.what()).find("authorization_endpoint"), std::string::npos);
  }
  json relative = oidc;
  relative["token_endpoint"] = "/token";
  EXPECT_THROW(oauth::read_discovery(relative), oauth::ConnectError);
}

}  // namespace
