// Issue #9 (5), at full length and with the product's retry settings: a two-minute outage at the
// source, and one at the target, in the middle of a job. The job pauses and resumes by itself,
// completes with every resource exactly once, and the member's tokens are refreshed once for the one
// access-token expiry that fell inside the outage. untrusted_peers_test.cpp has the same cases in
// seconds, with the retry budget scaled down, for the sanitized run; these take ~3 minutes each and
// run in their own executable (ctest label e2e-long) with a longer timeout.
#include "exchange_fixture.hpp"

using nlohmann::json;
using namespace p2p::test;
using namespace std::chrono_literals;

namespace {

// The product's defaults for retries and pauses (docs/configuration.md): 8 tries, 0.5 s doubling to
// at most 60 s, pauses of 60 s; leases of 30 s so a takeover is possible meanwhile.
const json kProductRetries = {{"maxAttempts", 8}, {"initialBackoffMilliseconds", 500}, {"maxBackoffSeconds", 60},
                              {"leaseSeconds", 30}};

enum class Side { kSource, kTarget };

class TwoMinuteOutageTest : public ExchangeTest, public ::testing::WithParamInterface<Side> {};

}  // namespace

TEST_P(TwoMinuteOutageTest, MidJobTheJobPausesResumesAndWritesEveryResourceOnce) {
  const bool at_source = GetParam() == Side::kSource;
  const std::string member = at_source ? "long-s" : "long-t";
  seed_source(member, 200);  // 203 resources: 6 pages of 40
  auto& service = start_service({}, kProductRetries);
  // Pages take 1 s at the source, so the outage surely starts mid-job.
  control(origin(source_base()), "delay", {{"milliseconds", 1000}, {"match", "$everything"}, {"method", "GET"}});
  // The access token expires 20 s in: inside the outage, so one refresh is due when it ends.
  const auto tokens = issue_tokens(member, 20);
  const auto id = start_job(service, tokens, member);
  ASSERT_TRUE(eventually([&] { return job(service, id).value("pagesCompleted", 0) >= 2; }, 60s)) << service.log();
  control(origin(at_source ? source_base() : target_base()), "outage", {{"seconds", 120}});
  const auto outage_started = std::chrono::steady_clock::now();

  json paused;
  ASSERT_TRUE(eventually([&] {
    paused = job(service, id);
    return paused.value("lastError", json()).is_string();
  }, 150s)) << paused.dump() << service.log();
  EXPECT_EQ(paused["batchStatus"], "STARTED");
  EXPECT_TRUE(paused["lastError"].get<std::string>().starts_with("paused: ")) << paused.dump();
  EXPECT_EQ(exec_scalar(database_.url(), "SELECT count(*) FROM batch_jobs WHERE access_token_sealed IS NOT NULL"), "1")
      << "a paused job keeps the member's tokens";

  const auto done = wait_for_end(service, id, 300s);
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_GE(std::chrono::steady_clock::now() - outage_started, 120s) << "the job waited the outage out";
  EXPECT_EQ(done["pagesCompleted"], 6);
  EXPECT_EQ(done["resourcesWritten"], 202);
  EXPECT_EQ(done["lastError"], nullptr);
  EXPECT_EQ(target_resources("Observation").size(), 200u) << "every resource, once";
  EXPECT_EQ(target_resources("Encounter").size(), 1u);
  const auto task = parse(http_get(target_base() + "/Task/p2p-batch-job-" + std::to_string(id)));
  EXPECT_EQ(task["status"], "completed");
  const auto stats = parse(http_get(issuer() + "/__control/token-stats"));
  EXPECT_EQ(stats.value("/byGrantType/refresh_token"_json_pointer, 0), 1)
      << "one access-token expiry, one refresh (the refreshed token lives 3600 s): " << stats.dump();
  EXPECT_EQ(stats["refreshTokenReused"], 0) << stats.dump();
}

INSTANTIATE_TEST_SUITE_P(AtEachSide, TwoMinuteOutageTest, ::testing::Values(Side::kSource, Side::kTarget),
                         [](const auto& param_info) { return param_info.param == Side::kSource ? "Source" : "Target"; });
