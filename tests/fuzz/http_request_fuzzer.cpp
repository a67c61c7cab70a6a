// The HTTP request path: raw bytes as a client sends them on a (keep-alive) connection, parsed with
// the server's own parser setup (http/wire.hpp), converted to p2p::http::Request, routed by the real
// routes (p2p::api::add_routes over a context whose database is never reached), authenticated and
// answered as the server's dispatch does, then serialised as the server would write it.
//
// Handlers that run on the I/O thread (no PostgreSQL) are called for real. Handlers that need the
// database (RouteOptions::blocking) or await another server (coroutine routes: the hook) are not
// called; instead the fuzzer runs the pure validation they do before their first query or request
// (path ids, query parameters, the batch_job body and its SSRF guard, the hook's secret and payload).
// Anything but http::ApiError escaping is a bug: the server would answer 500.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "api/batch_job_body.hpp"
#include "api/path_params.hpp"
#include "http/wire.hpp"
#include "p2p/api/routes.hpp"
#include "p2p/api/swagger_ui.hpp"
#include "p2p/config/config.hpp"
#include "p2p/crypto/token_cipher.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/http/api_key_auth.hpp"
#include "p2p/http/client.hpp"
#include "p2p/http/metrics.hpp"
#include "p2p/http/problem.hpp"
#include "p2p/http/request_id.hpp"
#include "p2p/http/router.hpp"
#include "p2p/notify/add_payer_task.hpp"
#include "p2p/notify/notifier.hpp"
#include "p2p/notify/subscription.hpp"
#include "p2p/runtime/runtime.hpp"
#include "p2p/store/bootstrap.hpp"
#include "p2p/store/change_notified_cache.hpp"
#include "p2p/store/database.hpp"

namespace {

namespace bhttp = boost::beast::http;
using namespace p2p;

// Port 9 (discard) on loopback: nothing is ever connected, the URL only has to be well formed.
constexpr const char* kUnreachableDatabase = "postgresql://fuzz@127.0.0.1:9/fuzz";
constexpr const char* kApiKey = "fuzz-api-key";
constexpr const char* kSourceEndpoint = "https://fhir.source.example/r4";
constexpr const char* kHookSecret = "fuzz-hook-secret";

config::ExchangeConfig exchange_config() {
  config::ExchangeConfig exchange;
  exchange.fhir_persistence_url = "https://fhir.target.example/r4";
  return exchange;
}

config::NotificationsConfig notifications_config() {
  config::NotificationsConfig notifications;
  notifications.enabled = true;  // so the hook routes get past "notifications are off"
  notifications.public_base_url = "https://p2p.example";
  notifications.hook_secret = kHookSecret;
  return notifications;
}

struct Fixture {
  config::ExchangeConfig exchange = exchange_config();
  config::NotificationsConfig notifications = notifications_config();
  store::Database database{kUnreachableDatabase, 1, 1};
  store::DatabaseBootstrap bootstrap{database, {}, 5, [](const std::string&) { std::abort(); }};
  store::ChangeNotifiedCache cache{kUnreachableDatabase, "p2p_fuzz"};  // not started: answers nothing
  metrics::Registry registry;
  http::RequestMetrics metrics{registry};
  boost::asio::io_context io;             // never run
  boost::asio::thread_pool blocking{1};
  boost::asio::thread_pool background{1};
  runtime::Runtime runtime{io, io, blocking, background};
  notify::Notifier notifier{notifications, exchange, database, "fuzz", runtime, registry};  // never started
  api::SwaggerUi swagger_ui{"/nonexistent/swagger-ui"};
  // 32 zero bytes: a valid key, never used to seal anything here.
  crypto::TokenCipher cipher{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="};
  crypto::SigningKeys signing_keys;  // none: /.well-known/jwks.json is an empty set
  http::ApiKeyAuth auth{true, {kApiKey}};
  config::ConnectConfig connect;  // off (no public base URL): the connect routes answer 503 before any request
  http::HttpClient outbound{io.get_executor(), http::ClientOptions{}};  // never used
  http::Router router;
  http::ServerOptions defaults;  // the server's limits
  http::ServerOptions tight;     // small limits, so the fuzzer reaches 413 and 431 with short inputs

  Fixture() {
    spdlog::set_level(spdlog::level::off);
    api::add_routes(router, api::ApiContext{.database = database,
                                            .bootstrap = bootstrap,
                                            .oidc_server_cache = cache,
                                            .metrics = registry,
                                            .swagger_ui = swagger_ui,
                                            .token_cipher = cipher,
                                            .signing_keys = signing_keys,
                                            .exchange = exchange,
                                            .job_created = [] { std::abort(); },
                                            .notifier = notifier,
                                            .blocking = blocking,
                                            .connect = connect,
                                            .outbound_client = outbound});
    tight.header_limit_bytes = 200;
    tight.body_limit_bytes = 64;
  }
};

Fixture& fixture() {
  static Fixture instance;
  return instance;
}

// What the database-backed handlers check before their first query (or FHIR request).
void validate_blocking(const Fixture& f, const http::Route& route, const http::Request& request,
                       const http::PathParams& params) {
  if (route.pattern.starts_with(notify::kHookPath)) {  // api/hooks.cpp receive_delivery
    if (!f.notifier.check_hook_secret(request.header(notify::kHookSecretHeader))) throw http::ApiError(401, "secret");
    std::optional<std::string> path_task_id;
    if (const auto found = params.find("task_id"); found != params.end()) {
      if (!fhir::is_fhir_id(found->second)) throw http::ApiError(400, "Task id");
      path_task_id = found->second;
    }
    try {
      (void)notify::parse_hook_payload(request.body, path_task_id);
    } catch (const notify::PayloadError& error) {
      throw http::ApiError(400, error.what());
    }
    return;
  }
  if (params.contains("server_id")) api::parse_positive_id(params, "server_id");
  if (params.contains("batch_job_id")) api::parse_positive_id<long long>(params, "batch_job_id");
  if (route.method == "POST" && route.pattern == "/api/oidc_servers/{server_id}/batch_job") {
    const auto body = api::parse_batch_job_body(request.body);
    try {
      fhir::resolve_bundle_request(kSourceEndpoint, body.bundle_request.value_or(""), body.source_patient_id);
    } catch (const fhir::SourceUrlError& error) {
      throw http::ApiError(400, std::string("sourcePayer.") + error.what());
    }
  }
  if (route.method == "GET" && route.pattern == "/api/oidc_servers/{server_id}/batch_job") {
    if (auto text = request.query_param("limit")) {
      if (api::parse_positive_integer(*text, "limit") > 100) throw http::ApiError(400, "limit out of range");
    }
    if (auto text = request.query_param("beforeId")) api::parse_positive_integer<long long>(*text, "beforeId");
  }
}

// Server::Impl::dispatch without the blocking pool.
http::Response dispatch(const Fixture& f, http::Request& request, std::string& route_label) {
  try {
    const auto match = f.router.match(request.method, request.path);
    if (match.kind == http::RouteMatch::Kind::kNotFound) throw http::ApiError(404, "no route " + request.path);
    if (match.kind == http::RouteMatch::Kind::kMethodNotAllowed) {
      std::string allowed;
      for (const auto& method : match.allowed_methods) allowed += (allowed.empty() ? "" : ", ") + method;
      throw http::ApiError(405, request.path + " does not support " + request.method, {{"Allow", allowed}});
    }
    const http::Route& route = *match.route;
    route_label = route.pattern;
    if (route.options.requires_auth &&
        f.auth.check(request.header("authorization")) != http::ApiKeyAuth::Outcome::kAccepted) {
      throw http::ApiError(401, "API key missing or invalid", {{"WWW-Authenticate", "Bearer realm=\"p2p-exchange\""}});
    }
    if (!request.body.empty()) {
      const auto content_type = request.header("content-type");
      if (!content_type || !http::wire::is_json_media_type(*content_type)) throw http::ApiError(415, "not JSON");
    }
    if (route.options.try_inline) {
      if (auto answer = route.options.try_inline(request, match.params)) return std::move(*answer);
    }
    if (!route.options.blocking && !route.coroutine) return route.handler(request, match.params);
    validate_blocking(f, route, request, match.params);
    return http::Response::json(200, nlohmann::json::object());  // stands in for the database's answer
  } catch (const http::ApiError& error) {
    http::Response problem = http::problem_response(error.status(), error.detail(), request.path, request.request_id);
    for (const auto& [name, value] : error.headers()) problem.set_header(name, value);
    return problem;
  }
}

// Serialises a response as the server writes it; returns false when the connection is to close.
bool write_response(const Fixture& f, const http::Response& response, unsigned version, bool keep_alive,
                    bool is_head, const std::string& request_id, const std::string& path) {
  bhttp::response<bhttp::string_body> out{static_cast<bhttp::status>(response.status), version};
  for (const auto& [name, value] : response.headers) out.set(name, value);
  out.set("X-Request-Id", request_id);
  out.set("X-Content-Type-Options", "nosniff");
  if (path.starts_with("/api/") && !response.header("Cache-Control")) out.set(bhttp::field::cache_control, "no-store");
  out.keep_alive(keep_alive);
  out.body() = response.body;
  out.prepare_payload();
  if (is_head) out.body().clear();
  std::ostringstream wire;
  wire << out;
  (void)f;
  return keep_alive;
}

// One connection's bytes with one set of limits: requests are answered until one fails to parse or
// asks to close, as Server::Impl::serve does.
void serve(Fixture& f, std::string_view bytes, const http::ServerOptions& options) {
  for (int requests = 0; requests < 8 && !bytes.empty(); ++requests) {
    auto parsed = http::wire::parse_request(bytes, options);
    bytes.remove_prefix(parsed.consumed);
    if (!parsed.complete) {
      // Server::Impl::reject_unreadable: the problem names only the path, never the query.
      const std::string target = parsed.request ? std::string(parsed.request->target()) : std::string();
      const std::string safe_path = target.substr(0, target.find('?'));
      const unsigned version = parsed.request && parsed.request->version() == 10 ? 10 : 11;
      int status = 0;
      if (parsed.error == bhttp::error::body_limit) status = 413;
      else if (parsed.error == bhttp::error::header_limit) status = 431;
      else if (parsed.error != bhttp::error::end_of_stream && parsed.got_some) status = 400;
      if (status != 0) {
        const auto request_id = http::request_id_for(std::nullopt);
        const auto problem = http::problem_response(status, "rejected: " + parsed.error.message(), safe_path, request_id);
        write_response(f, problem, version, false, false, request_id, safe_path);
        f.metrics.observe("unmatched", "OTHER", status, 0);
      }
      return;
    }
    auto& wire = *parsed.request;
    const bool is_head = wire.method() == bhttp::verb::head;
    const unsigned version = wire.version();
    const bool wants_keep_alive = wire.keep_alive();
    const auto request_id = http::request_id_for(
        wire.count("X-Request-Id") != 0 ? std::optional<std::string_view>(wire["X-Request-Id"]) : std::nullopt);
    http::Request request = http::wire::to_request(wire, request_id, "127.0.0.1:1");
    std::string route_label = "unmatched";
    const http::Response response = dispatch(f, request, route_label);
    if (response.status < 100 || response.status > 599) std::abort();
    f.metrics.observe(route_label, request.method, response.status, 0.001);
    if (!write_response(f, response, version, wants_keep_alive, is_head, request_id, request.path)) return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& f = fixture();
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  serve(f, bytes, f.defaults);
  serve(f, bytes, f.tight);
  return 0;
}
