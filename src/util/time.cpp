#include "p2p/util/time.hpp"

#include <cstdio>
#include <ctime>
#include <regex>

namespace p2p::util {

std::string iso8601_utc(std::chrono::system_clock::time_point when, bool milliseconds) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%04d-%02d-%02dT%02d:%02d:%02d", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                utc.tm_hour, utc.tm_min, utc.tm_sec);
  std::string text = buffer;
  if (milliseconds) {
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count() % 1000;
    std::snprintf(buffer, sizeof(buffer), ".%03d", static_cast<int>(millis));
    text += buffer;
  }
  return text + "Z";
}

bool is_fhir_instant(std::string_view text) {
  static const std::regex instant(
      R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00)))");
  return std::regex_match(text.begin(), text.end(), instant);
}

}  // namespace p2p::util
