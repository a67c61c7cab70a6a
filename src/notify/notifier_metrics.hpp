#pragma once
// The notifications' metrics, declared once (in the service's registry when notifications are on):
// the outbox sender's delivery counters and the hook's outcomes. Internal to notify.
#include <array>
#include <cstddef>
#include <string>

#include "p2p/metrics/registry.hpp"

namespace p2p::notify {

inline constexpr std::array<const char*, 6> kHookOutcomeNames = {"queued", "duplicate", "ignored", "unauthorized",
                                                                 "invalid", "error"};

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

}  // namespace p2p::notify
