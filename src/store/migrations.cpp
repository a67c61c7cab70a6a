#include "p2p/store/migrations.hpp"

#include <set>

#include <spdlog/spdlog.h>

#include "p2p/util/embedded_files.hpp"

namespace p2p::store {
namespace {
// Arbitrary but fixed: every instance of p2p-exchange takes this lock while migrating.
constexpr long long kMigrationLockKey = 0x7032705F6D696772;  // "p2p_migr"
}  // namespace

int latest_known_migration() {
  int latest = 0;
  for (const auto& migration : embedded::migrations()) latest = std::max(latest, migration.version);
  return latest;
}

MigrationOutcome apply_migrations(pqxx::connection& connection) {
  pqxx::work tx(connection, "apply_migrations");
  tx.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLockKey);
  tx.exec0(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " version integer PRIMARY KEY,"
      " name text NOT NULL,"
      " applied_at timestamptz NOT NULL DEFAULT now())");
  std::set<int> applied;
  for (const auto& row : tx.exec("SELECT version FROM schema_migrations")) applied.insert(row["version"].as<int>());

  MigrationOutcome outcome;
  for (const auto& migration : embedded::migrations()) {
    if (applied.contains(migration.version)) continue;
    spdlog::info("applying database migration {}", migration.name);
    tx.exec(std::string(migration.sql));
    tx.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", migration.version,
                   std::string(migration.name));
    applied.insert(migration.version);
    ++outcome.applied;
  }
  tx.commit();
  outcome.schema_version = applied.empty() ? 0 : *applied.rbegin();
  if (outcome.schema_version > latest_known_migration()) {
    spdlog::warn("the database schema is at version {}, newer than this binary knows ({}): run the newer release",
                 outcome.schema_version, latest_known_migration());
  }
  return outcome;
}

int current_schema_version(pqxx::connection& connection) {
  pqxx::read_transaction tx(connection);
  auto exists = tx.exec1("SELECT to_regclass('schema_migrations') IS NOT NULL AS present");
  if (!exists["present"].as<bool>()) return 0;
  return tx.exec1("SELECT coalesce(max(version), 0) AS version FROM schema_migrations")["version"].as<int>();
}

}  // namespace p2p::store
