// The notifications section of the configuration: defaults, environment names, and every refusal.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config_issues.hpp"
#include "p2p/config/config.hpp"

using nlohmann::json;
using p2p::config::ConfigError;
using p2p::config::Environment;
using p2p::config::parse_config;
using p2p::test::issues_of;

namespace {

const std::string kTokenKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

Environment enabled_env() {
  return {{"P2P_API_KEYS", "0123456789abcdef-key"},
          {"P2P_TOKEN_ENCRYPTION_KEY", kTokenKey},
          {"P2P_FHIR_PERSISTENCE_URL", "https://fhir.payer.example/fhir"},
          {"P2P_NOTIFICATIONS_ENABLED", "true"},
          {"P2P_PUBLIC_BASE_URL", "https://p2p.payer.example/"},
          {"P2P_HOOK_SECRET", "hook-secret-0123456789"},
          {"P2P_SMTP_URL", "smtp://mail.payer.example:587"},
          {"P2P_SMTP_USER", "mailer"},
          {"P2P_SMTP_PASSWORD", "smtp-password"},
          {"P2P_MAIL_FROM", "p2p@payer.example"},
          {"P2P_MAIL_ADMINS", "one@payer.example, two@payer.example"}};
}

bool mentions(const std::vector<std::string>& issues, const std::string& text) {
  for (const auto& issue : issues) {
    if (issue.find(text) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST(NotificationsConfig, OffByDefaultWithDefaultTemplates) {
  const auto config = parse_config(json::object(), {{"P2P_API_KEYS", "0123456789abcdef-key"}, {"P2P_TOKEN_ENCRYPTION_KEY", kTokenKey}});
  EXPECT_FALSE(config.notifications.enabled);
  EXPECT_EQ(config.notifications.member_confirmation.subject, "We received your request to add {{newPayerName}}");
  EXPECT_EQ(config.notifications.max_attempts, 12);
  EXPECT_TRUE(config.notifications.smtp.start_tls);
}

TEST(NotificationsConfig, EveryPublicEnvironmentNameIsRead) {
  const auto config = parse_config(json::object(), enabled_env());
  const auto& n = config.notifications;
  EXPECT_TRUE(n.enabled);
  EXPECT_EQ(n.public_base_url, "https://p2p.payer.example");  // trailing slash dropped
  EXPECT_EQ(n.hook_secret, "hook-secret-0123456789");
  EXPECT_EQ(n.smtp.url, "smtp://mail.payer.example:587");
  EXPECT_EQ(n.smtp.user, "mailer");
  EXPECT_EQ(n.smtp.password, "smtp-password");
  EXPECT_EQ(n.mail_from, "p2p@payer.example");
  EXPECT_EQ(n.mail_admins, (std::vector<std::string>{"one@payer.example", "two@payer.example"}));
}

TEST(NotificationsConfig, TemplatesAndDeliveryFromTheFile) {
  const json document = {{"notifications",
                          {{"delivery", {{"maxAttempts", 3}, {"initialBackoffSeconds", 1}, {"maxBackoffSeconds", 2}}},
                           {"smtp", {{"startTls", "off"}, {"user", ""}}},
                           {"templates", {{"memberConfirmation", {{"subject", "Thanks {{firstName}}"}}}}}}}};
  auto env = enabled_env();
  env.erase("P2P_SMTP_USER");
  const auto config = parse_config(document, env);
  EXPECT_EQ(config.notifications.max_attempts, 3);
  EXPECT_FALSE(config.notifications.smtp.start_tls);
  EXPECT_EQ(config.notifications.member_confirmation.subject, "Thanks {{firstName}}");
  EXPECT_EQ(config.notifications.member_confirmation.body.substr(0, 22), "Dear {{firstName}} {{l");  // default kept
}

TEST(NotificationsConfig, WhatEnablingNeedsIsNamed) {
  const auto issues = issues_of(json::object(), {{"P2P_API_KEYS", "0123456789abcdef-key"},
                                                 {"P2P_TOKEN_ENCRYPTION_KEY", kTokenKey},
                                                 {"P2P_NOTIFICATIONS_ENABLED", "true"}});
  EXPECT_TRUE(mentions(issues, "notifications.publicBaseUrl: is required when notifications.enabled is true"));
  EXPECT_TRUE(mentions(issues, "notifications.smtp.url: is required"));
  EXPECT_TRUE(mentions(issues, "notifications.mail.from: is required"));
  EXPECT_TRUE(mentions(issues, "exchange.fhirPersistenceUrl: is required"));
  EXPECT_TRUE(mentions(issues, "notifications.hookSecret: must be at least 16 characters"));
}

TEST(NotificationsConfig, BadValuesAreRefusedWithTheirKey) {
  auto env = enabled_env();
  env["P2P_MAIL_ADMINS"] = "ok@payer.example,not-an-address";
  env["P2P_MAIL_FROM"] = "P2P <p2p@payer.example>";
  env["P2P_SMTP_URL"] = "http://mail.payer.example";
  env["P2P_SMTP_STARTTLS"] = "maybe";
  env["P2P_HOOK_SECRET"] = "has spaces in the secret";
  const json document = {{"notifications", {{"templates", {{"adminRequest", {{"body", "{{memberName}}"}}}}}}}};
  const auto issues = issues_of(document, env);
  EXPECT_TRUE(mentions(issues, "notifications.mail.admins[1] (from P2P_MAIL_ADMINS): \"not-an-address\" is not a valid e-mail address"))
      << ::testing::PrintToString(issues);
  EXPECT_TRUE(mentions(issues, "notifications.mail.from (from P2P_MAIL_FROM): \"P2P <p2p@payer.example>\" is not a valid"));
  EXPECT_TRUE(mentions(issues, "notifications.smtp.url (from P2P_SMTP_URL): must be smtp://host:port"));
  EXPECT_TRUE(mentions(issues, "notifications.smtp.startTls (from P2P_SMTP_STARTTLS): must be \"required\" or \"off\""));
  EXPECT_TRUE(mentions(issues, "notifications.hookSecret (from P2P_HOOK_SECRET): must be printable ASCII without spaces"));
  EXPECT_TRUE(mentions(issues, "notifications.templates.adminRequest.body: has an unknown placeholder {{memberName}}"));
}

TEST(NotificationsConfig, APasswordIsNeverSentInClear) {
  auto env = enabled_env();
  env["P2P_SMTP_STARTTLS"] = "off";
  EXPECT_TRUE(mentions(issues_of(json::object(), env), "notifications.smtp.startTls (from P2P_SMTP_STARTTLS): is \"off\" while"));
  env["P2P_SMTP_URL"] = "smtps://mail.payer.example:465";  // implicit TLS: fine
  EXPECT_TRUE(issues_of(json::object(), env).empty());
}

TEST(NotificationsConfig, APathologicallyNestedFileIsRefusedNotACrash) {
  json deep = json::object();
  json* node = &deep;
  for (int i = 0; i < 1000; ++i) node = &((*node)["n"] = json::object());
  try {
    parse_config(json{{"notifications", {{"templates", deep}}}}, enabled_env());
    ADD_FAILURE() << "accepted";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("nested more than 32 levels deep"), std::string::npos) << error.what();
  }
}
