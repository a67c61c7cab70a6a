#pragma once
// Instants as FHIR writes them (instant / dateTime in UTC).
#include <chrono>
#include <string>
#include <string_view>

namespace p2p::util {

// "2026-12-01T17:25:12Z", or with milliseconds "2026-12-01T17:25:12.345Z".
std::string iso8601_utc(std::chrono::system_clock::time_point when, bool milliseconds = false);

// A FHIR instant: a date and a time to the second (fractions allowed) with a time zone,
// e.g. 2026-09-01T00:00:00Z or 2026-09-01T00:00:00.123+02:00.
bool is_fhir_instant(std::string_view text);

}  // namespace p2p::util
