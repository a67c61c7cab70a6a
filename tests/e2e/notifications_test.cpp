// Add-payer notifications end to end (docs/notifications.md) with real peers: the binary, PostgreSQL,
// the Medplum FHIR server (tests/peers/fhir-server.mjs) holding the Subscription and the Tasks, and a
// real SMTP server (tests/peers/smtp-server.mjs, smtp-server + mailparser) that records every message.
// The test plays the FHIR server's rest-hook delivery the way HAPI FHIR sends it: POST {hook}/Task with
// the Task on create, PUT {hook}/Task/{id} on update, the channel header X-P2P-Hook-Secret.
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "e2e_fixture.hpp"
#include "node_peer.hpp"
#include "p2p/crypto/token_cipher.hpp"
#include "p2p/util/crypto.hpp"

using nlohmann::json;
using namespace p2p::test;
using namespace std::chrono_literals;

namespace {

const std::string kHookSecret = "e2e-hook-secret-0123456789abcdef";
const std::string kSmtpUser = "e2e-smtp-user";
const std::string kSmtpPassword = "e2e-smtp-password-0123456789";
const std::string kMailFrom = "p2p-notifications@payer.example";
const std::string kAdminOne = "admin-one@payer.example";
const std::string kAdminTwo = "admin-two@payer.example";
const std::string kSubscriptionId = "p2p-exchange-add-payer-task";
const std::string kCodeSystem = "http://payer-to-payer-exchange/CodeSystem/p2p-internal-codes";
const std::string kHookPath = "/hooks/add-payer-task";
const std::string kFhirJson = "Content-Type: application/fhir+json";
const std::string kSecretHeader = "X-P2P-Hook-Secret: " + kHookSecret;

json parse(const std::string& text) { return json::parse(text, nullptr, false); }
json parse(const HttpResult& result) { return parse(result.body); }

std::string read_file(const std::string& path) {
  std::ifstream input(path);
  std::stringstream content;
  content << input.rdbuf();
  return content.str();
}

std::string lower(std::string text) {
  for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// CRLF -> LF and no trailing line breaks or spaces: mail bodies compared with the spec's templates.
std::string normalized_body(std::string text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
    out.push_back(text[i]);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ' || out.back() == '\r')) out.pop_back();
  return out;
}

// The value of an unlabelled metric sample ("name value"), or -1 when the line is missing.
double metric_value(const std::string& metrics, const std::string& name) {
  std::istringstream lines(metrics);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

// Failed delivery attempts, whether retried or given up on.
double attempts_failed(const std::string& metrics) {
  return metric_value(metrics, "p2p_notifications_delivery_errors_total") +
         metric_value(metrics, "p2p_notifications_failed_total");
}

// An SMTP peer; `port` 0 picks a free one, a fixed port lets a test stop and restart it in place.
class SmtpPeer {
 public:
  explicit SmtpPeer(std::vector<std::string> args = {}, int port = 0) {
    args.insert(args.begin(), {"--port", std::to_string(port)});
    peer_ = std::make_unique<NodePeer>("smtp-server.mjs", args);
  }
  int port() const { return peer_->ready()["port"].get<int>(); }
  std::string control() const { return peer_->ready()["control"].get<std::string>(); }
  std::vector<json> messages() const {
    const auto result = http_get(control() + "/messages");
    const auto list = parse(result);
    EXPECT_TRUE(list.is_array()) << result.status << " " << result.body;
    return list.is_array() ? list.get<std::vector<json>>() : std::vector<json>{};
  }
  std::vector<json> rejections() const { return parse(http_get(control() + "/rejections")).get<std::vector<json>>(); }
  void reset() const { EXPECT_EQ(http_request("POST", control() + "/__control/reset").status, 200); }
  // Waits until at least `count` messages arrived, then returns them all.
  std::vector<json> wait_for(std::size_t count, std::chrono::milliseconds timeout = 10s) const {
    std::vector<json> current;
    eventually([&] { return (current = messages()).size() >= count; }, timeout);
    return current;
  }
  std::string log() const { return peer_->log(); }

 private:
  std::unique_ptr<NodePeer> peer_;
};

// The one recipient of a message's envelope ("" when it has not exactly one).
std::string recipient(const json& message) {
  const auto& rcpt = message["envelope"]["rcptTo"];
  return rcpt.size() == 1 ? rcpt[0].get<std::string>() : std::string();
}

std::map<std::string, json> by_recipient(const std::vector<json>& messages) {
  std::map<std::string, json> out;
  for (const auto& message : messages) out[recipient(message)] = message;
  return out;
}

std::multiset<std::string> recipients(const std::vector<json>& messages) {
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

class NotificationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fhir_ = std::make_unique<NodePeer>("fhir-server.mjs", std::vector<std::string>{"--quiet"});
  }
  static void TearDownTestSuite() { fhir_.reset(); }

  void SetUp() override {
    ASSERT_EQ(http_request("POST", fhir_origin() + "/__control/reset").status, 200);
  }

  void TearDown() override {
    services_.clear();
    for (const auto& path : files_) std::filesystem::remove_all(path);
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

  // A config file with fast delivery settings merged with `notifications` (for keys without env names).
  std::string config_file(const json& notifications = json::object()) {
    json config = {{"notifications",
                    {{"delivery", {{"initialBackoffSeconds", 1}, {"maxBackoffSeconds", 2}, {"pollIntervalMilliseconds", 200}}}}}};
    config["notifications"].merge_patch(notifications);
    const std::string path = "/tmp/" + database_.name() + "-notify-" + std::to_string(files_.size()) + ".json";
    std::ofstream(path) << config.dump();
    files_.push_back(path);
    return path;
  }

  // Starts an instance; waits for /readyz unless `expect_ready` is false.
  ServiceProcess& start_service(std::map<std::string, std::string> env, const json& notifications = json::object(),
                                bool expect_ready = true) {
    auto full = service_env(database_);
    for (auto& [key, value] : env) full[key] = value;
    services_.push_back(
        std::make_unique<ServiceProcess>(full, std::vector<std::string>{"--config", config_file(notifications)}));
    auto& service = *services_.back();
    if (expect_ready) {
      EXPECT_TRUE(service.wait_for("/readyz", 200)) << service.log();
    }
    return service;
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
  TestDatabase database_;
  std::vector<std::unique_ptr<ServiceProcess>> services_;
  std::vector<std::string> files_;
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

}  // namespace

// ---- the Subscription ----

TEST_F(NotificationTest, SeedsOneSubscriptionIdempotentlyAcrossRestartsInstancesAndSecretChanges) {
  SmtpPeer smtp;
  // A stray copy with the same tag (another id) is deleted; a foreign Subscription is left alone.
  json stray = {{"resourceType", "Subscription"}, {"id", "stray-copy"},
                {"meta", {{"tag", {{{"system", "urn:p2p-exchange:subscription"}, {"code", "add-payer-task"}}}}}},
                {"status", "active"}, {"reason", "an older deployment"}, {"criteria", "Task?code=x"},
                {"channel", {{"type", "rest-hook"}, {"endpoint", "http://old.example/hooks"}, {"payload", "application/fhir+json"}}}};
  json foreign = stray;
  foreign["id"] = "someone-elses";
  foreign.erase("meta");
  for (const auto& resource : {stray, foreign}) {
    const auto result = http_request("PUT", fhir_base() + "/Subscription/" + resource["id"].get<std::string>(), {kFhirJson}, resource.dump());
    ASSERT_TRUE(result.status == 200 || result.status == 201) << result.body;
  }

  auto& first = start_with(smtp);
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(http_port_) + kHookPath;
  json ours;
  ASSERT_TRUE(eventually([&] {
    auto all = subscriptions();
    bool stray_gone = true;
    ours = json();
    for (const auto& s : all) {
      if (s["id"] == "stray-copy") stray_gone = false;
      if (s["id"] == kSubscriptionId) ours = s;
    }
    return stray_gone && ours.is_object();
  }, 15s)) << json(subscriptions()).dump(2) << first.log();

  std::set<std::string> ids;
  for (const auto& s : subscriptions()) ids.insert(s["id"].get<std::string>());
  EXPECT_EQ(ids, (std::set<std::string>{kSubscriptionId, "someone-elses"}));
  EXPECT_EQ(ours["meta"]["tag"], json::parse(R"([{"system":"urn:p2p-exchange:subscription","code":"add-payer-task"}])"));
  EXPECT_EQ(ours["status"], "requested");
  EXPECT_EQ(ours["reason"], "p2p-exchange: e-mail admins and the member about add-payer requests");
  EXPECT_EQ(ours["criteria"], "Task?code=" + kCodeSystem + "|p2p-request-add-provider-id");
  EXPECT_EQ(ours["channel"], json({{"type", "rest-hook"}, {"endpoint", endpoint}, {"payload", "application/fhir+json"},
                                   {"header", {"X-P2P-Hook-Secret: " + kHookSecret}}}));
  const std::string version = ours["meta"]["versionId"];

  // Restart: the Subscription is read, found equal and not written again.
  first.send_signal(SIGTERM);
  ASSERT_EQ(first.wait_exit(10s), 0) << first.log();
  std::size_t seen = fhir_requests().size();
  auto& second = start_with(smtp);
  ASSERT_TRUE(eventually([&] { return !fhir_requests_since(seen, "/Subscription").empty(); }, 15s)) << second.log();
  // A second instance at the same time, on another port but the same public URL.
  auto env = notification_env(smtp.port());
  env["P2P_HTTP_PORT"] = std::to_string(ServiceProcess::free_port());
  auto& third = start_service(env);
  std::this_thread::sleep_for(2s);
  for (const auto& request : fhir_requests_since(seen, "/Subscription")) {
    EXPECT_EQ(request["method"], "GET") << "an unchanged Subscription is not rewritten: " << request.dump();
  }
  auto all = subscriptions();
  ASSERT_EQ(all.size(), 2u) << json(all).dump(2);
  for (const auto& s : all) {
    if (s["id"] == kSubscriptionId) {
      EXPECT_EQ(s["meta"]["versionId"], version);
    }
  }
  second.send_signal(SIGTERM);
  third.send_signal(SIGTERM);
  EXPECT_EQ(second.wait_exit(10s), 0);
  EXPECT_EQ(third.wait_exit(10s), 0);

  // A new secret: the same Subscription is updated in place.
  env = notification_env(smtp.port());
  env["P2P_HOOK_SECRET"] = "another-hook-secret-fedcba9876543210";
  auto& fourth = start_service(env);
  ASSERT_TRUE(eventually([&] {
    for (const auto& s : subscriptions()) {
      if (s["id"] == kSubscriptionId && s["channel"]["header"] == json({"X-P2P-Hook-Secret: another-hook-secret-fedcba9876543210"})) {
        return true;
      }
    }
    return false;
  }, 15s)) << json(subscriptions()).dump(2) << fourth.log();
  all = subscriptions();
  EXPECT_EQ(all.size(), 2u) << json(all).dump(2);
  for (const auto& s : all) {
    if (s["id"] != kSubscriptionId) continue;
    EXPECT_NE(s["meta"]["versionId"], version);
    EXPECT_EQ(s["criteria"], "Task?code=" + kCodeSystem + "|p2p-request-add-provider-id");
    EXPECT_EQ(s["channel"]["endpoint"], endpoint);
  }
  // The new secret is the hook's credential now; the old one is refused.
  const auto task = store_task(add_payer_task("secret-rotation"));
  EXPECT_EQ(deliver_create(fourth, task).status, 401);
  EXPECT_EQ(deliver_create(fourth, task, "X-P2P-Hook-Secret: another-hook-secret-fedcba9876543210").status, 200);
  EXPECT_EQ(fourth.log().find("another-hook-secret-fedcba9876543210"), std::string::npos) << "the hook secret is never logged";
}

TEST_F(NotificationTest, ASubscriptionThatWentAwayOrWasSwitchedOffIsWrittenAgain) {
  SmtpPeer smtp;
  auto& service = start_with(smtp, {{"subscriptionCheckSeconds", 1}});
  auto ours = [] {
    for (const auto& s : subscriptions()) {
      if (s["id"] == kSubscriptionId) return s;
    }
    return json();
  };
  ASSERT_TRUE(eventually([&] { return ours().is_object(); }, 15s)) << service.log();

  ASSERT_EQ(http_request("DELETE", fhir_base() + "/Subscription/" + kSubscriptionId).status, 200);
  ASSERT_TRUE(eventually([&] { return ours().is_object(); }, 10s)) << "re-created after it was deleted\n" << service.log();

  json off = ours();
  off["status"] = "off";
  ASSERT_EQ(http_request("PUT", fhir_base() + "/Subscription/" + kSubscriptionId, {kFhirJson}, off.dump()).status, 200);
  ASSERT_TRUE(eventually([&] { return ours()["status"] == "requested"; }, 10s))
      << "a Subscription set to off is written again as requested\n" << json(ours()).dump(2);
  EXPECT_EQ(subscriptions().size(), 1u);
}

TEST_F(NotificationTest, TheSubscriptionIsSeededWhenTheFhirServerComesUpAfterTheService) {
  SmtpPeer smtp;
  const int port = ServiceProcess::free_port();
  const std::string late_base = "http://127.0.0.1:" + std::to_string(port) + "/fhir";
  auto env = notification_env(smtp.port());
  env["P2P_FHIR_PERSISTENCE_URL"] = late_base;
  auto& service = start_service(env, {{"subscriptionCheckSeconds", 300}});
  ASSERT_TRUE(service.wait_for_log("cannot check the Subscription on the FHIR server", 15s)) << service.log();
  // The FHIR server starts only now; the service keeps retrying (4 s, then 8, 16, 32 s, then every
  // 60 s: at 4, 12, 28, 60, 120 s, ... after the first failure) until it is there. Wherever in that
  // schedule the server comes up, the next try is at most 60 s away.
  NodePeer late_fhir("fhir-server.mjs", {"--quiet", "--port", std::to_string(port)});
  const auto seeded = [&late_base] {
    const auto result = http_request("GET", late_base + "/Subscription/" + kSubscriptionId);
    return result.status == 200 && parse(result)["criteria"] == "Task?code=" + kCodeSystem + "|p2p-request-add-provider-id";
  };
  ASSERT_TRUE(eventually(seeded, 75s)) << service.log();
  EXPECT_TRUE(service.wait_for_log("the FHIR server is back; the Subscription is in place", 5s)) << service.log();
}

TEST_F(NotificationTest, NotificationsOffByDefaultServeNoHookAndWriteNoSubscription) {
  auto env = service_env(database_);
  env["P2P_FHIR_PERSISTENCE_URL"] = fhir_base();
  env["P2P_ALLOW_PLAIN_HTTP"] = "true";
  env["P2P_HOOK_SECRET"] = kHookSecret;  // set but unused while notifications are off
  services_.push_back(std::make_unique<ServiceProcess>(env));
  auto& service = *services_.back();
  ASSERT_TRUE(service.wait_for("/readyz", 200)) << service.log();
  const auto task = store_task(add_payer_task("off-task"));
  EXPECT_EQ(deliver_create(service, task).status, 404);
  EXPECT_EQ(http_request("POST", service.url(kHookPath), {kFhirJson, kSecretHeader}, task.dump()).status, 404);
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(fhir_requests_since(0, "/Subscription").empty()) << json(fhir_requests()).dump(2);
  EXPECT_TRUE(subscriptions().empty());
}

// ---- e-mails for a new request, redelivery, status changes ----

TEST_F(NotificationTest, ANewTaskSendsEachAdminTheRequestAndTheMemberAConfirmationExactlyOnce) {
  SmtpPeer smtp;
  auto& service = start_with(smtp);
  Member jane;
  Member john{"John", "Roe", "Beta Insurance", "john.roe@member.example", "5555550199", "other-member"};
  const auto task = store_task(add_payer_task("task-jane", jane));

  const auto created = deliver_create(service, task);
  ASSERT_EQ(created.status, 200) << created.body << service.log();
  EXPECT_EQ(created.header("content-type").rfind("application/json", 0), 0u) << created.header("content-type");
  EXPECT_EQ(parse(created), json({{"tasks", 1}, {"emailsQueued", 3}}));
  auto messages = smtp.wait_for(3);
  expect_new_request_emails(messages, "task-jane", jane);

  // Another member's request: their confirmation holds none of Jane's data, Jane's none of theirs.
  const auto other = store_task(add_payer_task("task-john", john));
  ASSERT_EQ(parse(deliver_create(service, other)), json({{"tasks", 1}, {"emailsQueued", 3}}));
  messages = smtp.wait_for(6);
  ASSERT_EQ(messages.size(), 6u);
  std::vector<json> johns(messages.begin() + 3, messages.end());
  expect_new_request_emails(johns, "task-john", john);
  const auto mail = by_recipient(messages);
  const std::string janes_raw = mail.at(jane.email)["raw"], johns_raw = mail.at(john.email)["raw"];
  for (const std::string& value : {john.first, john.last, john.email, john.phone, john.payer, john.patient, std::string("task-john")}) {
    EXPECT_EQ(janes_raw.find(value), std::string::npos) << value;
  }
  for (const std::string& value : {jane.first, jane.last, jane.email, jane.phone, jane.payer, jane.patient, std::string("task-jane")}) {
    EXPECT_EQ(johns_raw.find(value), std::string::npos) << value;
  }

  // The same delivery again, and as HAPI's update: nothing new.
  for (int i = 0; i < 2; ++i) {
    const auto again = deliver_create(service, task);
    EXPECT_EQ(again.status, 200) << again.body;
    EXPECT_EQ(parse(again), json({{"tasks", 1}, {"emailsQueued", 0}}));
  }
  const auto as_update = deliver_update(service, task);
  EXPECT_EQ(as_update.status, 200) << as_update.body;
  EXPECT_EQ(parse(as_update), json({{"tasks", 1}, {"emailsQueued", 0}}));
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(smtp.messages().size(), 6u);

  const auto text = metrics(service);
  EXPECT_EQ(metric_value(text, "p2p_notifications_sent_total"), 6) << text;
  EXPECT_EQ(metric_value(text, "p2p_notifications_failed_total"), 0) << text;
  EXPECT_EQ(metric_value(text, "p2p_notifications_pending"), 0) << text;
  EXPECT_NE(text.find("p2p_notifications_hooks_total{outcome=\"queued\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("p2p_notifications_hooks_total{outcome=\"duplicate\"} 3\n"), std::string::npos) << text;
  for (const auto& id : {"task-jane", "task-john"}) {
    EXPECT_NE(service.log().find(id), std::string::npos) << "the log names the Task id of every e-mail";
  }
}

TEST_F(NotificationTest, AStatusChangeSendsTheMemberOneUpdateAndALateOldVersionNothing) {
  SmtpPeer smtp;
  auto& service = start_with(smtp);
  const Member jane;
  auto task = store_task(add_payer_task("task-status", jane));
  ASSERT_EQ(parse(deliver_create(service, task)), json({{"tasks", 1}, {"emailsQueued", 3}}));
  ASSERT_EQ(smtp.wait_for(3).size(), 3u);
  smtp.reset();

  json accepted_task = task;
  accepted_task["status"] = "accepted";
  accepted_task.erase("meta");
  const auto accepted = store_task(accepted_task);
  ASSERT_NE(accepted["meta"]["versionId"], task["meta"]["versionId"]);
  const auto update = deliver_update(service, accepted);
  ASSERT_EQ(update.status, 200) << update.body;
  EXPECT_EQ(parse(update), json({{"tasks", 1}, {"emailsQueued", 1}}));
  auto messages = smtp.wait_for(1);
  ASSERT_EQ(messages.size(), 1u);
  const auto& message = messages[0];
  EXPECT_EQ(message["envelope"], json({{"mailFrom", kMailFrom}, {"rcptTo", {jane.email}}}));
  EXPECT_EQ(message["subject"], "Your request to add Acme Health Plan is now accepted");
  EXPECT_EQ(message["headers"].value("x-p2p-task-id", ""), "task-status");
  EXPECT_EQ(message["headers"].value("auto-submitted", ""), "auto-generated");
  EXPECT_EQ(normalized_body(message["text"]),
            "Dear Jane Doe,\n\nThe status of your request to add Acme Health Plan (reference task-status) changed from\n"
            "requested to accepted.");

  // Redelivery of the update: nothing.
  EXPECT_EQ(parse(deliver_update(service, accepted)), json({{"tasks", 1}, {"emailsQueued", 0}}));

  // Rejected with a reason: one more update, the reason in the body.
  json rejected_task = accepted;
  rejected_task.erase("meta");
  rejected_task["status"] = "rejected";
  rejected_task["statusReason"] = {{"text", "The payer is not part of the exchange."}};
  const auto rejected = store_task(rejected_task);
  EXPECT_EQ(parse(deliver_update(service, rejected)), json({{"tasks", 1}, {"emailsQueued", 1}}));
  messages = smtp.wait_for(2);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[1]["subject"], "Your request to add Acme Health Plan is now rejected");
  EXPECT_EQ(normalized_body(messages[1]["text"]),
            "Dear Jane Doe,\n\nThe status of your request to add Acme Health Plan (reference task-status) changed from\n"
            "accepted to rejected. The payer is not part of the exchange.");

  // The older versions arriving late (a FHIR server retrying): ignored. The Medplum peer's version
  // ids are UUIDs, so only meta.lastUpdated tells that they are older.
  EXPECT_EQ(parse(deliver_update(service, accepted)), json({{"tasks", 1}, {"emailsQueued", 0}}))
      << "accepted (lastUpdated " << accepted["meta"]["lastUpdated"] << ") after rejected ("
      << rejected["meta"]["lastUpdated"] << ")";
  EXPECT_EQ(parse(deliver_update(service, task)), json({{"tasks", 1}, {"emailsQueued", 0}}))
      << "requested (lastUpdated " << task["meta"]["lastUpdated"] << ") after rejected";
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(smtp.messages().size(), 2u);
}

TEST_F(NotificationTest, AnEmptyBodyNotificationReadsTheTaskFromTheFhirServer) {
  SmtpPeer smtp;
  auto& service = start_with(smtp);
  const Member jane;
  const auto task = store_task(add_payer_task("task-empty-body", jane));
  const std::size_t seen = fhir_requests().size();
  const auto result = http_request("POST", service.url(kHookPath + "/Task/task-empty-body"), {kSecretHeader});
  ASSERT_EQ(result.status, 200) << result.body << service.log();
  EXPECT_EQ(parse(result), json({{"tasks", 1}, {"emailsQueued", 3}}));
  const auto reads = fhir_requests_since(seen, "/Task/task-empty-body");
  ASSERT_FALSE(reads.empty());
  EXPECT_EQ(reads[0]["method"], "GET");
  expect_new_request_emails(smtp.wait_for(3), "task-empty-body", jane);

  // An empty notification for a Task the FHIR server does not have: nothing queued (the answer is
  // not fixed by the spec: 502 or a 200 with nothing queued both keep the promise).
  const auto missing = http_request("POST", service.url(kHookPath + "/Task/no-such-task"), {kSecretHeader});
  if (missing.status == 200) {
    EXPECT_EQ(parse(missing)["emailsQueued"], 0) << missing.body;
  }
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(smtp.messages().size(), 3u);
}

TEST_F(NotificationTest, ABundleAtTheBasePathQueuesEveryAddPayerTaskAndIgnoresOthers) {
  SmtpPeer smtp;
  auto& service = start_with(smtp);
  Member jane;
  Member john{"John", "Roe", "Beta Insurance", "john.roe@member.example", "5555550199", "other-member"};
  json other_task = {{"resourceType", "Task"}, {"id", "not-add-payer"}, {"status", "requested"}, {"intent", "order"},
                     {"code", {{"coding", {{{"system", "http://example.org/codes"}, {"code", "something-else"}}}}}}};
  const json bundle = {{"resourceType", "Bundle"}, {"type", "collection"},
                       {"entry", {{{"resource", store_task(add_payer_task("bundle-jane", jane))}},
                                  {{"resource", store_task(add_payer_task("bundle-john", john))}},
                                  {{"resource", store_task(other_task)}}}}};
  const auto result = http_request("POST", service.url(kHookPath), {kFhirJson, kSecretHeader}, bundle.dump());
  ASSERT_EQ(result.status, 200) << result.body;
  EXPECT_EQ(parse(result)["emailsQueued"], 6);
  const auto messages = smtp.wait_for(6);
  ASSERT_EQ(messages.size(), 6u);
  EXPECT_EQ(recipients(messages), (std::multiset<std::string>{kAdminOne, kAdminOne, kAdminTwo, kAdminTwo, jane.email, john.email}));

  // A Task without the add-payer code alone: ignored, nothing queued.
  const auto ignored = deliver_update(service, store_task(other_task));
  EXPECT_EQ(ignored.status, 200) << ignored.body;
  EXPECT_EQ(parse(ignored)["emailsQueued"], 0);
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(smtp.messages().size(), 6u);
}

// ---- hostile deliveries ----

TEST_F(NotificationTest, AMissingOrWrongSecretIs401AndSendsNothing) {
  SmtpPeer smtp;
  auto& service = start_with(smtp);
  const auto task = store_task(add_payer_task("task-secret"));
  const std::size_t seen = fhir_requests().size();
  EXPECT_EQ(deliver_create(service, task, "").status, 401);
  EXPECT_EQ(deliver_create(service, task, "X-P2P-Hook-Secret: wrong-secret-0123456789abcdef").status, 401);
  EXPECT_EQ(deliver_create(service, task, "X-P2P-Hook-Secret: " + kHookSecret.substr(0, 16)).status, 401);
  EXPECT_EQ(deliver_create(service, task, "X-P2P-Hook-Secret: " + kHookSecret + "x").status, 401);
  EXPECT_EQ(http_request("POST", service.url(kHookPath + "/Task/task-secret")).status, 401) << "empty body, no secret";
  EXPECT_TRUE(fhir_requests_since(seen, "/Task/").empty()) << "nothing is read for an unauthorized notification";
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(smtp.messages().empty());
  EXPECT_NE(metrics(service).find("p2p_notifications_hooks_total{outcome=\"unauthorized\"} 5\n"), std::string::npos)
      << metrics(service);
  // Nothing was recorded either: the real delivery queues the full set.
  EXPECT_EQ(parse(deliver_create(service, task)), json({{"tasks", 1}, {"emailsQueued", 3}}));
  EXPECT_EQ(smtp.wait_for(3).size(), 3u);
}

// Issue #9 (11): the hook secret lets a caller say "this Task changed", not what the Task says. A
// forged body (right secret, the id of a real Task, another recipient) e-mails the Task as the FHIR
// server holds it; a body naming a Task the server does not have e-mails nobody.
TEST_F(NotificationTest, AForgedBodyCannotChooseTheRecipientsTheTaskIsReadBackByItsId) {
  SmtpPeer smtp;
  auto& service = start_with(smtp);
  Member jane;
  const auto stored = store_task(add_payer_task("task-forged", jane));
  Member mallory{"Mallory", "Forger", "Evil Plan", "mallory@attacker.example", "5555550666", "example-member"};
  json forged = add_payer_task("task-forged", mallory);
  forged["meta"] = stored["meta"];
  const std::size_t seen = fhir_requests().size();
  const auto result = deliver_create(service, forged);
  ASSERT_EQ(result.status, 200) << result.body << service.log();
  EXPECT_EQ(parse(result), json({{"tasks", 1}, {"emailsQueued", 3}}));
  EXPECT_EQ(fhir_requests_since(seen, "/Task/task-forged").size(), 1u) << "read back by its id";
  const auto messages = smtp.wait_for(3);
  expect_new_request_emails(messages, "task-forged", jane);
  for (const auto& message : messages) {
    const std::string raw = message["raw"];
    for (const std::string& value : {mallory.email, mallory.first, mallory.last, mallory.payer, mallory.phone}) {
      EXPECT_EQ(raw.find(value), std::string::npos) << value << " from the forged body reached an e-mail";
    }
  }

  // A Task the FHIR server does not have: nobody is e-mailed, and the delivery is not an error.
  const auto unknown = deliver_create(service, add_payer_task("task-never-stored", mallory));
  ASSERT_EQ(unknown.status, 200) << unknown.body;
  EXPECT_EQ(parse(unknown), json({{"tasks", 0}, {"emailsQueued", 0}}));
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(smtp.messages().size(), 3u);
  EXPECT_TRUE(service.wait_for_log("the FHIR server has no Task task-never-stored")) << service.log();

  // Each Task named is one read from the FHIR server: a delivery may name at most 100 (once each).
  json bundle = {{"resourceType", "Bundle"}, {"type", "history"}, {"entry", json::array()}};
  for (int i = 0; i < 101; ++i) {
    bundle["entry"].push_back({{"resource", add_payer_task("task-flood-" + std::to_string(i), mallory)}});
  }
  const std::size_t before_flood = fhir_requests().size();
  const auto flood = deliver_create(service, bundle);
  EXPECT_EQ(flood.status, 413) << flood.body;
  EXPECT_NE(flood.body.find("a delivery may name at most 100 Tasks"), std::string::npos) << flood.body;
  EXPECT_TRUE(fhir_requests_since(before_flood, "/Task/").empty()) << "nothing read for a refused delivery";
}

TEST_F(NotificationTest, MalformedBodiesAre400ProblemsAndSendNothing) {
  SmtpPeer smtp;
  auto& service = start_with(smtp);
  json without_id = add_payer_task("x");
  without_id.erase("id");
  const json patient = {{"resourceType", "Patient"}, {"id", "p1"}};
  const std::vector<std::pair<std::string, std::string>> cases = {
      {kHookPath + "/Task", "{not json"},
      {kHookPath + "/Task", "[]"},
      {kHookPath + "/Task", "\"a string\""},
      {kHookPath + "/Task", patient.dump()},
      {kHookPath, patient.dump()},
      {kHookPath + "/Task", without_id.dump()},
      {kHookPath + "/Task/other-id", add_payer_task("task-mismatch").dump()},
      {kHookPath + "/Task", std::string("{\"resourceType\":\"Task\",\"id\":\"a\"") + std::string(1, '\0') + "}"},
  };
  for (const auto& [path, body] : cases) {
    SCOPED_TRACE(path + " " + body);
    const auto result = http_request("POST", service.url(path), {kFhirJson, kSecretHeader}, body);
    EXPECT_EQ(result.status, 400) << result.body;
    EXPECT_EQ(result.header("content-type"), "application/problem+json");
    const auto problem = parse(result);
    EXPECT_EQ(problem.value("status", 0), 400) << result.body;
    EXPECT_FALSE(problem.value("detail", "").empty()) << result.body;
  }
  // The same as PUT (HAPI's update delivery) with an id that contradicts the path.
  const auto put = http_request("PUT", service.url(kHookPath + "/Task/other-id"), {kFhirJson, kSecretHeader},
                                add_payer_task("task-mismatch").dump());
  EXPECT_EQ(put.status, 400) << put.body;
  EXPECT_EQ(put.header("content-type"), "application/problem+json");
  EXPECT_EQ(http_get(service.url("/healthz")).status, 200);
  EXPECT_TRUE(service.running());
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(smtp.messages().empty());
  EXPECT_NE(metrics(service).find("p2p_notifications_hooks_total{outcome=\"invalid\"} 9\n"), std::string::npos)
      << metrics(service);
}

TEST_F(NotificationTest, CrLfInTaskValuesCannotInjectHeadersRecipientsOrHtml) {
  SmtpPeer smtp;
  auto& service = start_with(smtp);
  Member eve;
  eve.first = "Eve\r\nBcc: victim@evil.example";
  eve.last = "Doe\nX-Injected: yes";
  eve.payer = "Evil Payer\r\n\r\n<script>alert(1)</script>";
  eve.email = "eve@member.example";
  eve.phone = "555\r\nCc: other@evil.example";
  const auto task = store_task(add_payer_task("task-inject", eve));
  const auto result = deliver_create(service, task);
  ASSERT_EQ(result.status, 200) << result.body;
  EXPECT_EQ(parse(result), json({{"tasks", 1}, {"emailsQueued", 3}}));
  const auto messages = smtp.wait_for(3);
  std::this_thread::sleep_for(1s);
  ASSERT_EQ(smtp.messages().size(), 3u);
  EXPECT_EQ(recipients(messages), (std::multiset<std::string>{kAdminOne, kAdminTwo, eve.email}));
  // docs/notifications.md: a run of control characters and spaces becomes one space.
  const std::string admin_subject =
      "Add payer request task-inject: Eve Bcc: victim@evil.example Doe X-Injected: yes asks to add Evil Payer "
      "<script>alert(1)</script>";
  for (const auto& message : messages) {
    SCOPED_TRACE(recipient(message));
    EXPECT_EQ(message["envelope"]["rcptTo"].size(), 1u);
    EXPECT_FALSE(message["headers"].contains("bcc"));
    EXPECT_FALSE(message["headers"].contains("cc"));
    EXPECT_FALSE(message["headers"].contains("x-injected"));
    for (const auto& line : message["rawHeaders"]) {
      const std::string name = lower(line.get<std::string>().substr(0, line.get<std::string>().find(':')));
      EXPECT_TRUE(name != "bcc" && name != "cc" && name != "x-injected") << line;
    }
    EXPECT_TRUE(message["headers"]["subject"].is_string()) << "exactly one Subject header";
    const std::string subject = message["subject"];
    EXPECT_EQ(subject.find_first_of("\r\n"), std::string::npos) << subject;
    EXPECT_TRUE(message["headers"]["content-type"].is_string()) << "exactly one Content-Type header";
    EXPECT_EQ(lower(message.value("contentType", "")), "text/plain; charset=utf-8");
    EXPECT_EQ(message["html"], false);
    EXPECT_EQ(lower(message["raw"].get<std::string>()).find("text/html"), std::string::npos);
    EXPECT_EQ(lower(message["raw"].get<std::string>()).find("multipart"), std::string::npos);
    if (recipient(message) != eve.email) {
      EXPECT_EQ(subject, admin_subject);
      const std::string body = normalized_body(message["text"]);
      EXPECT_NE(body.find("Member:      Eve Bcc: victim@evil.example Doe X-Injected: yes\n"), std::string::npos) << body;
      EXPECT_NE(body.find("Phone:       555 Cc: other@evil.example\n"), std::string::npos) << body;
      EXPECT_NE(body.find("New payer:   Evil Payer <script>alert(1)</script>\n"), std::string::npos)
          << "plain text, neither HTML-escaped nor interpreted: " << body;
    } else {
      EXPECT_EQ(subject, "We received your request to add Evil Payer <script>alert(1)</script>");
    }
  }
}

TEST_F(NotificationTest, AnInvalidMemberAddressSkipsTheMemberButNotTheAdmins) {
  SmtpPeer smtp;
  auto& service = start_with(smtp);
  Member bad;
  bad.email = "not-an-address";
  const auto first = deliver_create(service, store_task(add_payer_task("task-bad-address", bad)));
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(parse(first), json({{"tasks", 1}, {"emailsQueued", 2}}));
  Member smuggler;
  smuggler.email = "a@b.example\r\nRCPT TO:<x@evil.example>";
  const auto second = deliver_create(service, store_task(add_payer_task("task-smuggled-rcpt", smuggler)));
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(parse(second), json({{"tasks", 1}, {"emailsQueued", 2}}));
  const auto messages = smtp.wait_for(4);
  std::this_thread::sleep_for(1s);
  ASSERT_EQ(smtp.messages().size(), 4u);
  EXPECT_EQ(recipients(messages), (std::multiset<std::string>{kAdminOne, kAdminOne, kAdminTwo, kAdminTwo}));
  for (const auto& message : messages) {
    EXPECT_EQ(message["raw"].get<std::string>().find("\nRCPT TO"), std::string::npos) << "never a line of its own";
  }
  // The admins still see what the member typed, made harmless.
  for (const auto& message : messages) {
    const std::string body = normalized_body(message["text"]);
    if (message["headers"].value("x-p2p-task-id", "") == "task-bad-address") {
      EXPECT_NE(body.find("E-mail:      not-an-address\n"), std::string::npos) << body;
    } else {
      // On one line (the exact spacing is checked in CrLfInTaskValuesCannotInjectHeadersRecipientsOrHtml).
      EXPECT_TRUE(std::regex_search(body, std::regex("\nE-mail: +a@b\\.example +RCPT TO:<x@evil\\.example>\n"))) << body;
    }
  }
  EXPECT_EQ(metric_value(metrics(service), "p2p_notifications_failed_total"), 0);
}

TEST_F(NotificationTest, AnInvalidAdminAddressStopsTheServiceNamingTheKey) {
  SmtpPeer smtp;
  auto env = notification_env(smtp.port());
  env["P2P_MAIL_ADMINS"] = kAdminOne + ",not an address";
  auto& service = start_service(env, json::object(), false);
  EXPECT_EQ(service.wait_exit(15s), 2) << service.log();
  EXPECT_NE(service.log().find("notifications.mail.admins"), std::string::npos) << service.log();
  EXPECT_TRUE(subscriptions().empty());
}

// ---- delivery: outages, crashes, TLS, failures ----

TEST_F(NotificationTest, MailQueuedWhileTheSmtpServerIsDownIsDeliveredOnceWhenItComesBack) {
  const int smtp_port = ServiceProcess::free_port();
  auto smtp = std::make_unique<SmtpPeer>(std::vector<std::string>{"--quiet"}, smtp_port);
  auto& service = start_with(*smtp);
  smtp.reset();  // down

  const Member jane;
  const auto result = deliver_create(service, store_task(add_payer_task("task-outage", jane)));
  ASSERT_EQ(result.status, 200) << result.body;
  EXPECT_EQ(parse(result), json({{"tasks", 1}, {"emailsQueued", 3}}));
  ASSERT_TRUE(eventually([&] { return metric_value(metrics(service), "p2p_notifications_pending") >= 1; }, 10s))
      << metrics(service);
  ASSERT_TRUE(eventually([&] { return metric_value(metrics(service), "p2p_notifications_delivery_errors_total") >= 1; }, 10s))
      << metrics(service);
  EXPECT_EQ(metric_value(metrics(service), "p2p_notifications_sent_total"), 0);

  smtp = std::make_unique<SmtpPeer>(std::vector<std::string>{"--quiet"}, smtp_port);  // up again, same port
  auto messages = smtp->wait_for(3, 20s);
  std::this_thread::sleep_for(2s);
  messages = smtp->messages();
  expect_new_request_emails(messages, "task-outage", jane);
  ASSERT_TRUE(eventually([&] { return metric_value(metrics(service), "p2p_notifications_pending") == 0; }, 5s))
      << metrics(service);
  const auto text = metrics(service);
  EXPECT_EQ(metric_value(text, "p2p_notifications_sent_total"), 3) << text;
  EXPECT_EQ(metric_value(text, "p2p_notifications_failed_total"), 0) << text;
}

TEST_F(NotificationTest, AnOutboxRowPendingWhenTheServiceIsKilledIsDeliveredOnceAfterRestart) {
  // The first retry comes 12-18 s after the first attempt (15 s, +-20 % jitter): the kill below lands
  // while every row waits for it, not in the instant a row is leased (that would hold the row for the
  // whole lease, minutes; covered on PostgreSQL by
  // NotificationOutboxStore.AnExpiredLeaseIsTakenOverAndAReleasedRowIsFreeAtOnce).
  const json slow_retry = {{"delivery", {{"initialBackoffSeconds", 15}, {"maxBackoffSeconds", 15}}}};
  const int smtp_port = ServiceProcess::free_port();
  auto smtp = std::make_unique<SmtpPeer>(std::vector<std::string>{"--quiet"}, smtp_port);
  auto& service = start_with(*smtp, slow_retry);
  smtp.reset();  // down

  const Member jane;
  const auto result = deliver_create(service, store_task(add_payer_task("task-crash", jane)));
  ASSERT_EQ(result.status, 200) << result.body;
  EXPECT_EQ(parse(result), json({{"tasks", 1}, {"emailsQueued", 3}}));
  // Killed while the rows wait for their retry (each attempted once against the dead SMTP server).
  ASSERT_TRUE(eventually([&] { return metric_value(metrics(service), "p2p_notifications_delivery_errors_total") >= 3; }, 15s))
      << metrics(service);
  service.send_signal(SIGKILL);
  ASSERT_EQ(service.wait_exit(10s), 128 + SIGKILL);

  smtp = std::make_unique<SmtpPeer>(std::vector<std::string>{"--quiet"}, smtp_port);
  auto& restarted = start_with(*smtp, slow_retry);
  smtp->wait_for(3, 40s);  // the rows are due at their retry time, up to 18 s after the first attempt
  std::this_thread::sleep_for(2s);
  expect_new_request_emails(smtp->messages(), "task-crash", jane);
  EXPECT_EQ(metric_value(metrics(restarted), "p2p_notifications_sent_total"), 3) << metrics(restarted);
  // The redelivery HAPI makes after a crash (it never got an answer it trusted) sends nothing new.
  EXPECT_EQ(parse(deliver_create(restarted, store_task(add_payer_task("task-crash", jane)))),
            json({{"tasks", 1}, {"emailsQueued", 0}}));
}

TEST_F(NotificationTest, StartTlsWithAuthDeliversEncryptedAndKeepsSecretsOutOfTheLog) {
  TestCertificate certificate;
  SmtpPeer smtp({"--starttls", "--cert", certificate.cert, "--key", certificate.key, "--auth", kSmtpUser + ":" + kSmtpPassword});
  auto env = notification_env(smtp.port());
  env["P2P_SMTP_STARTTLS"] = "required";
  env["P2P_SMTP_USER"] = kSmtpUser;
  env["P2P_SMTP_PASSWORD"] = kSmtpPassword;
  env["P2P_LOG_LEVEL"] = "debug";
  auto& service = start_service(env, {{"smtp", {{"caFile", certificate.cert}}}});
  const Member jane;
  ASSERT_EQ(parse(deliver_create(service, store_task(add_payer_task("task-tls", jane)))),
            json({{"tasks", 1}, {"emailsQueued", 3}}));
  const auto messages = smtp.wait_for(3);
  expect_new_request_emails(messages, "task-tls", jane);
  for (const auto& message : messages) {
    EXPECT_EQ(message["secure"], true);
    EXPECT_EQ(message["authUser"], kSmtpUser);
  }
  service.send_signal(SIGTERM);
  EXPECT_EQ(service.wait_exit(10s), 0);
  const std::string log = service.log();
  EXPECT_EQ(log.find(kSmtpPassword), std::string::npos) << "the SMTP password is never logged";
  EXPECT_EQ(log.find(kHookSecret), std::string::npos) << "the hook secret is never logged";
  // Nor in AUTH PLAIN's base64 form ("\0user\0password").
  const std::string plain = std::string(1, '\0') + kSmtpUser + std::string(1, '\0') + kSmtpPassword;
  const std::string encoded = p2p::crypto::base64_encode(plain);
  EXPECT_EQ(log.find(encoded), std::string::npos);
  EXPECT_EQ(log.find(p2p::crypto::base64_encode(kSmtpPassword)), std::string::npos);
}

TEST_F(NotificationTest, StartTlsRequiredRefusesAServerWithoutItAndAnUntrustedCertificate) {
  // Required STARTTLS against a server that does not offer it: nothing in the clear.
  SmtpPeer plain;
  auto env = notification_env(plain.port());
  env["P2P_SMTP_STARTTLS"] = "required";
  auto& service = start_service(env);
  ASSERT_EQ(parse(deliver_create(service, store_task(add_payer_task("task-no-tls")))),
            json({{"tasks", 1}, {"emailsQueued", 3}}));
  // Retried or given up on (the spec names neither for TLS failures), never sent.
  ASSERT_TRUE(eventually([&] { return attempts_failed(metrics(service)) >= 1; }, 10s))
      << metrics(service) << service.log();
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(plain.messages().empty());
  EXPECT_EQ(metric_value(metrics(service), "p2p_notifications_sent_total"), 0);
  service.send_signal(SIGTERM);
  ASSERT_EQ(service.wait_exit(10s), 0);

  // STARTTLS offered with a certificate the service does not trust (no caFile): nothing is sent.
  TestCertificate certificate;
  SmtpPeer untrusted({"--starttls", "--cert", certificate.cert, "--key", certificate.key});
  env = notification_env(untrusted.port());
  env["P2P_SMTP_STARTTLS"] = "required";
  auto& second = start_service(env);
  ASSERT_EQ(parse(deliver_create(second, store_task(add_payer_task("task-untrusted")))),
            json({{"tasks", 1}, {"emailsQueued", 3}}));
  // Retried or given up on (the spec names neither for TLS failures), never sent.
  ASSERT_TRUE(eventually([&] { return attempts_failed(metrics(second)) >= 1; }, 10s))
      << metrics(second) << second.log();
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(untrusted.messages().empty());
  EXPECT_EQ(metric_value(metrics(second), "p2p_notifications_sent_total"), 0);
}

TEST_F(NotificationTest, ImplicitTlsDeliversOverSmtps) {
  TestCertificate certificate;
  SmtpPeer smtp({"--implicit-tls", "--cert", certificate.cert, "--key", certificate.key});
  auto env = notification_env(smtp.port());
  env["P2P_SMTP_URL"] = "smtps://127.0.0.1:" + std::to_string(smtp.port());
  env.erase("P2P_SMTP_STARTTLS");
  auto& service = start_service(env, {{"smtp", {{"caFile", certificate.cert}}}});
  const Member jane;
  ASSERT_EQ(parse(deliver_create(service, store_task(add_payer_task("task-smtps", jane)))),
            json({{"tasks", 1}, {"emailsQueued", 3}}));
  const auto messages = smtp.wait_for(3);
  expect_new_request_emails(messages, "task-smtps", jane);
  for (const auto& message : messages) {
    EXPECT_EQ(message["secure"], true);
    EXPECT_TRUE(message["authUser"].is_null());
  }
}

TEST_F(NotificationTest, ARejectedRecipientFailsAloneAndIsLoggedWithTheTaskId) {
  SmtpPeer smtp({"--reject-rcpt", kAdminTwo});
  auto& service = start_with(smtp);
  const Member jane;
  ASSERT_EQ(parse(deliver_create(service, store_task(add_payer_task("task-rejected-rcpt", jane)))),
            json({{"tasks", 1}, {"emailsQueued", 3}}));
  const auto messages = smtp.wait_for(2);
  ASSERT_TRUE(eventually([&] { return metric_value(metrics(service), "p2p_notifications_failed_total") == 1; }, 10s))
      << metrics(service);
  std::this_thread::sleep_for(3s);  // longer than the backoff: a permanent failure is not retried
  EXPECT_EQ(recipients(smtp.messages()), (std::multiset<std::string>{kAdminOne, jane.email}));
  const auto rejections = smtp.rejections();
  ASSERT_EQ(rejections.size(), 1u) << json(rejections).dump(2);
  EXPECT_EQ(rejections[0]["address"], kAdminTwo);
  const auto text = metrics(service);
  EXPECT_EQ(metric_value(text, "p2p_notifications_sent_total"), 2) << text;
  EXPECT_EQ(metric_value(text, "p2p_notifications_failed_total"), 1) << text;
  EXPECT_EQ(metric_value(text, "p2p_notifications_pending"), 0) << text;
  bool logged = false;
  std::istringstream lines(service.log());
  for (std::string line; std::getline(lines, line);) {
    if (line.find("task-rejected-rcpt") != std::string::npos && lower(line).find("fail") != std::string::npos) logged = true;
  }
  EXPECT_TRUE(logged) << service.log();
}

TEST_F(NotificationTest, ATemporaryRejectionIsRetriedAndDeliveredOnce) {
  SmtpPeer smtp({"--temp-fail", "1"});
  auto& service = start_with(smtp);
  const Member jane;
  ASSERT_EQ(parse(deliver_create(service, store_task(add_payer_task("task-451", jane)))),
            json({{"tasks", 1}, {"emailsQueued", 3}}));
  smtp.wait_for(3, 15s);
  std::this_thread::sleep_for(2s);
  expect_new_request_emails(smtp.messages(), "task-451", jane);
  const auto rejections = smtp.rejections();
  ASSERT_EQ(rejections.size(), 1u);
  EXPECT_EQ(rejections[0]["code"], 451);
  const auto text = metrics(service);
  EXPECT_EQ(metric_value(text, "p2p_notifications_sent_total"), 3) << text;
  EXPECT_EQ(metric_value(text, "p2p_notifications_delivery_errors_total"), 1) << text;
  EXPECT_EQ(metric_value(text, "p2p_notifications_failed_total"), 0) << text;
}
