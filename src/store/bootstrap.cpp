#include "p2p/store/bootstrap.hpp"

#include <spdlog/spdlog.h>

#include "p2p/store/database.hpp"
#include "p2p/store/migrations.hpp"
#include "p2p/store/oidc_server_repository.hpp"

namespace p2p::store {

DatabaseBootstrap::DatabaseBootstrap(Database& database, std::vector<config::OidcServerDefinition> servers,
                                     int retry_seconds, std::function<void(const std::string&)> on_fatal)
    : database_(database), servers_(std::move(servers)), retry_seconds_(retry_seconds), on_fatal_(std::move(on_fatal)) {}

DatabaseBootstrap::~DatabaseBootstrap() { stop(); }

void DatabaseBootstrap::start() { thread_ = std::thread([this] { run(); }); }

void DatabaseBootstrap::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void DatabaseBootstrap::run() {
  while (true) {
    try {
      database_.with_connection([this](pqxx::connection& connection) {
        const auto outcome = apply_migrations(connection);
        schema_version_ = outcome.schema_version;
        spdlog::info("database schema at version {} ({} migration(s) applied now)", outcome.schema_version,
                     outcome.applied);
        OidcServerRepository repository(connection);
        for (const auto& server : servers_) {
          const int pid = repository.upsert_by_issuer(server);
          spdlog::info("OIDC server \"{}\" from the configuration is pid {}", server.name, pid);
        }
      });
      done_ = true;
      return;
    } catch (const DatabaseUnavailable& error) {
      spdlog::warn("database not ready ({}); retrying in {} s", error.what(), retry_seconds_);
    } catch (const std::exception& error) {
      spdlog::critical("preparing the database failed: {}", error.what());
      if (on_fatal_) on_fatal_(error.what());
      return;
    }
    std::unique_lock lock(mutex_);
    if (wake_.wait_for(lock, std::chrono::seconds(retry_seconds_), [this] { return stopping_; })) return;
  }
}

}  // namespace p2p::store
