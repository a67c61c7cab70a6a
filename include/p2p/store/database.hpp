#pragma once
// PostgreSQL access: a fixed set of connections shared by blocking callers. libpqxx is blocking, so
// callers are the blocking thread pool, never an I/O thread. A lost connection is dropped and made
// again on next use, so the service recovers by itself when PostgreSQL comes back.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <pqxx/pqxx>

namespace p2p::store {

// PostgreSQL cannot be reached (or went away mid-query). The API answers 503 for it.
class DatabaseUnavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct PoolStats {
  int size = 0;
  int in_use = 0;
  int open = 0;
  std::uint64_t waits = 0;
  std::uint64_t connection_failures = 0;
};

class Database {
 public:
  Database(std::string url, int pool_size, int connect_timeout_seconds);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs `work` with a pooled connection, waiting for one when all are in use. Throws
  // DatabaseUnavailable when PostgreSQL cannot be reached; other pqxx errors pass through.
  template <typename Work>
  auto with_connection(Work&& work) -> decltype(work(std::declval<pqxx::connection&>())) {
    Lease lease(*this);
    try {
      return work(lease.connection());
    } catch (const pqxx::broken_connection& error) {
      lease.discard();
      throw DatabaseUnavailable(std::string("lost the connection to PostgreSQL: ") + error.what());
    } catch (const pqxx::in_doubt_error& error) {
      // The connection went during COMMIT: an outage like any other (the work is idempotent or fenced,
      // so whoever runs it next redoes what may not have been committed), not an unexpected error.
      lease.discard();
      throw DatabaseUnavailable(std::string("lost the connection to PostgreSQL during COMMIT: ") + error.what());
    } catch (const pqxx::sql_error& error) {
      if (is_connection_failure(error.sqlstate())) {
        lease.discard();
        throw DatabaseUnavailable(std::string("PostgreSQL is shutting down or unreachable: ") + error.what());
      }
      throw;
    }
  }

  PoolStats stats() const;
  const std::string& url() const { return url_; }

  // sqlstate classes 08 (connection exception) and 57P (operator intervention, e.g. shutdown).
  static bool is_connection_failure(const std::string& sqlstate);

 private:
  struct Slot {
    std::unique_ptr<pqxx::connection> connection;
    bool in_use = false;
  };

  class Lease {
   public:
    explicit Lease(Database& database);
    ~Lease();
    pqxx::connection& connection();
    void discard();

   private:
    Database& database_;
    std::size_t index_;
  };

  std::size_t acquire();
  void release(std::size_t index);

  std::string url_;
  mutable std::mutex mutex_;
  std::condition_variable available_;
  std::vector<Slot> slots_;
  std::uint64_t waits_ = 0;
  std::atomic<std::uint64_t> connection_failures_{0};
  std::atomic<int> open_{0};
};

}  // namespace p2p::store
