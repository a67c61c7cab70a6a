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
  // Both were running before either ended: their lines interleaved.
  const auto log = service.log();
  for (const auto started : {first, second}) {
    for (const auto ended : {first, second}) {
      const auto running = log.find("job " + std::to_string(started) + ": running for source payer");
      const auto completed = log.find("job " + std::to_string(ended) + ": COMPLETED");
      ASSERT_NE(running, std::string::npos) << log;
      EXPECT_LT(running, completed) << "the jobs did not overlap, so the test proves nothing\n" << log;
    }
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
  // rotates the refresh token at once and answers 10 s later; PostgreSQL is stopped meanwhile.
  http_request("POST", issuer() + "/__control/expire-access", {kJson}, json({{"access_token", tokens["access_token"]}}).dump());
  control(issuer(), "delay-next-token-response", {{"milliseconds", 10000}, {"grant", "refresh_token"}});
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

// (7): an instance that lost its lease touches neither the target nor the job again. Here another
// instance has taken the job over (its lease, as a claim after an expiry writes it) while this one is
// mid-page, and the target then refuses this one's page: before, the job's failure was written to the
// target's tracking Task (over whatever the real owner writes there) before the fenced finish.
TEST_F(ExchangeTest, AnInstanceThatLostItsLeaseLeavesTheTaskAndTheJobToTheNewOwner) {
  seed_source("lease1", 200);  // 6 pages of 40
  auto& service = start_service({}, {{"leaseSeconds", 60}});
  // Page 3 takes 8 s at the source: the takeover and the target's refusal are set up meanwhile, while
  // the job waits for it with pages 1 and 2 written.
  control(origin(source_base()), "delay", {{"milliseconds", 8000}, {"match", "_offset=80"}, {"method", "GET"}});
  const auto id = start_job(service, issue_tokens("lease1"), "lease1");
  ASSERT_TRUE(eventually([&] { return job(service, id).value("pagesCompleted", 0) >= 2; }, 30s)) << service.log();
  const std::string ids = std::to_string(id);
  exec_sql(database_.url(), "UPDATE batch_jobs SET lease_owner = 'another-instance', lease_expires_at = now() + "
                            "interval '10 minutes', attempts = attempts + 1 WHERE id = " + ids);
  const auto requests_before = parse(http_get(origin(target_base()) + "/__control/requests")).size();
  control(origin(target_base()), "fail-next", {{"status", 400}, {"count", 100}, {"method", "POST"}});

  // The target refuses page 3; whatever this instance does next, it does within moments.
  ASSERT_TRUE(eventually([&] {
    const auto seen = parse(http_get(origin(target_base()) + "/__control/requests"));
    for (std::size_t i = requests_before; i < seen.size(); ++i) {
      if (seen[i]["method"] == "POST" && seen[i]["status"] == 400) return true;
    }
    return false;
  }, 60s)) << service.log();
  std::this_thread::sleep_for(2s);
  EXPECT_TRUE(service.wait_for_log("job " + ids + ": another instance holds it now; this one leaves it without a word "
                                   "to the target"))
      << service.log();
  const auto requests = parse(http_get(origin(target_base()) + "/__control/requests"));
  for (std::size_t i = requests_before; i < requests.size(); ++i) {
    EXPECT_EQ(requests[i]["path"].get<std::string>().find("/Task"), std::string::npos)
        << "the tracking Task was written after the lease was lost: " << requests[i].dump();
  }
  const auto task = parse(http_get(target_base() + "/Task/p2p-batch-job-" + ids));
  EXPECT_EQ(task["status"], "in-progress") << "left for the new owner to end";
  pqxx::connection connection(database_.url());
  pqxx::read_transaction tx(connection);
  const auto row = tx.exec1("SELECT status, lease_owner, last_error IS NULL, access_token_sealed IS NOT NULL "
                            "FROM batch_jobs WHERE id = " + ids);
  EXPECT_EQ(row[0].as<std::string>(), "STARTED");
  EXPECT_EQ(row[1].as<std::string>(), "another-instance");
  EXPECT_TRUE(row[2].as<bool>()) << "no error written over the new owner's job";
  EXPECT_TRUE(row[3].as<bool>()) << "the tokens stay for the new owner";
}

// A job waits for a runner no longer than it must. The claim loop polls every pollIntervalMilliseconds
// (here a minute, longer than the test waits), and is woken early by a new job and by a job that ends:
// a wake-up that arrives while the loop is busy claiming is kept for its next turn, not lost, and a
// job queued behind exchange.concurrency starts when a slot frees, not at the next poll.
TEST_F(ExchangeTest, AQueuedJobStartsWhenARunnerIsFreeNotAtTheNextPoll) {
  for (const char* member : {"w1", "w2", "w3", "w4", "w5"}) seed_source(member, 3);
  auto& service = start_service({{"P2P_EXCHANGE_CONCURRENCY", "2"}},
                                {{"pollIntervalMilliseconds", 60000}, {"leaseSeconds", 600}});
  std::vector<long long> ids;
  for (const char* member : {"w1", "w2", "w3", "w4", "w5"}) ids.push_back(start_job(service, issue_tokens(member), member));
  for (const auto id : ids) {
    EXPECT_EQ(wait_for_end(service, id, 30s)["batchStatus"], "COMPLETED")
        << "job " << id << " waited for the next poll of the claim loop\n" << service.log();
  }
}
