// The service's private_key_jwt signing keys (crypto::SigningKeys): loading, kid (RFC 7638), the
// published JWKS, and JWTs whose signatures verify with the published public key alone; the client
// authentication of a token request (oauth::authenticate_client), the assertion's claims included.
#include "p2p/crypto/signing_keys.hpp"

#include <chrono>
#include <memory>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "p2p/crypto/token_cipher.hpp"
#include "p2p/http/client.hpp"
#include "p2p/oauth/token_refresher.hpp"

namespace {

using nlohmann::json;
using p2p::crypto::SigningKeyError;
using p2p::crypto::SigningKeys;

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

std::string pem_of(EVP_PKEY* key, bool encrypted = false) {
  BIO* bio = BIO_new(BIO_s_mem());
  const char passphrase[] = "secret";
  const int ok = encrypted ? PEM_write_bio_PKCS8PrivateKey(bio, key, EVP_aes_256_cbc(), passphrase,
                                                           static_cast<int>(sizeof passphrase - 1), nullptr, nullptr)
                           : PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  EXPECT_EQ(ok, 1);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<std::size_t>(size));
  BIO_free(bio);
  return pem;
}

std::string rsa_pem(int bits) { return pem_of(Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits))).get()); }
std::string ec_pem(const char* curve) { return pem_of(Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve)).get()); }

std::string base64url_decode(std::string text) {
  for (char& c : text) {
    if (c == '-') c = '+';
    else if (c == '_') c = '/';
  }
  while (text.size() % 4 != 0) text.push_back('=');
  return p2p::crypto::base64_decode(text);
}

BIGNUM* bn_of(const std::string& base64url) {
  const std::string bytes = base64url_decode(base64url);
  return BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()), nullptr);
}

// A public key built from the JWK's members only, as a source payer builds it from our JWKS.
Pkey public_key_of(const json& jwk) {
  OSSL_PARAM_BLD* build = OSSL_PARAM_BLD_new();
  BIGNUM* a = nullptr;
  BIGNUM* b = nullptr;
  std::string point;
  const bool rsa = jwk.at("kty") == "RSA";
  if (rsa) {
    a = bn_of(jwk.at("n"));
    b = bn_of(jwk.at("e"));
    OSSL_PARAM_BLD_push_BN(build, OSSL_PKEY_PARAM_RSA_N, a);
    OSSL_PARAM_BLD_push_BN(build, OSSL_PKEY_PARAM_RSA_E, b);
  } else {
    point = std::string(1, '\x04') + base64url_decode(jwk.at("x")) + base64url_decode(jwk.at("y"));
    OSSL_PARAM_BLD_push_utf8_string(build, OSSL_PKEY_PARAM_GROUP_NAME, "secp384r1", 0);
    OSSL_PARAM_BLD_push_octet_string(build, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
  }
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(build);
  EVP_PKEY_CTX* context = EVP_PKEY_CTX_new_from_name(nullptr, rsa ? "RSA" : "EC", nullptr);
  EVP_PKEY* key = nullptr;
  EXPECT_EQ(EVP_PKEY_fromdata_init(context), 1);
  EXPECT_EQ(EVP_PKEY_fromdata(context, &key, EVP_PKEY_PUBLIC_KEY, params), 1);
  EVP_PKEY_CTX_free(context);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(build);
  BN_free(a);
  BN_free(b);
  return Pkey(key);
}

// Verifies a compact JWS with the JWK (RS384: PKCS#1 v1.5; ES384: r || s, 48 bytes each).
bool verifies(const std::string& jwt, const json& jwk) {
  const auto last_dot = jwt.rfind('.');
  const std::string input = jwt.substr(0, last_dot);
  std::string signature = base64url_decode(jwt.substr(last_dot + 1));
  if (jwk.at("kty") == "EC") {
    if (signature.size() != 96) return false;
    ECDSA_SIG* parsed = ECDSA_SIG_new();
    ECDSA_SIG_set0(parsed, BN_bin2bn(reinterpret_cast<const unsigned char*>(signature.data()), 48, nullptr),
                   BN_bin2bn(reinterpret_cast<const unsigned char*>(signature.data()) + 48, 48, nullptr));
    unsigned char* der = nullptr;
    const int size = i2d_ECDSA_SIG(parsed, &der);
    signature.assign(reinterpret_cast<char*>(der), static_cast<std::size_t>(size));
    OPENSSL_free(der);
    ECDSA_SIG_free(parsed);
  }
  const Pkey key = public_key_of(jwk);
  EVP_MD_CTX* context = EVP_MD_CTX_new();
  const bool ok = EVP_DigestVerifyInit(context, nullptr, EVP_sha384(), nullptr, key.get()) == 1 &&
                  EVP_DigestVerify(context, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                                   reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(context);
  return ok;
}

std::string error_of(const std::string& pem) {
  try {
    (void)SigningKeys::from_pem({pem}, {"key.pem"});
  } catch (const SigningKeyError& error) {
    return error.what();
  }
  return "";
}

TEST(SigningKeys, ThumbprintIsRfc7638s) {
  // RFC 7638 section 3.1's example key and thumbprint.
  const json jwk = {
      {"kty", "RSA"},
      {"n", "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3"
            "oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHz"
            "u6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8aw"
            "apJzKnqDKgw"},
      {"e", "AQAB"},
      {"alg", "RS256"},
      {"kid", "2011-04-29"}};
  EXPECT_EQ(p2p::crypto::jwk_thumbprint(jwk), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
  EXPECT_THROW(p2p::crypto::jwk_thumbprint(json{{"kty", "oct"}, {"k", "AAAA"}}), SigningKeyError);
}

TEST(SigningKeys, Base64UrlHasNoPaddingAndTheUrlAlphabet) {
  EXPECT_EQ(p2p::crypto::base64url_encode(std::string("\xfb\xff\xbf", 3)), "-_-_");
  EXPECT_EQ(p2p::crypto::base64url_encode("a"), "YQ");
  EXPECT_EQ(p2p::crypto::base64url_encode(""), "");
}

TEST(SigningKeys, PublishesEveryKeyAndSignsWithTheFirst) {
  const std::string ec = ec_pem("P-384");
  const std::string rsa = rsa_pem(2048);
  const SigningKeys keys = SigningKeys::from_pem({ec, rsa}, {"ec.pem", "rsa.pem"});
  ASSERT_EQ(keys.size(), 2u);
  const json jwks = json::parse(keys.public_jwks());
  ASSERT_EQ(jwks.at("keys").size(), 2u);
  const json& first = jwks["keys"][0];
  const json& second = jwks["keys"][1];
  EXPECT_EQ(first.at("kty"), "EC");
  EXPECT_EQ(first.at("crv"), "P-384");
  EXPECT_EQ(first.at("alg"), "ES384");
  EXPECT_EQ(first.at("use"), "sig");
  EXPECT_EQ(first.at("kid"), p2p::crypto::jwk_thumbprint(first));
  EXPECT_EQ(base64url_decode(first.at("x")).size(), 48u);
  EXPECT_EQ(second.at("kty"), "RSA");
  EXPECT_EQ(second.at("alg"), "RS384");
  EXPECT_EQ(second.at("kid"), p2p::crypto::jwk_thumbprint(second));
  // Public members only: a private JWK would carry d (and p, q, dp, dq, qi for RSA).
  for (const auto& jwk : jwks["keys"]) {
    for (const char* name : {"d", "p", "q", "dp", "dq", "qi"}) EXPECT_FALSE(jwk.contains(name)) << name;
  }
  EXPECT_EQ(keys.signing_kid(), first.at("kid"));
  EXPECT_EQ(keys.signing_algorithm(), "ES384");

  const json claims = {{"iss", "p2p"}, {"sub", "p2p"}, {"aud", "https://old.example/token"}, {"exp", 1}, {"jti", "x"}};
  const std::string jwt = keys.sign_jwt(claims);
  const auto dot = jwt.find('.');
  const json header = json::parse(base64url_decode(jwt.substr(0, dot)));
  EXPECT_EQ(header, (json{{"alg", "ES384"}, {"kid", first.at("kid")}, {"typ", "JWT"}}));
  EXPECT_EQ(json::parse(base64url_decode(jwt.substr(dot + 1, jwt.rfind('.') - dot - 1))), claims);
  EXPECT_TRUE(verifies(jwt, first));
  EXPECT_FALSE(verifies(jwt, second));
  std::string tampered = jwt;
  tampered[dot + 2] = tampered[dot + 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(verifies(tampered, first));

  // The same keys the other way round: RS384 with the RSA key.
  const SigningKeys rsa_first = SigningKeys::from_pem({rsa, ec}, {"rsa.pem", "ec.pem"});
  EXPECT_EQ(rsa_first.signing_algorithm(), "RS384");
  EXPECT_EQ(rsa_first.signing_kid(), second.at("kid"));  // a key's kid does not depend on its place
  EXPECT_TRUE(verifies(rsa_first.sign_jwt(claims), second));
}

TEST(SigningKeys, RefusesKeysThatCannotSignRs384OrEs384SayingWhatToDo) {
  EXPECT_NE(error_of(rsa_pem(1024)).find("at least 2048"), std::string::npos);
  EXPECT_NE(error_of(ec_pem("P-256")).find("P-384"), std::string::npos);
  const std::string encrypted = pem_of(Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384")).get(), true);
  EXPECT_NE(error_of(encrypted).find("encrypted"), std::string::npos);
  EXPECT_NE(error_of("not a key").find("not a PEM private key"), std::string::npos);
  const std::string ed = pem_of(Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")).get());
  EXPECT_NE(error_of(ed).find("neither RSA nor EC"), std::string::npos);
  const std::string ec = ec_pem("P-384");
  EXPECT_THROW(SigningKeys::from_pem({ec, ec}, {"a.pem", "b.pem"}), SigningKeyError);
  EXPECT_THROW(SigningKeys::load({"/nonexistent/key.pem"}), SigningKeyError);
  // The error names the file, never the key's text.
  EXPECT_EQ(error_of(ec_pem("P-256")).find("BEGIN"), std::string::npos);
}

std::string field(const std::vector<std::pair<std::string, std::string>>& fields, const std::string& name) {
  for (const auto& [key, value] : fields) {
    if (key == name) return value;
  }
  return "";
}

TEST(ClientAuthentication, PrivateKeyJwtSendsAFreshAssertionWithSmartBackendServicesClaims) {
  const SigningKeys keys = SigningKeys::from_pem({rsa_pem(2048)}, {"rsa.pem"});
  const json jwk = json::parse(keys.public_jwks())["keys"][0];
  const p2p::oauth::ClientAuthentication client{.method = "private_key_jwt", .client_id = "new-payer",
                                                 .client_secret = std::nullopt, .signing_keys = &keys};
  const std::string token_url = "https://old.example/auth/token";
  std::set<std::string> jtis;
  for (int i = 0; i < 2; ++i) {
    p2p::http::ClientRequest request;
    std::vector<std::pair<std::string, std::string>> fields;
    const long long before = std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch()).count();
    p2p::oauth::authenticate_client(client, token_url, request, fields);
    EXPECT_TRUE(request.headers.empty()) << "no Authorization header with private_key_jwt";
    EXPECT_EQ(field(fields, "client_id"), "new-payer");
    EXPECT_EQ(field(fields, "client_assertion_type"), "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    const std::string jwt = field(fields, "client_assertion");
    ASSERT_TRUE(verifies(jwt, jwk));
    const auto first = jwt.find('.');
    const json header = json::parse(base64url_decode(jwt.substr(0, first)));
    EXPECT_EQ(header, (json{{"alg", "RS384"}, {"kid", jwk["kid"]}, {"typ", "JWT"}}));
    const json claims = json::parse(base64url_decode(jwt.substr(first + 1, jwt.rfind('.') - first - 1)));
    EXPECT_EQ(claims.at("iss"), "new-payer");
    EXPECT_EQ(claims.at("sub"), "new-payer");
    EXPECT_EQ(claims.at("aud"), token_url);
    const long long iat = claims.at("iat");
    const long long exp = claims.at("exp");
    EXPECT_GE(iat, before);
    EXPECT_LE(iat, before + 5);
    EXPECT_GT(exp, iat);
    EXPECT_LE(exp - iat, 300) << "SMART Backend Services: exp at most 5 minutes ahead";
    const std::string jti = claims.at("jti");
    EXPECT_GE(jti.size(), 32u) << "128 bits of randomness, hex";
    jtis.insert(jti);
  }
  EXPECT_EQ(jtis.size(), 2u) << "every assertion has its own jti";
}

TEST(ClientAuthentication, SecretMethodsAndMisconfigurationsAnAdminMustFix) {
  std::vector<std::pair<std::string, std::string>> fields;
  p2p::http::ClientRequest basic;
  p2p::oauth::authenticate_client({.method = "client_secret_basic", .client_id = "a b", .client_secret = "s:1"},
                                  "https://x/token", basic, fields);
  ASSERT_EQ(basic.headers.size(), 1u);
  // RFC 6749 2.3.1: form-encoded, then joined and base64-encoded.
  EXPECT_EQ(basic.headers[0].second, "Basic " + p2p::crypto::base64_encode("a%20b:s%3A1"));
  EXPECT_TRUE(fields.empty());

  p2p::http::ClientRequest post;
  p2p::oauth::authenticate_client({.method = "client_secret_post", .client_id = "a", .client_secret = "s"},
                                  "https://x/token", post, fields);
  EXPECT_TRUE(post.headers.empty());
  EXPECT_EQ(field(fields, "client_id"), "a");
  EXPECT_EQ(field(fields, "client_secret"), "s");

  // No key, no client id: not final (the job pauses and keeps the member's tokens until an admin acts).
  const SigningKeys none;
  for (const auto& client : {p2p::oauth::ClientAuthentication{.method = "private_key_jwt", .client_id = "a",
                                                              .client_secret = std::nullopt, .signing_keys = &none},
                             p2p::oauth::ClientAuthentication{.method = "private_key_jwt"}}) {
    p2p::http::ClientRequest request;
    try {
      p2p::oauth::authenticate_client(client, "https://x/token", request, fields);
      ADD_FAILURE() << "no error";
    } catch (const p2p::oauth::TokenRefreshError& error) {
      EXPECT_FALSE(error.final()) << error.what();
    }
  }
}

TEST(SigningKeys, WithoutKeysThereIsNothingToSignWith) {
  const SigningKeys none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(json::parse(none.public_jwks()), (json{{"keys", json::array()}}));
  EXPECT_THROW(none.sign_jwt(json::object()), SigningKeyError);
}

}  // namespace
