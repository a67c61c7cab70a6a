#include "p2p/store/job_status.hpp"

#include <array>
#include <utility>

namespace p2p::store {
namespace {

constexpr std::array<std::pair<JobStatus, std::string_view>, 6> kNames{{
    {JobStatus::kStarting, "STARTING"},
    {JobStatus::kStarted, "STARTED"},
    {JobStatus::kStopping, "STOPPING"},
    {JobStatus::kStopped, "STOPPED"},
    {JobStatus::kCompleted, "COMPLETED"},
    {JobStatus::kFailed, "FAILED"},
}};

}  // namespace

std::string_view to_string(JobStatus status) {
  for (const auto& [value, name] : kNames) {
    if (value == status) return name;
  }
  return "UNKNOWN";
}

std::optional<JobStatus> parse_job_status(std::string_view text) {
  for (const auto& [value, name] : kNames) {
    if (name == text) return value;
  }
  return std::nullopt;
}

bool is_active(JobStatus status) {
  return status == JobStatus::kStarting || status == JobStatus::kStarted || status == JobStatus::kStopping;
}

}  // namespace p2p::store
