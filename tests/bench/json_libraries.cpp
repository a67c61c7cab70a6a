// Which JSON library for the page path (issue #11): each candidate packaged by Debian does the least any
// page transform must do with one real page: parse it, visit every value, write it back out as JSON.
// The current path (nlohmann::json DOM: parse, transform_page, dump) is measured beside them on the same
// page. Prints one line per candidate: microseconds per page and per resource, and MB/s of input.
//
// usage: bench-json-libraries-{portable,haswell} PAGE.json [ITERATIONS]   (scripts/bench-json.sh
//        fetches a page from tests/bench/fast-peers.mjs and runs both; docs/performance.md has the results)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory_resource>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/src.hpp>  // header-only Boost.JSON: no library to link
#include <nlohmann/json.hpp>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <cstdlib>

#include <simdjson.h>

#include "p2p/fhir/page_stream.hpp"
#include "p2p/fhir/page_transform.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// JSON string escaping for the simdjson walk (it hands out unescaped text).
void write_escaped(std::string& out, std::string_view text) {
  out.push_back('"');
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += escaped;
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

// simdjson On-Demand: every value visited, keys and strings unescaped (as a transform must, to compare
// a key or rewrite a reference) and written escaped; numbers, booleans and null copied as their text.
void simdjson_walk(simdjson::ondemand::value value, std::string& out) {
  using simdjson::ondemand::json_type;
  switch (value.type().value()) {
    case json_type::object: {
      out.push_back('{');
      bool first = true;
      for (auto field : value.get_object()) {
        if (!first) out.push_back(',');
        first = false;
        write_escaped(out, field.unescaped_key().value());
        out.push_back(':');
        simdjson_walk(field.value(), out);
      }
      out.push_back('}');
      break;
    }
    case json_type::array: {
      out.push_back('[');
      bool first = true;
      for (auto element : value.get_array()) {
        if (!first) out.push_back(',');
        first = false;
        simdjson_walk(element.value(), out);
      }
      out.push_back(']');
      break;
    }
    case json_type::string:
      write_escaped(out, value.get_string().value());
      break;
    default: {
      std::string_view token = value.raw_json_token();
      while (!token.empty() && (token.back() == ' ' || token.back() == '\n' || token.back() == '\r' || token.back() == '\t')) {
        token.remove_suffix(1);
      }
      out.append(token);
    }
  }
}

struct Candidate {
  std::string name;
  std::function<std::size_t()> run;  // one page; returns the output size (kept, so nothing is optimised away)
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: bench-json-libraries-{portable,haswell} PAGE.json [ITERATIONS]\n";
    return 2;
  }
  std::ifstream file(argv[1], std::ios::binary);
  std::stringstream read;
  read << file.rdbuf();
  const std::string page = read.str();
  const int iterations = argc > 2 ? std::stoi(argv[2]) : 100;
  const auto parsed_once = nlohmann::json::parse(page);
  const std::size_t resources = parsed_once.value("entry", nlohmann::json::array()).size();
  if (resources == 0) {
    std::cerr << "the page has no entries\n";
    return 2;
  }

  p2p::fhir::TransformContext context;
  context.source_fhir_endpoint = "http://127.0.0.1:1/fhir";
  context.target_fhir_endpoint = "http://127.0.0.1:2/fhir";
  context.source_organization_id = "org-1";
  context.source_organization_name = "Previous Payer";
  context.source_patient_id = "m1";
  context.target_patient_id = "t1";
  context.traceability_system = "urn:p2p:source";
  context.exchange_tag_system = "urn:p2p:exchange";
  context.exchange_tag_code = "batch-job-1";
  context.recorded = "2026-12-01T00:00:00Z";
  context.source_page_url = "http://127.0.0.1:1/fhir/Patient/m1/$everything";

  simdjson::ondemand::parser simdjson_parser;
  const simdjson::padded_string padded(page);
  std::string out;
  out.reserve(page.size() * 2);
  std::vector<unsigned char> arena(page.size() * 8);

  std::string body;
  body.reserve(page.size() + 64);
  std::vector<Candidate> candidates = {
      {"the service's page path since #11: write_page (streaming, simdjson On-Demand)",
       [&] {
         body.assign(page);
         const auto written = p2p::fhir::write_page(body, context);
         if (!written.streamed) throw std::runtime_error("the page took the DOM path");
         return written.transaction.size();
       }},
      {"nlohmann::json: parse, transform_page, dump (the page path before #11)",
       [&] {
         auto transformed = p2p::fhir::transform_page(nlohmann::json::parse(page), context);
         return transformed.transaction.dump().size();
       }},
      {"nlohmann::json: parse, dump",
       [&] { return nlohmann::json::parse(page).dump().size(); }},
      {"Boost.JSON 1.81: parse into a monotonic buffer, serialize",
       [&] {
         boost::json::monotonic_resource resource(arena.data(), arena.size());
         const auto value = boost::json::parse(page, &resource);
         return boost::json::serialize(value).size();
       }},
      {"RapidJSON 1.1: SAX reader straight into a writer",
       [&] {
         rapidjson::StringBuffer buffer;
         buffer.Reserve(page.size() + 1024);
         rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
         rapidjson::Reader reader;
         rapidjson::StringStream stream(page.c_str());
         if (!reader.Parse(stream, writer)) throw std::runtime_error("RapidJSON: parse error");
         return buffer.GetSize();
       }},
      {"simdjson 3.0.1 On-Demand: walk every value, write",
       [&] {
         out.clear();
         auto document = simdjson_parser.iterate(padded);
         simdjson_walk(document.get_value().value(), out);
         return out.size();
       }},
      {"simdjson 3.0.1 On-Demand: each entry's resource copied as its raw bytes (the floor)",
       [&] {
         out.clear();
         auto document = simdjson_parser.iterate(padded);
         for (auto entry : document["entry"].get_array()) {
           simdjson::ondemand::object resource = entry.get_object()["resource"].get_object();
           out.append(resource.raw_json().value());
         }
         return out.size();
       }},
  };

#define P2P_STRINGIFY_INNER(x) #x
#define P2P_STRINGIFY(x) P2P_STRINGIFY_INNER(x)
  // The On-Demand API is compiled into this program (not the shared library) for the kernel the
  // compiler flags allow: "fallback" for portable x86-64, "haswell" with AVX2.
  constexpr int kRounds = 7;
  std::printf("page: %zu bytes, %zu entries; %d pages per timed run, %d runs interleaved across candidates (best "
              "run shown); simdjson On-Demand kernel: %s\n",
              page.size(), resources, iterations, kRounds, P2P_STRINGIFY(SIMDJSON_BUILTIN_IMPLEMENTATION));
  // P2P_BENCH_ONLY=text: only the candidates whose name contains it (e.g. to profile one with perf).
  if (const char* only = std::getenv("P2P_BENCH_ONLY"); only && *only) {
    std::erase_if(candidates, [only](const Candidate& candidate) { return candidate.name.find(only) == std::string::npos; });
  }
  std::size_t sink = 0;
  for (auto& candidate : candidates) {
    for (int i = 0; i < 10; ++i) sink += candidate.run();  // warm-up
  }
  // Interleaved: a shared machine's load drifts; each candidate's best run is compared.
  std::vector<double> best(candidates.size(), 1e300);
  for (int round = 0; round < kRounds; ++round) {
    for (std::size_t c = 0; c < candidates.size(); ++c) {
      const auto start = Clock::now();
      for (int i = 0; i < iterations; ++i) sink += candidates[c].run();
      best[c] = std::min(best[c], std::chrono::duration<double>(Clock::now() - start).count());
    }
  }
  std::printf("%-88s %10s %12s %8s\n", "candidate", "us/page", "us/resource", "MB/s");
  for (std::size_t c = 0; c < candidates.size(); ++c) {
    const double per_page_us = best[c] / iterations * 1e6;
    std::printf("%-88s %10.1f %12.2f %8.0f\n", candidates[c].name.c_str(), per_page_us, per_page_us / resources,
                page.size() / (per_page_us / 1e6) / 1e6);
  }
  if (sink == 0) std::printf("(no output?)\n");
  return 0;
}
