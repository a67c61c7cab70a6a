#include <gtest/gtest.h>

#include "p2p/store/job_status.hpp"

using p2p::store::JobStatus;

TEST(JobStatus, EachStatusReadsBackFromItsSpellingAndNothingElseIsOne) {
  for (const auto status : {JobStatus::kStarting, JobStatus::kStarted, JobStatus::kStopping, JobStatus::kStopped,
                            JobStatus::kCompleted, JobStatus::kFailed}) {
    EXPECT_EQ(p2p::store::parse_job_status(p2p::store::to_string(status)), status);
  }
  EXPECT_EQ(p2p::store::to_string(JobStatus::kCompleted), "COMPLETED");
  EXPECT_EQ(p2p::store::parse_job_status("completed"), std::nullopt) << "the spelling is exact";
  EXPECT_EQ(p2p::store::parse_job_status(""), std::nullopt);
  EXPECT_TRUE(p2p::store::is_active(JobStatus::kStopping));
  EXPECT_FALSE(p2p::store::is_active(JobStatus::kStopped));
}
