// Add-payer notifications end to end: the Subscription the service keeps on the FHIR server.
// (the fixture and the peers: notifications_fixture.hpp).
#include "notifications_fixture.hpp"

using nlohmann::json;
using namespace p2p::test;
using namespace std::chrono_literals;

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
