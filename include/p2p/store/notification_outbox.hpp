#pragma once
// Tables add_payer_tasks and notification_outbox (migration 0004): the transactional outbox of the
// add-payer e-mails. A hook delivery records the Task's state and its e-mails in one transaction; the
// sender claims due rows with FOR UPDATE SKIP LOCKED and a lease, and every update after that is fenced
// by the lease owner, so two instances never both deliver one row.
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <pqxx/pqxx>

namespace p2p::store {

// What a delivery of a Task means, given what was recorded before.
struct TaskDelivery {
  enum class Kind {
    kFirstSight,    // never seen: the request itself
    kStatusChange,  // a newer status than the last recorded one
    kUnchanged,     // same status (a redelivery, or an edit that does not change the status)
    kStale,         // an older version than the last recorded one, arriving late
  };
  Kind kind = Kind::kFirstSight;
  std::string previous_status;  // for kStatusChange
};

struct OutboxEmail {
  std::string event;      // admin-request, member-confirmation, status:<from>-><to>@<version>
  std::string recipient;
  std::string subject;
  std::string body;
};

struct RecordedDelivery {
  TaskDelivery delivery;
  int queued = 0;  // e-mails newly queued (0 for a redelivery)
};

struct ClaimedEmail {
  long long id = 0;
  std::string task_id;
  std::string event;
  std::string recipient;
  std::string subject;
  std::string body;
  int attempts = 0;  // including this one
};

class NotificationOutbox {
 public:
  explicit NotificationOutbox(pqxx::connection& connection) : connection_(connection) {}

  // In one transaction: locks the Task's row (creating it on first sight), classifies the delivery,
  // asks `compose` for the e-mails it calls for, inserts them (a row already there is kept: unique by
  // Task, event and recipient) and records the new status and version. Concurrent deliveries of one
  // Task are serialised by the row lock.
  // An older delivery than the last one recorded is kStale: by versionId when both are numbers (HAPI,
  // Smile CDR), otherwise by meta.lastUpdated (`last_updated`, a FHIR instant; empty when unknown).
  RecordedDelivery record_delivery(const std::string& task_id, const std::string& status, const std::string& version,
                                   const std::string& last_updated,
                                   const std::function<std::vector<OutboxEmail>(const TaskDelivery&)>& compose);

  // Leases up to `limit` due pending rows to `owner`, counting an attempt for each.
  std::vector<ClaimedEmail> claim(const std::string& owner, std::chrono::seconds lease, int limit);
  // The updates below do nothing (and return false) when `owner` no longer holds the row's lease.
  bool mark_sent(long long id, const std::string& owner);
  bool mark_retry(long long id, const std::string& owner, const std::string& error, std::chrono::seconds delay);
  bool mark_failed(long long id, const std::string& owner, const std::string& error);
  // Gives back rows leased to `owner` that it will not send now (graceful stop).
  void release(const std::string& owner);

  long long count_pending();

 private:
  pqxx::connection& connection_;
};

}  // namespace p2p::store
