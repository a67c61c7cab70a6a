#pragma once
// Schema migrations embedded in the binary (src/store/migrations/NNNN_*.sql), applied at start-up in
// one transaction under an advisory lock, so several instances starting at once apply each exactly
// once. Table schema_migrations records what ran.
#include <pqxx/pqxx>

namespace p2p::store {

struct MigrationOutcome {
  int schema_version = 0;  // highest version applied in the database afterwards
  int applied = 0;         // how many this call applied
};

// The highest migration version this binary knows.
int latest_known_migration();

MigrationOutcome apply_migrations(pqxx::connection& connection);

// The highest version recorded in the database (0 when none or the table is missing).
int current_schema_version(pqxx::connection& connection);

}  // namespace p2p::store
