#pragma once
// A read cache that is only trusted while PostgreSQL can tell us about changes: a listener thread
// holds its own connection with LISTEN on a channel that triggers notify on every committed change.
// Any notification, and any loss of the listener connection, empties the cache; while the listener is
// not connected the cache answers nothing and every read goes to the database.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

namespace p2p::store {

class ChangeNotifiedCache {
 public:
  ChangeNotifiedCache(std::string database_url, std::string channel, int retry_seconds = 1);
  ~ChangeNotifiedCache();
  ChangeNotifiedCache(const ChangeNotifiedCache&) = delete;
  ChangeNotifiedCache& operator=(const ChangeNotifiedCache&) = delete;

  void start();
  void stop();

  std::optional<std::string> get(const std::string& key) const;
  // Take the generation before reading the database; put() stores the value only if nothing changed
  // since, so a read that raced with a change never fills the cache with the old value.
  std::uint64_t generation() const;
  void put(const std::string& key, std::string value, std::uint64_t generation_before_read);

  bool listening() const { return listening_.load(); }
  std::uint64_t hits() const { return hits_.load(); }
  std::uint64_t misses() const { return misses_.load(); }
  std::uint64_t invalidations() const { return invalidations_.load(); }

 private:
  void run();
  void invalidate(bool listening);

  std::string database_url_;
  std::string channel_;
  int retry_seconds_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::string> entries_;
  std::uint64_t generation_ = 0;
  std::atomic<bool> listening_{false};
  mutable std::atomic<std::uint64_t> hits_{0};
  mutable std::atomic<std::uint64_t> misses_{0};
  std::atomic<std::uint64_t> invalidations_{0};
  std::atomic<bool> stopping_{false};
  std::mutex wake_mutex_;
  std::condition_variable wake_;
  std::thread thread_;
};

}  // namespace p2p::store
