#pragma once
// The HTTP/1.1 server (Boost.Beast over Asio, one coroutine per connection on the service's I/O
// context; blocking route handlers on its blocking pool). It applies the body limit and timeouts,
// assigns request ids, authenticates, routes, turns ApiError into problem+json, records metrics,
// writes the access log, and shuts down gracefully when stopped; optionally speaks HTTPS (OpenSSL).
// Beast stays inside server.cpp; this header is cheap to include.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "p2p/http/api_key_auth.hpp"
#include "p2p/metrics/registry.hpp"
#include "p2p/http/router.hpp"
#include "p2p/runtime/runtime.hpp"

namespace p2p::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::size_t body_limit_bytes = 1024 * 1024;
  std::size_t header_limit_bytes = 16 * 1024;
  int header_timeout_seconds = 10;
  int read_timeout_seconds = 30;
  int write_timeout_seconds = 30;
  int idle_timeout_seconds = 60;
  int shutdown_grace_seconds = 20;
  // HTTPS on the port when both are set (PEM files; TLS 1.2 or later). The TLS handshake must finish
  // within header_timeout_seconds. listen() loads them and throws naming the file that is wrong.
  std::string tls_cert_file;
  std::string tls_key_file;
};

class Server {
 public:
  // Declares its metrics in `registry` (requests, latency, in-flight requests, open connections).
  Server(ServerOptions options, const runtime::Runtime& runtime, const Router& router, const ApiKeyAuth& auth,
         metrics::Registry& registry);
  // Once started, stop() must have completed before the server is destroyed.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Loads the TLS certificate and key (when set), binds and listens. Throws std::runtime_error saying
  // which file is unusable or which address could not be bound, and why.
  void listen();
  // The bound port (useful when the configured port is 0).
  std::uint16_t port() const;
  // Whether the port speaks HTTPS.
  bool tls() const;
  // Accepts connections (after listen()) on the runtime's I/O threads, until stop().
  void start();
  // Stops accepting, closes idle connections, lets in-flight requests finish (answered with
  // Connection: close) for up to shutdown_grace_seconds, then closes the rest. Completes when every
  // connection has ended.
  boost::asio::awaitable<void> stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace p2p::http
