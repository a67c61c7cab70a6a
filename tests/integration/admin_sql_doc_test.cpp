// docs/admin-sql.md cannot rot: its ```sql blocks run, in order, with psql against a migrated database,
// and the definition they add is then what the store reads.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "p2p/store/migrations.hpp"
#include "p2p/store/oidc_server_repository.hpp"
#include "test_database.hpp"

TEST(AdminSqlDoc, EverySqlBlockRunsInOrderWithPsql) {
  std::ifstream doc(std::string(P2P_SOURCE_DIR) + "/docs/admin-sql.md");
  ASSERT_TRUE(doc) << "docs/admin-sql.md is missing";
  std::string script, line;
  bool in_sql = false;
  int blocks = 0;
  while (std::getline(doc, line)) {
    if (!in_sql && line == "```sql") {
      in_sql = true;
      ++blocks;
    } else if (in_sql && line.starts_with("```")) {
      in_sql = false;
    } else if (in_sql) {
      script += line + "\n";
    }
  }
  ASSERT_GE(blocks, 3) << "expected add, edit and remove examples";

  p2p::test::TestDatabase database;
  {
    pqxx::connection connection(database.url());
    p2p::store::apply_migrations(connection);
  }
  const std::string path = "/tmp/" + database.name() + ".sql";
  std::ofstream(path) << script;
  const std::string command = "psql -X -q -v ON_ERROR_STOP=1 '" + database.url() + "' -f " + path + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  while (std::fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
  const int status = ::pclose(pipe);
  std::remove(path.c_str());
  EXPECT_EQ(status, 0) << "psql failed running the docs' SQL:\n" << output;
}
