// Add-payer notifications end to end: delivery through SMTP outages, crashes, TLS and rejections.
// (the fixture and the peers: notifications_fixture.hpp).
#include "notifications_fixture.hpp"

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

using nlohmann::json;
using namespace p2p::test;
using namespace std::chrono_literals;

// ---- the metrics: every one the service declares is in the operators' table, and nothing else ----

TEST_F(NotificationTest, TheOperationsGuideListsExactlyTheMetricsTheServiceDeclares) {
  SmtpPeer smtp;
  auto& service = start_with(smtp);  // notifications on: every module's metrics are declared
  std::set<std::string> served;
  std::istringstream text(metrics(service));
  for (std::string line; std::getline(text, line);) {
    if (line.starts_with("# TYPE ")) served.insert(line.substr(7, line.find(' ', 7) - 7));
  }
  std::ifstream guide(std::string(P2P_SOURCE_DIR) + "/docs/operations.md");
  std::set<std::string> documented;
  bool in_section = false;
  const std::regex name("`(p2p_[a-z_]+)");
  for (std::string line; std::getline(guide, line);) {
    if (line.starts_with("## ")) in_section = line == "## Metrics to watch";
    if (!in_section || !line.starts_with("| `p2p_")) continue;
    const std::string first_cell = line.substr(0, line.find(" | "));
    for (std::sregex_iterator at(first_cell.begin(), first_cell.end(), name), end; at != end; ++at) {
      documented.insert((*at)[1]);
    }
  }
  EXPECT_GE(served.size(), 15u) << metrics(service);  // (the parse found them: 19 today)
  EXPECT_EQ(served, documented) << "docs/operations.md \"Metrics to watch\" and GET /metrics differ";
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
