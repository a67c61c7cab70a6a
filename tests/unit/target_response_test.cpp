// What counts as written on the target (issue #9, 4): only a transaction-response that shows every
// entry stored.
#include <gtest/gtest.h>
#include <malloc.h>

#include <string>
#include <utility>
#include <vector>

#include "p2p/fhir/page_stream.hpp"
#include "p2p/fhir/target_response.hpp"

using nlohmann::json;
using p2p::fhir::transaction_response_problem;
using p2p::fhir::update_response_problem;

namespace {

json response_of(std::initializer_list<const char*> statuses) {
  json entries = json::array();
  for (const char* status : statuses) entries.push_back({{"response", {{"status", status}, {"location", "Observation/x/_history/1"}}}});
  return {{"resourceType", "Bundle"}, {"type", "transaction-response"}, {"entry", entries}};
}

const json kNotJson = json::parse("<html>", nullptr, false);

}  // namespace

TEST(TargetResponse, ATransactionResponseWithOneSuccessPerEntryIsWritten) {
  EXPECT_EQ(transaction_response_problem(200, "application/fhir+json", response_of({"200 OK", "201 Created", "200"}), 3),
            std::nullopt);
  EXPECT_EQ(transaction_response_problem(200, "application/fhir+json", response_of({}), 0), std::nullopt);
}

TEST(TargetResponse, AnythingElseIsAFailedAttemptSayingWhatTheTargetSent) {
  EXPECT_EQ(transaction_response_problem(200, "text/html; charset=utf-8", kNotJson, 2),
            "the target answered 200 with a body that is not JSON (text/html; charset=utf-8; a gateway or login page?) "
            "instead of a transaction-response");
  EXPECT_EQ(transaction_response_problem(202, "", kNotJson, 2),
            "the target answered 202 with a body that is not JSON (no Content-Type; a gateway or login page?) instead "
            "of 200 with a transaction-response");
  json batch = response_of({"400 Bad Request", "400 Bad Request"});
  batch["type"] = "batch-response";
  EXPECT_EQ(transaction_response_problem(200, "application/fhir+json", batch, 2),
            "the target answered 200 with a Bundle of type batch-response instead of a transaction-response");
  EXPECT_EQ(transaction_response_problem(200, "application/fhir+json", response_of({"201 Created"}), 2),
            "the target's transaction-response has 1 entries for the 2 sent");
  json failed_entry = response_of({"201 Created", "422 Unprocessable Entity"});
  failed_entry["entry"][1]["response"]["outcome"] = {
      {"resourceType", "OperationOutcome"},
      {"issue", {{{"severity", "error"}, {"code", "processing"}, {"diagnostics", "subject is required"}}}}};
  EXPECT_EQ(transaction_response_problem(200, "application/fhir+json", failed_entry, 2),
            "the target's transaction-response entry 2 has status \"422 Unprocessable Entity\": subject is required");
  json no_status = response_of({"201 Created"});
  no_status["entry"][0].erase("response");
  EXPECT_EQ(transaction_response_problem(200, "application/fhir+json", no_status, 1),
            "the target's transaction-response entry 1 has status \"\"");
  EXPECT_EQ(transaction_response_problem(200, "application/fhir+json",
                                         json{{"resourceType", "OperationOutcome"}, {"issue", json::array()}}, 1),
            "the target answered 200 with a OperationOutcome instead of a transaction-response");
  EXPECT_EQ(transaction_response_problem(200, "application/json", json::array(), 1),
            "the target answered 200 with JSON that is not a FHIR resource instead of a transaction-response");
  json entries_not_array = response_of({});
  entries_not_array["entry"] = "x";
  EXPECT_EQ(transaction_response_problem(200, "application/fhir+json", entries_not_array, 1),
            "the target's transaction-response has 0 entries for the 1 sent");
}

TEST(TargetResponse, AnUpdateIsWrittenWhenTheTargetAnswersWithTheResource) {
  const json task = {{"resourceType", "Task"}, {"id", "p2p-batch-job-1"}, {"status", "in-progress"}};
  EXPECT_EQ(update_response_problem(200, "application/fhir+json", task, "Task", "p2p-batch-job-1"), std::nullopt);
  EXPECT_EQ(update_response_problem(201, "application/fhir+json", task, "Task", "p2p-batch-job-1"), std::nullopt);
  EXPECT_EQ(update_response_problem(200, "text/html", kNotJson, "Task", "p2p-batch-job-1"),
            "the target answered 200 with a body that is not JSON (text/html; a gateway or login page?) instead of "
            "the Task p2p-batch-job-1 it was sent");
  EXPECT_EQ(update_response_problem(202, "", kNotJson, "Task", "p2p-batch-job-1"),
            "the target answered 202 with a body that is not JSON (no Content-Type; a gateway or login page?) instead "
            "of 200 or 201 with the Task");
  EXPECT_EQ(update_response_problem(200, "application/fhir+json", task, "Task", "another"),
            "the target answered 200 with a Task instead of the Task another it was sent");
}

TEST(TargetResponse, AnEmptyBodyIsAnUpdateDoneMinimallyButNoTransactionResponse) {
  EXPECT_EQ(update_response_problem(201, "", json(), "Task", "p2p-batch-job-1"), std::nullopt)
      << "Prefer: return=minimal, or a server that ignores return=representation";
  EXPECT_EQ(update_response_problem(202, "", json(), "Task", "p2p-batch-job-1"),
            "the target answered 202 with an empty body instead of 200 or 201 with the Task");
  EXPECT_EQ(transaction_response_problem(200, "", json(), 2),
            "the target answered 200 with an empty body instead of a transaction-response");
  // An error body whose members have other types than FHIR's does not throw.
  json odd = response_of({"400 Bad Request"});
  odd["entry"][0]["response"]["outcome"] = {{"issue", {{{"diagnostics", 5}, {"details", "x"}}}}};
  EXPECT_EQ(transaction_response_problem(200, "application/fhir+json", odd, 1),
            "the target's transaction-response entry 1 has status \"400 Bad Request\"");
}

// The quick check (issue #11) says "whole" only where the full check finds no problem: on the answers
// above, and on answers that are almost right.
TEST(TargetResponse, TheQuickCheckAcceptsOnlyWhatTheFullCheckAccepts) {
  using p2p::fhir::transaction_response_is_whole;
  const std::string whole = response_of({"200 OK", "201 Created"}).dump();
  EXPECT_TRUE(transaction_response_is_whole(whole, 2));
  EXPECT_TRUE(transaction_response_is_whole(json{{"resourceType", "Bundle"}, {"type", "transaction-response"}}.dump(), 0));
  const std::vector<std::pair<std::string, std::size_t>> answers = {
      {whole, 2},
      {whole, 3},
      {whole, 1},
      {response_of({"200 OK", "400 Bad Request"}).dump(), 2},
      {response_of({"200 OK", ""}).dump(), 2},
      {R"({"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"200"}}]})", 1},
      {R"({"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"200","status":"500"}}]})", 1},
      {R"({"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"500"},"response":{"status":"200"}}]})", 1},
      {R"({"resourceType":"Bundle","type":"transaction-response","type":"batch-response","entry":[{"response":{"status":"200"}}]})", 1},
      {R"({"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"200","etag":tru}}]})", 1},
      {R"({"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"200"}}],"x":01})", 1},
      {R"({"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"200"}}]} trailing)", 1},
      {R"({"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":200}}]})", 1},
      {R"({"resourceType":"Bundle","type":"transaction-response","entry":[{"resp\u006fnse":{"status":"200"}}]})", 1},
      {R"({"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"2\u0030\u0030"}}]})", 1},
      {R"({"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"200","outcome":{"x":"\ud800"}}}]})", 1},
      {R"({"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"200"}}],"entry":[]})", 1},
      // A colon after a value the check does not read: simdjson skips such a value leniently unless
      // it is consumed (found in review).
      {R"({"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"200","etag":"a":"b"}}]})", 1},
      {R"({"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"200","etag":"a":"b"}}}]})", 1},
      {R"({"resourceType":"Bundle","type":"transaction-response","meta":{"x":"a":"b"},"entry":[{"response":{"status":"200"}}]})", 1},
      {"<html>login</html>", 1},
      {"", 0},
  };
  for (const auto& [body, entries] : answers) {
    const json parsed = body.empty() ? json() : json::parse(body, nullptr, false);
    const bool full = !transaction_response_problem(200, "application/fhir+json", parsed, entries).has_value();
    // Never "whole" where the full check finds a problem ("look closer" where it finds none is allowed:
    // a key twice, which nlohmann::json reads as its last).
    EXPECT_TRUE(!transaction_response_is_whole(body, entries) || full) << body << " (" << entries << " entries)";
  }
}

// The parser that reads transaction-responses is kept per thread between pages, up to
// kKeptBetweenPagesBytes: one that grew past it for a very large answer is let go right after that
// answer, not kept until the thread reads the next one (a runner thread may then sit idle for hours).
TEST(TargetResponse, AParserGrownByAVeryLargeAnswerIsLetGoRightAfterIt) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "the sanitizers' allocator does not report bytes in use through mallinfo2";
#else
  using p2p::fhir::transaction_response_is_whole;
  const auto in_use = [] {
    const struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;  // allocated from the heap + in mappings of their own
  };
  const std::string entry =
      R"({"response":{"status":"201 Created","location":"Observation/p2p-0123456789abcdef/_history/1"}})";
  const std::size_t entries = p2p::fhir::kKeptBetweenPagesBytes / entry.size() + 1000;
  std::string large = R"({"resourceType":"Bundle","type":"transaction-response","entry":[)";
  large.reserve(entries * (entry.size() + 1) + 64);
  for (std::size_t i = 0; i < entries; ++i) {
    if (i > 0) large += ',';
    large += entry;
  }
  large += "]}";
  ASSERT_GT(large.size(), p2p::fhir::kKeptBetweenPagesBytes);
  const std::string small = R"({"resourceType":"Bundle","type":"transaction-response","entry":[)" + entry + "]}";
  ASSERT_TRUE(transaction_response_is_whole(small, 1));  // this thread's parser exists, sized for a small answer
  const std::size_t before = in_use();
  ASSERT_TRUE(transaction_response_is_whole(large, entries));
  const std::size_t after = in_use();
  // The parser for the large answer took several times its size; none of that is kept.
  EXPECT_LT(after, before + 1024 * 1024) << "bytes in use grew by " << (after - before) << " and stayed";
#endif
}
