// Add-payer notifications end to end: hostile and malformed deliveries.
// (the fixture and the peers: notifications_fixture.hpp).
#include "notifications_fixture.hpp"

using nlohmann::json;
using namespace p2p::test;
using namespace std::chrono_literals;

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
