// The add-payer outbox on a real PostgreSQL: what a delivery queues, that a redelivery queues nothing,
// concurrent deliveries of one Task, claiming with leases across instances, retries and fencing.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "migrated_database_test.hpp"
#include "p2p/store/notification_outbox.hpp"

using p2p::store::NotificationOutbox;
using p2p::store::OutboxEmail;
using p2p::store::TaskDelivery;
using Kind = p2p::store::TaskDelivery::Kind;

namespace {

class NotificationOutboxStore : public p2p::test::MigratedDatabaseTest {
 protected:
  // What the notifier would queue: two admins and the member on first sight, the member on a change.
  static std::vector<OutboxEmail> compose(const TaskDelivery& delivery, const std::string& status) {
    if (delivery.kind == Kind::kFirstSight) {
      return {{"admin-request", "one@payer.example", "s", "b"},
              {"admin-request", "two@payer.example", "s", "b"},
              {"member-confirmation", "ada@member.example", "s", "b"}};
    }
    if (delivery.kind == Kind::kStatusChange) {
      return {{"status:" + delivery.previous_status + "->" + status, "ada@member.example", "s", "b"}};
    }
    return {};
  }

  p2p::store::RecordedDelivery deliver(pqxx::connection& connection, const std::string& task, const std::string& status,
                                       const std::string& version, const std::string& last_updated = "") {
    return NotificationOutbox(connection).record_delivery(
        task, status, version, last_updated, [&status](const TaskDelivery& delivery) { return compose(delivery, status); });
  }
};

}  // namespace

TEST_F(NotificationOutboxStore, FirstSightQueuesTheRequestAndARedeliveryNothing) {
  auto first = deliver(*connection_, "task-1", "requested", "1");
  EXPECT_EQ(first.delivery.kind, Kind::kFirstSight);
  EXPECT_EQ(first.queued, 3);
  auto again = deliver(*connection_, "task-1", "requested", "1");
  EXPECT_EQ(again.delivery.kind, Kind::kUnchanged);
  EXPECT_EQ(again.queued, 0);
  auto edited = deliver(*connection_, "task-1", "requested", "2");  // an edit that keeps the status
  EXPECT_EQ(edited.delivery.kind, Kind::kUnchanged);
  EXPECT_EQ(scalar("SELECT count(*) FROM notification_outbox"), "3");
  EXPECT_EQ(scalar("SELECT last_version FROM add_payer_tasks WHERE task_id = 'task-1'"), "2");
}

TEST_F(NotificationOutboxStore, StatusChangesQueueOnceAndLateOldVersionsAreIgnored) {
  deliver(*connection_, "task-2", "requested", "1");
  auto accepted = deliver(*connection_, "task-2", "accepted", "3");
  EXPECT_EQ(accepted.delivery.kind, Kind::kStatusChange);
  EXPECT_EQ(accepted.delivery.previous_status, "requested");
  EXPECT_EQ(accepted.queued, 1);
  auto late = deliver(*connection_, "task-2", "in-progress", "2");  // version 2 arrives after version 3
  EXPECT_EQ(late.delivery.kind, Kind::kStale);
  EXPECT_EQ(late.queued, 0);
  EXPECT_EQ(scalar("SELECT last_status FROM add_payer_tasks WHERE task_id = 'task-2'"), "accepted");
  EXPECT_EQ(scalar("SELECT count(*) FROM notification_outbox WHERE event = 'status:requested->accepted'"), "1");
}

TEST_F(NotificationOutboxStore, OpaqueVersionsAreOrderedByLastUpdated) {
  // Medplum's version ids are UUIDs: only meta.lastUpdated orders them.
  deliver(*connection_, "task-6", "requested", "8c1e-uuid-a", "2026-11-25T10:00:00.000Z");
  EXPECT_EQ(deliver(*connection_, "task-6", "accepted", "1f2d-uuid-b", "2026-11-25T10:05:00.000+00:00").queued, 1);
  auto late = deliver(*connection_, "task-6", "requested", "8c1e-uuid-a", "2026-11-25T10:00:00.000Z");
  EXPECT_EQ(late.delivery.kind, Kind::kStale);
  auto unknown_time = deliver(*connection_, "task-6", "accepted", "1f2d-uuid-b", "not a time");
  EXPECT_EQ(unknown_time.delivery.kind, Kind::kUnchanged);
  EXPECT_EQ(scalar("SELECT last_updated = '2026-11-25T10:05:00Z'::timestamptz FROM add_payer_tasks WHERE task_id = 'task-6'"),
            "t");
}

TEST_F(NotificationOutboxStore, ConcurrentDeliveriesOfOneTaskQueueOneSet) {
  constexpr int kDeliveries = 8;
  std::atomic<int> queued{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kDeliveries; ++i) {
    threads.emplace_back([this, &queued] {
      pqxx::connection connection(database_.url());
      queued += deliver(connection, "task-3", "requested", "1").queued;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(queued.load(), 3);
  EXPECT_EQ(scalar("SELECT count(*) FROM notification_outbox WHERE task_id = 'task-3'"), "3");
}

TEST_F(NotificationOutboxStore, ClaimsAreExclusiveRetriesWaitAndOnlyTheLeaseHolderUpdates) {
  deliver(*connection_, "task-4", "requested", "1");
  NotificationOutbox outbox(*connection_);
  pqxx::connection other_connection(database_.url());
  NotificationOutbox other(other_connection);

  auto mine = outbox.claim("instance-a", std::chrono::seconds(60), 2);
  auto theirs = other.claim("instance-b", std::chrono::seconds(60), 5);
  ASSERT_EQ(mine.size(), 2u);
  ASSERT_EQ(theirs.size(), 1u);  // the third row; the two leased ones are skipped
  EXPECT_EQ(mine[0].attempts, 1);
  EXPECT_FALSE(other.mark_sent(mine[0].id, "instance-b"));  // fenced: not its lease

  EXPECT_TRUE(outbox.mark_sent(mine[0].id, "instance-a"));
  EXPECT_EQ(scalar("SELECT body IS NULL AND subject IS NULL AND sent_at IS NOT NULL FROM notification_outbox WHERE id = " +
                   std::to_string(mine[0].id)),
            "t");
  EXPECT_TRUE(outbox.mark_retry(mine[1].id, "instance-a", "451 try later", std::chrono::seconds(3600)));
  EXPECT_TRUE(other.mark_failed(theirs[0].id, "instance-b", "550 no such user"));
  EXPECT_EQ(outbox.count_pending(), 1);
  EXPECT_TRUE(outbox.claim("instance-a", std::chrono::seconds(60), 5).empty());  // the retry is not due yet

  exec("UPDATE notification_outbox SET next_attempt_at = now() WHERE id = " + std::to_string(mine[1].id));
  auto retried = other.claim("instance-b", std::chrono::seconds(60), 5);
  ASSERT_EQ(retried.size(), 1u);
  EXPECT_EQ(retried[0].attempts, 2);
  EXPECT_EQ(scalar("SELECT last_error FROM notification_outbox WHERE id = " + std::to_string(mine[1].id)), "451 try later");
}

TEST_F(NotificationOutboxStore, AnExpiredLeaseIsTakenOverAndAReleasedRowIsFreeAtOnce) {
  deliver(*connection_, "task-5", "requested", "1");
  NotificationOutbox outbox(*connection_);
  auto dead = outbox.claim("dead-instance", std::chrono::seconds(60), 1);
  ASSERT_EQ(dead.size(), 1u);
  exec("UPDATE notification_outbox SET lease_expires_at = now() - interval '1 second' WHERE id = " +
       std::to_string(dead[0].id));
  auto taken = outbox.claim("live-instance", std::chrono::seconds(60), 1);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].id, dead[0].id);
  EXPECT_FALSE(outbox.mark_sent(dead[0].id, "dead-instance"));

  outbox.release("live-instance");
  EXPECT_EQ(outbox.claim("third", std::chrono::seconds(60), 5).size(), 3u);
}

TEST_F(NotificationOutboxStore, APendingRowMustHoldItsMessage) {
  EXPECT_THROW(exec("INSERT INTO notification_outbox (task_id, event, recipient) VALUES ('t', 'e', 'r@x.example')"),
               pqxx::check_violation);
}
