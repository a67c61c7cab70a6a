#include "p2p/http/server.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <mutex>
#include <type_traits>
#include <unordered_set>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <boost/url/parse.hpp>
#include <spdlog/spdlog.h>

#include "p2p/http/coroutine_handler.hpp"
#include "p2p/http/metrics.hpp"
#include "p2p/http/problem.hpp"
#include "p2p/http/request_id.hpp"
#include "p2p/log/log.hpp"
#include "p2p/log/request_id_executor.hpp"
#include "p2p/runtime/run_blocking.hpp"
#include "p2p/runtime/task_group.hpp"
#include "http/tls_context.hpp"
#include "http/wire.hpp"

namespace p2p::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

using WireRequest = wire::WireRequest;
using WireResponse = bhttp::response<bhttp::string_body>;

using wire::is_json_media_type;
using wire::to_request;

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

}  // namespace

struct Server::Impl {
  // One open connection, plain or TLS. Touched only on its strand (the stream's executor).
  struct ConnectionBase {
    virtual ~ConnectionBase() = default;
    // Cancels pending I/O (closes an idle connection at shutdown).
    virtual void cancel() = 0;
    virtual asio::any_io_executor executor() = 0;
    bool busy = false;  // from a request's first byte until its response is written
  };
  template <class Stream>
  struct Connection : ConnectionBase {
    template <class... Args>
    explicit Connection(tcp::socket socket, Args&... args) : stream(std::move(socket), args...) {}
    void cancel() override { beast::get_lowest_layer(stream).cancel(); }
    asio::any_io_executor executor() override { return stream.get_executor(); }
    Stream stream;
  };

  Impl(ServerOptions opts, const runtime::Runtime& runtime, const Router& r, const ApiKeyAuth& a,
       metrics::Registry& registry)
      : options(std::move(opts)),
        router(r),
        auth(a),
        metrics(registry),
        io(runtime.io),
        control(asio::make_strand(io)),
        blocking(runtime.blocking),
        acceptor(control),
        tasks(control) {}

  ServerOptions options;
  const Router& router;
  const ApiKeyAuth& auth;
  RequestMetrics metrics;
  asio::io_context& io;
  asio::strand<asio::io_context::executor_type> control;  // the acceptor and the shutdown run here
  asio::thread_pool& blocking;                             // route handlers marked blocking
  tcp::acceptor acceptor;
  runtime::TaskGroup tasks;  // the accept loop and every connection
  std::atomic<bool> stopping{false};
  std::atomic<int> in_flight{0};
  std::mutex connections_mutex;
  std::unordered_set<std::shared_ptr<ConnectionBase>> connections;
  std::unique_ptr<asio::ssl::context> tls;  // set by listen() when the port speaks HTTPS

  void track(const std::shared_ptr<ConnectionBase>& connection) {
    std::lock_guard lock(connections_mutex);
    connections.insert(connection);
  }
  void untrack(const std::shared_ptr<ConnectionBase>& connection) {
    std::lock_guard lock(connections_mutex);
    connections.erase(connection);
  }
  std::size_t open_connections() {
    std::lock_guard lock(connections_mutex);
    return connections.size();
  }

  asio::awaitable<void> accept_loop() {
    while (!stopping) {
      auto [error, socket] = co_await acceptor.async_accept(asio::make_strand(io), kTuple);
      if (error) {
        if (stopping || error == asio::error::operation_aborted) break;
        spdlog::warn("accepting a connection failed: {}", error.message());
        asio::steady_timer pause(io, std::chrono::milliseconds(50));  // e.g. out of file descriptors
        co_await pause.async_wait(kTuple);
        continue;
      }
      if (tls) {
        start(std::make_shared<Connection<TlsStream>>(tcp::socket(std::move(socket)), *tls));
      } else {
        start(std::make_shared<Connection<PlainStream>>(tcp::socket(std::move(socket))));
      }
    }
  }

  template <class Stream>
  void start(std::shared_ptr<Connection<Stream>> connection) {
    track(connection);
    asio::co_spawn(connection->stream.get_executor(), serve(connection),
                   tasks.adapt([this, connection](std::exception_ptr failure) {
                     untrack(connection);
                     if (failure) {
                       try {
                         std::rethrow_exception(failure);
                       } catch (const std::exception& e) {
                         spdlog::error("connection ended by an unexpected error: {}", e.what());
                       }
                     }
                   }));
  }

  template <class Stream>
  asio::awaitable<void> write(Connection<Stream>& connection, WireResponse& response) {
    beast::get_lowest_layer(connection.stream).expires_after(std::chrono::seconds(options.write_timeout_seconds));
    auto [error, bytes] = co_await bhttp::async_write(connection.stream, response, kTuple);
    (void)bytes;
    if (error) spdlog::debug("writing a response failed: {}", error.message());
  }

  // A problem response for a request that could not be read (it goes out with Connection: close).
  template <class Stream>
  asio::awaitable<void> reject(Connection<Stream>& connection, int status, std::string_view detail, std::string_view path,
                               unsigned version) {
    const auto request_id = request_id_for(std::nullopt);
    const Response problem = problem_response(status, detail, path, request_id);
    WireResponse wire{static_cast<bhttp::status>(status), version == 10 ? 10u : 11u};
    for (const auto& [name, value] : problem.headers) wire.set(name, value);
    wire.set("X-Request-Id", request_id);
    wire.body() = problem.body;
    wire.keep_alive(false);
    wire.prepare_payload();
    {
      log::RequestIdScope scope(request_id);
      spdlog::info("rejected a request to {}: {} {}", path.empty() ? "-" : path, status, detail);
    }
    metrics.observe("unmatched", "OTHER", status, 0);
    co_await write(connection, wire);
  }

  template <class Stream>
  asio::awaitable<void> serve(std::shared_ptr<Connection<Stream>> connection) {
    constexpr bool kTls = std::is_same_v<Stream, TlsStream>;
    auto& stream = connection->stream;
    auto& tcp_stream = beast::get_lowest_layer(stream);  // timeouts and the socket
    std::string remote;
    {
      boost::system::error_code ignored;
      auto endpoint = tcp_stream.socket().remote_endpoint(ignored);
      remote = endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
    }
    if constexpr (kTls) {
      // The handshake is bounded like a request's headers: a client that connects and stalls (or speaks
      // plain HTTP to this port) is cut off without an answer.
      tcp_stream.expires_after(std::chrono::seconds(options.header_timeout_seconds));
      auto [error] = co_await stream.async_handshake(asio::ssl::stream_base::server, kTuple);
      if (error) {
        spdlog::debug("TLS handshake with {} failed: {}", remote, error.message());
        co_return;
      }
    }
    beast::flat_buffer buffer;
    bool first = true;
    bool linger = false;  // a refused request may still be arriving
    while (!stopping) {
      // Wait for the next request's first bytes (idle: closable at shutdown), then read it under
      // the header and body timeouts.
      if (buffer.size() == 0) {
        tcp_stream.expires_after(std::chrono::seconds(first ? options.header_timeout_seconds
                                                        : options.idle_timeout_seconds));
        auto [error, bytes] = co_await stream.async_read_some(buffer.prepare(8192), kTuple);
        if (error) break;
        buffer.commit(bytes);
      }
      first = false;
      connection->busy = true;
      bhttp::request_parser<bhttp::string_body> parser;
      wire::configure_parser(parser, options);
      tcp_stream.expires_after(std::chrono::seconds(options.header_timeout_seconds));
      auto [header_error, header_bytes] = co_await bhttp::async_read_header(stream, buffer, parser, kTuple);
      (void)header_bytes;
      if (header_error) {
        linger = co_await reject_unreadable(*connection, header_error, parser);
        break;
      }
      if (parser.get()[bhttp::field::expect] == "100-continue") {
        bhttp::response<bhttp::empty_body> proceed{bhttp::status::continue_, parser.get().version()};
        tcp_stream.expires_after(std::chrono::seconds(options.write_timeout_seconds));
        auto [error, bytes] = co_await bhttp::async_write(stream, proceed, kTuple);
        (void)bytes;
        if (error) break;
      }
      tcp_stream.expires_after(std::chrono::seconds(options.read_timeout_seconds));
      auto [body_error, body_bytes] = co_await bhttp::async_read(stream, buffer, parser, kTuple);
      (void)body_bytes;
      if (body_error) {
        linger = co_await reject_unreadable(*connection, body_error, parser);
        break;
      }
      ++in_flight;
      const bool keep_alive = co_await handle(*connection, parser.release(), remote);
      --in_flight;
      connection->busy = false;
      if (!keep_alive) break;
    }
    boost::system::error_code ignored;
    if constexpr (kTls) {
      // close_notify, then wait briefly for the client's; skipped at shutdown and after a timeout.
      if (linger) co_await drain(stream);
      if (!stopping && tcp_stream.socket().is_open()) {
        tcp_stream.expires_after(std::chrono::seconds(2));
        auto [error] = co_await stream.async_shutdown(kTuple);
        (void)error;
      }
      tcp_stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    } else {
      tcp_stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
      if (linger) co_await drain(stream);
    }
  }

  // After refusing a request whose body is still arriving, read and discard it for a bounded time
  // before closing: closing at once would reset the connection and the client could lose the
  // error response it has not read yet.
  template <class Stream>
  static asio::awaitable<void> drain(Stream& stream) {
    std::array<char, 16384> scratch{};
    std::size_t total = 0;
    constexpr std::size_t kMaxDrainBytes = 64 * 1024 * 1024;
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
    while (total < kMaxDrainBytes) {
      auto [error, bytes] = co_await stream.async_read_some(asio::buffer(scratch), kTuple);
      if (error) break;
      total += bytes;
    }
  }

  // Answers a request that could not be read, when there is someone to answer. Returns whether the
  // connection should linger (the client may still be sending).
  template <class Stream>
  asio::awaitable<bool> reject_unreadable(Connection<Stream>& connection, boost::system::error_code error,
                                          bhttp::request_parser<bhttp::string_body>& parser) {
    const std::string path = parser.is_header_done() ? std::string(parser.get().target()) : std::string();
    const unsigned version = parser.is_header_done() ? parser.get().version() : 11;
    const std::string safe_path = path.substr(0, path.find('?'));
    if (error == bhttp::error::body_limit) {
      co_await reject(connection, 413,
                      "the request body is larger than the limit of " + std::to_string(options.body_limit_bytes) +
                          " bytes",
                      safe_path, version);
      co_return true;
    }
    if (error == bhttp::error::header_limit) {
      co_await reject(connection, 431, "the request headers are larger than the limit of " +
                                           std::to_string(options.header_limit_bytes) + " bytes",
                      safe_path, version);
    } else if (error == beast::error::timeout) {
      if (parser.got_some()) {
        co_await reject(connection, 408, "the request did not arrive within the time limit", safe_path, version);
      }
    } else if (error != bhttp::error::end_of_stream && error != asio::error::operation_aborted &&
               error != asio::error::connection_reset && error != asio::error::eof &&
               error != asio::ssl::error::stream_truncated) {  // a TLS client that left without close_notify
      if (parser.got_some()) {
        co_await reject(connection, 400, "the request is not valid HTTP/1.1: " + error.message(), safe_path,
                        version);
        co_return true;
      }
    }
    co_return false;
  }

  // Answers one request; returns whether the connection stays open.
  template <class Stream>
  asio::awaitable<bool> handle(Connection<Stream>& connection, WireRequest wire, const std::string& remote) {
    const auto started = std::chrono::steady_clock::now();
    const bool is_head = wire.method() == bhttp::verb::head;
    const unsigned version = wire.version();
    const bool wants_keep_alive = wire.keep_alive();
    const auto request_id = request_id_for(wire.count("X-Request-Id") != 0
                                               ? std::optional<std::string_view>(wire["X-Request-Id"])
                                               : std::nullopt);
    Request request = to_request(wire, request_id, remote);
    std::string route_label = "unmatched";
    Response response = co_await dispatch(request, route_label);

    WireResponse out{static_cast<bhttp::status>(response.status), version};
    for (const auto& [name, value] : response.headers) out.set(name, value);
    out.set("X-Request-Id", request_id);
    out.set("X-Content-Type-Options", "nosniff");
    if (request.path.starts_with("/api/") && !response.header("Cache-Control")) out.set(bhttp::field::cache_control, "no-store");
    const bool keep_alive = wants_keep_alive && !stopping;
    out.keep_alive(keep_alive);
    const auto body_size = response.body.size();
    out.body() = std::move(response.body);
    out.prepare_payload();
    if (is_head) out.body().clear();  // Content-Length stays that of the GET body

    // Counted before the write, so a client that has its answer finds it in /metrics.
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    metrics.observe(route_label, request.method, response.status, seconds);
    co_await write(connection, out);
    {
      log::RequestIdScope scope(request_id);
      spdlog::info("{} {} {} {}B {:.2f}ms {}", request.method, request.path, response.status, body_size,
                   seconds * 1000.0, remote);
    }
    co_return keep_alive;
  }

  asio::awaitable<Response> dispatch(Request& request, std::string& route_label) {
    try {
      const auto match = router.match(request.method, request.path);
      if (match.kind == RouteMatch::Kind::kNotFound) {
        throw ApiError(404, "there is no route " + request.path + "; the routes are listed at /api/openapi.json");
      }
      if (match.kind == RouteMatch::Kind::kMethodNotAllowed) {
        std::string allowed;
        for (const auto& method : match.allowed_methods) allowed += (allowed.empty() ? "" : ", ") + method;
        throw ApiError(405, request.path + " does not support " + request.method + "; use " + allowed,
                       {{"Allow", allowed}});
      }
      const Route& route = *match.route;
      route_label = route.pattern;
      if (route.options.requires_auth) {
        switch (auth.check(request.header("authorization"))) {
          case ApiKeyAuth::Outcome::kAccepted:
            break;
          case ApiKeyAuth::Outcome::kMissing:
            throw ApiError(401, "this route needs an API key: send it as 'Authorization: Bearer <key>'",
                           {{"WWW-Authenticate", "Bearer realm=\"p2p-exchange\""}});
          case ApiKeyAuth::Outcome::kInvalid:
            throw ApiError(401, "the API key is not valid: send a configured key as 'Authorization: Bearer <key>'",
                           {{"WWW-Authenticate", "Bearer realm=\"p2p-exchange\", error=\"invalid_token\""}});
        }
      }
      if (!request.body.empty()) {
        const auto content_type = request.header("content-type");
        if (!content_type || !is_json_media_type(*content_type)) {
          throw ApiError(415, "request bodies must be JSON: send Content-Type: application/json");
        }
      }
      if (route.options.try_inline) {
        log::RequestIdScope scope(request.request_id);
        if (auto answer = route.options.try_inline(request, match.params)) co_return std::move(*answer);
      }
      if (route.coroutine) {  // run with the request id on every step (coroutine_handler.hpp)
        const auto connection_executor = co_await asio::this_coro::executor;  // (not in an argument: GCC 12)
        const log::RequestIdExecutor executor(connection_executor, request.request_id);
        auto handled = asio::co_spawn(executor, route.coroutine->call(request, match.params), asio::use_awaitable);
        co_return co_await std::move(handled);
      }
      if (!route.options.blocking) {
        log::RequestIdScope scope(request.request_id);
        co_return route.handler(request, match.params);
      }
      const auto handle_blocking = [&request, &route, &match] {
        log::RequestIdScope scope(request.request_id);
        return route.handler(request, match.params);
      };
      co_return co_await runtime::run_blocking(blocking, handle_blocking);
    } catch (const ApiError& error) {
      Response problem = problem_response(error.status(), error.detail(), request.path, request.request_id);
      for (const auto& [name, value] : error.headers()) problem.set_header(name, value);
      co_return problem;
    } catch (const std::exception& error) {
      log::RequestIdScope scope(request.request_id);
      spdlog::error("unexpected error while answering {} {}: {}", request.method, request.path, error.what());
    }
    co_return problem_response(500, "an unexpected error occurred; report it with request id " + request.request_id,
                               request.path, request.request_id);
  }

  // On `control`: stops accepting, closes the idle connections at once and lets busy ones answer
  // (with Connection: close) for up to the grace period; then closes whatever is still open.
  asio::awaitable<void> shutdown() {
    if (stopping.exchange(true)) co_return;
    spdlog::info("shutting down: no new connections; finishing {} in-flight request(s)", in_flight.load());
    boost::system::error_code ignored;
    acceptor.close(ignored);
    cancel_connections(/*idle_only=*/true);
    const auto grace = std::chrono::seconds(options.shutdown_grace_seconds);
    const bool drained = co_await runtime::wait_at_most(tasks, grace);  // (not in the if: GCC 12)
    if (!drained) {
      spdlog::warn("shutdown grace period over: closing {} connection(s) still open", open_connections());
      cancel_connections(/*idle_only=*/false);
      co_await tasks.async_wait(kTuple);
    }
    spdlog::info("HTTP server stopped");
  }

  // Cancels the pending I/O of the open connections (only of those between requests, when idle_only),
  // each on its own strand.
  void cancel_connections(bool idle_only) {
    std::vector<std::shared_ptr<ConnectionBase>> open;
    {
      std::lock_guard lock(connections_mutex);
      open.assign(connections.begin(), connections.end());
    }
    for (auto& connection : open) {
      asio::post(connection->executor(), [connection, idle_only] {
        if (!idle_only || !connection->busy) connection->cancel();
      });
    }
  }
};

Server::Server(ServerOptions options, const runtime::Runtime& runtime, const Router& router, const ApiKeyAuth& auth,
               metrics::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(options), runtime, router, auth, registry)) {
  registry.gauge_reader("p2p_http_in_flight_requests", "Requests being answered now.", "",
                        [impl = impl_.get()] { return static_cast<double>(impl->in_flight.load()); });
  registry.gauge_reader("p2p_http_open_connections", "Client connections open now.", "",
                        [impl = impl_.get()] { return static_cast<double>(impl->open_connections()); });
}

Server::~Server() = default;

void Server::listen() {
  auto& impl = *impl_;
  boost::system::error_code error;
  const auto address = asio::ip::make_address(impl.options.host, error);
  if (error) throw std::runtime_error("http.host \"" + impl.options.host + "\" is not an IP address: " + error.message());
  if (!impl.options.tls_cert_file.empty() || !impl.options.tls_key_file.empty()) {
    impl.tls = make_server_tls_context(impl.options.tls_cert_file, impl.options.tls_key_file);
  }
  const tcp::endpoint endpoint(address, impl.options.port);
  impl.acceptor.open(endpoint.protocol(), error);
  if (!error) impl.acceptor.set_option(asio::socket_base::reuse_address(true), error);
  if (!error) impl.acceptor.bind(endpoint, error);
  if (!error) impl.acceptor.listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    throw std::runtime_error("cannot listen on " + impl.options.host + ":" + std::to_string(impl.options.port) +
                             ": " + error.message() + " (is another process using the port? set http.port)");
  }
}

std::uint16_t Server::port() const { return impl_->acceptor.local_endpoint().port(); }

bool Server::tls() const { return impl_->tls != nullptr; }

void Server::start() {
  auto& impl = *impl_;
  asio::co_spawn(impl.control, impl.accept_loop(), impl.tasks.adapt([](std::exception_ptr failure) {
                   if (failure) spdlog::critical("the HTTP server's accept loop ended by an unexpected error");
                 }));
}

asio::awaitable<void> Server::stop() {
  auto& control = impl_->control;  // named: GCC 12 and temporaries in a co_await expression
  co_await asio::co_spawn(control, impl_->shutdown(), asio::use_awaitable);
}

}  // namespace p2p::http
