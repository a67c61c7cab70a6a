#pragma once
// E-mails about add-payer requests, as pure functions: rendering the templates (p2p/mail has their
// language and defaults, and the address rules), and the RFC 5322 message itself. Values from the Task are untrusted:
// control characters never reach a header, the body is text/plain only, non-ASCII subjects are
// RFC 2047-encoded and bodies quoted-printable. No I/O here (the SMTP client is smtp_mailer).
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "p2p/config/config.hpp"
#include "p2p/mail/address.hpp"
#include "p2p/mail/templates.hpp"
#include "p2p/notify/add_payer_task.hpp"

namespace p2p::notify {

// The templates' language and address rules live below configuration (p2p/mail), which checks them.
using mail::check_template;
using mail::default_admin_request_template;
using mail::default_member_confirmation_template;
using mail::default_member_status_update_template;
using mail::is_valid_email_address;

// Makes an untrusted value safe to put anywhere in a message: invalid UTF-8 replaced, every control
// character (CR and LF included) and Unicode line/paragraph separator turned into a space, runs of
// spaces collapsed, trimmed, at most `max_bytes` bytes (cut on a character boundary, marked with "...").
std::string sanitize_value(std::string_view value, std::size_t max_bytes = 256);

using TemplateValues = std::map<std::string, std::string, std::less<>>;

// The placeholders' values for this Task (sanitised); previous_status is empty but for status updates.
TemplateValues template_values(const AddPayerRequest& request, std::string_view previous_status = {});

// Replaces each {{name}} with its value (unknown names become empty: templates are checked at start-up).
std::string render_template(std::string_view text, const TemplateValues& values);

struct EmailMessage {
  std::string from;        // a valid address
  std::string to;          // a valid address
  std::string subject;     // rendered; made one line here
  std::string body;        // rendered plain text, any line endings
  std::string message_id;  // without <>, e.g. p2p-notification-42@payer.example
  std::string task_id;     // a FHIR id (X-P2P-Task-Id)
};

// The whole message with CRLF line endings, ready for SMTP DATA (dot-stuffing is the SMTP client's).
std::string compose_message(const EmailMessage& message, std::chrono::system_clock::time_point date);

// Helpers exposed for tests.
std::string encode_header_text(std::string_view text);  // RFC 2047 "B" encoded-words when not plain ASCII
std::string quoted_printable(std::string_view text);    // RFC 2045, CRLF line breaks kept as hard breaks
std::string domain_of(std::string_view address);        // the part after '@'

}  // namespace p2p::notify
