#include "p2p/notify/smtp_mailer.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <curl/curl.h>

#include "p2p/notify/email.hpp"

namespace p2p::notify {
namespace {

struct Upload {
  const std::string& data;
  std::size_t offset = 0;
};

std::size_t read_message(char* buffer, std::size_t size, std::size_t count, void* user) {
  auto& upload = *static_cast<Upload*>(user);
  const std::size_t room = size * count;
  const std::size_t left = upload.data.size() - upload.offset;
  const std::size_t n = std::min(room, left);
  std::memcpy(buffer, upload.data.data() + upload.offset, n);
  upload.offset += n;
  return n;
}

void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

SmtpMailer::SmtpMailer(config::SmtpConfig config) : config_(std::move(config)), url_(config_.url) {
  global_init_once();
  auto parsed = boost::urls::parse_uri(config_.url);
  if (parsed && (parsed->path().empty() || parsed->path() == "/")) {
    // libcurl sends the URL's path as the EHLO name; without one it would announce "localhost".
    boost::urls::url with_path = *parsed;
    with_path.set_path("/p2p-exchange");
    url_ = std::string(with_path.buffer());
  }
}

SendResult SmtpMailer::send(const std::string& from, const std::string& to, const std::string& message) const {
  SendResult result;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
  if (!curl) {
    result.error = "libcurl could not start a transfer";
    return result;
  }
  CURL* handle = curl.get();
  char error_buffer[CURL_ERROR_SIZE] = {0};
  Upload upload{message};
  const std::string mail_from = "<" + from + ">";
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> recipients(
      curl_slist_append(nullptr, ("<" + to + ">").c_str()), &curl_slist_free_all);

  curl_easy_setopt(handle, CURLOPT_URL, url_.c_str());
  curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT, static_cast<long>(std::min(config_.timeout_seconds, 30)));
  curl_easy_setopt(handle, CURLOPT_TIMEOUT, static_cast<long>(config_.timeout_seconds));
  curl_easy_setopt(handle, CURLOPT_MAIL_FROM, mail_from.c_str());
  curl_easy_setopt(handle, CURLOPT_MAIL_RCPT, recipients.get());
  curl_easy_setopt(handle, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(handle, CURLOPT_READFUNCTION, &read_message);
  curl_easy_setopt(handle, CURLOPT_READDATA, &upload);
  curl_easy_setopt(handle, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(message.size()));
  if (config_.url.starts_with("smtp://")) {
    curl_easy_setopt(handle, CURLOPT_USE_SSL, static_cast<long>(config_.start_tls ? CURLUSESSL_ALL : CURLUSESSL_NONE));
  }
  curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, config_.verify_tls ? 1L : 0L);
  curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, config_.verify_tls ? 2L : 0L);
  if (!config_.ca_file.empty()) curl_easy_setopt(handle, CURLOPT_CAINFO, config_.ca_file.c_str());
  if (!config_.user.empty()) {
    curl_easy_setopt(handle, CURLOPT_USERNAME, config_.user.c_str());
    curl_easy_setopt(handle, CURLOPT_PASSWORD, config_.password.c_str());
  }

  const CURLcode code = curl_easy_perform(handle);
  if (code == CURLE_OK) {
    result.delivered = true;
    return result;
  }
  long reply = 0;
  curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &reply);
  result.error = std::string(curl_easy_strerror(code));
  if (error_buffer[0] != '\0') result.error += ": " + sanitize_value(error_buffer, 300);
  if (reply != 0) result.error += " (SMTP reply " + std::to_string(reply) + ")";
  // A 5xx reply refuses for good (e.g. 550 unknown mailbox), except to AUTH: fixing the credentials
  // (and restarting) lets the queued e-mails through.
  result.permanent = reply >= 500 && reply < 600 && code != CURLE_LOGIN_DENIED;
  return result;
}

}  // namespace p2p::notify
