#include "p2p/util/time.hpp"

#include <cstdio>
#include <ctime>

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

}  // namespace p2p::util
