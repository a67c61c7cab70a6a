#include "p2p/notify/email.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <ctime>

#include "p2p/crypto/token_cipher.hpp"

namespace p2p::notify {
namespace {

// Length of the valid UTF-8 sequence starting at text[i], or 0 when it is not valid.
std::size_t utf8_sequence_length(std::string_view text, std::size_t i) {
  const auto byte = static_cast<unsigned char>(text[i]);
  std::size_t length = 0;
  std::uint32_t code_point = 0;
  if (byte < 0x80) return 1;
  if ((byte & 0xE0) == 0xC0) {
    length = 2;
    code_point = byte & 0x1F;
  } else if ((byte & 0xF0) == 0xE0) {
    length = 3;
    code_point = byte & 0x0F;
  } else if ((byte & 0xF8) == 0xF0) {
    length = 4;
    code_point = byte & 0x07;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    const auto next = static_cast<unsigned char>(text[i + k]);
    if ((next & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (next & 0x3F);
  }
  const bool overlong = (length == 2 && code_point < 0x80) || (length == 3 && code_point < 0x800) ||
                        (length == 4 && code_point < 0x10000);
  if (overlong || code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF)) return 0;
  return length;
}

std::string rfc5322_date(std::chrono::system_clock::time_point date) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(date);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  static constexpr std::array<const char*, 7> kDays = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays.at(static_cast<std::size_t>(utc.tm_wday)),
                utc.tm_mday, kMonths.at(static_cast<std::size_t>(utc.tm_mon)), utc.tm_year + 1900, utc.tm_hour,
                utc.tm_min, utc.tm_sec);
  return buffer;
}

// Keeps only what is safe in a header: printable ASCII ids, e.g. a FHIR id or a Message-ID.
std::string header_token(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c > 0x20 && c < 0x7F && c != '<' && c != '>') out += c;
  }
  return out;
}

}  // namespace

std::string sanitize_value(std::string_view value, std::size_t max_bytes) {
  std::string out;
  out.reserve(std::min(value.size(), max_bytes + 8));
  bool pending_space = false;
  for (std::size_t i = 0; i < value.size();) {
    const std::size_t length = utf8_sequence_length(value, i);
    std::string_view character = length == 0 ? std::string_view("\xEF\xBF\xBD") : value.substr(i, length);
    i += length == 0 ? 1 : length;
    const auto first = static_cast<unsigned char>(character[0]);
    const bool control = character.size() == 1 && (first < 0x20 || first == 0x7F);
    const bool c1_control = character.size() == 2 && first == 0xC2 && static_cast<unsigned char>(character[1]) < 0xA0;
    const bool separator = character == "\xE2\x80\xA8" || character == "\xE2\x80\xA9";  // U+2028, U+2029
    if (control || c1_control || separator || character == " ") {
      pending_space = !out.empty();
      continue;
    }
    const std::size_t needed = character.size() + (pending_space ? 1 : 0);
    if (out.size() + needed > max_bytes) {
      out += "...";
      return out;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out.append(character);
  }
  return out;
}

TemplateValues template_values(const AddPayerRequest& request, std::string_view previous_status) {
  return {{"taskId", sanitize_value(request.task_id)},
          {"status", sanitize_value(request.status)},
          {"previousStatus", sanitize_value(previous_status)},
          {"statusReason", sanitize_value(request.status_reason, 1024)},
          {"firstName", sanitize_value(request.first_name)},
          {"lastName", sanitize_value(request.last_name)},
          {"newPayerName", sanitize_value(request.new_payer_name)},
          {"email", sanitize_value(request.email)},
          {"phone", sanitize_value(request.phone)},
          {"patient", sanitize_value(request.patient)},
          {"organization", sanitize_value(request.organization)},
          {"authoredOn", sanitize_value(request.authored_on)}};
}

std::string render_template(std::string_view text, const TemplateValues& values) {
  std::string out;
  std::size_t position = 0;
  while (true) {
    const auto open = text.find("{{", position);
    if (open == std::string_view::npos) break;
    const auto close = text.find("}}", open + 2);
    if (close == std::string_view::npos) break;
    out.append(text.substr(position, open - position));
    const auto found = values.find(text.substr(open + 2, close - open - 2));
    if (found != values.end()) out += found->second;
    position = close + 2;
  }
  out.append(text.substr(position));
  return out;
}

std::string encode_header_text(std::string_view text) {
  const bool plain = std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c < 0x7F; }) &&
                     text.find("=?") == std::string_view::npos;
  if (plain) return std::string(text);
  // Encoded-words of at most 75 characters: 45 bytes of text give 60 base64 characters + 12 of framing.
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t end = i;
    while (end < text.size()) {
      std::size_t length = utf8_sequence_length(text, end);
      if (length == 0) length = 1;
      if (end + length - i > 45) break;
      end += length;
    }
    if (end == i) end = i + 1;
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?" + crypto::base64_encode(text.substr(i, end - i)) + "?=";
    i = end;
  }
  return out;
}

std::string quoted_printable(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  std::size_t line_length = 0;
  auto emit = [&out, &line_length](std::string_view piece) {
    if (line_length + piece.size() > 75) {  // soft break: "=" ends the line at 76 characters at most
      out += "=\r\n";
      line_length = 0;
    }
    out.append(piece);
    line_length += piece.size();
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;  // the '\n' makes the break
    if (c == '\n' || c == '\r') {
      // A space or tab before a hard break must be encoded (transports strip trailing white space).
      if (!out.empty() && (out.back() == ' ' || out.back() == '\t')) {
        const char last = out.back();
        out.pop_back();
        --line_length;
        const char encoded[] = {'=', kHex[last >> 4], kHex[last & 0x0F], '\0'};
        emit(encoded);
      }
      out += "\r\n";
      line_length = 0;
      continue;
    }
    const bool literal = (c >= 33 && c <= 126 && c != '=') || c == ' ' || c == '\t';
    if (literal && !(c == '.' && line_length == 0)) {
      const char piece[] = {static_cast<char>(c), '\0'};
      emit(piece);
    } else {
      const char encoded[] = {'=', kHex[c >> 4], kHex[c & 0x0F], '\0'};
      emit(encoded);
    }
  }
  if (!out.empty() && (out.back() == ' ' || out.back() == '\t')) {
    const char last = out.back();
    out.pop_back();
    out += '=';
    out += kHex[last >> 4];
    out += kHex[last & 0x0F];
  }
  return out;
}

std::string domain_of(std::string_view address) {
  const auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string() : std::string(address.substr(at + 1));
}

std::string compose_message(const EmailMessage& message, std::chrono::system_clock::time_point date) {
  // Addresses are validated before they get here; header_token is a last line of defence.
  const std::string subject = sanitize_value(message.subject, 400);
  std::string out;
  out += "From: " + header_token(message.from) + "\r\n";
  out += "To: " + header_token(message.to) + "\r\n";
  out += "Subject: " + encode_header_text(subject) + "\r\n";
  out += "Date: " + rfc5322_date(date) + "\r\n";
  out += "Message-ID: <" + header_token(message.message_id) + ">\r\n";
  out += "MIME-Version: 1.0\r\n";
  out += "Content-Type: text/plain; charset=UTF-8\r\n";
  out += "Content-Transfer-Encoding: quoted-printable\r\n";
  out += "Auto-Submitted: auto-generated\r\n";
  out += "X-P2P-Task-Id: " + header_token(message.task_id) + "\r\n";
  out += "\r\n";
  out += quoted_printable(message.body);
  if (!out.ends_with("\r\n")) out += "\r\n";
  return out;
}

}  // namespace p2p::notify
