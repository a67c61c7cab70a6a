#pragma once
// The add-payer notifications fixture (docs/notifications.md), shared by the notifications_*_test.cpp
// files: the binary, PostgreSQL, the Medplum FHIR server (tests/peers/fhir-server.mjs) holding the
// Subscription and the Tasks, and a real SMTP server (tests/support/smtp_peer.hpp) that records every
// message. The tests play the FHIR server's rest-hook delivery the way HAPI FHIR sends it: POST
// {hook}/Task with the Task on create, PUT {hook}/Task/{id} on update, the channel header
// X-P2P-Hook-Secret.
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "e2e_fixture.hpp"
#include "metrics_text.hpp"
#include "node_peer.hpp"
#include "smtp_peer.hpp"
#include "p2p/crypto/token_cipher.hpp"
#include "p2p/util/crypto.hpp"

namespace p2p::test {

using nlohmann::json;
using namespace std::chrono_literals;

inline const std::string kHookSecret = "e2e-hook-secret-0123456789abcdef";
inline const std::string kSmtpUser = "e2e-smtp-user";
inline const std::string kSmtpPassword = "e2e-smtp-password-0123456789";
inline const std::string kMailFrom = "p2p-notifications@payer.example";
inline const std::string kAdminOne = "admin-one@payer.example";
inline const std::string kAdminTwo = "admin-two@payer.example";
inline const std::string kSubscriptionId = "p2p-exchange-add-payer-task";
inline const std::string kCodeSystem = "http://payer-to-payer-exchange/CodeSystem/p2p-internal-codes";
inline const std::string kHookPath = "/hooks/add-payer-task";
inline const std::string kFhirJson = "Content-Type: application/fhir+json";
inline const std::string kSecretHeader = "X-P2P-Hook-Secret: " + kHookSecret;

inline json parse(const std::string& text) { return json::parse(text, nullptr, false); }
inline json parse(const HttpResult& result) { return parse(result.body); }

inline std::string read_file(const std::string& path) {
  std::ifstream input(path);
  std::stringstream content;
  content << input.rdbuf();
  return content.str();
}

inline std::string lower(std::string text) {
  for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// CRLF -> LF and no trailing line breaks or spaces: mail bodies compared with the spec's templates.
inline std::string normalized_body(std::string text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
    out.push_back(text[i]);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ' || out.back() == '\r')) out.pop_back();
  return out;
}

// Failed delivery attempts, whether retried or given up on.
inline double attempts_failed(const std::string& metrics) {
  return metric_value(metrics, "p2p_notifications_delivery_errors_total") +
         metric_value(metrics, "p2p_notifications_failed_total");
}

// The one recipient of a message's envelope ("" when it has not exactly one).
inline std::string recipient(const json& message) {
  const auto& rcpt = message["envelope"]["rcptTo"];
  return rcpt.size() == 1 ? rcpt[0].get<std::string>() : std::string();
}

inline std::map<std::string, json> by_recipient(const std::vector<json>& messages) {
  std::map<std::string, json> out;
  for (const auto& message : messages) out[recipient(message)] = message;
  return out;
}

inline std::multiset<std::string> recipients(const std::vector<json>& messages) {
  std::multiset<std::string> out;
  for (const auto& message : messages) {
    for (const auto& rcpt : message["envelope"]["rcptTo"]) out.insert(rcpt.get<std::string>());
  }
  return out;
}

// The member's data for one add-payer Task.
struct Member {
  std::string first = "Jane";
  std::string last = "Doe";
  std::string payer = "Acme Health Plan";
  std::string email = "jane.doe@member.example";
  std::string phone = "5555550123";
  std::string patient = "example-member";
};

class NotificationTest : public ServiceFixture {
 protected:
  static void SetUpTestSuite() {
    fhir_ = std::make_unique<NodePeer>("fhir-server.mjs", std::vector<std::string>{"--quiet"});
  }
  static void TearDownTestSuite() { fhir_.reset(); }

  void SetUp() override {
    ASSERT_EQ(http_request("POST", fhir_origin() + "/__control/reset").status, 200);
  }


  static std::string fhir_base() { return fhir_->ready()["base"]; }
  static std::string fhir_origin() {
    const std::string base = fhir_base();
    return base.substr(0, base.rfind("/fhir"));
  }

  // The service's environment for notifications on, sending to `smtp` (plain SMTP unless overridden).
  std::map<std::string, std::string> notification_env(int smtp_port) {
    if (http_port_ == 0) http_port_ = ServiceProcess::free_port();
    return {{"P2P_NOTIFICATIONS_ENABLED", "true"},
            {"P2P_HTTP_PORT", std::to_string(http_port_)},
            {"P2P_PUBLIC_BASE_URL", "http://127.0.0.1:" + std::to_string(http_port_)},
            {"P2P_HOOK_SECRET", kHookSecret},
            {"P2P_SMTP_URL", "smtp://127.0.0.1:" + std::to_string(smtp_port)},
            {"P2P_SMTP_STARTTLS", "off"},
            {"P2P_MAIL_FROM", kMailFrom},
            {"P2P_MAIL_ADMINS", kAdminOne + "," + kAdminTwo},
            {"P2P_FHIR_PERSISTENCE_URL", fhir_base()},
            {"P2P_ALLOW_PLAIN_HTTP", "true"}};
  }

  // Starts an instance with fast delivery settings merged with `notifications` (for keys without env
  // names); waits for /readyz unless `expect_ready` is false.
  ServiceProcess& start_service(std::map<std::string, std::string> env, const json& notifications = json::object(),
                                bool expect_ready = true) {
    json config = {{"notifications",
                    {{"delivery", {{"initialBackoffSeconds", 1}, {"maxBackoffSeconds", 2}, {"pollIntervalMilliseconds", 200}}}}}};
    config["notifications"].merge_patch(notifications);
    return launch(env, config, expect_ready);
  }

  ServiceProcess& start_with(const SmtpPeer& smtp, const json& notifications = json::object()) {
    return start_service(notification_env(smtp.port()), notifications);
  }

  // ---- the FHIR server's side ----

  // The documented sample (docs/examples/add-payer-task.json) with this id and member.
  static json add_payer_task(const std::string& id, const Member& member = {}) {
    json task = parse(read_file(std::string(P2P_SOURCE_DIR) + "/docs/examples/add-payer-task.json"));
    EXPECT_TRUE(task.is_object()) << "docs/examples/add-payer-task.json is not JSON";
    task["id"] = id;
    task["requester"]["reference"] = "Patient/" + member.patient;
    task["identifier"][0]["value"] = member.patient + "-example-payer-2025-03-14T09:26:53Z";
    const std::map<std::string, std::string> values = {{"requester-first-name", member.first},
                                                       {"requester-last-name", member.last},
                                                       {"new-payer-name", member.payer},
                                                       {"requester-email", member.email},
                                                       {"requester-phone", member.phone}};
    for (auto& input : task["input"]) {
      const std::string code = input["type"]["coding"][0]["code"];
      input["type"]["text"] = values.at(code);
      input["valueString"] = values.at(code);
    }
    return task;
  }

  // Creates or updates the Task on the FHIR peer (as the portal does); returns the stored resource.
  static json store_task(const json& task) {
    const auto result = http_request("PUT", fhir_base() + "/Task/" + task["id"].get<std::string>(), {kFhirJson}, task.dump());
    EXPECT_TRUE(result.status == 200 || result.status == 201) << result.status << " " << result.body;
    const auto stored = parse(result);
    EXPECT_TRUE(stored.contains("meta")) << result.body;
    return stored;
  }

  // HAPI's create delivery: POST {endpoint}/Task with the Task.
  static HttpResult deliver_create(const ServiceProcess& service, const json& task,
                                   const std::string& secret_header = kSecretHeader) {
    std::vector<std::string> headers = {kFhirJson};
    if (!secret_header.empty()) headers.push_back(secret_header);
    return http_request("POST", service.url(kHookPath + "/Task"), headers, task.dump());
  }

  // HAPI's update delivery: PUT {endpoint}/Task/{id} with the Task.
  static HttpResult deliver_update(const ServiceProcess& service, const json& task) {
    return http_request("PUT", service.url(kHookPath + "/Task/" + task["id"].get<std::string>()),
                        {kFhirJson, kSecretHeader}, task.dump());
  }

  static std::vector<json> subscriptions() {
    const auto bundle = parse(http_get(fhir_base() + "/Subscription?_count=1000"));
    std::vector<json> out;
    for (const auto& entry : bundle.value("entry", json::array())) out.push_back(entry["resource"]);
    return out;
  }

  static std::vector<json> fhir_requests() { return parse(http_get(fhir_origin() + "/__control/requests")).get<std::vector<json>>(); }

  // FHIR requests after the first `skip` whose path contains `text`.
  static std::vector<json> fhir_requests_since(std::size_t skip, const std::string& text) {
    const auto all = fhir_requests();
    std::vector<json> out;
    for (std::size_t i = skip; i < all.size(); ++i) {
      if (all[i]["path"].get<std::string>().find(text) != std::string::npos) out.push_back(all[i]);
    }
    return out;
  }

  static std::string metrics(const ServiceProcess& service) { return http_get(service.url("/metrics")).body; }

  // Asserts the three e-mails of a new request (admins one each, the member's confirmation).
  static void expect_new_request_emails(const std::vector<json>& messages, const std::string& task_id, const Member& member) {
    ASSERT_EQ(messages.size(), 3u) << json(messages).dump(2);
    EXPECT_EQ(recipients(messages), (std::multiset<std::string>{kAdminOne, kAdminTwo, member.email}));
    std::set<std::string> message_ids;
    const std::regex message_id_pattern("^<p2p-notification-[0-9]+@payer\\.example>$");
    for (const auto& message : messages) {
      SCOPED_TRACE(recipient(message));
      EXPECT_EQ(message["envelope"]["mailFrom"], kMailFrom);
      ASSERT_EQ(message["envelope"]["rcptTo"].size(), 1u);
      const auto& headers = message["headers"];
      EXPECT_EQ(headers.value("from", ""), kMailFrom);
      EXPECT_EQ(headers.value("to", ""), recipient(message));
      EXPECT_EQ(headers.value("auto-submitted", ""), "auto-generated");
      EXPECT_EQ(headers.value("x-p2p-task-id", ""), task_id);
      EXPECT_TRUE(headers.contains("date")) << headers.dump();
      EXPECT_FALSE(headers.contains("cc"));
      EXPECT_FALSE(headers.contains("bcc"));
      const std::string message_id = message["messageId"].is_string() ? message["messageId"].get<std::string>() : "";
      EXPECT_TRUE(std::regex_match(message_id, message_id_pattern)) << message_id;
      message_ids.insert(message_id);
      EXPECT_EQ(lower(message.value("contentType", "")), "text/plain; charset=utf-8");
      EXPECT_EQ(lower(headers.value("content-transfer-encoding", "")), "quoted-printable");
      EXPECT_EQ(message["html"], false);
    }
    EXPECT_EQ(message_ids.size(), 3u) << "each e-mail has its own Message-ID";

    const std::string admin_subject = "Add payer request " + task_id + ": " + member.first + " " + member.last +
                                      " asks to add " + member.payer;
    const std::string admin_body = "A member asked to add a new payer.\n\n"
                                   "Member:      " + member.first + " " + member.last + "\n"
                                   "E-mail:      " + member.email + "\n"
                                   "Phone:       " + member.phone + "\n"
                                   "New payer:   " + member.payer + "\n"
                                   "Patient:     Patient/" + member.patient + "\n"
                                   "Owner:       Organization/example-payer\n"
                                   "Requested:   2025-03-14T09:26:53Z\n"
                                   "Status:      requested\n"
                                   "Task:        " + task_id;
    const auto mail = by_recipient(messages);
    for (const auto& admin : {kAdminOne, kAdminTwo}) {
      SCOPED_TRACE(admin);
      ASSERT_TRUE(mail.contains(admin));
      EXPECT_EQ(mail.at(admin)["subject"], admin_subject);
      EXPECT_EQ(normalized_body(mail.at(admin)["text"]), admin_body);
    }
    ASSERT_TRUE(mail.contains(member.email));
    const auto& confirmation = mail.at(member.email);
    EXPECT_EQ(confirmation["subject"], "We received your request to add " + member.payer);
    const std::string text = normalized_body(confirmation["text"]);
    EXPECT_EQ(text, "Dear " + member.first + " " + member.last + ",\n\n"
                    "We received your request to add " + member.payer + " as a payer. Your request reference is " +
                    task_id + ".\nWe will e-mail you when its status changes.");
    for (const auto& admin : {kAdminOne, kAdminTwo}) {
      EXPECT_EQ(confirmation["raw"].get<std::string>().find(admin), std::string::npos) << "the member never sees admin addresses";
    }
  }

  static inline std::unique_ptr<NodePeer> fhir_;
  int http_port_ = 0;
};

// A self-signed certificate for 127.0.0.1 made with the openssl CLI; removed with the directory.
struct TestCertificate {
  std::string dir = "/tmp/p2p-smtp-tls-" + p2p::util::random_hex(6);
  std::string cert = dir + "/cert.pem";
  std::string key = dir + "/key.pem";
  TestCertificate() {
    std::filesystem::create_directories(dir);
    const std::string command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
                                " -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " + key + " -out " + cert +
                                " >" + dir + "/openssl.log 2>&1";
    EXPECT_EQ(std::system(command.c_str()), 0) << read_file(dir + "/openssl.log");
  }
  ~TestCertificate() { std::filesystem::remove_all(dir); }
};

}  // namespace p2p::test
