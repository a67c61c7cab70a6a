#pragma once
// The service's own signing keys, for authenticating to a source payer's token endpoint with a signed
// JWT (`private_key_jwt`, SMART Backend Services; RFC 7523). RSA keys of at least 2048 bits sign
// RS384, P-384 keys ES384. Each key's `kid` is its RFC 7638 thumbprint. Several keys may be loaded at
// once, for rotation: the first one signs, all of them are published (the JWKS a source payer
// registers), so a payer that cached the old set keeps verifying while the new key is rolled out.
// The private keys stay in this object: nothing here returns or prints them.
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace p2p::crypto {

class SigningKeyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class SigningKeys {
 public:
  SigningKeys();  // no keys: private_key_jwt is not available
  ~SigningKeys();
  SigningKeys(SigningKeys&&) noexcept;
  SigningKeys& operator=(SigningKeys&&) noexcept;

  // Reads PEM private keys (PKCS#8 or traditional, unencrypted) from files. Throws SigningKeyError
  // naming the file and what to change (unreadable, encrypted, not a private key, a type or size that
  // cannot sign RS384/ES384, the same key twice).
  static SigningKeys load(const std::vector<std::string>& pem_files);
  // The same from PEM text; `names` say which key an error is about (e.g. the file names).
  static SigningKeys from_pem(const std::vector<std::string>& pems, const std::vector<std::string>& names);

  bool empty() const { return keys_.empty(); }
  std::size_t size() const { return keys_.size(); }

  // {"keys":[...]}: the public keys (kty, kid, use "sig", alg, and n/e or crv/x/y), signing key first.
  const std::string& public_jwks() const { return public_jwks_; }
  // The signing key's kid and JWS algorithm (RS384 or ES384). Throws SigningKeyError when empty().
  const std::string& signing_kid() const;
  const std::string& signing_algorithm() const;

  // A compact JWS of `claims` signed with the first key; header {"alg","kid","typ":"JWT"}. Throws
  // SigningKeyError when empty() or when OpenSSL fails.
  std::string sign_jwt(const nlohmann::json& claims) const;

 private:
  struct Key;
  std::vector<std::shared_ptr<const Key>> keys_;
  std::string public_jwks_ = R"({"keys":[]})";
};

// RFC 7638 thumbprint (SHA-256, base64url) of a public JWK: its required members only (RSA: e, kty,
// n; EC: crv, kty, x, y), in that order, without whitespace. Throws SigningKeyError for other kty.
std::string jwk_thumbprint(const nlohmann::json& public_jwk);

// base64url without padding (RFC 7515 section 2).
std::string base64url_encode(std::string_view bytes);

}  // namespace p2p::crypto
