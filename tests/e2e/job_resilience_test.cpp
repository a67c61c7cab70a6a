// Issue #9, the rest of it: what a job survives besides hostile input. A PostgreSQL restart in the
// middle of a job (with the member's rotated tokens in flight), a lease taken over by another
// instance, and log lines that keep naming the job they belong to while jobs interleave.
#include <regex>
#include <set>
#include <sstream>

#include "exchange_fixture.hpp"

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
