// The rest-hook delivery parser (notify::parse_hook_payload). An input starting with '@' names the
// delivery path's Task id on its first line ("@task-1\n{...}"); every input is also parsed without a
// path id and with the fixed path id "task-1". notify::PayloadError is the expected failure; anything
// else escaping, or a result that breaks the parser's promises, is a bug.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_check.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/notify/add_payer_task.hpp"

namespace {

using namespace p2p;

void run(std::string_view body, const std::optional<std::string>& path_task_id) {
  notify::HookPayload payload;
  try {
    payload = notify::parse_hook_payload(body, path_task_id);
  } catch (const notify::PayloadError& error) {
    fuzz::check(std::string_view(error.what()).size() > 0, "PayloadError without a reason");
    return;
  }
  const bool blank = body.find_first_not_of(" \t\r\n") == std::string_view::npos;
  fuzz::check(payload.empty == blank, "empty does not match a blank body");
  fuzz::check(payload.ignored >= 0, "negative ignored count");
  if (payload.empty) fuzz::check(payload.tasks.empty() && payload.ignored == 0, "an empty body delivered resources");
  for (const auto& task : payload.tasks) {
    fuzz::check(fhir::is_fhir_id(task.task_id), "a Task id that is not a FHIR id", task.task_id);
    fuzz::check(!task.status.empty(), "a Task without status", task.task_id);
    if (path_task_id) fuzz::check(task.task_id == *path_task_id, "a Task id other than the path's", task.task_id);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  run(input, std::nullopt);
  run(input, std::string("task-1"));
  if (input.starts_with('@')) {
    const auto newline = input.find('\n');
    if (newline != std::string_view::npos) {
      run(input.substr(newline + 1), std::string(input.substr(1, newline - 1)));
    }
  }
  return 0;
}
