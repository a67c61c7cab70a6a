#pragma once
// Sends one composed message through libcurl's SMTP client (no hand-written SMTP): smtp:// with
// STARTTLS (required unless configured off) or smtps:// (implicit TLS), optional AUTH, certificate and
// host-name verification on by default. Blocking: call it from the sender thread only.
#include <string>

#include "p2p/config/config.hpp"

namespace p2p::notify {

struct SendResult {
  bool delivered = false;
  bool permanent = false;  // the server refused for good (a 5xx reply other than to AUTH): do not retry
  std::string error;       // for the log and the outbox row; never holds the password
};

class SmtpMailer {
 public:
  explicit SmtpMailer(config::SmtpConfig config);
  // `message` is the whole RFC 5322 message with CRLF line endings.
  SendResult send(const std::string& from, const std::string& to, const std::string& message) const;

 private:
  config::SmtpConfig config_;
  std::string url_;  // with the EHLO name as its path when none is given
};

}  // namespace p2p::notify
