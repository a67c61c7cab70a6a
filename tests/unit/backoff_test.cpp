// The one retry policy (util/backoff.hpp), with the numbers each of its users configures.
#include <gtest/gtest.h>

#include "p2p/util/backoff.hpp"

using namespace std::chrono_literals;
using p2p::util::Backoff;

TEST(Backoff, WaitsDoubleWithinTheirJitterAndStopAtTheCap) {
  std::mt19937_64 random(42);
  const Backoff runner{.initial = 500ms, .cap = 60s, .jitter_low = 0.5, .jitter_high = 1.0};
  for (int round = 0; round < 200; ++round) {
    for (int attempt = 1; attempt <= 7; ++attempt) {
      const auto full = 500ms * (1 << (attempt - 1));
      const auto wait = runner.delay(attempt, random);
      EXPECT_GE(wait, full / 2) << attempt;
      EXPECT_LE(wait, full) << attempt;
    }
    EXPECT_LE(runner.delay(8, random), 60s) << "64 s at full: capped";
    EXPECT_GE(runner.delay(8, random), 32s);
    EXPECT_EQ(runner.delay(1000, random) <= 60s, true) << "no overflow far out";
  }
}

TEST(Backoff, RetryAfterReplacesTheComputedWaitAndIsCappedToo) {
  std::mt19937_64 random(7);
  const Backoff runner{.initial = 500ms, .cap = 60s};
  EXPECT_EQ(runner.delay(1, random, 5s), 5000ms);
  EXPECT_EQ(runner.delay(3, random, 0s), 0ms);
  EXPECT_EQ(runner.delay(1, random, 3600s), 60s);
}

TEST(Backoff, WithoutJitterTheSequenceIsExactAndAFloorHolds) {
  std::mt19937_64 random(1);
  const Backoff keeper{.initial = 4s, .cap = 60s, .jitter_low = 1.0, .jitter_high = 1.0};
  std::vector<long long> seconds;
  for (int attempt = 1; attempt <= 6; ++attempt) {
    seconds.push_back(std::chrono::duration_cast<std::chrono::seconds>(keeper.delay(attempt, random)).count());
  }
  EXPECT_EQ(seconds, (std::vector<long long>{4, 8, 16, 32, 60, 60}));
  const Backoff outbox{.initial = 10ms, .cap = 20ms, .jitter_low = 0.8, .jitter_high = 1.2, .floor = 1s};
  EXPECT_EQ(outbox.delay(1, random), 1s) << "never under the floor";
}
