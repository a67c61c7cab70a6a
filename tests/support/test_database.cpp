#include "test_database.hpp"

#include <cstdlib>
#include <stdexcept>

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include "p2p/util/crypto.hpp"

namespace p2p::test {

std::string TestDatabase::admin_url() {
  const char* url = std::getenv("P2P_TEST_DATABASE_URL");
  if (url == nullptr || *url == '\0') {
    throw std::runtime_error(
        "P2P_TEST_DATABASE_URL is not set: run the tests through scripts/test.sh, which starts a throwaway "
        "PostgreSQL and sets it");
  }
  return url;
}

std::string TestDatabase::with_database(const std::string& url, const std::string& database) {
  boost::urls::url parsed(boost::urls::parse_uri(url).value());
  parsed.set_path("/" + database);
  return std::string(parsed.buffer());
}

TestDatabase::TestDatabase() : name_("p2p_test_" + util::random_hex(6)) {
  pqxx::connection admin(admin_url());
  pqxx::nontransaction tx(admin);
  tx.exec0("CREATE DATABASE " + tx.quote_name(name_));
  url_ = with_database(admin_url(), name_);
}

TestDatabase::~TestDatabase() {
  try {
    pqxx::connection admin(admin_url());
    pqxx::nontransaction tx(admin);
    tx.exec0("DROP DATABASE IF EXISTS " + tx.quote_name(name_) + " WITH (FORCE)");
  } catch (...) {
    // Best effort: the whole cluster is thrown away at the end of the run anyway.
  }
}

}  // namespace p2p::test
