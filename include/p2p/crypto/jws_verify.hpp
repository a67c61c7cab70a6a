#pragma once
// Verification of a compact JWS (RFC 7515), e.g. an OpenID Connect id token, against the issuer's
// public keys given as a JWK or a JWK Set (RFC 7517). Asymmetric algorithms only: RS256/384/512,
// PS256/384/512 and ES256/384/512 (RFC 7518); "none" and the HMAC algorithms are refused, so a token
// cannot choose to be checked with nothing or with a public key used as a shared secret. Claims are not
// looked at here (oauth/id_token.hpp does that).
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace p2p::crypto {

class JwsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct VerifiedJws {
  nlohmann::json header;
  nlohmann::json payload;  // the claims, a JSON object
};

// Checks the signature of `compact` ("header.payload.signature", base64url) with the key of `keys`
// (one JWK, or {"keys": [...]}) whose kid is the header's, or the only key of a matching type when the
// header names no kid. Keys whose "use" is not "sig" or whose "alg" differs are not used. Throws
// JwsError saying what did not hold; never echoes the token.
VerifiedJws verify_jws(std::string_view compact, const nlohmann::json& keys);

// base64url without padding, decoded; throws JwsError on characters outside the alphabet.
std::string base64url_decode(std::string_view text);

}  // namespace p2p::crypto
