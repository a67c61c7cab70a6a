#include "p2p/store/database.hpp"

#include <cstdlib>

#include <spdlog/spdlog.h>

namespace p2p::store {

Database::Database(std::string url, int pool_size, int connect_timeout_seconds)
    : url_(std::move(url)), slots_(static_cast<std::size_t>(pool_size)) {
  // libpq reads this when the URL does not set connect_timeout itself; without it a dead host hangs.
  ::setenv("PGCONNECT_TIMEOUT", std::to_string(connect_timeout_seconds).c_str(), 0);
}

Database::~Database() = default;

bool Database::is_connection_failure(const std::string& sqlstate) {
  return sqlstate.starts_with("08") || sqlstate.starts_with("57P");
}

std::size_t Database::acquire() {
  std::unique_lock lock(mutex_);
  bool waited = false;
  while (true) {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (!slots_[i].in_use) {
        slots_[i].in_use = true;
        if (waited) ++waits_;
        return i;
      }
    }
    waited = true;
    available_.wait(lock);
  }
}

void Database::release(std::size_t index) {
  {
    std::lock_guard lock(mutex_);
    slots_[index].in_use = false;
  }
  available_.notify_one();
}

Database::Lease::Lease(Database& database) : database_(database), index_(database.acquire()) {}

Database::Lease::~Lease() { database_.release(index_); }

pqxx::connection& Database::Lease::connection() {
  // Only this lease touches the slot's connection while it is in use, so no lock is needed here.
  auto& slot = database_.slots_[index_];
  if (slot.connection && !slot.connection->is_open()) {
    slot.connection.reset();
    --database_.open_;
  }
  if (!slot.connection) {
    try {
      slot.connection = std::make_unique<pqxx::connection>(database_.url_);
      ++database_.open_;
    } catch (const pqxx::broken_connection& error) {
      ++database_.connection_failures_;
      throw DatabaseUnavailable(std::string("cannot connect to PostgreSQL: ") + error.what());
    }
  }
  return *slot.connection;
}

void Database::Lease::discard() {
  ++database_.connection_failures_;
  auto& slot = database_.slots_[index_];
  if (slot.connection) {
    slot.connection.reset();
    --database_.open_;
  }
}

PoolStats Database::stats() const {
  std::lock_guard lock(mutex_);
  PoolStats stats;
  stats.size = static_cast<int>(slots_.size());
  for (const auto& slot : slots_) {
    if (slot.in_use) ++stats.in_use;
  }
  stats.open = open_.load();
  stats.waits = waits_;
  stats.connection_failures = connection_failures_.load();
  return stats;
}

}  // namespace p2p::store
