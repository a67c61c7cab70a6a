#pragma once
// Brings the database to the state the service needs: migrations applied, then the OIDC server
// definitions from the configuration upserted. Runs on its own thread and retries while PostgreSQL is
// unreachable, so the service can start before its database and recover when it comes back.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "p2p/config/config.hpp"

namespace p2p::store {

class Database;

class DatabaseBootstrap {
 public:
  // `on_fatal` is called (from the bootstrap thread) when a non-connection error makes retrying
  // pointless, e.g. a migration that fails.
  DatabaseBootstrap(Database& database, std::vector<config::OidcServerDefinition> servers, int retry_seconds,
                    std::function<void(const std::string&)> on_fatal);
  ~DatabaseBootstrap();

  void start();
  void stop();
  bool done() const { return done_.load(); }
  int schema_version() const { return schema_version_.load(); }

 private:
  void run();

  Database& database_;
  std::vector<config::OidcServerDefinition> servers_;
  int retry_seconds_;
  std::function<void(const std::string&)> on_fatal_;
  std::atomic<bool> done_{false};
  std::atomic<int> schema_version_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace p2p::store
