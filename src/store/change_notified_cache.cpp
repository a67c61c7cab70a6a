#include "p2p/store/change_notified_cache.hpp"

#include <chrono>

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

namespace p2p::store {
namespace {

class Receiver final : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& connection, const std::string& channel, std::function<void()> on_change)
      : pqxx::notification_receiver(connection, channel), on_change_(std::move(on_change)) {}
  void operator()(const std::string&, int) override { on_change_(); }

 private:
  std::function<void()> on_change_;
};

// Without a word from the listener connection for this long, it is pinged to prove it is alive.
constexpr int kPingSeconds = 5;

}  // namespace

ChangeNotifiedCache::ChangeNotifiedCache(std::string database_url, std::string channel, int retry_seconds)
    : database_url_(std::move(database_url)), channel_(std::move(channel)), retry_seconds_(retry_seconds) {}

ChangeNotifiedCache::~ChangeNotifiedCache() { stop(); }

void ChangeNotifiedCache::start() { thread_ = std::thread([this] { run(); }); }

void ChangeNotifiedCache::stop() {
  stopping_ = true;
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::optional<std::string> ChangeNotifiedCache::get(const std::string& key) const {
  if (!listening_) return std::nullopt;
  std::lock_guard lock(mutex_);
  auto found = entries_.find(key);
  if (found == entries_.end()) {
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  return found->second;
}

std::uint64_t ChangeNotifiedCache::generation() const {
  std::lock_guard lock(mutex_);
  return generation_;
}

void ChangeNotifiedCache::put(const std::string& key, std::string value, std::uint64_t generation_before_read) {
  if (!listening_) return;
  std::lock_guard lock(mutex_);
  if (generation_ != generation_before_read) return;
  entries_[key] = std::move(value);
}

void ChangeNotifiedCache::invalidate(bool listening) {
  std::lock_guard lock(mutex_);
  entries_.clear();
  ++generation_;
  ++invalidations_;
  listening_ = listening;
}

void ChangeNotifiedCache::run() {
  while (!stopping_) {
    try {
      pqxx::connection connection(database_url_);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
      connection.inhibit_reactivation(true);  // a silent reconnect could miss notifications
#pragma GCC diagnostic pop
      Receiver receiver(connection, channel_, [this] { invalidate(true); });
      invalidate(true);  // changes made while we were not listening are unknown: start empty
      spdlog::debug("listening for changes on {}", channel_);
      auto last_word = std::chrono::steady_clock::now();
      while (!stopping_) {
        if (connection.await_notification(1, 0) > 0) last_word = std::chrono::steady_clock::now();
        if (std::chrono::steady_clock::now() - last_word > std::chrono::seconds(kPingSeconds)) {
          pqxx::nontransaction ping(connection);
          ping.exec("SELECT 1");
          last_word = std::chrono::steady_clock::now();
        }
      }
      invalidate(false);
      return;
    } catch (const std::exception& error) {
      if (listening_) spdlog::warn("stopped caching reads: lost the change listener ({})", error.what());
      invalidate(false);
    }
    std::unique_lock lock(wake_mutex_);
    wake_.wait_for(lock, std::chrono::seconds(retry_seconds_), [this] { return stopping_.load(); });
  }
}

}  // namespace p2p::store
