#pragma once
// The Subscription the service keeps on the FHIR persistence endpoint so that the FHIR server calls the
// hook whenever an add-payer Task changes. Pure: what it should look like and whether one found on the
// server still matches (the seeding loop is in notifier.cpp).
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace p2p::notify {

inline constexpr std::string_view kSubscriptionId = "p2p-exchange-add-payer-task";
inline constexpr std::string_view kSubscriptionTagSystem = "urn:p2p-exchange:subscription";
inline constexpr std::string_view kSubscriptionTagCode = "add-payer-task";
inline constexpr std::string_view kHookPath = "/hooks/add-payer-task";
inline constexpr std::string_view kHookSecretHeader = "X-P2P-Hook-Secret";

// The Task criteria: Task?code=<p2p-internal-codes>|p2p-request-add-provider-id
std::string subscription_criteria();

// The whole resource (with the secret in channel.header), status "requested".
nlohmann::json desired_subscription(std::string_view public_base_url, std::string_view hook_secret);

// Whether `existing` (as read from the server) delivers what `desired` asks for and is not switched off
// (status requested or active; a server sets error/off when deliveries keep failing).
bool subscription_matches(const nlohmann::json& existing, const nlohmann::json& desired);

}  // namespace p2p::notify
