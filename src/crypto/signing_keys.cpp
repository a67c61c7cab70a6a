#include "p2p/crypto/signing_keys.hpp"

#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "openssl_handles.hpp"
#include "p2p/crypto/token_cipher.hpp"
#include "p2p/util/crypto.hpp"

namespace p2p::crypto {
namespace {

using nlohmann::json;

using detail::Bn;
using detail::Pkey;

constexpr int kMinRsaBits = 2048;
constexpr std::size_t kP384Bytes = 48;  // one coordinate, one ECDSA r or s

// The reason of the oldest OpenSSL error queued (the first thing that failed), for messages; never key
// material. Clears the queue.
std::string openssl_reason() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no reason given";
  const char* reason = ERR_reason_error_string(code);
  return reason != nullptr ? reason : "error " + std::to_string(code);
}

// Refuses a PEM passphrase prompt: an encrypted key fails to load instead of blocking on a terminal.
int no_passphrase(char*, int, int, void*) { return -1; }

std::string big_endian(const BIGNUM* number, std::size_t width = 0) {
  std::string bytes(width > 0 ? width : static_cast<std::size_t>(BN_num_bytes(number)), '\0');
  const int written = width > 0 ? BN_bn2binpad(number, reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(width))
                                : BN_bn2bin(number, reinterpret_cast<unsigned char*>(bytes.data()));
  if (written < 0) throw SigningKeyError("a key or signature number does not fit its size");
  return bytes;
}

Bn bn_param(const EVP_PKEY* key, const char* name) {
  BIGNUM* number = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &number) != 1) {
    throw SigningKeyError(std::string("cannot read the key's ") + name + ": " + openssl_reason());
  }
  return Bn(number);
}

}  // namespace

struct SigningKeys::Key {
  Pkey pkey;
  std::string kid;
  std::string algorithm;  // RS384 or ES384
  bool ec = false;
};

std::string base64url_encode(std::string_view bytes) {
  std::string text = base64_encode(bytes);
  while (!text.empty() && text.back() == '=') text.pop_back();
  for (char& c : text) {
    if (c == '+') c = '-';
    else if (c == '/') c = '_';
  }
  return text;
}

std::string jwk_thumbprint(const json& jwk) {
  const auto member = [&jwk](const char* name) -> std::string {
    const auto found = jwk.find(name);
    if (found == jwk.end() || !found->is_string()) throw SigningKeyError(std::string("the JWK has no ") + name);
    return found->get<std::string>();
  };
  // RFC 7638 section 3.2: the required members in lexicographic order, no whitespace. Their values are
  // base64url or fixed names, so json::dump writes them without escapes.
  const std::string kty = member("kty");
  std::string canonical;
  if (kty == "RSA") {
    canonical = json({{"e", member("e")}, {"kty", kty}, {"n", member("n")}}).dump();
  } else if (kty == "EC") {
    canonical = json({{"crv", member("crv")}, {"kty", kty}, {"x", member("x")}, {"y", member("y")}}).dump();
  } else {
    throw SigningKeyError("a JWK of kty \"" + kty + "\" has no thumbprint here (RSA or EC)");
  }
  const auto digest = util::sha256(canonical);
  return base64url_encode(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

SigningKeys::SigningKeys() = default;
SigningKeys::~SigningKeys() = default;
SigningKeys::SigningKeys(SigningKeys&&) noexcept = default;
SigningKeys& SigningKeys::operator=(SigningKeys&&) noexcept = default;

SigningKeys SigningKeys::load(const std::vector<std::string>& pem_files) {
  std::vector<std::string> pems;
  pems.reserve(pem_files.size());
  for (const auto& file : pem_files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw SigningKeyError("cannot read the signing key file " + file + ": check the path and its permissions");
    std::ostringstream text;
    text << in.rdbuf();
    pems.push_back(text.str());
  }
  try {
    SigningKeys keys = from_pem(pems, pem_files);
    for (auto& pem : pems) OPENSSL_cleanse(pem.data(), pem.size());
    return keys;
  } catch (...) {
    for (auto& pem : pems) OPENSSL_cleanse(pem.data(), pem.size());
    throw;
  }
}

SigningKeys SigningKeys::from_pem(const std::vector<std::string>& pems, const std::vector<std::string>& names) {
  SigningKeys keys;
  std::set<std::string> kids;
  json published = json::array();
  for (std::size_t i = 0; i < pems.size(); ++i) {
    const std::string name = i < names.size() ? names[i] : "key " + std::to_string(i + 1);
    const std::string& pem = pems[i];
    if (pem.find("ENCRYPTED") != std::string::npos) {
      throw SigningKeyError("the signing key " + name + " is encrypted; give the service an unencrypted PEM "
                            "(e.g. openssl pkey -in " + name + " -out key.pem) and protect the file instead");
    }
    detail::Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (!bio) throw SigningKeyError("out of memory reading the signing key " + name);
    Pkey pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
    if (!pkey) {
      throw SigningKeyError("the signing key " + name + " is not a PEM private key (" + openssl_reason() +
                            "); make one with: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out " + name);
    }
    auto key = std::make_shared<Key>();
    json jwk;
    if (EVP_PKEY_is_a(pkey.get(), "RSA")) {
      const int bits = EVP_PKEY_get_bits(pkey.get());
      if (bits < kMinRsaBits) {
        throw SigningKeyError("the signing key " + name + " is RSA of " + std::to_string(bits) +
                              " bits; RS384 needs at least 2048 (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072)");
      }
      key->algorithm = "RS384";
      const Bn n = bn_param(pkey.get(), OSSL_PKEY_PARAM_RSA_N);
      const Bn e = bn_param(pkey.get(), OSSL_PKEY_PARAM_RSA_E);
      jwk = {{"kty", "RSA"}, {"n", base64url_encode(big_endian(n.get()))}, {"e", base64url_encode(big_endian(e.get()))}};
    } else if (EVP_PKEY_is_a(pkey.get(), "EC")) {
      char group[64] = {};
      std::size_t length = 0;
      if (EVP_PKEY_get_utf8_string_param(pkey.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &length) != 1 ||
          (std::string_view(group, length) != "secp384r1" && std::string_view(group, length) != "P-384")) {
        throw SigningKeyError("the signing key " + name + " is EC on curve \"" + std::string(group, length) +
                              "\"; ES384 needs P-384 (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384)");
      }
      key->algorithm = "ES384";
      key->ec = true;
      const Bn x = bn_param(pkey.get(), OSSL_PKEY_PARAM_EC_PUB_X);
      const Bn y = bn_param(pkey.get(), OSSL_PKEY_PARAM_EC_PUB_Y);
      jwk = {{"kty", "EC"},
             {"crv", "P-384"},
             {"x", base64url_encode(big_endian(x.get(), kP384Bytes))},
             {"y", base64url_encode(big_endian(y.get(), kP384Bytes))}};
    } else {
      throw SigningKeyError("the signing key " + name + " is neither RSA nor EC; use RSA (2048 bits or more, RS384) "
                            "or EC P-384 (ES384)");
    }
    // A corrupt key would publish a JWK that verifies nothing this service signs.
    const detail::PkeyCtx check(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr));
    if (!check || EVP_PKEY_pairwise_check(check.get()) != 1) {
      throw SigningKeyError("the signing key " + name + " is inconsistent (its public and private halves do not match: " +
                            openssl_reason() + "); make a new one");
    }
    key->kid = jwk_thumbprint(jwk);
    if (!kids.insert(key->kid).second) {
      throw SigningKeyError("the signing key " + name + " is the same key as an earlier one in exchange.clientSigningKeys");
    }
    jwk["kid"] = key->kid;
    jwk["use"] = "sig";
    jwk["alg"] = key->algorithm;
    key->pkey = std::move(pkey);
    published.push_back(std::move(jwk));
    keys.keys_.push_back(std::move(key));
  }
  keys.public_jwks_ = json({{"keys", std::move(published)}}).dump();
  return keys;
}

const std::string& SigningKeys::signing_kid() const {
  if (keys_.empty()) throw SigningKeyError("no signing key: set exchange.clientSigningKeys");
  return keys_.front()->kid;
}

const std::string& SigningKeys::signing_algorithm() const {
  if (keys_.empty()) throw SigningKeyError("no signing key: set exchange.clientSigningKeys");
  return keys_.front()->algorithm;
}

std::string SigningKeys::sign_jwt(const json& claims) const {
  if (keys_.empty()) throw SigningKeyError("no signing key: set exchange.clientSigningKeys");
  const Key& key = *keys_.front();
  const json header = {{"alg", key.algorithm}, {"kid", key.kid}, {"typ", "JWT"}};
  std::string input = base64url_encode(header.dump()) + "." + base64url_encode(claims.dump());

  detail::MdCtx context(EVP_MD_CTX_new());
  std::size_t length = 0;
  if (!context || EVP_DigestSignInit(context.get(), nullptr, EVP_sha384(), nullptr, key.pkey.get()) != 1 ||
      EVP_DigestSign(context.get(), nullptr, &length, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1) {
    throw SigningKeyError("cannot sign a JWT: " + openssl_reason());
  }
  std::string signature(length, '\0');
  if (EVP_DigestSign(context.get(), reinterpret_cast<unsigned char*>(signature.data()), &length,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    throw SigningKeyError("cannot sign a JWT: " + openssl_reason());
  }
  signature.resize(length);
  if (key.ec) {
    // OpenSSL writes ECDSA signatures as DER; JWS (RFC 7518 section 3.4) wants r and s, 48 bytes each.
    const auto* der = reinterpret_cast<const unsigned char*>(signature.data());
    detail::EcdsaSig parsed(d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(signature.size())));
    if (!parsed) throw SigningKeyError("cannot read OpenSSL's ECDSA signature: " + openssl_reason());
    const BIGNUM* r = nullptr;
    const BIGNUM* s = nullptr;
    ECDSA_SIG_get0(parsed.get(), &r, &s);
    signature = big_endian(r, kP384Bytes) + big_endian(s, kP384Bytes);
  }
  input.push_back('.');
  input.append(base64url_encode(signature));
  return input;
}

}  // namespace p2p::crypto
