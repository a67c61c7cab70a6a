#include "p2p/fhir/target_response.hpp"

#include <memory>

#include "json_reading.hpp"
#include "p2p/fhir/operation_outcome.hpp"
#include "p2p/fhir/page_stream.hpp"

namespace p2p::fhir {
namespace {

using nlohmann::json;

std::string describe_body(std::string_view content_type, const json& body) {
  if (body.is_null()) return "an empty body";
  if (body.is_discarded()) {
    return "a body that is not JSON (" + (content_type.empty() ? std::string("no Content-Type") : std::string(content_type)) +
           "; a gateway or login page?)";
  }
  if (body.is_object() && body.contains("resourceType") && body["resourceType"].is_string()) {
    const std::string type = body["resourceType"].get<std::string>();
    const auto bundle_type = body.find("type");
    if (type == "Bundle" && bundle_type != body.end() && bundle_type->is_string()) {
      return "a Bundle of type " + bundle_type->get<std::string>();
    }
    return "a " + type.substr(0, 64);
  }
  return "JSON that is not a FHIR resource";
}

// The first issue's diagnostics or details of an entry's OperationOutcome, if any.
std::string outcome_of(const json& response) {
  const auto outcome = response.find("outcome");
  if (outcome == response.end() || !outcome->is_object()) return {};
  const auto issues = outcome->find("issue");
  if (issues == outcome->end() || !issues->is_array() || issues->empty()) return {};
  const std::string text = issue_text((*issues)[0]);
  return text.size() > 300 ? text.substr(0, 300) + "..." : text;
}

namespace ondemand = simdjson::ondemand;

// Deeper answers are read by nlohmann::json (transaction_response_problem).
constexpr std::size_t kMaxDepth = 64;

// One entry of a transaction-response: an object whose `response` is an object whose `status` is a
// string starting with 2 (each of those members once).
bool entry_stored(ondemand::value entry) {
  if (entry.type() != ondemand::json_type::object) return false;
  int responses = 0;
  bool stored = false;
  for (auto field : entry.get_object()) {
    if (detail::read_key(field).text != "response") {
      detail::check_value(field.value(), 4, kMaxDepth);
      continue;
    }
    if (++responses > 1) return false;
    ondemand::value response = field.value();
    if (response.type() != ondemand::json_type::object) return false;
    int statuses = 0;
    for (auto member : response.get_object()) {
      if (detail::read_key(member).text != "status") {
        detail::check_value(member.value(), 5, kMaxDepth);
        continue;
      }
      if (++statuses > 1) return false;
      ondemand::value status = member.value();
      if (status.type() != ondemand::json_type::string) return false;
      const std::string_view text = status.get_string().value();
      stored = !text.empty() && text[0] == '2';
    }
    if (statuses != 1) return false;
  }
  return responses == 1 && stored;
}

// transaction_response_is_whole with this thread's parser.
bool is_whole(ondemand::parser& parser, std::string_view body, std::size_t entries) {
  try {
    const simdjson::padded_string padded(body);
    ondemand::document document = parser.iterate(padded);
    ondemand::object root = document.get_object();
    int resource_types = 0;
    int types = 0;
    int entry_lists = 0;
    std::size_t answered = 0;
    bool all_stored = true;
    for (auto field : root) {
      const std::string_view key = detail::read_key(field).text;
      if (key == "resourceType") {
        ++resource_types;
        if (field.value().get_string().value() != "Bundle") return false;
      } else if (key == "type") {
        ++types;
        if (field.value().get_string().value() != "transaction-response") return false;
      } else if (key == "entry") {
        ++entry_lists;
        for (auto entry : field.value().get_array()) {
          ++answered;
          all_stored = all_stored && entry_stored(entry.value());
        }
      } else {
        detail::check_value(field.value(), 2, kMaxDepth);
      }
    }
    if (document.current_location().error() == simdjson::SUCCESS) return false;  // something follows the Bundle
    const bool listed = entry_lists == 1 || (entry_lists == 0 && entries == 0);
    return resource_types == 1 && types == 1 && listed && answered == entries && all_stored;
  } catch (const simdjson::simdjson_error&) {
    return false;  // not JSON, or not of that shape: transaction_response_problem() says what it is
  } catch (const detail::NotPlain&) {
    return false;
  }
}

}  // namespace

bool transaction_response_is_whole(std::string_view body, std::size_t entries) {
  // One per thread, kept between answers; its buffers (about 6× the answer) are let go right after an
  // answer over kKeptBetweenPagesBytes, rather than when the thread reads its next one.
  thread_local std::unique_ptr<ondemand::parser> parser;
  if (!parser) parser = std::make_unique<ondemand::parser>();
  const bool whole = is_whole(*parser, body, entries);
  if (parser->capacity() > kKeptBetweenPagesBytes) parser.reset();
  return whole;
}

std::optional<std::string> transaction_response_problem(int status, std::string_view content_type, const json& body,
                                                        std::size_t entries) {
  if (status != 200) {
    return "the target answered " + std::to_string(status) + " with " + describe_body(content_type, body) +
           " instead of 200 with a transaction-response";
  }
  if (body.is_discarded() || !body.is_object() || body.value("resourceType", json()) != "Bundle" ||
      body.value("type", json()) != "transaction-response") {
    return "the target answered 200 with " + describe_body(content_type, body) + " instead of a transaction-response";
  }
  const auto found = body.find("entry");
  const std::size_t answered = found != body.end() && found->is_array() ? found->size() : 0;
  if (answered != entries) {
    return "the target's transaction-response has " + std::to_string(answered) + " entries for the " +
           std::to_string(entries) + " sent";
  }
  for (std::size_t i = 0; i < answered; ++i) {
    const json& entry = (*found)[i];
    const json empty = json::object();
    const auto response = entry.is_object() ? entry.find("response") : entry.end();
    const json& r = entry.is_object() && response != entry.end() && response->is_object() ? *response : empty;
    const auto code = r.find("status");
    const std::string text = code != r.end() && code->is_string() ? code->get<std::string>() : std::string();
    if (text.empty() || text[0] != '2') {
      std::string problem = "the target's transaction-response entry " + std::to_string(i + 1) + " has status \"" +
                            text.substr(0, 64) + "\"";
      if (const auto outcome = outcome_of(r); !outcome.empty()) problem += ": " + outcome;
      return problem;
    }
  }
  return std::nullopt;
}

std::optional<std::string> update_response_problem(int status, std::string_view content_type, const json& body,
                                                   std::string_view type, std::string_view id) {
  if (status != 200 && status != 201) {
    return "the target answered " + std::to_string(status) + " with " + describe_body(content_type, body) +
           " instead of 200 or 201 with the " + std::string(type);
  }
  if (body.is_null()) return std::nullopt;  // an empty 200/201 (Prefer: return=minimal): the write is done
  if (body.is_discarded() || !body.is_object() || body.value("resourceType", json()) != type ||
      body.value("id", json()) != id) {
    return "the target answered " + std::to_string(status) + " with " + describe_body(content_type, body) +
           " instead of the " + std::string(type) + " " + std::string(id) + " it was sent";
  }
  return std::nullopt;
}

}  // namespace p2p::fhir
