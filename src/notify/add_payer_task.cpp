#include "p2p/notify/add_payer_task.hpp"

#include <nlohmann/json.hpp>

#include "p2p/fhir/source_url.hpp"

namespace p2p::notify {
namespace {

using nlohmann::json;

constexpr int kMaxDepth = 64;  // a Task is about 8 deep; anything far deeper is an attack or a mistake

std::string string_at(const json& object, const char* key) {
  if (!object.is_object()) return {};
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool has_coding(const json& codeable, std::string_view system, std::string_view code) {
  if (!codeable.is_object()) return false;
  const auto codings = codeable.find("coding");
  if (codings == codeable.end() || !codings->is_array()) return false;
  for (const auto& coding : *codings) {
    if (string_at(coding, "system") == system && string_at(coding, "code") == code) return true;
  }
  return false;
}

// The value of the input whose type has this code: valueString, or the type's text as the seed also
// puts the value there.
std::string input_value(const json& task, std::string_view code) {
  const auto inputs = task.find("input");
  if (inputs == task.end() || !inputs->is_array()) return {};
  for (const auto& input : *inputs) {
    if (!input.is_object()) continue;
    const auto type = input.find("type");
    if (type == input.end() || !has_coding(*type, kP2pCodeSystem, code)) continue;
    if (auto value = string_at(input, "valueString"); !value.empty()) return value;
    return string_at(*type, "text");
  }
  return {};
}

std::string status_reason(const json& task) {
  const auto reason = task.find("statusReason");
  if (reason == task.end() || !reason->is_object()) return {};
  if (auto text = string_at(*reason, "text"); !text.empty()) return text;
  const auto codings = reason->find("coding");
  if (codings != reason->end() && codings->is_array() && !codings->empty()) return string_at(codings->front(), "display");
  return {};
}

std::string reference_of(const json& task, const char* key) {
  const auto it = task.find(key);
  return it == task.end() ? std::string() : string_at(*it, "reference");
}

json parse_json(std::string_view body) {
  const json::parser_callback_t limit_depth = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxDepth) throw PayloadError("the body is nested more than " + std::to_string(kMaxDepth) + " levels deep");
    return true;
  };
  try {
    return json::parse(body.begin(), body.end(), limit_depth);
  } catch (const json::exception& error) {
    throw PayloadError(std::string("the body is not valid JSON: ") + error.what());
  }
}

void add_resource(HookPayload& payload, const json& resource, const std::optional<std::string>& path_task_id) {
  if (!is_add_payer_task(resource)) {
    ++payload.ignored;
    return;
  }
  AddPayerRequest request = read_add_payer_task(resource);
  if (path_task_id && request.task_id != *path_task_id) {
    throw PayloadError("the Task in the body has id \"" + request.task_id + "\" but the path names Task/" + *path_task_id);
  }
  payload.tasks.push_back(std::move(request));
}

}  // namespace

bool is_add_payer_task(const json& resource) {
  if (!resource.is_object() || string_at(resource, "resourceType") != "Task") return false;
  const auto code = resource.find("code");
  return code != resource.end() && has_coding(*code, kP2pCodeSystem, kAddPayerCode);
}

AddPayerRequest read_add_payer_task(const json& task) {
  if (!task.is_object() || string_at(task, "resourceType") != "Task") throw PayloadError("the resource is not a Task");
  AddPayerRequest request;
  request.task_id = string_at(task, "id");
  if (request.task_id.empty()) throw PayloadError("the Task has no id");
  if (!fhir::is_fhir_id(request.task_id)) throw PayloadError("the Task id is not a valid FHIR id");
  request.status = string_at(task, "status");
  if (request.status.empty()) throw PayloadError("Task " + request.task_id + " has no status");
  if (const auto meta = task.find("meta"); meta != task.end()) {
    request.version_id = string_at(*meta, "versionId");
    request.last_updated = string_at(*meta, "lastUpdated");
  }
  request.status_reason = status_reason(task);
  request.first_name = input_value(task, "requester-first-name");
  request.last_name = input_value(task, "requester-last-name");
  request.new_payer_name = input_value(task, "new-payer-name");
  request.email = input_value(task, "requester-email");
  request.phone = input_value(task, "requester-phone");
  request.patient = reference_of(task, "requester");
  request.organization = reference_of(task, "owner");
  request.authored_on = string_at(task, "authoredOn");
  return request;
}

HookPayload parse_hook_payload(std::string_view body, const std::optional<std::string>& path_task_id) {
  HookPayload payload;
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    payload.empty = true;
    return payload;
  }
  const json document = parse_json(body);
  if (!document.is_object()) throw PayloadError("the body must be a FHIR Task or Bundle (a JSON object)");
  const std::string type = string_at(document, "resourceType");
  if (type == "Task") {
    if (path_task_id && string_at(document, "id").empty()) {
      // HAPI's update delivery names the Task in the path; a body without an id takes it from there.
      json with_id = document;
      with_id["id"] = *path_task_id;
      add_resource(payload, with_id, path_task_id);
    } else {
      add_resource(payload, document, path_task_id);
    }
    return payload;
  }
  if (type == "Bundle") {
    const auto entries = document.find("entry");
    if (entries != document.end() && !entries->is_array()) throw PayloadError("Bundle.entry must be an array");
    if (entries != document.end()) {
      for (const auto& entry : *entries) {
        if (!entry.is_object()) throw PayloadError("every Bundle.entry must be an object");
        const auto resource = entry.find("resource");
        if (resource == entry.end()) continue;  // e.g. a deleted entry in a history Bundle
        add_resource(payload, *resource, path_task_id);
      }
    }
    return payload;
  }
  throw PayloadError(type.empty() ? "the body has no resourceType: send a FHIR Task or Bundle"
                                  : "the body is a " + type + ", not a Task or Bundle");
}

}  // namespace p2p::notify
