#include "outbox_sender.hpp"

#include <algorithm>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "p2p/notify/email.hpp"
#include "p2p/runtime/run_blocking.hpp"

namespace p2p::notify {
namespace {

namespace asio = boost::asio;

constexpr int kClaimBatch = 5;

}  // namespace

OutboxSender::OutboxSender(const config::NotificationsConfig& config, store::Database& database, const std::string& owner,
                           NotifierMetrics& counters, SmtpMailer& mailer, asio::thread_pool& blocking,
                           const Strand& strand, runtime::StopSignal& stop)
    : config_(config), database_(database), owner_(owner), counters_(counters), mailer_(mailer), blocking_(blocking),
      stop_(stop),
      delivery_backoff_{.initial = std::chrono::seconds(config.initial_backoff_seconds),
                        .cap = std::chrono::seconds(config.max_backoff_seconds),
                        .jitter_low = 0.8,
                        .jitter_high = 1.2,
                        .floor = std::chrono::seconds(1)},
      timer_(strand) {}

void OutboxSender::wake() {
  woken_ = true;
  timer_.cancel();
}

std::chrono::seconds OutboxSender::backoff(int attempts) {
  return std::chrono::duration_cast<std::chrono::seconds>(delivery_backoff_.delay(attempts, random_));
}

std::string OutboxSender::message_id(long long id) const {
  return "p2p-notification-" + std::to_string(id) + "@" + domain_of(config_.mail_from);
}

// Delivers one claimed row and records the outcome.
void OutboxSender::deliver(const store::ClaimedEmail& email) {
  const std::string message = compose_message(
      {config_.mail_from, email.recipient, email.subject, email.body, message_id(email.id), email.task_id},
      std::chrono::system_clock::now());
  const SendResult result = mailer_.send(config_.mail_from, email.recipient, message);
  database_.with_connection([&](pqxx::connection& connection) {
    store::NotificationOutbox outbox(connection);
    if (result.delivered) {
      outbox.mark_sent(email.id, owner_);
      counters_.sent.inc();
      spdlog::info("notifications: Task {}: {} e-mail delivered (outbox row {})", email.task_id, email.event, email.id);
    } else if (result.permanent || email.attempts >= config_.max_attempts) {
      outbox.mark_failed(email.id, owner_, result.error);
      counters_.failed.inc();
      spdlog::error("notifications: Task {}: {} e-mail failed for good after {} attempt(s) (outbox row {}): {}",
                    email.task_id, email.event, email.attempts, email.id, result.error);
    } else {
      const auto delay = backoff(email.attempts);
      outbox.mark_retry(email.id, owner_, result.error, delay);
      counters_.delivery_errors.inc();
      spdlog::warn("notifications: Task {}: {} e-mail not delivered (attempt {} of {}, outbox row {}), retrying in {} s: {}",
                   email.task_id, email.event, email.attempts, config_.max_attempts, email.id, delay.count(),
                   result.error);
    }
  });
}

// One pass: claims due rows and delivers them. Returns whether a full batch was claimed (more may wait).
bool OutboxSender::send_due() {
  const auto lease = std::chrono::seconds(kClaimBatch * (config_.smtp.timeout_seconds + 5) + 60);
  auto claimed = database_.with_connection([&](pqxx::connection& connection) {
    return store::NotificationOutbox(connection).claim(owner_, lease, kClaimBatch);
  });
  for (const auto& email : claimed) {
    if (stop_.requested()) break;
    deliver(email);
  }
  if (stop_.requested() && !claimed.empty()) {
    database_.with_connection([&](pqxx::connection& connection) { store::NotificationOutbox(connection).release(owner_); });
  }
  counters_.pending.set(static_cast<double>(database_.with_connection(
      [](pqxx::connection& connection) { return store::NotificationOutbox(connection).count_pending(); })));
  return static_cast<int>(claimed.size()) == kClaimBatch;
}

asio::awaitable<void> OutboxSender::run(std::function<bool()> database_ready) {
  bool database_warned = false;
  const auto pass = [this] { return send_due(); };
  while (!stop_.requested()) {
    bool more = false;
    if (database_ready && database_ready()) {
      try {
        more = co_await runtime::run_blocking(blocking_, pass);
        database_warned = false;
      } catch (const store::DatabaseUnavailable& error) {
        if (!database_warned) spdlog::warn("notifications: the outbox is unreachable ({}); retrying", error.what());
        database_warned = true;
      } catch (const std::exception& error) {
        spdlog::error("notifications: the sender hit an unexpected error: {}", error.what());
      }
    }
    if (more || std::exchange(woken_, false)) continue;
    if (stop_.requested()) break;  // (checked on the strand, as stop() cancels: no lost wake-up)
    timer_.expires_after(std::chrono::milliseconds(config_.poll_interval_milliseconds));
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

}  // namespace p2p::notify
