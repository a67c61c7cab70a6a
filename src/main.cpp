// p2p-exchange: parses the command line, loads the configuration, wires the modules together on one
// I/O context and one blocking pool (runtime/runtime.hpp), handles SIGINT/SIGTERM and stops the
// components in order: the HTTP server (in-flight requests answered), the job runner (jobs handed
// back), the notifications (the e-mail in flight sent).
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <malloc.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "p2p/api/routes.hpp"
#include "p2p/api/swagger_ui.hpp"
#include "p2p/config/config.hpp"
#include "p2p/http/api_key_auth.hpp"
#include "p2p/http/client.hpp"
#include "p2p/crypto/signing_keys.hpp"
#include "p2p/crypto/token_cipher.hpp"
#include "p2p/http/server.hpp"
#include "p2p/jobs/job_runner.hpp"
#include "p2p/notify/notifier.hpp"
#include "p2p/runtime/runtime.hpp"
#include "p2p/util/crypto.hpp"
#include "p2p/log/log.hpp"
#include "p2p/metrics/registry.hpp"
#include "p2p/store/bootstrap.hpp"
#include "p2p/store/change_notified_cache.hpp"
#include "p2p/store/database.hpp"
#include "p2p/util/url_rules.hpp"

namespace {

constexpr const char* kUsage =
    "Usage: p2p-exchange [--config FILE] [--check-config] [--help] [--version]\n"
    "\n"
    "Moves a health-plan member's FHIR R4 records from their previous payer to their new one\n"
    "(CMS-0057-F payer-to-payer exchange) and serves its REST API.\n"
    "\n"
    "  --config FILE    JSON configuration (see config/p2p-exchange.json and docs/configuration.md).\n"
    "                   Without it: built-in defaults. P2P_* environment variables override either.\n"
    "  --check-config   validate the configuration and exit (0 when valid, 2 when not)\n"
    "  --help           show this text\n"
    "  --version        print the version\n";

namespace asio = boost::asio;

// Serves until SIGINT or SIGTERM (or until the wait is cancelled: a fatal start-up error), then stops
// the components, each completely before the next.
asio::awaitable<void> serve_until_signalled(asio::signal_set& signals, p2p::http::Server& server,
                                            p2p::jobs::JobRunner& job_runner, p2p::notify::Notifier& notifier) {
  const auto [error, signal_number] = co_await signals.async_wait(asio::as_tuple(asio::use_awaitable));
  if (!error) spdlog::info("received signal {}", signal_number);
  co_await server.stop();
  co_await job_runner.stop();
  co_await notifier.stop();
}

std::filesystem::path executable_directory() {
  std::error_code error;
  auto path = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::filesystem::current_path() : path.parent_path();
}

}  // namespace

int main(int argc, char** argv) {
  // Page bodies and transactions (up to exchange.maxPageBytes each, several per job) are mapped and
  // unmapped whole from 1 MiB up. glibc's default threshold rises with the first such block freed, and
  // the large blocks then come from the heap, where freed ones stay resident: 4 jobs of 15.5 MiB pages
  // peaked at 632 MiB that way, 331 MiB with this (docs/exchange.md, "Memory"). Below that, up to
  // 4 MiB free at the top of a heap is kept rather than given back at every free (glibc's default, 128
  // KiB, returned and faulted in again the ~130-170 KB of every page and transaction: a third fewer
  // page faults and ~15% less CPU per page in scripts/bench-fast.sh).
  mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
  std::optional<std::filesystem::path> config_file;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--version") {
      std::cout << "p2p-exchange " << P2P_VERSION << "\n";
      return 0;
    }
    if (arg == "--check-config") {
      check_only = true;
    } else if (arg == "--config" && i + 1 < argc) {
      config_file = argv[++i];
    } else if (arg.starts_with("--config=")) {
      config_file = arg.substr(9);
    } else {
      std::cerr << "p2p-exchange: unknown argument \"" << arg << "\"\n\n" << kUsage;
      return 2;
    }
  }

  p2p::config::Config config;
  try {
    config = p2p::config::load_config(config_file, p2p::config::process_environment());
  } catch (const p2p::config::ConfigError& error) {
    std::cerr << "p2p-exchange: " << error.what() << "\n";
    return 2;
  }
  if (check_only) {
    std::cout << "configuration is valid" << (config_file ? " (" + config_file->string() + ")" : std::string())
              << "\n";
    return 0;
  }

  p2p::log::init(config.log.level);
  spdlog::info("p2p-exchange {} starting (config: {})", P2P_VERSION,
               config_file ? config_file->string() : std::string("built-in defaults + environment"));
  if (config.auth.mode == p2p::config::AuthMode::kNone) {
    spdlog::warn("*** API AUTHENTICATION IS OFF (auth.mode = \"none\"): anyone who can reach port {} can read "
                 "the OIDC server registry. Use this only for local development. ***",
                 config.http.port);
  }
  spdlog::info("database: {}", p2p::util::redact_url_password(config.database.url));

  // Where everything runs (runtime/runtime.hpp says why it is split so).
  asio::io_context io(config.http.threads);
  asio::io_context exchange_io(1);
  auto exchange_work = asio::make_work_guard(exchange_io);  // runs until the shutdown, jobs or not
  asio::thread_pool blocking(static_cast<std::size_t>(config.http.blocking_threads));
  asio::thread_pool background(3);
  const p2p::runtime::Runtime runtime{io, exchange_io, blocking, background};
  const auto control = asio::make_strand(io);  // signals and shutdown
  asio::signal_set signals(control, SIGINT, SIGTERM);

  p2p::store::Database database(config.database.url, config.http.blocking_threads,
                                config.database.connect_timeout_seconds);
  p2p::http::ApiKeyAuth auth(config.auth.mode == p2p::config::AuthMode::kApiKey, config.auth.api_keys);
  config.auth.api_keys.clear();  // only the digests are kept

  const auto swagger_dir = config.http.swagger_ui_dir.empty() ? executable_directory() / "swagger-ui"
                                                              : std::filesystem::path(config.http.swagger_ui_dir);
  p2p::api::SwaggerUi swagger_ui(swagger_dir);
  if (!swagger_ui.available()) {
    spdlog::warn("Swagger UI assets not found in {}: \"/\" will say how to install them (scripts/setup.sh)",
                 swagger_dir.string());
  }

  p2p::metrics::Registry metrics;  // every module declares its metrics here; GET /metrics renders it
  p2p::http::Router router;
  p2p::http::ServerOptions server_options{.host = config.http.host,
                                          .port = config.http.port,
                                          .body_limit_bytes = config.http.body_limit_bytes,
                                          .header_limit_bytes = 16 * 1024,
                                          .header_timeout_seconds = config.http.header_timeout_seconds,
                                          .read_timeout_seconds = config.http.read_timeout_seconds,
                                          .write_timeout_seconds = config.http.write_timeout_seconds,
                                          .idle_timeout_seconds = config.http.idle_timeout_seconds,
                                          .shutdown_grace_seconds = config.http.shutdown_grace_seconds,
                                          .tls_cert_file = config.http.tls.cert_file,
                                          .tls_key_file = config.http.tls.key_file};
  p2p::http::Server server(server_options, runtime, router, auth, metrics);

  std::atomic<int> exit_code{0};
  p2p::store::DatabaseBootstrap bootstrap(database, config.oidc_servers, config.database.migration_retry_seconds,
                                          [&signals, &control, &exit_code](const std::string&) {
                                            exit_code = 1;
                                            asio::post(control, [&signals] { signals.cancel(); });
                                          });
  p2p::store::ChangeNotifiedCache oidc_server_cache(config.database.url, "p2p_oidc_servers_changed");
  std::string token_key = config.exchange.token_encryption_key;
  if (token_key.empty()) {  // only possible in development mode (config validation)
    token_key = p2p::crypto::base64_encode(p2p::util::random_hex(16));
    spdlog::warn("*** DEVELOPMENT MODE: members' tokens are encrypted with a throwaway key; jobs cannot resume after "
                 "a restart. Set P2P_TOKEN_ENCRYPTION_KEY in any real deployment. ***");
  }
  const p2p::crypto::TokenCipher token_cipher(token_key, config.exchange.retired_token_encryption_keys);
  spdlog::info("members' tokens are encrypted with key {}", token_cipher.primary_key_id());
  p2p::crypto::SigningKeys signing_keys;
  try {
    signing_keys = p2p::crypto::SigningKeys::load(config.exchange.client_signing_keys);
  } catch (const p2p::crypto::SigningKeyError& error) {  // checked with the configuration: changed since?
    spdlog::critical("exchange.clientSigningKeys: {}", error.what());
    p2p::log::shutdown();
    return 1;
  }
  if (!signing_keys.empty()) {
    spdlog::info("private_key_jwt client assertions are signed {} with key {} ({} key(s) published at "
                 "/.well-known/jwks.json)",
                 signing_keys.signing_algorithm(), signing_keys.signing_kid(), signing_keys.size());
  }
  if (config.exchange.fhir_persistence_url.empty()) {
    spdlog::warn("exchange.fhirPersistenceUrl (P2P_FHIR_PERSISTENCE_URL) is not set: batch jobs are refused until it is");
  }
  const std::string instance_id = p2p::util::random_hex(6) + "-" + std::to_string(::getpid());
  std::unique_ptr<p2p::jobs::JobRunner> runner_holder;
  try {
    runner_holder =
        std::make_unique<p2p::jobs::JobRunner>(config.exchange, database, token_cipher, signing_keys, instance_id,
                                                   runtime, metrics);
  } catch (const std::exception& error) {
    spdlog::critical("cannot start the job runner: {}", error.what());
    p2p::log::shutdown();
    return 1;
  }
  p2p::jobs::JobRunner& job_runner = *runner_holder;
  std::unique_ptr<p2p::notify::Notifier> notifier_holder;
  try {
    notifier_holder = std::make_unique<p2p::notify::Notifier>(config.notifications, config.exchange, database,
                                                              instance_id, runtime, metrics);
  } catch (const std::exception& error) {
    spdlog::critical("cannot start the notifications: {}", error.what());
    p2p::log::shutdown();
    return 1;
  }
  p2p::notify::Notifier& notifier = *notifier_holder;
  // The member connect flow's calls to source payers (discovery, code exchange, keys), from API routes.
  p2p::http::ClientOptions outbound_options;
  outbound_options.verify_tls = config.exchange.verify_tls;
  outbound_options.ca_file = config.exchange.ca_file;
  outbound_options.read_timeout_seconds = std::min(config.exchange.request_timeout_seconds, 30);
  outbound_options.max_response_bytes = config.exchange.max_response_bytes;
  outbound_options.user_agent = std::string("p2p-exchange/") + P2P_VERSION;
  std::unique_ptr<p2p::http::HttpClient> outbound_client;
  try {
    outbound_client = std::make_unique<p2p::http::HttpClient>(io.get_executor(), outbound_options);
  } catch (const std::exception& error) {
    spdlog::critical("cannot start the HTTPS client for the member connect flow: {}", error.what());
    p2p::log::shutdown();
    return 1;
  }
  p2p::api::add_routes(router, {database, bootstrap, oidc_server_cache, metrics, swagger_ui, token_cipher, signing_keys, config.exchange,
                                [&job_runner] { job_runner.wake(); }, notifier, blocking, config.connect, *outbound_client});

  try {
    server.listen();
  } catch (const std::exception& error) {
    spdlog::critical("{}", error.what());
    p2p::log::shutdown();
    return 1;
  }
  // Spawned before the bootstrap starts: its first step (the signal wait) then runs on `control`
  // before the cancellation a failing bootstrap posts there.
  asio::co_spawn(control, serve_until_signalled(signals, server, job_runner, notifier),
                 [&io, &exchange_io](std::exception_ptr failure) {
                   if (failure) {  // components may still run: stopping the I/O context under them is no option
                     spdlog::critical("the shutdown ended by an unexpected error; aborting");
                     p2p::log::shutdown();
                     std::abort();
                   }
                   // Every component has ended; nothing is left but idle outbound keep-alive sockets.
                   exchange_io.stop();
                   io.stop();
                 });
  bootstrap.start();
  oidc_server_cache.start();
  server.start();
  job_runner.start([&bootstrap] { return bootstrap.done(); });
  notifier.start([&bootstrap] { return bootstrap.done(); });
  const char* scheme = server.tls() ? "https" : "http";
  spdlog::info("listening on {}://{}:{} (API docs at {}://{}:{}/)", scheme, config.http.host, server.port(), scheme,
               config.http.host, server.port());
  spdlog::default_logger()->flush();  // the line a supervisor (or a test) waits for: written now, not in a second
  std::thread exchange_thread([&exchange_io] { exchange_io.run(); });
  p2p::runtime::run(io, config.http.threads);
  exchange_thread.join();
  blocking.join();
  background.join();
  bootstrap.stop();
  oidc_server_cache.stop();
  spdlog::info("p2p-exchange stopped");
  p2p::log::shutdown();
  return exit_code;
}
