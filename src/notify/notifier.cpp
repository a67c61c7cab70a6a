#include "p2p/notify/notifier.hpp"

#include <chrono>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "notifier_metrics.hpp"
#include "outbox_sender.hpp"
#include "subscription_keeper.hpp"
#include "p2p/http/client.hpp"
#include "p2p/http/fhir_endpoint.hpp"
#include "p2p/notify/email.hpp"
#include "p2p/notify/smtp_mailer.hpp"
#include "p2p/notify/subscription.hpp"
#include "p2p/runtime/run_blocking.hpp"
#include "p2p/runtime/stop_signal.hpp"
#include "p2p/runtime/task_group.hpp"
#include "p2p/store/database.hpp"
#include "p2p/util/crypto.hpp"
#include "p2p/util/text.hpp"
#include "p2p/util/time.hpp"
#include "p2p/util/url_rules.hpp"

namespace p2p::notify {
namespace {

namespace asio = boost::asio;
using nlohmann::json;

}  // namespace

struct Notifier::Impl {
  Impl(const config::NotificationsConfig& c, const config::ExchangeConfig& e, store::Database& d, std::string o,
       const runtime::Runtime& runtime, metrics::Registry& registry)
      : config(c), exchange(e), database(d), owner("notify-" + std::move(o)),
        counters(c.enabled ? registry : unlisted), mailer(c.smtp),
        secret_digest(util::sha256(c.hook_secret)),
        strand(asio::make_strand(runtime.io)),
        stop(strand),
        tasks(strand),
        client(make_client(strand, e)),
        keeper(config, *client, target, stop),
        sender(config, database, owner, counters, mailer, runtime.background, strand, stop) {}

  static std::unique_ptr<http::HttpClient> make_client(const asio::strand<asio::io_context::executor_type>& strand,
                                                       const config::ExchangeConfig& exchange) {
    http::ClientOptions options;
    options.verify_tls = exchange.verify_tls;
    options.ca_file = exchange.ca_file;
    options.read_timeout_seconds = 20;
    options.max_response_bytes = 16 * 1024 * 1024;
    options.user_agent = std::string("p2p-exchange/") + P2P_VERSION;
    return std::make_unique<http::HttpClient>(strand, options);
  }

  const config::NotificationsConfig& config;
  const config::ExchangeConfig& exchange;
  store::Database& database;
  std::string owner;
  metrics::Registry unlisted;  // where the counters go when notifications are off: never rendered
  NotifierMetrics counters;
  SmtpMailer mailer;
  util::Sha256Digest secret_digest;
  const http::FhirEndpoint target{exchange.fhir_persistence_url, exchange.fhir_persistence_authorization};
  // The keeper and the sender are coroutines on this strand (one task group); the sender's SMTP and
  // SQL work runs on the runtime's background pool (not the API's).
  asio::strand<asio::io_context::executor_type> strand;
  runtime::StopSignal stop;
  runtime::TaskGroup tasks;
  std::unique_ptr<http::HttpClient> client;
  SubscriptionKeeper keeper;
  OutboxSender sender;

  // --- reads for the hook route -----------------------------------------------------------------

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

  // On the strand: the stop signal ends the keeper's pause and the sender's wait; the keeper's request
  // in flight (20 s time-out) or the e-mail being sent (notifications.smtp.timeoutSeconds) finishes
  // first, then the rows leased and not sent are given back.
  asio::awaitable<void> stop_tasks() {
    stop.request();
    sender.cancel_wait();
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
  const auto log_failure = [](const char* what) {
    return [what](std::exception_ptr failure) {
      if (failure) spdlog::critical("notifications: the {} ended by an unexpected error", what);
    };
  };
  asio::co_spawn(impl_->strand, impl_->keeper.run(), impl_->tasks.adapt(log_failure("Subscription keeper")));
  asio::co_spawn(impl_->strand, impl_->sender.run(std::move(database_ready)),
                 impl_->tasks.adapt(log_failure("e-mail sender")));
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
  const std::string path = "Task?code=" + util::query_value(code) + "&_lastUpdated=" + util::query_value("ge" + util::iso8601_utc(since)) +
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
  asio::post(impl_->strand, [impl = impl_.get()] { impl->sender.wake(); });
}

void Notifier::count_hook(HookOutcome outcome) { impl_->counters.hooks[static_cast<std::size_t>(outcome)]->inc(); }

}  // namespace p2p::notify
