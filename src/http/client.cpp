#include "p2p/http/client.hpp"
#include "p2p/util/text.hpp"
#include "http/client_wire.hpp"
#include "http/gzip.hpp"
#include "http/tls_context.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <iterator>
#include <mutex>
#include <unordered_map>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

namespace p2p::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Kind = FetchError::Kind;
using Clock = std::chrono::steady_clock;
using Strand = asio::strand<asio::any_io_executor>;
using client_wire::Target;
using client_wire::WireRequest;
using Parser = bhttp::response_parser<bhttp::string_body>;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint32_t kHeaderLimitBytes = 64 * 1024;
using util::iequals;

// The OpenSSL reason ("certificate verify failed") and, when the peer's certificate was refused, why
// ("self-signed certificate", "hostname mismatch").
std::string describe_tls_error(const error_code& error, SSL* ssl) {
  std::string text;
  if (error.category() == asio::error::get_ssl_category()) {
    const char* reason = ERR_reason_error_string(static_cast<unsigned long>(error.value()));
    text = reason != nullptr ? reason : error.message();
  } else {
    text = error.message();
  }
  if (ssl != nullptr) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) text += std::string(": ") + X509_verify_cert_error_string(verify);
  }
  return text;
}

// The peer closed the connection (or reset it): on a reused idle connection this means the server
// dropped it while it sat in the pool, and the request can be sent again on a fresh one.
bool is_closed_by_peer(const error_code& error) {
  return error == bhttp::error::end_of_stream || error == bhttp::error::partial_message ||
         error == asio::error::eof || error == asio::error::connection_reset ||
         error == asio::error::connection_aborted || error == asio::error::broken_pipe ||
         error == ssl::error::stream_truncated;
}

FetchError exchange_error(const error_code& error, bool sending, const Target& target, const ClientOptions& options,
                          SSL* ssl) {
  if (error == beast::error::timeout) {
    return {Kind::kTimeout, target.where + ": " +
                                (sending ? "the request could not be sent" : "no complete response arrived") +
                                " within " + std::to_string(options.read_timeout_seconds) +
                                " s (read_timeout_seconds)"};
  }
  if (error == bhttp::error::body_limit) {
    return {Kind::kTooLarge, target.where + ": the response body is larger than the limit of " +
                                 std::to_string(target.max_response_bytes) + " bytes"};
  }
  if (error == bhttp::error::header_limit) {
    return {Kind::kHeadersTooLarge, target.where + ": the response headers are larger than the limit of " +
                                 std::to_string(kHeaderLimitBytes) + " bytes"};
  }
  if (error == asio::error::operation_aborted) return {Kind::kProtocol, target.where + ": the request was cancelled"};
  if (is_closed_by_peer(error)) {
    return {Kind::kProtocol, target.where + ": the server closed the connection " +
                                 (sending ? "while the request was being sent" : "before the response was complete") +
                                 " (" + error.message() + ")"};
  }
  if (error.category() == asio::error::get_ssl_category()) {
    return {Kind::kTls, target.where + ": the TLS connection failed: " + describe_tls_error(error, ssl)};
  }
  if (sending) return {Kind::kProtocol, target.where + ": sending the request failed: " + error.message()};
  return {Kind::kProtocol, target.where + ": the response is not valid HTTP/1.1: " + error.message()};
}

// One connection to an origin. Its streams run on their own strand, and every operation on it runs on
// that strand: the timeouts of tcp_stream fire as handlers on the stream's executor.
struct Connection {
  Connection(Strand executor, ssl::context* tls_context) : strand(std::move(executor)) {
    if (tls_context != nullptr) {
      tls.emplace(strand, *tls_context);
    } else {
      plain.emplace(strand);
    }
  }
  beast::tcp_stream& tcp() { return tls ? beast::get_lowest_layer(*tls) : *plain; }

  Strand strand;
  Clock::time_point idle_since;  // when it went back to the pool
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
};

// The outcome of writing a request and reading its response on one connection.
struct Exchanged {
  error_code error;
  bool sending = false;    // the error happened while writing the request
  bool answered = false;   // some bytes of a response arrived
  bool reusable = false;   // the response allows keep-alive, was read to its end and nothing followed it
  bhttp::response<bhttp::string_body> message;
};

constexpr std::size_t kReadBufferBytes = 64 * 1024;

// `body_buffer`: storage the response body takes over (ClientRequest::response_buffer).
template <class Stream>
asio::awaitable<Exchanged> write_and_read(Stream& stream, beast::tcp_stream& lowest, const WireRequest& wire,
                                          const ClientOptions& options, std::size_t max_response_bytes,
                                          std::string& body_buffer) {
  Exchanged out;
  lowest.expires_after(std::chrono::seconds(options.read_timeout_seconds));
  auto [write_error, written] = co_await bhttp::async_write(stream, wire, kTuple);
  (void)written;
  if (write_error) {
    out.error = write_error;
    out.sending = true;
    co_return out;
  }
  lowest.expires_after(std::chrono::seconds(options.read_timeout_seconds));  // covers every read below
  // Beast reads at most what the buffer can hold without growing, and at least 512 bytes: a fresh buffer
  // would read a page of 130 KB in 260 reads of 512 bytes (one system call and one trip through the
  // executor each). With room for 64 KiB, a read takes what the socket has.
  beast::flat_buffer buffer;
  buffer.reserve(kReadBufferBytes);
  for (;;) {
    Parser parser;
    body_buffer.clear();  // (the body reader appends)
    parser.get().body() = std::move(body_buffer);
    parser.header_limit(kHeaderLimitBytes);
    parser.body_limit(static_cast<std::uint64_t>(max_response_bytes));
    if (wire.method() == bhttp::verb::head) parser.skip(true);
    auto [read_error, read] = co_await bhttp::async_read(stream, buffer, parser, kTuple);
    (void)read;
    out.answered = out.answered || parser.got_some() || buffer.size() > 0;
    if (read_error == ssl::error::stream_truncated && parser.is_header_done() && parser.need_eof()) {
      // A body delimited by the end of the connection, closed without TLS close_notify: take it, as
      // browsers and curl do (the body is JSON that a truncation would break anyway).
      read_error = {};
      parser.put_eof(read_error);
    }
    if (read_error) {
      out.error = read_error;
      co_return out;
    }
    const unsigned status = parser.get().result_int();
    if (status >= 100 && status < 200 && status != 101) {  // an interim response: the final one follows
      body_buffer = std::move(parser.get().body());
      continue;
    }
    out.reusable = parser.get().keep_alive() && parser.is_done() && buffer.size() == 0 && status != 101;
    out.message = parser.release();
    break;
  }
  co_return out;
}

}  // namespace

FetchError::FetchError(Kind kind, std::string message) : std::runtime_error(std::move(message)), kind_(kind) {}

std::string_view to_string(FetchError::Kind kind) {
  switch (kind) {
    case Kind::kResolve:
      return "resolve";
    case Kind::kConnect:
      return "connect";
    case Kind::kTls:
      return "tls";
    case Kind::kTimeout:
      return "timeout";
    case Kind::kTooLarge:
      return "too_large";
    case Kind::kHeadersTooLarge:
      return "headers_too_large";
    case Kind::kProtocol:
      return "protocol";
  }
  return "unknown";
}

std::optional<std::string_view> ClientResponse::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return std::string_view(value);
  }
  return std::nullopt;
}

struct HttpClient::Impl {
  Impl(asio::any_io_executor exec, ClientOptions opts)
      : executor(std::move(exec)), options(std::move(opts)), tls_context(make_client_tls_context(options.verify_tls, options.ca_file)) {}

  asio::any_io_executor executor;
  ClientOptions options;
  ssl::context tls_context;
  std::mutex pool_mutex;
  std::unordered_map<std::string, std::vector<std::unique_ptr<Connection>>> idle;  // by origin, newest last
  std::atomic<std::uint64_t> connections_opened{0};
  std::atomic<std::uint64_t> requests{0};

  // The newest idle connection to the origin, if one has not been idle too long. Connections idle
  // longer are dropped: servers and middleboxes close them, sometimes silently.
  std::unique_ptr<Connection> take_idle(const std::string& origin) {
    std::vector<std::unique_ptr<Connection>> expired;  // closed after the lock is released
    std::lock_guard lock(pool_mutex);
    const auto found = idle.find(origin);
    if (found == idle.end()) return nullptr;
    auto& connections = found->second;
    const auto oldest_usable = Clock::now() - std::chrono::seconds(options.idle_timeout_seconds);
    const auto fresh = std::find_if(connections.begin(), connections.end(),
                                    [&](const auto& connection) { return connection->idle_since >= oldest_usable; });
    std::move(connections.begin(), fresh, std::back_inserter(expired));
    connections.erase(connections.begin(), fresh);
    if (connections.empty()) return nullptr;
    auto connection = std::move(connections.back());
    connections.pop_back();
    return connection;
  }

  void give_back(const std::string& origin, std::unique_ptr<Connection> connection) {
    connection->tcp().expires_never();
    connection->idle_since = Clock::now();
    std::unique_ptr<Connection> surplus;  // closed after the lock is released
    std::lock_guard lock(pool_mutex);
    auto& connections = idle[origin];
    if (connections.size() >= options.max_idle_connections_per_origin) {  // the oldest goes
      surplus = std::move(connections.front());
      connections.erase(connections.begin());
    }
    connections.push_back(std::move(connection));
  }

  std::unique_ptr<Connection> new_connection(const Target& target) {
    return std::make_unique<Connection>(asio::make_strand(executor), target.tls ? &tls_context : nullptr);
  }

  // Resolves under the connect deadline. asio cannot interrupt getaddrinfo, so instead of cancelling the
  // lookup this stops waiting for it: the lookup finishes in the background and its result is dropped.
  asio::awaitable<tcp::resolver::results_type> resolve(const Strand& strand, const Target& target,
                                                       Clock::time_point deadline) {
    struct Lookup {
      explicit Lookup(const Strand& s) : resolver(s), done(s) {}
      tcp::resolver resolver;
      asio::steady_timer done;
      std::optional<std::pair<error_code, tcp::resolver::results_type>> result;
    };
    auto lookup = std::make_shared<Lookup>(strand);
    lookup->done.expires_at(deadline);
    lookup->resolver.async_resolve(target.host, target.port,
                                   [lookup](error_code error, tcp::resolver::results_type results) {
                                     lookup->result.emplace(error, std::move(results));
                                     lookup->done.cancel();
                                   });
    co_await lookup->done.async_wait(kTuple);
    if (!lookup->result) {
      lookup->resolver.cancel();
      throw FetchError(Kind::kTimeout, "resolving " + target.host + " took longer than " +
                                           std::to_string(options.connect_timeout_seconds) +
                                           " s (connect_timeout_seconds)");
    }
    auto& [error, results] = *lookup->result;
    if (error) throw FetchError(Kind::kResolve, "resolving " + target.host + " failed: " + error.message());
    co_return results;
  }

  // DNS, TCP connect and the TLS handshake, all under the connect deadline.
  asio::awaitable<void> open(Connection& connection, const Target& target) {
    const auto deadline = Clock::now() + std::chrono::seconds(options.connect_timeout_seconds);
    const auto connect_limit = std::to_string(options.connect_timeout_seconds) + " s (connect_timeout_seconds)";
    const auto endpoints = co_await resolve(connection.strand, target, deadline);
    auto& lowest = connection.tcp();
    lowest.expires_at(deadline);
    auto [connect_error, endpoint] = co_await lowest.async_connect(endpoints, kTuple);
    (void)endpoint;
    if (connect_error == beast::error::timeout) {
      throw FetchError(Kind::kTimeout, "connecting to " + target.endpoint + " took longer than " + connect_limit);
    }
    if (connect_error) {
      throw FetchError(Kind::kConnect, "connecting to " + target.endpoint + " failed: " + connect_error.message());
    }
    connections_opened.fetch_add(1, std::memory_order_relaxed);
    if (connection.tls) {
      SSL* ssl = connection.tls->native_handle();
      const bool ip = client_wire::is_ip_address(target.host);
      // SNI carries host names only (RFC 6066), never IP literals.
      // (SSL_set_tlsext_host_name spelled out: the macro casts in C style.)
      if (!ip && SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                          const_cast<char*>(target.host.c_str())) != 1) {
        throw FetchError(Kind::kTls, "TLS handshake with " + target.endpoint + " failed: cannot set SNI");
      }
      if (options.verify_tls) {
        // OpenSSL's own host check (the one ssl::host_name_verification makes, inside the chain
        // verification) so a mismatch is reported as "hostname mismatch", not as an unspecified failure.
        const int set = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), target.host.c_str())
                           : SSL_set1_host(ssl, target.host.c_str());
        if (set != 1) {
          throw FetchError(Kind::kTls, "TLS handshake with " + target.endpoint +
                                           " failed: cannot check the certificate against \"" + target.host + "\"");
        }
      }
      auto [handshake_error] = co_await connection.tls->async_handshake(ssl::stream_base::client, kTuple);
      if (handshake_error == beast::error::timeout) {
        throw FetchError(Kind::kTimeout,
                         "TLS handshake with " + target.endpoint + " took longer than " + connect_limit);
      }
      if (handshake_error) {
        throw FetchError(Kind::kTls, "TLS handshake with " + target.endpoint +
                                         " failed: " + describe_tls_error(handshake_error, ssl));
      }
    }
    lowest.expires_never();
  }

  // Runs on the connection's strand. Returns nullopt when a reused connection turned out closed
  // before any of the response arrived: the caller sends the request again on a fresh connection.
  asio::awaitable<std::optional<ClientResponse>> exchange(std::unique_ptr<Connection> connection,
                                                          const Target& target, const WireRequest& wire,
                                                          bool reused, std::string buffer) {
    if (!reused) {
      try {
        co_await open(*connection, target);
      } catch (FetchError& error) {
        error.set_unsent();  // resolving, connecting or the TLS handshake failed: nothing was written
        throw;
      }
    }
    Exchanged result;
    if (connection->tls) {
      result = co_await write_and_read(*connection->tls, connection->tcp(), wire, options, target.max_response_bytes, buffer);
    } else {
      result = co_await write_and_read(*connection->plain, connection->tcp(), wire, options, target.max_response_bytes, buffer);
    }
    if (result.error) {
      if (reused && !result.answered && is_closed_by_peer(result.error)) co_return std::nullopt;
      throw exchange_error(result.error, result.sending, target, options,
                           connection->tls ? connection->tls->native_handle() : nullptr);
    }
    auto& message = result.message;
    ClientResponse response;
    response.status = static_cast<int>(message.result_int());
    response.headers.reserve(static_cast<std::size_t>(std::distance(message.begin(), message.end())));
    for (const auto& field : message) {
      response.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    response.body = std::move(message.body());
    if (result.reusable && options.max_idle_connections_per_origin > 0) give_back(target.origin, std::move(connection));
    co_return response;
  }
};

HttpClient::HttpClient(boost::asio::any_io_executor executor, ClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(executor), std::move(options))) {}

HttpClient::~HttpClient() = default;

HttpClient::Stats HttpClient::stats() const {
  Stats stats{impl_->connections_opened.load(std::memory_order_relaxed),
              impl_->requests.load(std::memory_order_relaxed)};
  std::lock_guard lock(impl_->pool_mutex);
  for (const auto& [origin, connections] : impl_->idle) stats.idle_connections += connections.size();
  return stats;
}

boost::asio::awaitable<ClientResponse> HttpClient::send(ClientRequest request) {
  std::string buffer = std::move(request.response_buffer);
  co_return co_await send_request(request, std::move(buffer));
}

boost::asio::awaitable<ClientResponse> HttpClient::send_borrowed(const ClientRequest& request) {
  std::string no_buffer;
  co_return co_await send_request(request, std::move(no_buffer));
}

boost::asio::awaitable<ClientResponse> HttpClient::send_request(const ClientRequest& request, std::string buffer) {
  Impl& impl = *impl_;
  Target target = client_wire::parse_target(request);
  target.max_response_bytes = request.max_response_bytes > 0 ? request.max_response_bytes : impl.options.max_response_bytes;
  const WireRequest wire = client_wire::make_request(request, target, impl.options);
  impl.requests.fetch_add(1, std::memory_order_relaxed);

  std::optional<ClientResponse> response;
  for (int attempt = 0; !response; ++attempt) {
    // Only the first attempt may use an idle connection, so a retry always gets a fresh one. A request
    // that must not be sent twice never uses one: an idle connection closed by the server as the request
    // goes out would have to be replayed, and on a fresh one nothing is replayed (exchange() throws).
    auto connection = attempt == 0 && request.idempotent ? impl.take_idle(target.origin) : nullptr;
    const bool reused = connection != nullptr;
    if (!connection) connection = impl.new_connection(target);
    const Strand strand = connection->strand;
    // (the buffer goes with the first attempt: a retry reads into a new one)
    response = co_await asio::co_spawn(strand, impl.exchange(std::move(connection), target, wire, reused, std::move(buffer)),
                                       asio::use_awaitable);
  }

  if (!response->body.empty()) {
    const auto encoding = response->header("content-encoding");
    if (encoding && is_gzip(*encoding)) {
      response->body = gunzip(response->body, target.max_response_bytes, target.where);
      std::erase_if(response->headers, [](const auto& header) {
        return iequals(header.first, "content-encoding") || iequals(header.first, "content-length");
      });
    }
  }
  co_return std::move(*response);
}

}  // namespace p2p::http
