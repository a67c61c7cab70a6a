#include "http/tls_context.hpp"

#include <stdexcept>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

namespace p2p::http {

namespace asio = boost::asio;

// The server side of TLS: TLS 1.2 or later with OpenSSL's default cipher policy (Debian 12: security
// level 2), no renegotiation. Every problem names the file and what is wrong with it.
std::unique_ptr<asio::ssl::context> make_server_tls_context(const std::string& cert_file, const std::string& key_file) {
  if (cert_file.empty() || key_file.empty()) {
    throw std::runtime_error("HTTPS needs both http.tls.certFile and http.tls.keyFile (or neither, for plain HTTP)");
  }
  auto context = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
  SSL_CTX* native = context->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // A key that needs a passphrase is refused here instead of OpenSSL prompting on the terminal.
  context->set_password_callback([](std::size_t, asio::ssl::context::password_purpose) { return std::string(); });
  // The key first: loaded after it, a certificate that does not match merely unsets it, and the check
  // below can then say so (the other order fails with OpenSSL's "key values mismatch").
  boost::system::error_code error;
  context->use_private_key_file(key_file, asio::ssl::context::pem, error);
  if (error) {
    throw std::runtime_error("http.tls.keyFile \"" + key_file + "\" is not a usable private key: " + error.message() +
                             " (it must be an unencrypted PEM private key)");
  }
  context->use_certificate_chain_file(cert_file, error);
  if (error) {
    throw std::runtime_error("http.tls.certFile \"" + cert_file + "\" is not a usable certificate: " + error.message() +
                             " (it must be PEM: the server certificate first, then any intermediate CA certificates)");
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    throw std::runtime_error("http.tls.keyFile \"" + key_file + "\" does not match the certificate in http.tls.certFile \"" +
                             cert_file + "\": give the private key of that certificate");
  }
  if (X509* certificate = SSL_CTX_get0_certificate(native);
      certificate != nullptr && X509_cmp_current_time(X509_get0_notAfter(certificate)) < 0) {
    spdlog::warn("the certificate in http.tls.certFile \"{}\" has expired: clients will refuse it until it is renewed",
                 cert_file);
  }
  return context;
}

asio::ssl::context make_client_tls_context(bool verify_tls, const std::string& ca_file) {
  asio::ssl::context context(asio::ssl::context::tls_client);
  if (SSL_CTX_set_min_proto_version(context.native_handle(), TLS1_2_VERSION) != 1) {
    throw std::runtime_error("OpenSSL refused to set TLS 1.2 as the minimum version");
  }
  context.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression);
  boost::system::error_code error;
  if (!ca_file.empty()) {
    context.load_verify_file(ca_file, error);
    if (error) {
      throw std::runtime_error("cannot load the CA file \"" + ca_file + "\" (ca_file): " + error.message() +
                               "; it must be readable PEM with one or more certificates");
    }
  } else if (verify_tls) {
    context.set_default_verify_paths(error);
    if (error) throw std::runtime_error("cannot load the system's trusted CA certificates: " + error.message());
  }
  context.set_verify_mode(verify_tls ? asio::ssl::verify_peer : asio::ssl::verify_none);
  return context;
}

}  // namespace p2p::http
