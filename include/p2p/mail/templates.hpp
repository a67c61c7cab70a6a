#pragma once
// The e-mail templates' language, apart from sending: {{placeholder}}s, which names exist, and the
// default texts. Configuration checks templates with it (at start, with key paths); notify renders
// them. Pure.
#include <optional>
#include <string>
#include <string_view>

namespace p2p::mail {

// One e-mail: plain-text templates with {{placeholder}}s (see docs/notifications.md).
struct EmailTemplate {
  std::string subject;
  std::string body;
};

EmailTemplate default_admin_request_template();
EmailTemplate default_member_confirmation_template();
EmailTemplate default_member_status_update_template();

// The first problem with a template's placeholders ("unknown placeholder {{x}}; the placeholders are ...",
// or an unclosed "{{"), or nullopt when every placeholder is known.
std::optional<std::string> check_template(std::string_view text);

}  // namespace p2p::mail
