#pragma once
// The OpenSSL contexts of the service (private to src/http): the server's, from the configured
// certificate and key (http.tls), and the outbound client's. Both speak TLS 1.2 or later.
#include <memory>
#include <string>

#include <boost/asio/ssl/context.hpp>

namespace p2p::http {

// The server side: TLS 1.2 or later with OpenSSL's default cipher policy (Debian 12: security level
// 2), no renegotiation. Throws std::runtime_error naming the file that is wrong and what is wrong
// with it (both must be PEM; the key unencrypted and matching the certificate).
std::unique_ptr<boost::asio::ssl::context> make_server_tls_context(const std::string& cert_file,
                                                                   const std::string& key_file);

// The client side: TLS 1.2 or later, no compression; verifies peers against `ca_file` (PEM) when
// given, else the system's store, unless `verify_tls` is false. Throws std::runtime_error when the CA
// file or the system store cannot be loaded.
boost::asio::ssl::context make_client_tls_context(bool verify_tls, const std::string& ca_file);

}  // namespace p2p::http
