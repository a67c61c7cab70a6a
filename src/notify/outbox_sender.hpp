#pragma once
// The outbox sender: claims due e-mails from the outbox (any instance's rows, FOR UPDATE SKIP LOCKED
// with a lease), sends each over SMTP, and records sent, failed, or retry later with the delivery
// backoff. A coroutine on the notifier's strand; its SMTP and SQL run on the background pool through
// run_blocking. Woken at once when the hook queues e-mails; otherwise every pollIntervalMilliseconds.
// Asio-dependent, internal to notify (notifier.cpp owns it).
#include <chrono>
#include <functional>
#include <random>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include "notifier_metrics.hpp"
#include "p2p/config/config.hpp"
#include "p2p/notify/smtp_mailer.hpp"
#include "p2p/runtime/stop_signal.hpp"
#include "p2p/store/database.hpp"
#include "p2p/store/notification_outbox.hpp"
#include "p2p/util/backoff.hpp"

namespace p2p::notify {

class OutboxSender {
 public:
  using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;

  OutboxSender(const config::NotificationsConfig& config, store::Database& database, const std::string& owner,
               NotifierMetrics& counters, SmtpMailer& mailer, boost::asio::thread_pool& blocking, const Strand& strand,
               runtime::StopSignal& stop);

  // Until the stop signal; passes wait for `database_ready` (the schema is in place).
  boost::asio::awaitable<void> run(std::function<bool()> database_ready);
  // On the strand: look at the outbox now.
  void wake();
  // On the strand, once the stop signal is set: ends the wait between passes.
  void cancel_wait() { timer_.cancel(); }

 private:
  std::chrono::seconds backoff(int attempts);
  std::string message_id(long long id) const;
  void deliver(const store::ClaimedEmail& email);
  bool send_due();

  const config::NotificationsConfig& config_;
  store::Database& database_;
  const std::string& owner_;
  NotifierMetrics& counters_;
  SmtpMailer& mailer_;
  boost::asio::thread_pool& blocking_;
  runtime::StopSignal& stop_;
  // notifications.delivery: initialBackoffSeconds doubling, ±20 % jitter, at most maxBackoffSeconds.
  const util::Backoff delivery_backoff_;
  boost::asio::steady_timer timer_;  // the wait between passes; cancelled by wake() and cancel_wait()
  bool woken_ = false;               // on the strand only
  std::mt19937_64 random_{std::random_device{}()};
};

}  // namespace p2p::notify
