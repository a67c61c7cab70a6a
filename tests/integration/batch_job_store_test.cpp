// batch_jobs against a real PostgreSQL: tokens sealed at rest, claiming shared between instances with
// SKIP LOCKED, leases that expire, fencing by lease owner, cancellation.
#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <set>
#include <thread>

#include "p2p/store/batch_job_repository.hpp"
#include "p2p/store/migrations.hpp"
#include "migrated_database_test.hpp"

using p2p::store::BatchJobRepository;
using p2p::store::CancelOutcome;
using p2p::store::JobStatus;
using p2p::store::kKeptWarnings;
using p2p::store::NewBatchJob;
using p2p::store::PagesRecord;
using namespace std::chrono_literals;

namespace {

const p2p::crypto::TokenCipher kCipher("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");

NewBatchJob new_job(int server_pid, const std::string& member) {
  NewBatchJob job;
  job.server_pid = server_pid;
  job.source_patient_id = member;
  job.target_patient_id = "t-" + member;
  job.target_organization_id = "TGT";
  job.first_url = "https://src.example.com/fhir/Patient/" + member + "/$everything";
  job.access_token = "access-" + member;
  job.refresh_token = "refresh-" + member;
  job.request_hash = "hash-" + member;
  return job;
}

class BatchJobStore : public p2p::test::MigratedDatabaseTest {};

}  // namespace

TEST_F(BatchJobStore, CreatesJobsWithSealedTokensAndPagesNewestFirst) {
  BatchJobRepository jobs(*connection_, kCipher);
  const auto first = jobs.create(new_job(1, "m1")).job;
  EXPECT_EQ(first.status, JobStatus::kStarting);
  EXPECT_EQ(first.job_configuration_name, "p2pExchange");
  EXPECT_EQ(first.next_url, first.first_url);
  EXPECT_EQ(first.start_time, std::nullopt);
  EXPECT_EQ(first.create_time.size(), 24u) << first.create_time;
  const std::string sealed = scalar("SELECT access_token_sealed FROM batch_jobs WHERE id = " + std::to_string(first.id));
  EXPECT_EQ(sealed.find("access-m1"), std::string::npos);
  EXPECT_EQ(kCipher.open(sealed, "batch_job:" + std::to_string(first.id)), "access-m1");

  for (const char* member : {"m2", "m3", "m4"}) jobs.create(new_job(1, member));
  jobs.create(new_job(2, "other-server"));
  auto page = jobs.list(1, 2, std::nullopt);
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].source_patient_id, "m4");
  EXPECT_EQ(page[1].source_patient_id, "m3");
  page = jobs.list(1, 10, page[1].id);
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[1].source_patient_id, "m1");
  EXPECT_EQ(jobs.find(2, first.id), std::nullopt) << "a job belongs to its server";
  EXPECT_EQ(jobs.find(1, first.id)->target_patient_id, "t-m1");
}

TEST_F(BatchJobStore, InstancesClaimEachJobOnceAndTakeOverExpiredLeases) {
  BatchJobRepository setup(*connection_, kCipher);
  for (int i = 0; i < 20; ++i) setup.create(new_job(1, "m" + std::to_string(i)));

  constexpr int kInstances = 4;
  std::barrier start(kInstances);
  std::vector<std::vector<long long>> claimed(kInstances);
  std::vector<std::thread> threads;
  for (int i = 0; i < kInstances; ++i) {
    threads.emplace_back([&, i] {
      pqxx::connection connection(database_.url());
      BatchJobRepository jobs(connection, kCipher);
      start.arrive_and_wait();
      for (int round = 0; round < 5; ++round) {
        for (const auto& job : jobs.claim("instance-" + std::to_string(i), 60s, 2)) {
          EXPECT_EQ(job.access_token, "access-" + job.job.source_patient_id);
          EXPECT_EQ(job.refresh_token, "refresh-" + job.job.source_patient_id);
          EXPECT_EQ(job.job.status, JobStatus::kStarted);
          claimed[static_cast<std::size_t>(i)].push_back(job.job.id);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::multiset<long long> all;
  for (const auto& ids : claimed) all.insert(ids.begin(), ids.end());
  EXPECT_EQ(all.size(), 20u);
  EXPECT_EQ(std::set<long long>(all.begin(), all.end()).size(), 20u) << "no job claimed twice";

  // Nothing is left to claim while the leases hold; an expired lease is taken over, and the old
  // owner's writes are fenced off.
  BatchJobRepository jobs(*connection_, kCipher);
  EXPECT_TRUE(jobs.claim("late", 60s, 50).empty());
  // Any instance may have claimed nothing (the others took every job): take one from the first that has.
  std::size_t holder = 0;
  while (holder < claimed.size() && claimed[holder].empty()) ++holder;
  ASSERT_LT(holder, claimed.size());
  const long long taken = claimed[holder][0];
  const std::string old_owner = "instance-" + std::to_string(holder);
  exec("UPDATE batch_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = " + std::to_string(taken));
  // An instance never claims a job it still runs, even one whose lease lapsed (one run per instance).
  EXPECT_TRUE(jobs.claim(old_owner, 60s, 50, 10, {taken}).empty());
  const auto retaken = jobs.claim("successor", 60s, 50);
  ASSERT_EQ(retaken.size(), 1u);
  EXPECT_EQ(retaken[0].job.id, taken);
  EXPECT_EQ(retaken[0].job.attempts, 2);
  EXPECT_EQ(jobs.record_pages(taken, old_owner, 0,
            {.next_url = "https://src.example.com/fhir?page=2", .resources_written = 10}), std::nullopt);
  EXPECT_EQ(jobs.record_pages(taken, "successor", 0,
            {.next_url = "https://src.example.com/fhir?page=2", .resources_written = 10}), JobStatus::kStarted);
  EXPECT_EQ(jobs.renew_leases("successor", 60s, {taken}), std::vector<long long>{taken});
}

TEST_F(BatchJobStore, ProgressTokensAndFinishing) {
  BatchJobRepository jobs(*connection_, kCipher);
  const auto job = jobs.create(new_job(1, "m1")).job;
  ASSERT_EQ(jobs.claim("me", 60s, 1).size(), 1u);
  EXPECT_EQ(jobs.record_pages(job.id, "me", 0,
            {.next_url = "https://src.example.com/fhir?page=2", .resources_written = 50}), JobStatus::kStarted);
  EXPECT_EQ(jobs.record_pages(job.id, "me", 1, {.resources_written = 7}), JobStatus::kStarted);
  EXPECT_TRUE(jobs.store_tokens(job.id, "me", "access-2", std::nullopt));
  EXPECT_TRUE(jobs.set_task_id(job.id, "me", "task-1"));
  auto now = *jobs.find(1, job.id);
  EXPECT_EQ(now.pages_completed, 2);
  EXPECT_EQ(now.resources_written, 57);
  EXPECT_EQ(now.next_url, std::nullopt);
  EXPECT_EQ(now.task_id, "task-1");
  EXPECT_NE(now.start_time, std::nullopt);
  EXPECT_EQ(kCipher.open(scalar("SELECT refresh_token_sealed FROM batch_jobs"), "batch_job:" + std::to_string(job.id)),
            "refresh-m1") << "a refresh that returns no new refresh token keeps the old one";

  EXPECT_TRUE(jobs.finish(job.id, "me", 2, JobStatus::kCompleted, std::nullopt));
  now = *jobs.find(1, job.id);
  EXPECT_EQ(now.status, JobStatus::kCompleted);
  EXPECT_NE(now.end_time, std::nullopt);
  EXPECT_EQ(scalar("SELECT count(*) FROM batch_jobs WHERE access_token_sealed IS NOT NULL OR refresh_token_sealed IS NOT NULL"), "0")
      << "tokens are deleted when the job ends";
  EXPECT_TRUE(jobs.claim("me", 60s, 1).empty());
}

TEST_F(BatchJobStore, TokensThatNoKeyOpensFailThatJobAloneInsteadOfBlockingTheQueue) {
  BatchJobRepository with_old_key(*connection_, kCipher);
  const auto lost = with_old_key.create(new_job(1, "m1")).job;
  const p2p::crypto::TokenCipher new_key("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=");
  BatchJobRepository jobs(*connection_, new_key);
  const auto fine = jobs.create(new_job(1, "m2")).job;
  const auto claimed = jobs.claim("me", 60s, 10);
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].job.id, fine.id);
  const auto failed = *jobs.find(1, lost.id);
  EXPECT_EQ(failed.status, JobStatus::kFailed);
  EXPECT_TRUE(failed.last_error->starts_with("the member's tokens cannot be decrypted with the configured keys (sealed with key "))
      << *failed.last_error;
  EXPECT_TRUE(jobs.claim("me", 60s, 10).empty());
}

TEST_F(BatchJobStore, CancellingStopsUnstartedJobsAtOnceAndRunningOnesAtThePageBoundary) {
  BatchJobRepository jobs(*connection_, kCipher);
  const auto waiting = jobs.create(new_job(1, "m1")).job;
  EXPECT_EQ(jobs.request_cancel(1, waiting.id), CancelOutcome::kStopping);
  EXPECT_EQ(jobs.find(1, waiting.id)->status, JobStatus::kStopped);
  EXPECT_EQ(jobs.request_cancel(1, waiting.id), CancelOutcome::kAlreadyEnded);
  EXPECT_EQ(jobs.request_cancel(2, waiting.id), CancelOutcome::kNotFound);

  const auto running = jobs.create(new_job(1, "m2")).job;
  ASSERT_EQ(jobs.claim("me", 60s, 1).size(), 1u);
  EXPECT_EQ(jobs.request_cancel(1, running.id), CancelOutcome::kStopping);
  EXPECT_EQ(jobs.find(1, running.id)->status, JobStatus::kStopping);
  EXPECT_EQ(jobs.record_pages(running.id, "me", 0,
            {.resources_written = 0}), JobStatus::kStopping) << "the runner learns of the cancel";
  EXPECT_TRUE(jobs.finish(running.id, "me", 1, JobStatus::kStopped, std::nullopt));
  EXPECT_EQ(jobs.find(1, running.id)->status, JobStatus::kStopped);

  // The database refuses an ended job that still holds tokens.
  EXPECT_THROW(exec("UPDATE batch_jobs SET access_token_sealed = 'x' WHERE id = " + std::to_string(running.id)),
               pqxx::check_violation);
}

TEST_F(BatchJobStore, AReleasedJobIsClaimedAgainAtOnce) {
  BatchJobRepository jobs(*connection_, kCipher);
  const auto job = jobs.create(new_job(1, "m1")).job;
  ASSERT_EQ(jobs.claim("stopping-instance", 60s, 1).size(), 1u);
  EXPECT_TRUE(jobs.claim("other", 60s, 1).empty());
  EXPECT_FALSE(jobs.release(job.id, "not-the-owner"));
  EXPECT_TRUE(jobs.release(job.id, "stopping-instance"));
  const auto again = jobs.claim("other", 60s, 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].job.id, job.id);
  EXPECT_EQ(again[0].job.status, JobStatus::kStarted);
}

// Issue #9 (2): resources of types that are not exchanged are counted per type on the job.
TEST_F(BatchJobStore, SkippedResourcesAddUpPerTypeAcrossPages) {
  BatchJobRepository jobs(*connection_, kCipher);
  const auto job = jobs.create(new_job(1, "m1")).job;
  EXPECT_TRUE(jobs.find(1, job.id)->resources_skipped.empty());
  ASSERT_EQ(jobs.claim("me", 60s, 1).size(), 1u);
  EXPECT_EQ(jobs.record_pages(job.id, "me", 0,
            {.next_url = "https://src.example.com/fhir?page=2", .resources_written = 5, .skipped = {{"Subscription", 1}}}), JobStatus::kStarted);
  EXPECT_EQ(jobs.record_pages(job.id, "me", 1,
            {.next_url = "https://src.example.com/fhir?page=3", .resources_written = 5, .skipped = {{"Subscription", 2}, {"Task", 1}}}),
            JobStatus::kStarted);
  EXPECT_EQ(jobs.record_pages(job.id, "me", 2, {.resources_written = 5}), JobStatus::kStarted);
  const auto now = *jobs.find(1, job.id);
  EXPECT_EQ(now.resources_skipped, (std::map<std::string, long long>{{"Subscription", 3}, {"Task", 1}}));
  EXPECT_EQ(now.resources_written, 15);
  EXPECT_THROW(jobs.record_pages(job.id, "me", 3,
            {.resources_written = 0, .skipped = {{"Bad\",\"x", 1}}}), std::invalid_argument);
}

// The runner records written pages at most every exchange.recordIntervalMilliseconds, so one record may
// cover several pages: all their counts at once, the last one's next link, fenced by the pages before.
TEST_F(BatchJobStore, ARecordOfSeveralPagesAddsThemAllAtOnce) {
  BatchJobRepository jobs(*connection_, kCipher);
  const auto job = jobs.create(new_job(1, "m1")).job;
  ASSERT_EQ(jobs.claim("me", 60s, 1).size(), 1u);
  PagesRecord pages{.next_url = "https://src.example.com/fhir?page=2", .resources_written = 5, .resources_total = 40};
  pages.add({.next_url = "https://src.example.com/fhir?page=3", .resources_written = 7, .skipped = {{"Task", 1}},
             .warnings = {"warning: a"}, .resources_total = 99});
  pages.add({.next_url = "https://src.example.com/fhir?page=4", .resources_written = 9, .skipped = {{"Task", 2}},
             .warnings = {"error: b"}, .source_error = "error: b"});
  ASSERT_EQ(pages.pages, 3);
  EXPECT_EQ(jobs.record_pages(job.id, "me", 0, pages), JobStatus::kStarted);
  const auto now = *jobs.find(1, job.id);
  EXPECT_EQ(now.pages_completed, 3);
  EXPECT_EQ(now.resources_written, 21);
  EXPECT_EQ(now.next_url, "https://src.example.com/fhir?page=4");
  EXPECT_EQ(now.resources_skipped, (std::map<std::string, long long>{{"Task", 3}}));
  EXPECT_EQ(now.warnings, (std::vector<std::string>{"warning: a", "error: b"}));
  EXPECT_EQ(now.source_error, "error: b");
  EXPECT_EQ(now.resources_total, 40) << "the first page's count";
  EXPECT_EQ(jobs.record_pages(job.id, "me", 1, {.resources_written = 1}), std::nullopt) << "fenced by all three pages";
  // Pages that skipped nothing and said nothing (the shorter statement).
  PagesRecord plain{.next_url = "https://src.example.com/fhir?page=5", .resources_written = 2};
  plain.add({.next_url = "https://src.example.com/fhir?page=6", .resources_written = 3});
  EXPECT_EQ(jobs.record_pages(job.id, "me", 3, plain), JobStatus::kStarted);
  const auto later = *jobs.find(1, job.id);
  EXPECT_EQ(later.pages_completed, 5);
  EXPECT_EQ(later.resources_written, 26);
  EXPECT_EQ(later.next_url, "https://src.example.com/fhir?page=6");
  EXPECT_EQ(jobs.record_pages(job.id, "me", 4, {.resources_written = 1}), std::nullopt) << "fenced by both pages";
}

// Pages joined into one record keep what one record of each would have kept: the first source error,
// and the job's first 50 warnings.
// The job keeps the source's first kKeptWarnings warnings across its records, as a joined record does.
TEST_F(BatchJobStore, AJobKeepsItsFirstFiftyWarningsAcrossRecords) {
  BatchJobRepository jobs(*connection_, kCipher);
  const auto job = jobs.create(new_job(1, "m1")).job;
  ASSERT_EQ(jobs.claim("me", 60s, 1).size(), 1u);
  for (int record = 0; record < 2; ++record) {
    PagesRecord pages{.next_url = "https://src.example.com/fhir?page=" + std::to_string(record + 2)};
    for (int i = 0; i < 30; ++i) pages.warnings.push_back("warning: " + std::to_string(record * 30 + i));
    ASSERT_EQ(jobs.record_pages(job.id, "me", record, pages), JobStatus::kStarted);
  }
  const auto now = *jobs.find(1, job.id);
  ASSERT_EQ(now.warnings.size(), kKeptWarnings);
  EXPECT_EQ(now.warnings.front(), "warning: 0");
  EXPECT_EQ(now.warnings.back(), "warning: 49");
}

TEST(JoinedPageRecords, KeepTheFirstSourceErrorAndFiftyWarnings) {
  PagesRecord pages{.next_url = "https://src.example.com/fhir?page=2", .warnings = {"warning: 0"}};
  for (int i = 1; i < 60; ++i) {
    PagesRecord later{.warnings = {"warning: " + std::to_string(i)}};
    if (i == 7 || i == 9) later.source_error = "error: " + std::to_string(i);
    pages.add(std::move(later));
  }
  EXPECT_EQ(pages.pages, 60);
  EXPECT_EQ(pages.source_error, "error: 7");
  ASSERT_EQ(pages.warnings.size(), kKeptWarnings);
  EXPECT_EQ(pages.warnings.back(), "warning: 49");
  EXPECT_EQ(pages.next_url, std::nullopt) << "the last page's: it was the job's last";
}

TEST(JoinedPageRecords, AddTheCountsAndTakeTheLaterLinkAndCursorAndTheFirstTotal) {
  PagesRecord pages{.next_url = "https://src.example.com/fhir?page=2", .resources_written = 40,
                    .skipped = {{"Coverage", 2}}};
  pages.add(PagesRecord{.next_url = "https://src.example.com/fhir?page=3", .resources_written = 38,
                        .skipped = {{"Coverage", 1}, {"Account", 4}},
                        .export_cursor = R"({"file":0,"line":100})", .resources_total = 500});
  pages.add(PagesRecord{.next_url = "https://src.example.com/fhir?page=4", .resources_written = 1,
                        .resources_total = 900});
  EXPECT_EQ(pages.pages, 3);
  EXPECT_EQ(pages.resources_written, 79);
  EXPECT_EQ(pages.skipped, (std::map<std::string, long long>{{"Account", 4}, {"Coverage", 3}}));
  EXPECT_EQ(pages.next_url, "https://src.example.com/fhir?page=4");
  EXPECT_EQ(pages.export_cursor, R"({"file":0,"line":100})") << "a page without a cursor keeps the one before";
  EXPECT_EQ(pages.resources_total, 500) << "the first total the source gave, as the job keeps it";
}

// Issue #9 (6): a job this instance left (a database error mid-job) must not be renewed with the
// ones it still runs, or no instance can ever take it over while this one is busy.
TEST_F(BatchJobStore, OnlyTheLeasesOfJobsRunningHereAreRenewed) {
  BatchJobRepository jobs(*connection_, kCipher);
  const auto running = jobs.create(new_job(1, "m1")).job;
  const auto left = jobs.create(new_job(1, "m2")).job;
  ASSERT_EQ(jobs.claim("me", 60s, 2).size(), 2u);
  exec("UPDATE batch_jobs SET lease_expires_at = now() - interval '1 second'");
  EXPECT_EQ(jobs.renew_leases("me", 60s, {running.id}), std::vector<long long>{running.id});
  const auto taken = jobs.claim("other", 60s, 2);
  ASSERT_EQ(taken.size(), 1u) << "the job left behind is free for any instance";
  EXPECT_EQ(taken[0].job.id, left.id);
  EXPECT_EQ(jobs.renew_leases("me", 60s, {running.id, left.id}), std::vector<long long>{running.id})
      << "a job taken over is not renewed by its old owner";
  EXPECT_TRUE(jobs.renew_leases("me", 60s, {}).empty());
}

// Issue #9 (5): an outage pauses a job instead of failing it; its tokens stay, nobody claims it before
// its time, a cancel still reaches it.
TEST_F(BatchJobStore, APausedJobKeepsItsTokensAndWaitsItsTurnUnlessCancelled) {
  BatchJobRepository jobs(*connection_, kCipher);
  const auto job = jobs.create(new_job(1, "m1")).job;
  ASSERT_EQ(jobs.claim("me", 60s, 1).size(), 1u);
  EXPECT_FALSE(jobs.pause(job.id, "someone-else", "paused: x", 60s)) << "fenced like every runner update";
  EXPECT_TRUE(jobs.pause(job.id, "me", "paused: the source payer answered 503", 60s));
  auto now = *jobs.find(1, job.id);
  EXPECT_EQ(now.status, JobStatus::kStarted);
  EXPECT_EQ(now.last_error, "paused: the source payer answered 503");
  EXPECT_EQ(scalar("SELECT count(*) FROM batch_jobs WHERE access_token_sealed IS NOT NULL AND refresh_token_sealed IS NOT NULL"), "1");
  EXPECT_TRUE(jobs.claim("other", 60s, 5).empty()) << "not before its time";
  exec("UPDATE batch_jobs SET not_before = now() - interval '1 second'");
  auto again = jobs.claim("other", 60s, 5);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].access_token, "access-m1");
  EXPECT_EQ(again[0].refresh_token, "refresh-m1");

  EXPECT_TRUE(jobs.pause(job.id, "other", "paused: again", 3600s));
  EXPECT_EQ(jobs.request_cancel(1, job.id), CancelOutcome::kStopping);
  const auto stopping = jobs.claim("third", 60s, 5);
  ASSERT_EQ(stopping.size(), 1u) << "a cancel is not kept waiting by a pause";
  EXPECT_EQ(stopping[0].job.status, JobStatus::kStopping);
}

TEST_F(BatchJobStore, TheTimeSinceTheLastRecordedPageBoundsPausing) {
  BatchJobRepository jobs(*connection_, kCipher);
  const auto job = jobs.create(new_job(1, "m1")).job;
  exec("UPDATE batch_jobs SET create_time = now() - interval '2 hours'");
  EXPECT_GE(jobs.find(1, job.id)->seconds_since_progress, 7199) << "never started: since it was created";
  ASSERT_EQ(jobs.claim("me", 60s, 1).size(), 1u);
  exec("UPDATE batch_jobs SET start_time = now() - interval '1 hour'");
  EXPECT_GE(jobs.find(1, job.id)->seconds_since_progress, 3599);
  EXPECT_LT(jobs.find(1, job.id)->seconds_since_progress, 7000);
  EXPECT_EQ(jobs.record_pages(job.id, "me", 0,
            {.next_url = "https://src.example.com/fhir?page=2", .resources_written = 1}), JobStatus::kStarted);
  EXPECT_LE(jobs.find(1, job.id)->seconds_since_progress, 5);
}

// Issue #9 (8c): two jobs for one member would share (and break) one rotating refresh token.
TEST_F(BatchJobStore, AMemberHasAtMostOneActiveJobAndAnIdempotencyKeyGivesBackTheSameJob) {
  BatchJobRepository jobs(*connection_, kCipher);
  const auto first = jobs.create(new_job(1, "m1"));
  ASSERT_EQ(first.kind, p2p::store::CreateOutcome::Kind::kCreated);
  const auto second = jobs.create(new_job(1, "m1"));
  EXPECT_EQ(second.kind, p2p::store::CreateOutcome::Kind::kActiveJobExists);
  EXPECT_EQ(second.job.id, first.job.id);
  auto other_target = new_job(1, "m1");
  other_target.target_patient_id = "t-other";
  EXPECT_EQ(jobs.create(other_target).kind, p2p::store::CreateOutcome::Kind::kCreated) << "another target patient";
  EXPECT_EQ(jobs.create(new_job(2, "m1")).kind, p2p::store::CreateOutcome::Kind::kCreated) << "another source payer";
  ASSERT_EQ(jobs.request_cancel(1, first.job.id), CancelOutcome::kStopping);
  EXPECT_EQ(jobs.find(1, first.job.id)->status, JobStatus::kStopped) << "never claimed: stopped at once";
  EXPECT_EQ(jobs.create(new_job(1, "m1")).kind, p2p::store::CreateOutcome::Kind::kCreated) << "the first one ended";

  auto keyed = new_job(1, "k1");
  keyed.idempotency_key = "portal-request-7";
  const auto made = jobs.create(keyed);
  ASSERT_EQ(made.kind, p2p::store::CreateOutcome::Kind::kCreated);
  const auto again = jobs.create(keyed);
  EXPECT_EQ(again.kind, p2p::store::CreateOutcome::Kind::kReplayed);
  EXPECT_EQ(again.job.id, made.job.id);
  keyed.request_hash = "another body";
  EXPECT_EQ(jobs.create(keyed).kind, p2p::store::CreateOutcome::Kind::kKeyReused);
  exec("UPDATE batch_jobs SET create_time = now() - interval '25 hours' WHERE id = " + std::to_string(made.job.id));
  exec("UPDATE batch_jobs SET status = 'COMPLETED', access_token_sealed = NULL, refresh_token_sealed = NULL WHERE id = " +
       std::to_string(made.job.id));
  EXPECT_EQ(jobs.create(keyed).kind, p2p::store::CreateOutcome::Kind::kCreated) << "a key is remembered for 24 hours";
}

TEST_F(BatchJobStore, ConcurrentRequestsForOneMemberCreateOneJob) {
  constexpr int kRequests = 8;
  std::vector<p2p::store::CreateOutcome::Kind> kinds(kRequests);
  std::barrier start(kRequests);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      pqxx::connection connection(database_.url());
      BatchJobRepository jobs(connection, kCipher);
      start.arrive_and_wait();
      kinds[static_cast<std::size_t>(i)] = jobs.create(new_job(1, "m1")).kind;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), p2p::store::CreateOutcome::Kind::kCreated), 1);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), p2p::store::CreateOutcome::Kind::kActiveJobExists), kRequests - 1);
  EXPECT_EQ(scalar("SELECT count(*) FROM batch_jobs"), "1");
}

// Issue #9 (6): a job that crashes or hangs every instance that runs it (its lease expires in their
// hands, page after page never recorded) fails after maxClaims takeovers instead of crash-looping the
// fleet. Pauses, graceful hand-overs and recorded pages do not count.
TEST_F(BatchJobStore, AJobTakenOverTooOftenWithoutProgressFailsInsteadOfRunningAgain) {
  BatchJobRepository jobs(*connection_, kCipher);
  const auto job = jobs.create(new_job(1, "m1")).job;
  const auto expire = [&] { exec("UPDATE batch_jobs SET lease_expires_at = now() - interval '1 second'"); };
  ASSERT_EQ(jobs.claim("a", 60s, 1, 3).size(), 1u);
  EXPECT_TRUE(jobs.pause(job.id, "a", "paused: x", 0s)) << "a pause gives the lease back: not counted";
  ASSERT_EQ(jobs.claim("b", 60s, 1, 3).size(), 1u);
  EXPECT_TRUE(jobs.release(job.id, "b")) << "nor is a graceful hand-over";
  ASSERT_EQ(jobs.claim("c", 60s, 1, 3).size(), 1u);
  for (const char* owner : {"d", "e", "f"}) {  // three instances die with it
    expire();
    ASSERT_EQ(jobs.claim(owner, 60s, 1, 3).size(), 1u) << owner;
  }
  EXPECT_EQ(jobs.record_pages(job.id, "f", 0,
            {.next_url = "https://src.example.com/fhir?page=2", .resources_written = 1}), JobStatus::kStarted) << "progress resets";
  for (const char* owner : {"g", "h", "i"}) {
    expire();
    ASSERT_EQ(jobs.claim(owner, 60s, 1, 3).size(), 1u) << owner;
  }
  expire();
  EXPECT_TRUE(jobs.claim("j", 60s, 1, 3).empty()) << "the fourth takeover in a row without progress";
  const auto failed = *jobs.find(1, job.id);
  EXPECT_EQ(failed.status, JobStatus::kFailed);
  EXPECT_EQ(failed.last_error,
            "the job was taken over 4 times in a row from an instance that stopped answering before it finished a page "
            "(a page that crashes or exhausts the service?); it is not run again (exchange.maxClaims is 3): look for the "
            "cause in the logs of those instances, then start a new job");
  EXPECT_EQ(scalar("SELECT count(*) FROM batch_jobs WHERE access_token_sealed IS NOT NULL"), "0");
}

// A page's record is fenced by the count of pages recorded before it, as the runner knows it. Records
// commit without waiting for the log flush; if PostgreSQL crashes and loses one, the runner's next
// record must not land on top of it (the lost page's counts would be missing for good): it finds
// another count, is refused, and the job resumes from what the database holds.
TEST_F(BatchJobStore, ARecordThatDoesNotFollowTheLastOneRecordedIsRefused) {
  BatchJobRepository jobs(*connection_, kCipher);
  const auto job = jobs.create(new_job(1, "m1")).job;
  ASSERT_EQ(jobs.claim("me", 60s, 1).size(), 1u);
  EXPECT_EQ(jobs.record_pages(job.id, "me", 0,
            {.next_url = "https://src.example.com/fhir?page=2", .resources_written = 10}), JobStatus::kStarted);
  // The runner recorded page 2 too, but PostgreSQL lost that commit: page 3's record is refused.
  EXPECT_EQ(jobs.record_pages(job.id, "me", 2,
            {.next_url = "https://src.example.com/fhir?page=4", .resources_written = 10}), std::nullopt);
  auto now = *jobs.find(1, job.id);
  EXPECT_EQ(now.pages_completed, 1);
  EXPECT_EQ(now.resources_written, 10);
  EXPECT_EQ(now.next_url, "https://src.example.com/fhir?page=2");
  EXPECT_EQ(jobs.record_pages(job.id, "me", 1,
            {.next_url = "https://src.example.com/fhir?page=3", .resources_written = 10, .skipped = {{"Task", 1}}, .warnings = {"w"}}),
            JobStatus::kStarted) << "the full statement is fenced too";
  EXPECT_EQ(jobs.record_pages(job.id, "me", 1,
            {.resources_written = 10, .skipped = {{"Task", 1}}, .warnings = {"w"}}), std::nullopt);
  now = *jobs.find(1, job.id);
  EXPECT_EQ(now.pages_completed, 2);
  EXPECT_EQ(now.resources_written, 20);
  // The commit that does not wait for the flush is this statement's alone: the connection's next
  // statements wait as before (the job's end, its tokens).
  pqxx::nontransaction(*connection_).exec0("SET synchronous_commit = on");  // (whatever the test server's default)
  EXPECT_EQ(jobs.record_pages(job.id, "me", 2, {.resources_written = 0}), JobStatus::kStarted);
  EXPECT_EQ(pqxx::nontransaction(*connection_).exec1("SHOW synchronous_commit")[0].as<std::string>(), "on");
  // Nor does the job end with a page's counts missing.
  EXPECT_FALSE(jobs.finish(job.id, "me", 4, JobStatus::kCompleted, std::nullopt));
  EXPECT_EQ(jobs.find(1, job.id)->status, JobStatus::kStarted);
  EXPECT_TRUE(jobs.finish(job.id, "me", 3, JobStatus::kCompleted, std::nullopt));
}
