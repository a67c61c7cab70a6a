// Issue #9, the rest of it: what a job survives besides hostile input. A PostgreSQL restart in the
// middle of a job (with the member's rotated tokens in flight), a lease taken over by another
// instance, and log lines that keep naming the job they belong to while jobs interleave.
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "exchange_fixture.hpp"
#include "private_cluster.hpp"

using nlohmann::json;
using namespace p2p::test;
using namespace std::chrono_literals;

// (11): the request id follows the job's coroutine, not the thread. Two jobs interleave on the
// runner's one I/O thread; each of their lines must carry its own id.
TEST_F(ExchangeTest, EachJobsLogLinesCarryItsOwnRequestIdWhileJobsInterleave) {
  seed_source("q1", 100);
  seed_source("q2", 100);
  auto& service = start_service({{"P2P_EXCHANGE_CONCURRENCY", "2"}});
  // The second page of each answers 503 (Retry-After 1 s) twice, so both jobs are surely in flight at once.
  control(origin(source_base()), "fail-next", {{"status", 503}, {"count", 4}, {"retryAfter", 1}, {"match", "_offset=40"}});
  const auto first = start_job(service, issue_tokens("q1"), "q1");
  const auto second = start_job(service, issue_tokens("q2"), "q2");
  EXPECT_EQ(wait_for_end(service, first)["batchStatus"], "COMPLETED") << service.log();
  EXPECT_EQ(wait_for_end(service, second)["batchStatus"], "COMPLETED") << service.log();

  for (const auto id : {first, second}) {  // info lines reach the log within a second
    ASSERT_TRUE(service.wait_for_log("job " + std::to_string(id) + ": COMPLETED")) << service.log();
  }
  const std::regex job_line(R"(\[req=([^\]]*)\] job (\d+): )");
  std::istringstream lines(service.log());
  std::string line;
  std::set<std::string> jobs_seen;
  int checked = 0;
  while (std::getline(lines, line)) {
    std::smatch match;
    if (!std::regex_search(line, match, job_line)) continue;
    EXPECT_EQ(match[1].str(), "job-" + match[2].str()) << line;
    jobs_seen.insert(match[2].str());
    ++checked;
  }
  EXPECT_EQ(jobs_seen.size(), 2u) << service.log();
  EXPECT_GE(checked, 4) << service.log();
}

// (5) + (8b): PostgreSQL restarts in the middle of a job, at the worst moment: the source has just
// rotated the member's refresh token and its answer arrives while the database is down. The new
// tokens are kept and stored once PostgreSQL is back (the spent one is never presented again), the
// job picks up where it was, and every resource lands once.
namespace {

class PostgresRestartTest : public ExchangeTest {
 protected:
  PostgresRestartTest() {
    pqxx::connection admin(cluster_.url("postgres"));
    pqxx::nontransaction tx(admin);
    tx.exec0("CREATE DATABASE p2p");
  }
  std::string database_url() const override { return cluster_.url("p2p"); }
  PrivateCluster cluster_;
};

}  // namespace

TEST_F(PostgresRestartTest, ARestartMidJobWhileRotatedTokensAreInFlightLosesNeitherTokensNorResources) {
  seed_source("pg1", 200);  // 203 resources at the source: 6 pages of 40
  auto& service = start_service();
  // Each page takes 600 ms at the source, so the job is surely in the middle when PostgreSQL goes.
  control(origin(source_base()), "delay", {{"milliseconds", 600}, {"match", "$everything"}, {"method", "GET"}});
  const auto tokens = issue_tokens("pg1");
  const auto id = start_job(service, tokens, "pg1");
  ASSERT_TRUE(eventually([&] { return job(service, id).value("pagesCompleted", 0) >= 2; }, 30s)) << service.log();

  // The access token expires: the next page is refused and the service refreshes. The token endpoint
  // rotates the refresh token at once and answers 4 s later; PostgreSQL is stopped meanwhile.
  http_request("POST", issuer() + "/__control/expire-access", {kJson}, json({{"access_token", tokens["access_token"]}}).dump());
  control(issuer(), "delay-next-token-response", {{"milliseconds", 4000}, {"grant", "refresh_token"}});
  ASSERT_TRUE(eventually([&] { return refreshes_seen(issuer()) >= 1; }, 30s)) << service.log();
  cluster_.stop();
  ASSERT_TRUE(service.wait_for_log("cannot store the member's refreshed tokens yet (attempt 1)", 30s)) << service.log();
  std::this_thread::sleep_for(3s);
  cluster_.start();

  const auto done = wait_for_end(service, id, 120s);
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_EQ(done["resourcesWritten"], 202);
  EXPECT_EQ(done["lastError"], nullptr);
  EXPECT_EQ(target_resources("Observation").size(), 200u) << "every resource, once";
  EXPECT_EQ(target_resources("Encounter").size(), 1u);
  const auto stats = parse(http_get(issuer() + "/__control/token-stats"));
  EXPECT_EQ(stats["byGrantType"]["refresh_token"], 1) << "one expiry, one refresh: " << stats.dump();
  EXPECT_EQ(stats["refreshTokenReused"], 0) << "the spent refresh token was never presented again: " << stats.dump();
  EXPECT_TRUE(service.wait_for_log("job " + std::to_string(id) + ": stored the member's refreshed tokens (attempt "))
      << service.log();
}

// (9): a page over exchange.maxPageBytes fails the job at once, saying which limit and what to do
// (memory grows with the page; docs/exchange.md "Limits" has the measured bound).
TEST_F(ExchangeTest, APageLargerThanMaxPageBytesFailsTheJobSayingWhatToDo) {
  seed_source("big1", 100);  // pages of 40 Observations: about 14 KB each
  auto& service = start_service({}, {{"maxPageBytes", 8192}});
  const auto done = wait_for_end(service, start_job(service, issue_tokens("big1"), "big1"));
  EXPECT_EQ(done["batchStatus"], "FAILED") << done.dump();
  EXPECT_EQ(done.value("lastError", ""),
            "the source payer's page at " + source_base() +
                "/Patient/big1/$everything is larger than exchange.maxPageBytes (8192 bytes): ask the source payer for "
                "smaller pages, or raise exchange.maxPageBytes (memory grows with it)")
      << done.dump();
  EXPECT_EQ(done["pagesCompleted"], 0);
  EXPECT_EQ(target_resources("Observation").size(), 0u);
}
