#include "p2p/store/notification_outbox.hpp"

#include <algorithm>
#include <charconv>
#include <regex>

namespace p2p::store {
namespace {

std::optional<long long> as_number(const std::string& text) {
  long long value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// A FHIR instant PostgreSQL can read as timestamptz, e.g. 2026-11-25T10:00:00.123Z or ...+02:00.
bool is_fhir_instant(const std::string& text) {
  static const std::regex kInstant(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2}))");
  return text.size() <= 40 && std::regex_match(text, kInstant);
}

struct Recorded {
  std::string status;
  std::string version;
  std::optional<bool> newer_than_delivery;  // the recorded lastUpdated is later than the delivered one
};

TaskDelivery classify(const std::optional<Recorded>& recorded, const std::string& status, const std::string& version) {
  if (!recorded) return {TaskDelivery::Kind::kFirstSight, {}};
  // Versions are ordered when both are numbers; opaque ids (Medplum's UUIDs) fall back to lastUpdated.
  const auto new_number = as_number(version);
  const auto last_number = as_number(recorded->version);
  if (new_number && last_number) {
    if (*new_number < *last_number) return {TaskDelivery::Kind::kStale, {}};
  } else if (recorded->newer_than_delivery.value_or(false)) {
    return {TaskDelivery::Kind::kStale, {}};
  }
  if (status == recorded->status) return {TaskDelivery::Kind::kUnchanged, {}};
  return {TaskDelivery::Kind::kStatusChange, recorded->status};
}

}  // namespace

RecordedDelivery NotificationOutbox::record_delivery(
    const std::string& task_id, const std::string& status, const std::string& version, const std::string& last_updated,
    const std::function<std::vector<OutboxEmail>(const TaskDelivery&)>& compose) {
  const char* instant = is_fhir_instant(last_updated) ? last_updated.c_str() : nullptr;
  pqxx::work tx(connection_);
  // Serialise deliveries of this Task: the advisory lock also covers the first sight, when no row exists yet.
  tx.exec_params("SELECT pg_advisory_xact_lock(hashtextextended('p2p-add-payer-task:' || $1, 0))", task_id);
  const auto rows = tx.exec_params(
      "SELECT last_status, last_version, last_updated > $2::timestamptz AS newer_than_delivery FROM add_payer_tasks"
      " WHERE task_id = $1",
      task_id, instant);
  std::optional<Recorded> recorded;
  if (!rows.empty()) {
    const auto& row = rows[0];
    const auto newer = row["newer_than_delivery"];
    recorded = Recorded{row["last_status"].as<std::string>(), row["last_version"].as<std::string>(),
                        newer.is_null() ? std::nullopt : std::optional<bool>(newer.as<bool>())};
  }

  RecordedDelivery result;
  result.delivery = classify(recorded, status, version);
  if (result.delivery.kind == TaskDelivery::Kind::kStale) return result;  // rolled back: nothing to record
  for (const auto& email : compose(result.delivery)) {
    const auto inserted = tx.exec_params(
        "INSERT INTO notification_outbox (task_id, event, recipient, subject, body) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT ON CONSTRAINT notification_outbox_once DO NOTHING",
        task_id, email.event, email.recipient, email.subject, email.body);
    result.queued += static_cast<int>(inserted.affected_rows());
  }
  tx.exec_params(
      "INSERT INTO add_payer_tasks (task_id, last_status, last_version, last_updated) VALUES ($1, $2, $3, $4)"
      " ON CONFLICT (task_id) DO UPDATE SET last_status = $2,"
      " last_version = CASE WHEN $3 = '' THEN add_payer_tasks.last_version ELSE $3 END,"
      " last_updated = coalesce($4::timestamptz, add_payer_tasks.last_updated), updated_at = now()",
      task_id, status, version, instant);
  tx.commit();
  return result;
}

std::vector<ClaimedEmail> NotificationOutbox::claim(const std::string& owner, std::chrono::seconds lease, int limit) {
  pqxx::work tx(connection_);
  const auto rows = tx.exec_params(
      "UPDATE notification_outbox SET lease_owner = $1, lease_expires_at = now() + $2::interval,"
      " attempts = attempts + 1"
      " WHERE id IN (SELECT id FROM notification_outbox WHERE status = 'pending' AND next_attempt_at <= now()"
      " AND (lease_expires_at IS NULL OR lease_expires_at < now())"
      " ORDER BY next_attempt_at, id FOR UPDATE SKIP LOCKED LIMIT $3)"
      " RETURNING id, task_id, event, recipient, subject, body, attempts",
      owner, std::to_string(lease.count()) + " seconds", limit);
  tx.commit();
  std::vector<ClaimedEmail> claimed;
  for (const auto& row : rows) {
    claimed.push_back({row["id"].as<long long>(), row["task_id"].as<std::string>(), row["event"].as<std::string>(),
                       row["recipient"].as<std::string>(), row["subject"].as<std::string>(),
                       row["body"].as<std::string>(), row["attempts"].as<int>()});
  }
  std::sort(claimed.begin(), claimed.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return claimed;
}

bool NotificationOutbox::mark_sent(long long id, const std::string& owner) {
  pqxx::work tx(connection_);
  const auto result = tx.exec_params(
      "UPDATE notification_outbox SET status = 'sent', sent_at = now(), subject = NULL, body = NULL,"
      " last_error = NULL, lease_owner = NULL, lease_expires_at = NULL"
      " WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
      id, owner);
  tx.commit();
  return result.affected_rows() == 1;
}

bool NotificationOutbox::mark_retry(long long id, const std::string& owner, const std::string& error,
                                    std::chrono::seconds delay) {
  pqxx::work tx(connection_);
  const auto result = tx.exec_params(
      "UPDATE notification_outbox SET last_error = $3, next_attempt_at = now() + $4::interval,"
      " lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
      id, owner, error, std::to_string(delay.count()) + " seconds");
  tx.commit();
  return result.affected_rows() == 1;
}

bool NotificationOutbox::mark_failed(long long id, const std::string& owner, const std::string& error) {
  pqxx::work tx(connection_);
  const auto result = tx.exec_params(
      "UPDATE notification_outbox SET status = 'failed', last_error = $3, lease_owner = NULL, lease_expires_at = NULL"
      " WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
      id, owner, error);
  tx.commit();
  return result.affected_rows() == 1;
}

void NotificationOutbox::release(const std::string& owner) {
  pqxx::work tx(connection_);
  tx.exec_params(
      "UPDATE notification_outbox SET lease_owner = NULL, lease_expires_at = NULL, attempts = greatest(attempts - 1, 0)"
      " WHERE lease_owner = $1 AND status = 'pending'",
      owner);
  tx.commit();
}

long long NotificationOutbox::count_pending() {
  pqxx::read_transaction tx(connection_);
  return tx.exec1("SELECT count(*) AS pending FROM notification_outbox WHERE status = 'pending'")["pending"].as<long long>();
}

}  // namespace p2p::store
