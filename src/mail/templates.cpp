#include "p2p/mail/templates.hpp"

#include <algorithm>
#include <array>

namespace p2p::mail {
namespace {

constexpr std::array<std::string_view, 12> kPlaceholders = {
    "taskId", "status", "previousStatus", "statusReason", "firstName", "lastName",
    "newPayerName", "email", "phone", "patient", "organization", "authoredOn"};

std::string placeholder_list() {
  std::string list;
  for (auto name : kPlaceholders) list += (list.empty() ? "{{" : ", {{") + std::string(name) + "}}";
  return list;
}

}  // namespace

EmailTemplate default_admin_request_template() {
  return {"Add payer request {{taskId}}: {{firstName}} {{lastName}} asks to add {{newPayerName}}",
          "A member asked to add a new payer.\n"
          "\n"
          "Member:      {{firstName}} {{lastName}}\n"
          "E-mail:      {{email}}\n"
          "Phone:       {{phone}}\n"
          "New payer:   {{newPayerName}}\n"
          "Patient:     {{patient}}\n"
          "Owner:       {{organization}}\n"
          "Requested:   {{authoredOn}}\n"
          "Status:      {{status}}\n"
          "Task:        {{taskId}}\n"};
}

EmailTemplate default_member_confirmation_template() {
  return {"We received your request to add {{newPayerName}}",
          "Dear {{firstName}} {{lastName}},\n"
          "\n"
          "We received your request to add {{newPayerName}} as a payer. Your request reference is {{taskId}}.\n"
          "We will e-mail you when its status changes.\n"};
}

EmailTemplate default_member_status_update_template() {
  return {"Your request to add {{newPayerName}} is now {{status}}",
          "Dear {{firstName}} {{lastName}},\n"
          "\n"
          "The status of your request to add {{newPayerName}} (reference {{taskId}}) changed from\n"
          "{{previousStatus}} to {{status}}. {{statusReason}}\n"};
}

std::optional<std::string> check_template(std::string_view text) {
  std::size_t position = 0;
  while ((position = text.find("{{", position)) != std::string_view::npos) {
    const auto close = text.find("}}", position + 2);
    if (close == std::string_view::npos) return "has an unclosed \"{{\"; the placeholders are " + placeholder_list();
    const auto name = text.substr(position + 2, close - position - 2);
    if (std::find(kPlaceholders.begin(), kPlaceholders.end(), name) == kPlaceholders.end()) {
      return "has an unknown placeholder {{" + std::string(name) + "}}; the placeholders are " + placeholder_list();
    }
    position = close + 2;
  }
  return std::nullopt;
}

}  // namespace p2p::mail
