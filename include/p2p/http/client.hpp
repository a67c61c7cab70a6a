#pragma once
// Outbound HTTP/1.1 client (Beast + OpenSSL): TLS verified by default with SNI and host-name checks,
// connect and read deadlines, keep-alive connection reuse per origin, a response size limit, gzip.
// It moves bytes and reports transport failures; what a status or a body means is the caller's job.
// Beast and OpenSSL stay inside client.cpp; this header is cheap to include.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

namespace p2p::http {

struct ClientOptions {
  bool verify_tls = true;
  std::string ca_file;                 // empty: the system's default trust store
  int connect_timeout_seconds = 10;    // DNS + TCP + TLS handshake
  int read_timeout_seconds = 60;       // whole response once the request is sent (and the request write)
  std::size_t max_response_bytes = 64 * 1024 * 1024;  // after decompression
  std::size_t max_idle_connections_per_origin = 4;
  int idle_timeout_seconds = 30;       // an idle connection older than this is closed, not reused
  std::string user_agent = "p2p-exchange";
};

struct ClientRequest {
  std::string method = "GET";
  std::string url;  // absolute http:// or https:// URL without credentials; the fragment is not sent
  // Sent as given, after the defaults are applied: a Host, User-Agent or Accept-Encoding given here
  // replaces the default. Content-Length and Transfer-Encoding are always set by the client.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // false for a request that must never be sent twice (a refresh-token grant, which rotates the
  // token): it goes on a fresh connection and is not replayed when the connection closes unanswered.
  bool idempotent = true;
  // The largest body accepted for this request (after decompression); 0: ClientOptions' limit.
  std::size_t max_response_bytes = 0;
  // Storage for the response body, for a caller that reads one large body after another (pages): its
  // capacity is reused (its text is replaced; copying a request copies only the text: move it in).
  // send() takes it.
  std::string response_buffer;
};

struct ClientResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names as received
  std::string body;  // decoded when the server sent it gzip-encoded

  // The first header with this (case-insensitive) name.
  std::optional<std::string_view> header(std::string_view name) const;
};

// A transport-level failure: there is no HTTP status to act on.
class FetchError : public std::runtime_error {
 public:
  enum class Kind {
    kResolve,   // the host name did not resolve (the request was not sent)
    kConnect,   // no TCP connection could be made (the request was not sent)
    kTls,       // the TLS handshake or the TLS layer failed, e.g. the certificate was not trusted
    kTimeout,   // the connect or read deadline passed
    kTooLarge,         // the response body (after decompression) exceeds the request's limit
    kHeadersTooLarge,  // the response headers exceed the client's fixed limit (64 KiB)
    kProtocol,  // a bad URL or request, or a response that was cut off or is not valid HTTP/gzip
  };
  FetchError(Kind kind, std::string message);
  Kind kind() const { return kind_; }
  // True when the request provably never left: the failure came while resolving, connecting or
  // shaking hands (TLS), before a byte of it was written. Otherwise the server may have received it.
  bool unsent() const { return unsent_; }
  void set_unsent() { unsent_ = true; }

 private:
  Kind kind_;
  bool unsent_ = false;
};

// The name of a kind, e.g. "timeout", for logs and metrics.
std::string_view to_string(FetchError::Kind kind);

class HttpClient {
 public:
  // Throws std::runtime_error if the CA file cannot be loaded.
  HttpClient(boost::asio::any_io_executor executor, ClientOptions options);
  // Closes the idle connections. Every send() must have finished before the client is destroyed.
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends the request and reads the whole response (body decoded when gzip). Reuses an idle kept-alive
  // connection to the same origin when there is one; a reused connection that turns out closed by the
  // server is retried once on a fresh connection (only for requests that were not partly answered).
  // Any HTTP status is a response; transport failures throw FetchError. Callable concurrently from
  // coroutines on any thread of a multi-threaded io_context. The body is sent from the request itself
  // (move a large one in).
  boost::asio::awaitable<ClientResponse> send(ClientRequest request);

  // send() without taking the request: for a caller that may send it again (a retry of a large body
  // would otherwise copy it each time). The request must outlive the returned awaitable: co_await it
  // at once, with the request a local of the awaiting coroutine. Its response_buffer is not used.
  boost::asio::awaitable<ClientResponse> send_borrowed(const ClientRequest& request);

  struct Stats {
    std::uint64_t connections_opened = 0;
    std::uint64_t requests = 0;
    std::uint64_t idle_connections = 0;  // kept-alive connections waiting in the pool now
  };
  Stats stats() const;

 private:
  boost::asio::awaitable<ClientResponse> send_request(const ClientRequest& request, std::string buffer);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace p2p::http
