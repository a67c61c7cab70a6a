#include "p2p/notify/subscription.hpp"

#include <nlohmann/json.hpp>

#include "p2p/notify/add_payer_task.hpp"

namespace p2p::notify {

using nlohmann::json;

std::string subscription_criteria() {
  return "Task?code=" + std::string(kP2pCodeSystem) + "|" + std::string(kAddPayerCode);
}

json desired_subscription(std::string_view public_base_url, std::string_view hook_secret) {
  std::string endpoint(public_base_url);
  endpoint.append(kHookPath);
  std::string header(kHookSecretHeader);
  header.append(": ");
  header.append(hook_secret);
  return {{"resourceType", "Subscription"},
          {"id", kSubscriptionId},
          {"meta", {{"tag", json::array({{{"system", kSubscriptionTagSystem}, {"code", kSubscriptionTagCode}}})}}},
          {"status", "requested"},
          {"reason", "p2p-exchange: e-mail admins and the member about add-payer requests"},
          {"criteria", subscription_criteria()},
          {"channel",
           {{"type", "rest-hook"},
            {"endpoint", endpoint},
            {"payload", "application/fhir+json"},
            {"header", json::array({header})}}}};
}

bool subscription_matches(const json& existing, const json& desired) {
  if (!existing.is_object()) return false;
  const auto status = existing.value("status", std::string());
  if (status != "requested" && status != "active") return false;
  if (existing.value("criteria", std::string()) != desired.at("criteria")) return false;
  const auto channel = existing.find("channel");
  if (channel == existing.end() || !channel->is_object()) return false;
  const json& wanted = desired.at("channel");
  for (const char* key : {"type", "endpoint", "payload"}) {
    if (channel->value(key, std::string()) != wanted.at(key)) return false;
  }
  if (channel->value("header", json::array()) != wanted.at("header")) return false;
  const auto meta = existing.find("meta");
  if (meta == existing.end() || !meta->is_object()) return false;
  for (const auto& tag : meta->value("tag", json::array())) {
    if (tag.is_object() && tag.value("system", std::string()) == kSubscriptionTagSystem &&
        tag.value("code", std::string()) == kSubscriptionTagCode) {
      return true;
    }
  }
  return false;
}

}  // namespace p2p::notify
