#pragma once
// Add-payer notifications, the running parts: keeps the Subscription on the FHIR persistence endpoint
// (the keeper coroutine), reads Tasks for empty-body hook deliveries, turns a delivered Task into
// outbox rows (templates, addresses), and delivers the outbox over SMTP (the sender coroutine, its
// SMTP and SQL on the blocking pool, retries with backoff). Both run on the notifier's strand of the
// service's I/O context. The hook route (api/hooks.cpp), a coroutine, awaits its FHIR reads.
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json_fwd.hpp>
#include <pqxx/pqxx>

#include "p2p/config/config.hpp"
#include "p2p/metrics/registry.hpp"
#include "p2p/notify/add_payer_task.hpp"
#include "p2p/runtime/runtime.hpp"
#include "p2p/store/notification_outbox.hpp"

namespace p2p::store {
class Database;
}

namespace p2p::notify {

// The FHIR server could not be asked (down, timed out, or answered an error). what() says which.
class FhirUnavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class HookOutcome { kQueued, kDuplicate, kIgnored, kUnauthorized, kInvalid, kError };

class Notifier {
 public:
  Notifier(const config::NotificationsConfig& config, const config::ExchangeConfig& exchange, store::Database& database,
           std::string instance_id, const runtime::Runtime& runtime, metrics::Registry& registry);
  // Once started, stop() must have completed before the notifier is destroyed.
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Starts the Subscription seeding loop and the sender (which waits for `database_ready`). Does
  // nothing when notifications are off.
  void start(std::function<bool()> database_ready);
  // Stops both (the e-mail being sent is finished first); rows leased and not yet sent are given back
  // for the next sender. Completes when both have ended.
  boost::asio::awaitable<void> stop();

  bool enabled() const;
  // Constant-time check of the X-P2P-Hook-Secret header value.
  bool check_hook_secret(std::optional<std::string_view> presented) const;

  // Requests to the FHIR server, made on the notifier's strand; awaited by the hook route. Both throw
  // FhirUnavailable when the server cannot be asked or answers an error.
  // The Task with this id (that version of it, when `version_id` is given: a vread), or nullopt when
  // it does not exist (404/410).
  boost::asio::awaitable<std::optional<nlohmann::json>> read_task(std::string task_id, std::string version_id = {});
  // The add-payer Tasks changed within emptyNotificationLookbackMinutes.
  boost::asio::awaitable<std::vector<nlohmann::json>> search_recent_tasks();
  // Blocking (PostgreSQL): through runtime::run_blocking only.
  // Records the delivery of this Task and queues the e-mails it calls for, in one transaction.
  store::RecordedDelivery queue(pqxx::connection& connection, const AddPayerRequest& request);
  // Tells the sender to look at the outbox now.
  void wake_sender();

  void count_hook(HookOutcome outcome);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace p2p::notify
