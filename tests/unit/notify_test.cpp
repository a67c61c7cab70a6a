// The pure parts of the add-payer notifications: reading the seed's Task, the hook payload forms,
// addresses, sanitising untrusted values, templates, the composed message, the Subscription.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "p2p/notify/add_payer_task.hpp"
#include "p2p/notify/email.hpp"
#include "p2p/notify/subscription.hpp"

using nlohmann::json;
using namespace p2p::notify;

namespace {

json input(const std::string& code, const std::string& value) {
  return {{"type",
           {{"coding", json::array({{{"system", kP2pCodeSystem}, {"code", code}, {"display", "display"}}})},
            {"text", value}}},
          {"valueString", value}};
}

// The seed's "Add payer request" Task with values filled in.
json seed_task(const std::string& id = "task-1", const std::string& status = "requested") {
  return {{"resourceType", "Task"},
          {"id", id},
          {"meta", {{"versionId", "3"}, {"lastUpdated", "2026-11-25T10:00:00.000Z"}}},
          {"identifier", json::array({{{"system", kP2pCodeSystem}, {"value", "123-456-2026-11-25T10:00:00Z"}}})},
          {"status", status},
          {"intent", "original-order"},
          {"priority", "routine"},
          {"code",
           {{"coding", json::array({{{"system", kP2pCodeSystem}, {"code", kAddPayerCode}, {"display", kAddPayerCode}}})},
            {"text", "Add Payer"}}},
          {"authoredOn", "2026-11-25T10:00:00Z"},
          {"lastModified", "2026-11-25T10:00:00Z"},
          {"requester", {{"reference", "Patient/123"}, {"type", "Patient"}}},
          {"owner", {{"reference", "Organization/456"}}},
          {"input", json::array({input("requester-first-name", "Ada"), input("requester-last-name", "Lovelace"),
                                 input("new-payer-name", "Acme Health"), input("requester-email", "ada@member.example"),
                                 input("requester-phone", "1111111111")})}};
}

std::string header_block(const std::string& message) { return message.substr(0, message.find("\r\n\r\n")); }

}  // namespace

TEST(AddPayerTask, ReadsEveryFieldOfTheSeedShape) {
  const auto request = read_add_payer_task(seed_task());
  EXPECT_EQ(request.task_id, "task-1");
  EXPECT_EQ(request.version_id, "3");
  EXPECT_EQ(request.status, "requested");
  EXPECT_EQ(request.first_name, "Ada");
  EXPECT_EQ(request.last_name, "Lovelace");
  EXPECT_EQ(request.new_payer_name, "Acme Health");
  EXPECT_EQ(request.email, "ada@member.example");
  EXPECT_EQ(request.phone, "1111111111");
  EXPECT_EQ(request.patient, "Patient/123");
  EXPECT_EQ(request.organization, "Organization/456");
  EXPECT_EQ(request.authored_on, "2026-11-25T10:00:00Z");
}

TEST(AddPayerTask, TheExampleInTheDocsIsAnAddPayerTask) {
  std::ifstream file(std::string(P2P_SOURCE_DIR) + "/docs/examples/add-payer-task.json");
  if (!file) GTEST_SKIP() << "docs/examples/add-payer-task.json is not there yet";
  auto task = json::parse(file);
  ASSERT_TRUE(is_add_payer_task(task));
  EXPECT_FALSE(task.contains("id"));  // it is the body of a POST /Task: the FHIR server gives the id
  task["id"] = "example";
  const auto request = read_add_payer_task(task);
  EXPECT_FALSE(request.first_name.empty());
  EXPECT_TRUE(is_valid_email_address(request.email)) << request.email;
}

TEST(AddPayerTask, FallsBackToTheTypeTextAndReadsTheStatusReason) {
  auto task = seed_task();
  task["input"][0].erase("valueString");
  task["statusReason"] = {{"coding", json::array({{{"display", "member moved"}}})}};
  const auto request = read_add_payer_task(task);
  EXPECT_EQ(request.first_name, "Ada");
  EXPECT_EQ(request.status_reason, "member moved");
}

TEST(AddPayerTask, OtherTasksAreNotAddPayerTasks) {
  auto task = seed_task();
  task["code"]["coding"][0]["code"] = "something-else";
  EXPECT_FALSE(is_add_payer_task(task));
  EXPECT_FALSE(is_add_payer_task(json{{"resourceType", "Patient"}}));
  EXPECT_FALSE(is_add_payer_task(json::array()));
}

TEST(HookPayload, TakesATaskABundleOrNothing) {
  auto single = parse_hook_payload(seed_task().dump(), std::nullopt);
  ASSERT_EQ(single.tasks.size(), 1u);
  EXPECT_FALSE(single.empty);

  json bundle = {{"resourceType", "Bundle"},
                 {"type", "history"},
                 {"entry", json::array({{{"resource", seed_task("a")}},
                                        {{"resource", {{"resourceType", "Patient"}, {"id", "p"}}}},
                                        {{"request", {{"method", "DELETE"}}}},
                                        {{"resource", seed_task("b")}}})}};
  auto many = parse_hook_payload(bundle.dump(), std::nullopt);
  ASSERT_EQ(many.tasks.size(), 2u);
  EXPECT_EQ(many.tasks[0].task_id, "a");
  EXPECT_EQ(many.tasks[1].task_id, "b");
  EXPECT_EQ(many.ignored, 1);

  EXPECT_TRUE(parse_hook_payload("", std::nullopt).empty);
  EXPECT_TRUE(parse_hook_payload(" \r\n", std::string("x")).empty);
}

TEST(HookPayload, TheIdInThePathMustMatchOrFillsAMissingOne) {
  EXPECT_EQ(parse_hook_payload(seed_task("t-9").dump(), std::string("t-9")).tasks.at(0).task_id, "t-9");
  auto without_id = seed_task();
  without_id.erase("id");
  EXPECT_EQ(parse_hook_payload(without_id.dump(), std::string("t-7")).tasks.at(0).task_id, "t-7");
  EXPECT_THROW(parse_hook_payload(seed_task("t-1").dump(), std::string("t-2")), PayloadError);
}

TEST(HookPayload, RefusesWhatCannotBeATaskDelivery) {
  auto without_id = seed_task();
  without_id.erase("id");
  auto without_status = seed_task();
  without_status.erase("status");
  auto bad_id = seed_task("has space");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "not valid JSON"},
      {"[1,2]", "must be a FHIR Task or Bundle"},
      {R"({"resourceType":"Patient"})", "is a Patient, not a Task or Bundle"},
      {R"({"id":"x"})", "has no resourceType"},
      {without_id.dump(), "has no id"},
      {without_status.dump(), "has no status"},
      {bad_id.dump(), "not a valid FHIR id"},
      {R"({"resourceType":"Bundle","entry":{}})", "Bundle.entry must be an array"},
      {std::string(100, '[') + std::string(100, ']'), "nested more than 64 levels"},
  };
  for (const auto& [body, expected] : cases) {
    try {
      parse_hook_payload(body, std::nullopt);
      ADD_FAILURE() << "accepted: " << body.substr(0, 60);
    } catch (const PayloadError& error) {
      EXPECT_NE(std::string(error.what()).find(expected), std::string::npos) << error.what();
    }
  }
}

TEST(EmailAddress, AcceptsPlainAddressesOnly) {
  for (const char* good : {"a@b.example", "first.last+tag@sub.payer.example", "x_y-z@a-b.co", "o'neil@payer.example"}) {
    EXPECT_TRUE(is_valid_email_address(good)) << good;
  }
  for (const char* bad : {"", "plain", "@b.example", "a@", "a@b", "a@@b.example", "a b@c.example", "a@b .example",
                          "\"quoted\"@b.example", "a@[127.0.0.1]", "a@-b.example", "a@b-.example", ".a@b.example",
                          "a..b@c.example", "a@b.example\r\nRCPT TO:<x@evil.example>", "Ada <ada@b.example>",
                          "a@b.example,c@d.example", "a@b..example"}) {
    EXPECT_FALSE(is_valid_email_address(bad)) << bad;
  }
  EXPECT_FALSE(is_valid_email_address(std::string(65, 'a') + "@b.example"));
  EXPECT_FALSE(is_valid_email_address("a@" + std::string(250, 'b') + ".example"));
}

TEST(SanitizeValue, NoControlCharacterSurvives) {
  EXPECT_EQ(sanitize_value("Eve\r\nBcc: victim@evil.example"), "Eve Bcc: victim@evil.example");
  EXPECT_EQ(sanitize_value("  a\t\tb \x01 c\x7f "), "a b c");
  EXPECT_EQ(sanitize_value("line\xE2\x80\xA8separator"), "line separator");  // U+2028
  EXPECT_EQ(sanitize_value("C1\xC2\x85next"), "C1 next");                   // U+0085 NEL
  EXPECT_EQ(sanitize_value("bad\xFFutf8"), "bad\xEF\xBF\xBDutf8");
  EXPECT_EQ(sanitize_value("Zoë"), "Zoë");
  EXPECT_EQ(sanitize_value(std::string(300, 'x'), 10), "xxxxxxxxxx...");
  EXPECT_EQ(sanitize_value("ééééé", 5), "éé...");  // never cuts a character in two
}

TEST(Templates, UnknownPlaceholdersAreNamed) {
  EXPECT_EQ(check_template(default_admin_request_template().body), std::nullopt);
  EXPECT_EQ(check_template(default_member_confirmation_template().subject), std::nullopt);
  EXPECT_EQ(check_template(default_member_status_update_template().body), std::nullopt);
  EXPECT_NE(check_template("Hi {{fristName}}").value().find("unknown placeholder {{fristName}}"), std::string::npos);
  EXPECT_NE(check_template("Hi {{firstName").value().find("unclosed"), std::string::npos);
}

TEST(Templates, RenderWithSanitisedValues) {
  auto task = seed_task();
  task["input"][0]["valueString"] = "Eve\r\nBcc: victim@evil.example";
  const auto values = template_values(read_add_payer_task(task), "requested");
  EXPECT_EQ(render_template("{{firstName}} {{lastName}} ({{previousStatus}} -> {{status}}) {{taskId}}", values),
            "Eve Bcc: victim@evil.example Lovelace (requested -> requested) task-1");
  EXPECT_EQ(render_template(default_member_confirmation_template().subject, values),
            "We received your request to add Acme Health");
}

TEST(Message, HeadersCannotBeInjectedAndTheBodyIsPlainText) {
  EmailMessage message{"p2p@payer.example", "ada@member.example",
                       "Request from Eve\r\nBcc: victim@evil.example\r\n\r\n<script>", "Hello <b>Ada</b>\n.\nbye",
                       "p2p-notification-7@payer.example", "task-1"};
  const auto text = compose_message(message, std::chrono::system_clock::from_time_t(1795600000));
  const auto headers = header_block(text);
  EXPECT_EQ(headers.find("\r\nBcc:"), std::string::npos);
  EXPECT_NE(headers.find("Subject: Request from Eve Bcc: victim@evil.example <script>\r\n"), std::string::npos) << headers;
  EXPECT_NE(headers.find("From: p2p@payer.example\r\nTo: ada@member.example\r\n"), std::string::npos);
  EXPECT_NE(headers.find("Message-ID: <p2p-notification-7@payer.example>"), std::string::npos);
  EXPECT_NE(headers.find("Content-Type: text/plain; charset=UTF-8"), std::string::npos);
  EXPECT_NE(headers.find("Auto-Submitted: auto-generated"), std::string::npos);
  EXPECT_NE(headers.find("X-P2P-Task-Id: task-1"), std::string::npos);
  EXPECT_NE(headers.find("Date: Wed, 25 Nov 2026 09:46:40 +0000\r\n"), std::string::npos) << headers;
  // The body is quoted-printable with CRLF; a line starting with "." is encoded, so it can never end DATA.
  EXPECT_NE(text.find("\r\n\r\nHello <b>Ada</b>\r\n=2E\r\nbye\r\n"), std::string::npos) << text;
  // Every line ends in CRLF and none is longer than 998 characters.
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') {
      ASSERT_GT(i, 0u);
      EXPECT_EQ(text[i - 1], '\r');
    }
  }
}

TEST(Message, NonAsciiSubjectsAreEncodedWords) {
  EXPECT_EQ(encode_header_text("plain ascii"), "plain ascii");
  EXPECT_EQ(encode_header_text("Zoë"), "=?UTF-8?B?Wm/Dqw==?=");
  const auto long_subject = encode_header_text(std::string(40, 'x') + "ééééééééééééééé");
  EXPECT_NE(long_subject.find("?=\r\n =?UTF-8?B?"), std::string::npos);  // folded into several words
  for (std::size_t start = 0; start < long_subject.size();) {
    auto end = long_subject.find("\r\n ", start);
    const auto word = long_subject.substr(start, end == std::string::npos ? std::string::npos : end - start);
    EXPECT_LE(word.size(), 75u) << word;
    if (end == std::string::npos) break;
    start = end + 3;
  }
}

TEST(Message, QuotedPrintableKeepsLinesShortAndEncodesWhatItMust) {
  EXPECT_EQ(quoted_printable("a=b"), "a=3Db");
  EXPECT_EQ(quoted_printable("caf\xC3\xA9"), "caf=C3=A9");
  EXPECT_EQ(quoted_printable("trailing \nnext"), "trailing=20\r\nnext");
  const auto wrapped = quoted_printable(std::string(200, 'a'));
  for (std::size_t start = 0; start < wrapped.size();) {
    auto end = wrapped.find("\r\n", start);
    EXPECT_LE((end == std::string::npos ? wrapped.size() : end) - start, 76u);
    if (end == std::string::npos) break;
    start = end + 2;
  }
}

TEST(Subscription, TheDesiredResourceAndWhatStillMatches) {
  const auto desired = desired_subscription("https://p2p.payer.example", "secret-0123456789abcdef");
  EXPECT_EQ(desired["id"], "p2p-exchange-add-payer-task");
  EXPECT_EQ(desired["criteria"],
            "Task?code=http://payer-to-payer-exchange/CodeSystem/p2p-internal-codes|p2p-request-add-provider-id");
  EXPECT_EQ(desired["channel"]["endpoint"], "https://p2p.payer.example/hooks/add-payer-task");
  EXPECT_EQ(desired["channel"]["payload"], "application/fhir+json");
  EXPECT_EQ(desired["channel"]["header"], json::array({"X-P2P-Hook-Secret: secret-0123456789abcdef"}));
  EXPECT_EQ(desired["meta"]["tag"][0]["system"], "urn:p2p-exchange:subscription");

  auto active = desired;
  active["status"] = "active";
  active["meta"]["versionId"] = "2";
  EXPECT_TRUE(subscription_matches(active, desired));
  auto errored = desired;
  errored["status"] = "error";
  EXPECT_FALSE(subscription_matches(errored, desired));
  auto rotated = desired_subscription("https://p2p.payer.example", "another-secret-0123456789");
  EXPECT_FALSE(subscription_matches(rotated, desired));
  auto moved = desired_subscription("https://elsewhere.example", "secret-0123456789abcdef");
  EXPECT_FALSE(subscription_matches(moved, desired));
  auto untagged = desired;
  untagged.erase("meta");
  EXPECT_FALSE(subscription_matches(untagged, desired));
}
