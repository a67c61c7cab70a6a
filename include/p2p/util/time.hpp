#pragma once
// Instants as FHIR writes them (instant / dateTime in UTC).
#include <chrono>
#include <string>

namespace p2p::util {

// "2026-12-01T17:25:12Z", or with milliseconds "2026-12-01T17:25:12.345Z".
std::string iso8601_utc(std::chrono::system_clock::time_point when, bool milliseconds = false);

}  // namespace p2p::util
