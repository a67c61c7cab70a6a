// The change-notified cache against a real PostgreSQL: trusted only while listening, emptied by a
// committed change, never filled by a read that raced with a change.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "p2p/store/change_notified_cache.hpp"
#include "p2p/store/migrations.hpp"
#include "eventually.hpp"
#include "migrated_database_test.hpp"

using p2p::store::ChangeNotifiedCache;
using namespace std::chrono_literals;

namespace {

using p2p::test::eventually;

class ChangeNotifiedCacheTest : public p2p::test::MigratedDatabaseTest {};

}  // namespace

TEST_F(ChangeNotifiedCacheTest, ServesValuesUntilACommittedChangeEmptiesIt) {
  ChangeNotifiedCache cache(database_.url(), "p2p_oidc_servers_changed");
  EXPECT_EQ(cache.get("list"), std::nullopt);
  cache.put("list", "before-start", cache.generation());
  EXPECT_EQ(cache.get("list"), std::nullopt) << "nothing is trusted before the listener runs";

  cache.start();
  ASSERT_TRUE(eventually([&] { return cache.listening(); }));
  cache.put("list", "v1", cache.generation());
  EXPECT_EQ(cache.get("list"), "v1");

  // An uncommitted change notifies nobody; a committed one empties the cache.
  {
    pqxx::work tx(*connection_);
    tx.exec0("INSERT INTO oidc_servers (name, issuer) VALUES ('A', 'https://a.example.com')");
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(cache.get("list"), "v1");
    tx.commit();
  }
  EXPECT_TRUE(eventually([&] { return !cache.get("list").has_value(); }));
  cache.stop();
  EXPECT_FALSE(cache.listening());
}

TEST_F(ChangeNotifiedCacheTest, AReadThatRacedWithAChangeIsNotCached) {
  ChangeNotifiedCache cache(database_.url(), "p2p_oidc_servers_changed");
  cache.start();
  ASSERT_TRUE(eventually([&] { return cache.listening(); }));
  const auto before_read = cache.generation();
  exec("UPDATE oidc_servers SET name = name");  // a change lands while the "read" is in progress
  ASSERT_TRUE(eventually([&] { return cache.generation() != before_read; }));
  cache.put("server:1", "stale", before_read);
  EXPECT_EQ(cache.get("server:1"), std::nullopt);
  cache.put("server:1", "fresh", cache.generation());
  EXPECT_EQ(cache.get("server:1"), "fresh");
}

TEST_F(ChangeNotifiedCacheTest, StopsServingWhenTheListenerConnectionIsLost) {
  ChangeNotifiedCache cache(database_.url(), "p2p_oidc_servers_changed");
  cache.start();
  ASSERT_TRUE(eventually([&] { return cache.listening(); }));
  cache.put("list", "v1", cache.generation());
  // Kill the listener's backend, as a PostgreSQL restart or a network cut would. It is the only other
  // client of this test's database (its last query is LISTEN, or the SELECT 1 it pings with after 5 s).
  exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
       "AND pid <> pg_backend_pid() AND backend_type = 'client backend'");
  EXPECT_TRUE(eventually([&] { return !cache.get("list").has_value(); }));
  // It reconnects by itself (after 1 s) and starts empty (changes made meanwhile are unknown).
  EXPECT_TRUE(eventually([&] { return cache.listening(); }, 15s));
  EXPECT_EQ(cache.get("list"), std::nullopt);
}
