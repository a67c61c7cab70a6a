// Migrations against a real PostgreSQL: applied once, idempotent, safe when two instances start at once.
#include <gtest/gtest.h>

#include <barrier>
#include <thread>

#include "p2p/store/migrations.hpp"
#include "test_database.hpp"

using p2p::test::TestDatabase;

namespace {
int count_rows(pqxx::connection& connection, const std::string& table) {
  pqxx::read_transaction tx(connection);
  return tx.exec1("SELECT count(*) FROM " + table)[0].as<int>();
}
}  // namespace

TEST(Migrations, ApplyOnceThenNothingTheSecondTime) {
  TestDatabase database;
  pqxx::connection connection(database.url());
  EXPECT_EQ(p2p::store::current_schema_version(connection), 0);

  const auto first = p2p::store::apply_migrations(connection);
  EXPECT_EQ(first.applied, p2p::store::latest_known_migration());
  EXPECT_EQ(first.schema_version, p2p::store::latest_known_migration());

  const auto second = p2p::store::apply_migrations(connection);
  EXPECT_EQ(second.applied, 0);
  EXPECT_EQ(second.schema_version, p2p::store::latest_known_migration());
  EXPECT_EQ(count_rows(connection, "schema_migrations"), p2p::store::latest_known_migration());
  EXPECT_EQ(p2p::store::current_schema_version(connection), p2p::store::latest_known_migration());
  EXPECT_EQ(count_rows(connection, "oidc_servers"), 0);
}

TEST(Migrations, TwoInstancesMigratingAtOnceApplyEachMigrationExactlyOnce) {
  TestDatabase database;
  constexpr int kInstances = 4;
  std::barrier start(kInstances);
  std::vector<int> applied(kInstances, -1);
  std::vector<std::string> errors(kInstances);
  std::vector<std::thread> threads;
  for (int i = 0; i < kInstances; ++i) {
    threads.emplace_back([&, i] {
      try {
        pqxx::connection connection(database.url());
        start.arrive_and_wait();
        applied[i] = p2p::store::apply_migrations(connection).applied;
      } catch (const std::exception& error) {
        errors[i] = error.what();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  int total = 0;
  for (int i = 0; i < kInstances; ++i) {
    EXPECT_EQ(errors[i], "") << "instance " << i;
    total += applied[i];
  }
  EXPECT_EQ(total, p2p::store::latest_known_migration()) << "each migration is applied by exactly one instance";
  pqxx::connection connection(database.url());
  EXPECT_EQ(count_rows(connection, "schema_migrations"), p2p::store::latest_known_migration());
}
