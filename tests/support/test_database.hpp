#pragma once
// A fresh, empty PostgreSQL database for one test, on the server named by P2P_TEST_DATABASE_URL
// (scripts/test.sh starts a throwaway cluster and sets it). Dropped when the object goes away.
#include <string>

#include <pqxx/pqxx>

namespace p2p::test {

class TestDatabase {
 public:
  TestDatabase();
  ~TestDatabase();
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }

  // The server's admin URL from P2P_TEST_DATABASE_URL; fails the test when unset.
  static std::string admin_url();
  // `url` with its database replaced by `database`.
  static std::string with_database(const std::string& url, const std::string& database);

 private:
  std::string name_;
  std::string url_;
};

}  // namespace p2p::test
