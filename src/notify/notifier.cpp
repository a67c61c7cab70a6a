#include "p2p/notify/notifier.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <random>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "p2p/http/client.hpp"
#include "p2p/http/fhir_endpoint.hpp"
#include "p2p/notify/email.hpp"
#include "p2p/notify/smtp_mailer.hpp"
#include "p2p/notify/subscription.hpp"
#include "p2p/runtime/run_blocking.hpp"
#include "p2p/runtime/stop_signal.hpp"
#include "p2p/runtime/task_group.hpp"
#include "p2p/store/database.hpp"
#include "p2p/util/backoff.hpp"
#include "p2p/util/crypto.hpp"
#include "p2p/util/text.hpp"
#include "p2p/util/time.hpp"
#include "p2p/util/url_rules.hpp"

namespace p2p::notify {
namespace {

namespace asio = boost::asio;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kClaimBatch = 5;
constexpr std::array<const char*, 6> kHookOutcomeNames = {"queued", "duplicate", "ignored", "unauthorized", "invalid",
                                                          "error"};

// The notifications' metrics, declared once (in the service's registry when notifications are on).
struct NotifierMetrics {
  explicit NotifierMetrics(metrics::Registry& registry)
      : sent(registry.counter("p2p_notifications_sent_total", "E-mails the SMTP server accepted (this instance).")),
        failed(registry.counter("p2p_notifications_failed_total",
                                "E-mails given up on: refused for good or out of attempts.")),
        delivery_errors(registry.counter("p2p_notifications_delivery_errors_total",
                                         "Delivery attempts that failed and will be retried.")),
        pending(registry.gauge("p2p_notifications_pending",
                               "E-mails waiting in the outbox (all instances), as of the last sender pass.")) {
    for (std::size_t i = 0; i < kHookOutcomeNames.size(); ++i) {
      hooks[i] = &registry.counter("p2p_notifications_hooks_total", "Rest-hook deliveries received, by outcome.",
                                   std::string("outcome=\"") + kHookOutcomeNames[i] + "\"");
    }
  }
  metrics::Counter& sent;
  metrics::Counter& failed;
  metrics::Counter& delivery_errors;
  metrics::Gauge& pending;
  std::array<metrics::Counter*, kHookOutcomeNames.size()> hooks{};
};

std::string query_value(std::string_view value) {
  return boost::urls::encode(value, boost::urls::unreserved_chars);
}

}  // namespace

struct Notifier::Impl {
  Impl(const config::NotificationsConfig& c, const config::ExchangeConfig& e, store::Database& d, std::string o,
       const runtime::Runtime& runtime, metrics::Registry& registry)
      : config(c), exchange(e), database(d), owner("notify-" + std::move(o)),
        counters(c.enabled ? registry : unlisted), mailer(c.smtp),
        secret_digest(util::sha256(c.hook_secret)),
        delivery_backoff{.initial = std::chrono::seconds(c.initial_backoff_seconds),
                         .cap = std::chrono::seconds(c.max_backoff_seconds),
                         .jitter_low = 0.8,
                         .jitter_high = 1.2,
                         .floor = std::chrono::seconds(1)},
        strand(asio::make_strand(runtime.io)),
        blocking(runtime.background),
        stop(strand),
        tasks(strand),
        sender_timer(strand) {
    http::ClientOptions options;
    options.verify_tls = exchange.verify_tls;
    options.ca_file = exchange.ca_file;
    options.read_timeout_seconds = 20;
    options.max_response_bytes = 16 * 1024 * 1024;
    options.user_agent = std::string("p2p-exchange/") + P2P_VERSION;
    client = std::make_unique<http::HttpClient>(strand, options);
  }

  const config::NotificationsConfig& config;
  const config::ExchangeConfig& exchange;
  store::Database& database;
  std::string owner;
  metrics::Registry unlisted;  // where the counters go when notifications are off: never rendered
  NotifierMetrics counters;
  SmtpMailer mailer;
  util::Sha256Digest secret_digest;
  // The one retry policy (util/backoff.hpp) with each loop's numbers. The keeper's draws nothing from
  // `random` (no jitter: one keeper per instance), so only the sender (one pass at a time) uses it.
  static constexpr util::Backoff kKeeperBackoff{.initial = std::chrono::seconds(4), .cap = std::chrono::seconds(60),
                                                .jitter_low = 1.0, .jitter_high = 1.0};
  // notifications.delivery: initialBackoffSeconds doubling, ±20 % jitter, at most maxBackoffSeconds.
  const util::Backoff delivery_backoff;
  const http::FhirEndpoint target{exchange.fhir_persistence_url, exchange.fhir_persistence_authorization};
  // The keeper and the sender are coroutines on this strand (one task group); the sender's SMTP and
  // SQL work runs on the blocking pool.
  asio::strand<asio::io_context::executor_type> strand;
  asio::thread_pool& blocking;  // the runtime's background pool (not the API's)
  runtime::StopSignal stop;
  runtime::TaskGroup tasks;
  std::unique_ptr<http::HttpClient> client;
  std::function<bool()> database_ready;
  asio::steady_timer sender_timer;  // the sender's wait between passes; cancelled by wake_sender() and stop()
  bool sender_woken = false;        // on the strand only
  std::mt19937_64 random{std::random_device{}()};


  // --- the Subscription -------------------------------------------------------------------------

  asio::awaitable<http::ClientResponse> send(http::ClientRequest request) {
    co_return co_await client->send(std::move(request));
  }

  // A GET from a coroutine on another executor (the hook route): the client lives on the strand.
  // A failed request becomes FhirUnavailable("<failure>: <why>").
  asio::awaitable<http::ClientResponse> read_on_strand(std::string path, std::string failure) {
    try {
      auto on_strand = asio::co_spawn(strand, send(target.request("GET", path)), asio::use_awaitable);
      co_return co_await std::move(on_strand);  // (named first: GCC 12 and temporaries in co_await)
    } catch (const http::FetchError& error) {
      throw FhirUnavailable(failure + ": " + error.what());
    }
  }

  // Writes the Subscription when it is missing or differs, and deletes stray copies with our tag.
  asio::awaitable<void> ensure_subscription() {
    const json desired = desired_subscription(config.public_base_url, config.hook_secret);
    const std::string path = "Subscription/" + std::string(kSubscriptionId);
    auto current = co_await send(target.request("GET", path));
    if (stop.requested()) co_return;  // (each step is a request of up to 20 s: a stop is not kept waiting)
    bool write = false;
    if (current.status == 404 || current.status == 410) {
      write = true;
    } else if (current.status == 200) {
      const auto existing = json::parse(current.body, nullptr, false);
      write = !subscription_matches(existing, desired);
    } else {
      throw FhirUnavailable("reading " + path + " answered HTTP " + std::to_string(current.status));
    }
    if (write) {
      auto written = co_await send(target.request("PUT", path, desired.dump()));
      if (written.status < 200 || written.status >= 300) {
        // The server's explanation helps (e.g. "Subscriptions are disabled"); an echo of our secret must not reach the log.
        std::string explanation = written.body;
        for (auto at = explanation.find(config.hook_secret); !config.hook_secret.empty() && at != std::string::npos;
             at = explanation.find(config.hook_secret)) {
          explanation.replace(at, config.hook_secret.size(), "***");
        }
        throw FhirUnavailable("writing " + path + " answered HTTP " + std::to_string(written.status) + ": " +
                              sanitize_value(explanation, 300));
      }
      spdlog::info("notifications: wrote Subscription/{} on the FHIR server (rest-hook to {}{})", kSubscriptionId,
                   config.public_base_url, kHookPath);
    }
    if (stop.requested()) co_return;
    const std::string tag = std::string(kSubscriptionTagSystem) + "|" + std::string(kSubscriptionTagCode);
    auto found = co_await send(target.request("GET", "Subscription?_tag=" + query_value(tag) + "&_count=100"));
    if (found.status != 200) co_return;  // the stray check is best effort
    const auto bundle = json::parse(found.body, nullptr, false);
    if (!bundle.is_object() || !bundle.contains("entry") || !bundle["entry"].is_array()) co_return;
    for (const auto& entry : bundle["entry"]) {
      const auto resource = entry.is_object() ? entry.value("resource", json::object()) : json::object();
      const auto id = resource.is_object() ? resource.value("id", std::string()) : std::string();
      if (id.empty() || id == kSubscriptionId || !fhir_id_is_safe(id)) continue;
      if (stop.requested()) co_return;
      auto deleted = co_await send(target.request("DELETE", "Subscription/" + id));
      spdlog::info("notifications: deleted a stray copy Subscription/{} (HTTP {})", id, deleted.status);
    }
  }

  static bool fhir_id_is_safe(const std::string& id) {
    return std::all_of(id.begin(), id.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.'; });
  }

  asio::awaitable<void> seed_loop() {
    int failures = 0;
    while (!stop.requested()) {
      std::string problem;
      try {
        co_await ensure_subscription();
      } catch (const std::exception& error) {
        problem = error.what();
      }
      std::chrono::seconds wait(config.subscription_check_seconds);
      if (problem.empty()) {
        if (failures > 0) spdlog::info("notifications: the FHIR server is back; the Subscription is in place");
        failures = 0;
      } else {
        ++failures;
        if (failures == 1 || failures % 10 == 0) {
          spdlog::warn("notifications: cannot check the Subscription on the FHIR server ({}); retrying (attempt {})",
                       problem, failures);
        }
        wait = std::min(wait, std::chrono::duration_cast<std::chrono::seconds>(kKeeperBackoff.delay(failures, random)));
      }
      co_await stop.sleep_for(wait);
    }
  }

  // --- the sender -------------------------------------------------------------------------------

  std::chrono::seconds backoff(int attempts) {
    return std::chrono::duration_cast<std::chrono::seconds>(delivery_backoff.delay(attempts, random));
  }

  std::string message_id(long long id) const {
    return "p2p-notification-" + std::to_string(id) + "@" + domain_of(config.mail_from);
  }

  // Delivers one claimed row and records the outcome.
  void deliver(const store::ClaimedEmail& email) {
    const std::string message = compose_message(
        {config.mail_from, email.recipient, email.subject, email.body, message_id(email.id), email.task_id},
        std::chrono::system_clock::now());
    const SendResult result = mailer.send(config.mail_from, email.recipient, message);
    database.with_connection([&](pqxx::connection& connection) {
      store::NotificationOutbox outbox(connection);
      if (result.delivered) {
        outbox.mark_sent(email.id, owner);
        counters.sent.inc();
        spdlog::info("notifications: Task {}: {} e-mail delivered (outbox row {})", email.task_id, email.event, email.id);
      } else if (result.permanent || email.attempts >= config.max_attempts) {
        outbox.mark_failed(email.id, owner, result.error);
        counters.failed.inc();
        spdlog::error("notifications: Task {}: {} e-mail failed for good after {} attempt(s) (outbox row {}): {}",
                      email.task_id, email.event, email.attempts, email.id, result.error);
      } else {
        const auto delay = backoff(email.attempts);
        outbox.mark_retry(email.id, owner, result.error, delay);
        counters.delivery_errors.inc();
        spdlog::warn("notifications: Task {}: {} e-mail not delivered (attempt {} of {}, outbox row {}), retrying in {} s: {}",
                     email.task_id, email.event, email.attempts, config.max_attempts, email.id, delay.count(),
                     result.error);
      }
    });
  }

  // One pass: claims due rows and delivers them. Returns whether a full batch was claimed (more may wait).
  bool send_due() {
    const auto lease = std::chrono::seconds(kClaimBatch * (config.smtp.timeout_seconds + 5) + 60);
    auto claimed = database.with_connection([&](pqxx::connection& connection) {
      return store::NotificationOutbox(connection).claim(owner, lease, kClaimBatch);
    });
    for (const auto& email : claimed) {
      if (stop.requested()) break;
      deliver(email);
    }
    if (stop.requested() && !claimed.empty()) {
      database.with_connection([&](pqxx::connection& connection) { store::NotificationOutbox(connection).release(owner); });
    }
    counters.pending.set(static_cast<double>(database.with_connection(
        [](pqxx::connection& connection) { return store::NotificationOutbox(connection).count_pending(); })));
    return static_cast<int>(claimed.size()) == kClaimBatch;
  }

  asio::awaitable<void> sender_loop() {
    bool database_warned = false;
    const auto pass = [this] { return send_due(); };
    while (!stop.requested()) {
      bool more = false;
      if (database_ready && database_ready()) {
        try {
          more = co_await runtime::run_blocking(blocking, pass);
          database_warned = false;
        } catch (const store::DatabaseUnavailable& error) {
          if (!database_warned) spdlog::warn("notifications: the outbox is unreachable ({}); retrying", error.what());
          database_warned = true;
        } catch (const std::exception& error) {
          spdlog::error("notifications: the sender hit an unexpected error: {}", error.what());
        }
      }
      if (more || std::exchange(sender_woken, false)) continue;
      if (stop.requested()) break;  // (checked on the strand, as stop() cancels: no lost wake-up)
      sender_timer.expires_after(std::chrono::milliseconds(config.poll_interval_milliseconds));
      co_await sender_timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  // On the strand: the stop signal ends the keeper's pause and the sender's wait; the keeper's request
  // in flight (20 s time-out) or the e-mail being sent (notifications.smtp.timeoutSeconds) finishes
  // first, then the rows leased and not sent are given back.
  asio::awaitable<void> stop_tasks() {
    stop.request();
    sender_timer.cancel();
    const auto grace = std::chrono::seconds(std::max(25, config.smtp.timeout_seconds + 5));
    const bool ended = co_await runtime::wait_at_most(tasks, grace);  // (not in the if: GCC 12)
    if (!ended) {
      spdlog::warn("notifications: still busy {} s after the stop; waiting for the request or e-mail in flight",
                   grace.count());
      co_await tasks.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  // --- composing --------------------------------------------------------------------------------

  std::vector<store::OutboxEmail> compose(const AddPayerRequest& request, const store::TaskDelivery& delivery) const {
    std::vector<store::OutboxEmail> emails;
    const bool member_reachable = is_valid_email_address(request.email);
    if (delivery.kind == store::TaskDelivery::Kind::kFirstSight) {
      const auto values = template_values(request);
      for (const auto& admin : config.mail_admins) {
        emails.push_back({"admin-request", admin, render_template(config.admin_request.subject, values),
                          render_template(config.admin_request.body, values)});
      }
      if (member_reachable) {
        emails.push_back({"member-confirmation", request.email, render_template(config.member_confirmation.subject, values),
                          render_template(config.member_confirmation.body, values)});
      }
    } else if (delivery.kind == store::TaskDelivery::Kind::kStatusChange && member_reachable) {
      const auto values = template_values(request, delivery.previous_status);
      emails.push_back({"status:" + sanitize_value(delivery.previous_status, 64) + "->" + sanitize_value(request.status, 64) +
                            "@" + sanitize_value(request.version_id, 64),
                        request.email, render_template(config.member_status_update.subject, values),
                        render_template(config.member_status_update.body, values)});
    }
    const bool member_wanted = delivery.kind == store::TaskDelivery::Kind::kFirstSight ||
                               delivery.kind == store::TaskDelivery::Kind::kStatusChange;
    if (member_wanted && !member_reachable) {
      spdlog::warn("notifications: Task {}: the member's e-mail address (input requester-email) is {}; the member is "
                   "not told",
                   request.task_id, request.email.empty() ? "missing" : "not a valid address");
    }
    return emails;
  }
};

Notifier::Notifier(const config::NotificationsConfig& config, const config::ExchangeConfig& exchange,
                   store::Database& database, std::string instance_id, const runtime::Runtime& runtime,
                   metrics::Registry& registry)
    : impl_(std::make_unique<Impl>(config, exchange, database, std::move(instance_id), runtime, registry)) {
}

Notifier::~Notifier() = default;

bool Notifier::enabled() const { return impl_->config.enabled; }

void Notifier::start(std::function<bool()> database_ready) {
  if (!impl_->config.enabled) return;
  impl_->database_ready = std::move(database_ready);
  const auto log_failure = [](const char* what) {
    return [what](std::exception_ptr failure) {
      if (failure) spdlog::critical("notifications: the {} ended by an unexpected error", what);
    };
  };
  asio::co_spawn(impl_->strand, impl_->seed_loop(), impl_->tasks.adapt(log_failure("Subscription keeper")));
  asio::co_spawn(impl_->strand, impl_->sender_loop(), impl_->tasks.adapt(log_failure("e-mail sender")));
  spdlog::info("notifications: on; e-mails from {} to {} admin(s) and the member, through {}", impl_->config.mail_from,
               impl_->config.mail_admins.size(), util::redact_url_password(impl_->config.smtp.url));  // a URL may carry user:password
}

asio::awaitable<void> Notifier::stop() {
  auto& strand = impl_->strand;  // named: GCC 12 and temporaries in a co_await expression
  co_await asio::co_spawn(strand, impl_->stop_tasks(), asio::use_awaitable);
}

bool Notifier::check_hook_secret(std::optional<std::string_view> presented) const {
  if (!presented) return false;
  return util::constant_time_equal(util::sha256(*presented), impl_->secret_digest);
}

asio::awaitable<std::optional<json>> Notifier::read_task(std::string task_id, std::string version_id) {
  const std::string path = "Task/" + task_id + (version_id.empty() ? "" : "/_history/" + version_id);
  const std::string failure = "cannot read Task/" + task_id + " from the FHIR server";  // (named: GCC 12)
  const auto response = co_await impl_->read_on_strand(path, failure);
  if (response.status == 404 || response.status == 410) co_return std::nullopt;
  if (response.status != 200) {
    throw FhirUnavailable("reading Task/" + task_id + " from the FHIR server answered HTTP " + std::to_string(response.status));
  }
  auto task = json::parse(response.body, nullptr, false);
  if (task.is_discarded()) throw FhirUnavailable("the FHIR server answered Task/" + task_id + " with a body that is not JSON");
  co_return task;
}

asio::awaitable<std::vector<json>> Notifier::search_recent_tasks() {
  const auto since = std::chrono::system_clock::now() - std::chrono::minutes(impl_->config.empty_notification_lookback_minutes);
  const std::string code = std::string(kP2pCodeSystem) + "|" + std::string(kAddPayerCode);
  const std::string path = "Task?code=" + query_value(code) + "&_lastUpdated=" + query_value("ge" + util::iso8601_utc(since)) +
                           "&_count=100";
  const std::string failure = "cannot search the add-payer Tasks on the FHIR server";  // (named: GCC 12)
  const auto response = co_await impl_->read_on_strand(path, failure);
  if (response.status != 200) {
    throw FhirUnavailable("searching the add-payer Tasks on the FHIR server answered HTTP " + std::to_string(response.status));
  }
  const auto bundle = json::parse(response.body, nullptr, false);
  std::vector<json> tasks;
  if (!bundle.is_object() || !bundle.contains("entry") || !bundle["entry"].is_array()) co_return tasks;
  for (const auto& entry : bundle["entry"]) {
    if (entry.is_object() && entry.contains("resource")) tasks.push_back(entry["resource"]);
  }
  co_return tasks;
}

store::RecordedDelivery Notifier::queue(pqxx::connection& connection, const AddPayerRequest& request) {
  auto recorded = store::NotificationOutbox(connection).record_delivery(
      request.task_id, request.status, request.version_id, request.last_updated,
      [this, &request](const store::TaskDelivery& delivery) { return impl_->compose(request, delivery); });
  if (recorded.queued > 0) {
    spdlog::info("notifications: Task {} ({}): {} e-mail(s) queued", request.task_id,
                 recorded.delivery.kind == store::TaskDelivery::Kind::kFirstSight ? "new request"
                                                                                  : "status " + sanitize_value(request.status, 64),
                 recorded.queued);
  }
  return recorded;
}

void Notifier::wake_sender() {
  asio::post(impl_->strand, [impl = impl_.get()] {
    impl->sender_woken = true;
    impl->sender_timer.cancel();
  });
}

void Notifier::count_hook(HookOutcome outcome) { impl_->counters.hooks[static_cast<std::size_t>(outcome)]->inc(); }

}  // namespace p2p::notify
