// The small shared helpers of util/text.hpp, util/time.hpp and util/crypto.hpp.
#include <gtest/gtest.h>

#include "p2p/util/crypto.hpp"
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

TEST(UtilCrypto, Sha256GivesTheStandardDigests) {
  // FIPS 180-2's examples, and the empty string; twice each on one thread (the context is reused).
  for (int round = 0; round < 2; ++round) {
    EXPECT_EQ(p2p::util::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(p2p::util::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(p2p::util::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  }
}
