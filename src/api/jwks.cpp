// GET /.well-known/jwks.json: the public keys of this service's private_key_jwt client assertions
// (exchange.clientSigningKeys), the URL a source payer registers for SMART Backend Services. Open, as
// a JWKS URL must be; an empty set when no key is configured.
#include "p2p/api/routes.hpp"

namespace p2p::api {

void add_jwks_routes(http::Router& router, ApiContext context) {
  const crypto::SigningKeys& keys = context.signing_keys;
  router.add("GET", "/.well-known/jwks.json",
             [&keys](const http::Request&, const http::PathParams&) {
               http::Response response = http::Response::text(200, keys.public_jwks(), "application/jwk-set+json");
               // A payer may cache it this long: a new key is published before it signs (docs/security.md).
               response.set_header("Cache-Control", "public, max-age=300");
               return response;
             },
             {.requires_auth = false});
}

}  // namespace p2p::api
