#pragma once
// The member's "add payer" request as the seed shapes it (a FHIR Task with the p2p-request-add-provider-id
// code and its inputs by code), and the parser for what a FHIR server's rest-hook delivers: a Task, a
// Bundle of Tasks, or nothing. Pure: no I/O. Values are untrusted and kept as received; whoever puts them
// in an e-mail sanitises them.
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace p2p::notify {

inline constexpr std::string_view kP2pCodeSystem = "http://payer-to-payer-exchange/CodeSystem/p2p-internal-codes";
inline constexpr std::string_view kAddPayerCode = "p2p-request-add-provider-id";

struct AddPayerRequest {
  std::string task_id;
  std::string version_id;     // meta.versionId, may be empty
  std::string last_updated;   // meta.lastUpdated, may be empty
  std::string status;
  std::string status_reason;  // statusReason.text or its first coding's display
  std::string first_name;
  std::string last_name;
  std::string new_payer_name;
  std::string email;
  std::string phone;
  std::string patient;       // requester.reference
  std::string organization;  // owner.reference
  std::string authored_on;
};

// The body of a hook delivery cannot be used; what() says what is wrong with it (safe to show the sender).
class PayloadError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Whether the resource is a Task carrying the add-payer code.
bool is_add_payer_task(const nlohmann::json& resource);

// Reads an add-payer Task. Throws PayloadError when it is not a Task, has no valid id or no status.
AddPayerRequest read_add_payer_task(const nlohmann::json& task);

struct HookPayload {
  // The add-payer Tasks delivered (other Tasks and resources are left out).
  std::vector<AddPayerRequest> tasks;
  // Resources delivered that were not add-payer Tasks.
  int ignored = 0;
  // The body was empty: the receiver must read the Task (path_task_id) or search for recent ones.
  bool empty = false;
};

// Parses a delivery body. `path_task_id` is the {id} of a .../Task/{id} delivery path, when there is
// one: a Task in the body must then have that id. Throws PayloadError for a body that is not JSON, not a
// Task or Bundle, or a Task without an id (or with another id than the path's), or too deeply nested.
HookPayload parse_hook_payload(std::string_view body, const std::optional<std::string>& path_task_id);

}  // namespace p2p::notify
