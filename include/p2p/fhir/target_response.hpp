#pragma once
// What counts as written on the target (issue #9): the target is the new payer's system of record, so
// nothing is counted as stored that its answer does not show was stored. A gateway's 200 HTML login
// page, a 202, a batch-response with per-entry errors or a transaction-response with fewer entries
// than were sent are failed attempts, not written pages. Pure functions of the answer.
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace p2p::fhir {

// What is wrong with the target's answer to a transaction Bundle of `entries` entries, worded for the
// operator; nullopt when it is a transaction-response with one 2xx entry per request entry.
// `body` is the parsed answer (discarded when it was not JSON, null when it was empty); `content_type`
// is its header.
std::optional<std::string> transaction_response_problem(int status, std::string_view content_type,
                                                        const nlohmann::json& body, std::size_t entries);

// The quick answer for the common case, without a DOM of the answer (issue #11): true only when `body`
// is a transaction-response with `entries` entries, each with a response whose status starts with 2,
// and no member of those read twice; transaction_response_problem() then says nullopt too. False
// means "look closer" (call transaction_response_problem()), not "refused".
bool transaction_response_is_whole(std::string_view body, std::size_t entries);

// The same for a PUT of `type`/`id` (the tracking Task, the page's versioned Provenance): 200 or 201
// with the resource itself in the body, or with an empty body (a server that answers minimally).
std::optional<std::string> update_response_problem(int status, std::string_view content_type, const nlohmann::json& body,
                                                   std::string_view type, std::string_view id);

}  // namespace p2p::fhir
