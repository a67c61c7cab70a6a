#include "p2p/crypto/jws_verify.hpp"

#include <memory>
#include <optional>
#include <vector>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "openssl_handles.hpp"

namespace p2p::crypto {
namespace {

using detail::Bn;
using detail::Pkey;

struct Algorithm {
  std::string_view name;
  std::string_view kty;    // "RSA" or "EC"
  const EVP_MD* (*digest)();
  bool pss = false;
  std::string_view curve;  // EC: the JWK crv
  std::size_t coordinate_bytes = 0;
};

const Algorithm* find_algorithm(std::string_view name) {
  static const Algorithm kAlgorithms[] = {
      {"RS256", "RSA", EVP_sha256}, {"RS384", "RSA", EVP_sha384}, {"RS512", "RSA", EVP_sha512},
      {"PS256", "RSA", EVP_sha256, true}, {"PS384", "RSA", EVP_sha384, true}, {"PS512", "RSA", EVP_sha512, true},
      {"ES256", "EC", EVP_sha256, false, "P-256", 32}, {"ES384", "EC", EVP_sha384, false, "P-384", 48},
      {"ES512", "EC", EVP_sha512, false, "P-521", 66},
  };
  for (const auto& algorithm : kAlgorithms) {
    if (algorithm.name == name) return &algorithm;
  }
  return nullptr;
}

const unsigned char* bytes_of(std::string_view text) { return reinterpret_cast<const unsigned char*>(text.data()); }

std::string member(const nlohmann::json& key, const char* name) {
  const auto found = key.find(name);
  if (found == key.end() || !found->is_string()) throw JwsError(std::string("the key has no \"") + name + "\"");
  return found->get<std::string>();
}

Bn big_number(const std::string& bytes) {
  Bn number(BN_bin2bn(bytes_of(bytes), static_cast<int>(bytes.size()), nullptr));
  if (!number) throw JwsError("the key's numbers cannot be read");
  return number;
}

Pkey make_key(const OSSL_PARAM* params, const char* type) {
  detail::PkeyCtx context(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* key = nullptr;
  if (!context || EVP_PKEY_fromdata_init(context.get()) != 1 ||
      EVP_PKEY_fromdata(context.get(), &key, EVP_PKEY_PUBLIC_KEY, const_cast<OSSL_PARAM*>(params)) != 1) {
    throw JwsError(std::string("the ") + type + " key is not a valid public key");
  }
  return Pkey(key);
}

Pkey rsa_key(const nlohmann::json& jwk) {
  const Bn n = big_number(base64url_decode(member(jwk, "n")));
  const Bn e = big_number(base64url_decode(member(jwk, "e")));
  if (BN_num_bits(n.get()) < 2048) throw JwsError("the RSA key is shorter than 2048 bits");
  if (!BN_is_odd(e.get()) || BN_num_bits(e.get()) < 2 || BN_num_bits(e.get()) > 64) {
    throw JwsError("the RSA key's exponent is not a valid public exponent");
  }
  detail::ParamBld builder(OSSL_PARAM_BLD_new());
  if (!builder || OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
    throw JwsError("the RSA key cannot be built");
  }
  detail::Params params(OSSL_PARAM_BLD_to_param(builder.get()));
  if (!params) throw JwsError("the RSA key cannot be built");
  return make_key(params.get(), "RSA");
}

Pkey ec_key(const nlohmann::json& jwk, const Algorithm& algorithm) {
  if (member(jwk, "crv") != algorithm.curve) {
    throw JwsError("the EC key's curve is not " + std::string(algorithm.curve) + " as " + std::string(algorithm.name) + " needs");
  }
  const std::string x = base64url_decode(member(jwk, "x"));
  const std::string y = base64url_decode(member(jwk, "y"));
  if (x.size() != algorithm.coordinate_bytes || y.size() != algorithm.coordinate_bytes) {
    throw JwsError("the EC key's coordinates have the wrong length");
  }
  std::string point = "\x04" + x + y;  // uncompressed point (SEC 1)
  const char* group = algorithm.curve == "P-256" ? "prime256v1" : (algorithm.curve == "P-384" ? "secp384r1" : "secp521r1");
  detail::ParamBld builder(OSSL_PARAM_BLD_new());
  if (!builder || OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1) {
    throw JwsError("the EC key cannot be built");
  }
  detail::Params params(OSSL_PARAM_BLD_to_param(builder.get()));
  if (!params) throw JwsError("the EC key cannot be built");
  return make_key(params.get(), "EC");
}

// JWS ECDSA signatures are R || S; OpenSSL verifies DER.
std::string ecdsa_der(const std::string& raw, std::size_t coordinate_bytes) {
  if (raw.size() != 2 * coordinate_bytes) throw JwsError("the ECDSA signature has the wrong length");
  detail::EcdsaSig signature(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(bytes_of(raw), static_cast<int>(coordinate_bytes), nullptr);
  BIGNUM* s = BN_bin2bn(bytes_of(raw) + coordinate_bytes, static_cast<int>(coordinate_bytes), nullptr);
  if (!signature || !r || !s || ECDSA_SIG_set0(signature.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    throw JwsError("the ECDSA signature cannot be read");
  }
  const int length = i2d_ECDSA_SIG(signature.get(), nullptr);
  if (length <= 0) throw JwsError("the ECDSA signature cannot be read");
  std::string der(static_cast<std::size_t>(length), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  i2d_ECDSA_SIG(signature.get(), &out);
  return der;
}

// A string member of a JWK, or "" when absent or not a string (a key is only used when its members are
// what the algorithm needs).
std::string text_of(const nlohmann::json& key, const char* name) {
  const auto found = key.find(name);
  return found != key.end() && found->is_string() ? found->get<std::string>() : std::string();
}

// The keys of `keys` that may check `algorithm` under `kid`.
std::vector<const nlohmann::json*> candidate_keys(const nlohmann::json& keys, const Algorithm& algorithm,
                                                  const std::string* kid) {
  std::vector<const nlohmann::json*> all;
  if (keys.is_object() && keys.contains("keys") && keys["keys"].is_array()) {
    for (const auto& key : keys["keys"]) all.push_back(&key);
  } else if (keys.is_object()) {
    all.push_back(&keys);
  }
  std::vector<const nlohmann::json*> usable;
  for (const auto* key : all) {
    if (!key->is_object() || text_of(*key, "kty") != algorithm.kty) continue;
    if (key->contains("use") && text_of(*key, "use") != "sig") continue;
    if (key->contains("alg") && text_of(*key, "alg") != algorithm.name) continue;
    if (kid && text_of(*key, "kid") != *kid) continue;
    usable.push_back(key);
  }
  return usable;
}

}  // namespace

std::string base64url_decode(std::string_view text) {
  static constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve(text.size() * 3 / 4);
  unsigned buffer = 0;
  int bits = 0;
  for (char c : text) {
    const auto value = kAlphabet.find(c);
    if (value == std::string_view::npos) throw JwsError("not base64url");
    buffer = (buffer << 6) | static_cast<unsigned>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  if (bits >= 6) throw JwsError("not base64url");  // a length of 4k+1 characters
  return out;
}

VerifiedJws verify_jws(std::string_view compact, const nlohmann::json& keys) {
  const auto first = compact.find('.');
  const auto second = first == std::string_view::npos ? first : compact.find('.', first + 1);
  if (second == std::string_view::npos || compact.find('.', second + 1) != std::string_view::npos) {
    throw JwsError("not a compact JWS (three base64url parts)");
  }
  VerifiedJws result;
  result.header = nlohmann::json::parse(base64url_decode(compact.substr(0, first)), nullptr, false);
  if (!result.header.is_object()) throw JwsError("the JWS header is not a JSON object");
  if (!result.header.contains("alg") || !result.header["alg"].is_string()) throw JwsError("the JWS header has no alg");
  const std::string alg = result.header["alg"].get<std::string>();
  const Algorithm* algorithm = find_algorithm(alg);
  if (!algorithm) {
    throw JwsError("the JWS algorithm \"" + alg.substr(0, 20) +
                   "\" is not accepted (RS256/384/512, PS256/384/512, ES256/384/512)");
  }
  if (result.header.contains("crit")) throw JwsError("the JWS header has critical extensions this service does not know");
  std::optional<std::string> kid;
  if (result.header.contains("kid")) {
    if (!result.header["kid"].is_string()) throw JwsError("the JWS header's kid is not a string");
    kid = result.header["kid"].get<std::string>();
  }
  const auto usable = candidate_keys(keys, *algorithm, kid ? &*kid : nullptr);
  if (usable.empty()) {
    throw JwsError(kid ? "no key of the issuer has the token's kid and algorithm " + alg
                       : "no key of the issuer fits the token's algorithm " + alg);
  }
  if (!kid && usable.size() > 1) throw JwsError("the token names no kid and the issuer has several keys for " + alg);
  const Pkey key = algorithm->kty == "RSA" ? rsa_key(*usable.front()) : ec_key(*usable.front(), *algorithm);

  std::string signature = base64url_decode(compact.substr(second + 1));
  if (algorithm->kty == "EC") signature = ecdsa_der(signature, algorithm->coordinate_bytes);
  const std::string_view input = compact.substr(0, second);
  detail::MdCtx context(EVP_MD_CTX_new());
  EVP_PKEY_CTX* key_context = nullptr;
  if (!context || EVP_DigestVerifyInit(context.get(), &key_context, algorithm->digest(), nullptr, key.get()) != 1) {
    throw JwsError("the signature cannot be checked");
  }
  if (algorithm->pss && (EVP_PKEY_CTX_set_rsa_padding(key_context, RSA_PKCS1_PSS_PADDING) != 1 ||
                         EVP_PKEY_CTX_set_rsa_pss_saltlen(key_context, RSA_PSS_SALTLEN_DIGEST) != 1)) {
    throw JwsError("the signature cannot be checked");
  }
  if (EVP_DigestVerify(context.get(), bytes_of(signature), signature.size(), bytes_of(input), input.size()) != 1) {
    throw JwsError("the signature does not verify with the issuer's key");
  }
  result.payload = nlohmann::json::parse(base64url_decode(compact.substr(first + 1, second - first - 1)), nullptr, false);
  if (!result.payload.is_object()) throw JwsError("the JWS payload is not a JSON object");
  return result;
}

}  // namespace p2p::crypto
