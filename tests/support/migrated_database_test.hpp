#pragma once
// Base fixture for integration tests of the store: a fresh database with every migration applied,
// one connection to it, and helpers to run SQL as an admin would.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include <pqxx/pqxx>

#include "p2p/store/migrations.hpp"
#include "test_database.hpp"

namespace p2p::test {

class MigratedDatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    connection_ = std::make_unique<pqxx::connection>(database_.url());
    store::apply_migrations(*connection_);
  }

  // Runs `sql` in its own committed transaction.
  void exec(const std::string& sql) {
    pqxx::work tx(*connection_);
    tx.exec(sql);
    tx.commit();
  }

  // The first column of the first row of `sql`, "NULL" for null.
  std::string scalar(const std::string& sql) {
    pqxx::read_transaction tx(*connection_);
    const auto field = tx.exec1(sql)[0];
    return field.is_null() ? "NULL" : field.as<std::string>();
  }

  TestDatabase database_;
  std::unique_ptr<pqxx::connection> connection_;
};

}  // namespace p2p::test
