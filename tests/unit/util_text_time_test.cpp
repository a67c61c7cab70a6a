// The small shared helpers of util/text.hpp and util/time.hpp.
#include <gtest/gtest.h>

#include "p2p/util/text.hpp"
#include "p2p/util/time.hpp"

TEST(UtilText, CaseInsensitiveEqualityAndTrailingSlashes) {
  EXPECT_TRUE(p2p::util::iequals("Content-Length", "content-length"));
  EXPECT_FALSE(p2p::util::iequals("gzip", "gzip2"));
  EXPECT_FALSE(p2p::util::iequals("x-gzip", "gzip"));
  EXPECT_EQ(p2p::util::without_trailing_slashes("https://x.example/fhir//"), "https://x.example/fhir");
  EXPECT_EQ(p2p::util::without_trailing_slashes("/"), "");
  EXPECT_EQ(p2p::util::without_trailing_slashes("https://x.example/fhir"), "https://x.example/fhir");
}

TEST(UtilTime, InstantsInUtcWithAndWithoutMilliseconds) {
  const auto when = std::chrono::system_clock::time_point(std::chrono::milliseconds(1796142312345));  // 2026-12-01T16:25:12.345Z
  EXPECT_EQ(p2p::util::iso8601_utc(when), "2026-12-01T16:25:12Z");
  EXPECT_EQ(p2p::util::iso8601_utc(when, true), "2026-12-01T16:25:12.345Z");
  EXPECT_EQ(p2p::util::iso8601_utc(std::chrono::system_clock::time_point(std::chrono::milliseconds(7)), true),
            "1970-01-01T00:00:00.007Z");
}
