#include "p2p/fhir/page_stream.hpp"

#include <simdjson.h>

#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "json_reading.hpp"
#include "page_rules.hpp"
#include "resource_writer.hpp"

namespace p2p::fhir {
namespace {

namespace ondemand = simdjson::ondemand;
using detail::Key;
using detail::KeyStack;
using detail::kMaxPageDepth;
using detail::kResourceDepth;
using detail::read_key;
using detail::write_string;
using json_type = ondemand::json_type;
using nlohmann::json;

// Reads a value the page path does not write, as nlohmann::json would (see json_reading.hpp).
void check(ondemand::value value, std::size_t depth) { detail::check_value(value, depth, kMaxPageDepth); }

// What one entry of the page is, read by the first pass (copies: the second pass reuses the parser's
// string buffer).
struct EntryFacts {
  bool has_resource = false;
  std::string type;
  std::string id;
};

// A resource read whole, for the steps that need it (nlohmann::json, as the DOM path has it).
json parse_resource(ondemand::object object) {
  json resource = json::parse(object.raw_json().value(), nullptr, false);
  if (resource.is_discarded()) throw detail::NotPlain{};
  // Nested as deep as the DOM path refuses (the resource is at level 4 of the page).
  if (detail::deeper_than(resource, kMaxPageDepth, kResourceDepth)) throw detail::NotPlain{};
  return resource;
}

void write_entry_head(std::string& out, bool first, const std::string& target) {
  if (!first) out.push_back(',');
  out.append("{\"fullUrl\":");
  write_string(out, target);
  out.append(",\"resource\":");
}

void write_entry_tail(std::string& out, const std::string& target) {
  out.append(",\"request\":{\"method\":\"PUT\",\"url\":");
  write_string(out, target);
  out.append("}}");
}

// Pass 1 over a link element: relation and url, as next_link() reads them.
std::optional<std::string> read_link(ondemand::value link, KeyStack& stack) {
  if (link.type() != json_type::object) {
    check(link, 3);
    return std::nullopt;
  }
  KeyStack::Scope keys(stack);
  std::optional<std::string> relation;
  std::optional<std::string> url;
  for (auto field : link.get_object()) {
    const Key key = read_key(field);
    keys.add(key.text);
    ondemand::value value = field.value();
    if ((key == "relation" || key == "url") && value.type() == json_type::string) {
      (key == "relation" ? relation : url) = std::string(value.get_string().value());
    } else {
      check(value, 4);
    }
  }
  if (relation == "next" && url) return url;
  return std::nullopt;
}

// Pass 1 over an entry: fullUrl, and the resource's type and id (its other members are read in pass 2).
EntryFacts read_entry(ondemand::value entry, detail::Rewriter& rewriter, KeyStack& stack) {
  EntryFacts facts;
  if (entry.type() != json_type::object) {
    check(entry, 3);
    return facts;
  }
  KeyStack::Scope keys(stack);
  std::optional<std::string> full_url;
  for (auto field : entry.get_object()) {
    const Key key = read_key(field);
    keys.add(key.text);
    ondemand::value value = field.value();
    if (key == "fullUrl" && value.type() == json_type::string) {
      full_url = std::string(value.get_string().value());
    } else if (key == "resource" && value.type() == json_type::object) {
      facts.has_resource = true;
      // Only resourceType and id matter before pass 2 (a resource written there is read again, every
      // key checked); nlohmann::json would keep the last of two.
      int types = 0;
      int ids = 0;
      for (auto member : value.get_object()) {
        const Key name = read_key(member);
        if (name != "resourceType" && name != "id") continue;
        if (++(name == "id" ? ids : types) > 1) throw detail::NotPlain{};
        ondemand::value member_value = member.value();
        if (member_value.type() == json_type::string) {
          (name == "id" ? facts.id : facts.type) = std::string(member_value.get_string().value());
        }
      }
    } else {
      check(value, 4);
    }
  }
  if (facts.has_resource && full_url) rewriter.add_full_url(std::move(*full_url), facts.type, facts.id);
  return facts;
}

WrittenPage from_dom(TransformedPage transformed, std::optional<std::string> next) {
  WrittenPage page;
  json& entries = transformed.transaction["entry"];
  page.entries = entries.size();
  if (!transformed.target_references.empty()) page.provenance = entries.back()["resource"].dump();
  page.transaction = transformed.transaction.dump();
  transformed.transaction = json();
  page.summary = std::move(transformed);
  page.next = std::move(next);
  return page;
}

// The streaming path; throws detail::NotPlain (or simdjson_error) when the page must take the DOM path.
WrittenPage stream(ondemand::parser& parser, std::string& body, const TransformContext& context,
                   std::string& transaction_buffer) {
  if (body.capacity() < body.size() + simdjson::SIMDJSON_PADDING) body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
  ondemand::document document = parser.iterate(simdjson::padded_string_view(body.data(), body.size(), body.capacity()));
  ondemand::object root = document.get_object();

  // Pass 1: the Bundle, its next link, where each entry goes.
  detail::Rewriter rewriter(context);
  WrittenPage page;
  std::vector<EntryFacts> entries;
  bool bundle = false;
  {
    KeyStack stack;
    KeyStack::Scope keys(stack);
    for (auto field : root) {
      const Key key = read_key(field);
      keys.add(key.text);
      ondemand::value value = field.value();
      const json_type type = value.type();
      if (key == "resourceType" && type == json_type::string) {
        bundle = value.get_string().value() == "Bundle";
      } else if (key == "entry" && type == json_type::array) {
        for (auto entry : value.get_array()) entries.push_back(read_entry(entry.value(), rewriter, stack));
      } else if (key == "total" && type == json_type::number) {
        std::uint64_t count = 0;
        if (!value.get_uint64().get(count)) page.summary.total = static_cast<long long>(std::min<std::uint64_t>(count, 1'000'000'000'000ULL));
      } else if (key == "link" && type == json_type::array) {
        for (auto link : value.get_array()) {
          auto url = read_link(link.value(), stack);
          if (url && !page.next) page.next = std::move(url);
        }
      } else {
        check(value, 2);
      }
    }
    if (!document.current_location().error()) throw detail::NotPlain{};  // content after the Bundle
  }
  if (!bundle) throw detail::NotPlain{};  // the DOM path says what it is not

  // Pass 2: the transaction, written as the resources are read.
  document.rewind();
  root = document.get_object();
  TransformedPage& out = page.summary;
  detail::PageAssembly assembly(context, rewriter, out);
  std::string& transaction = page.transaction;
  transaction = std::move(transaction_buffer);
  transaction.clear();
  transaction.reserve(body.size() + body.size() / 4 + 4096);
  transaction.append(R"({"resourceType":"Bundle","type":"transaction","entry":[)");
  detail::ResourceWriter writer(transaction, rewriter, assembly.references_replaced(), context);
  for (auto field : root) {
    const Key key = read_key(field);
    if (key != "entry") continue;
    ondemand::value value = field.value();
    if (value.type() != json_type::array) continue;
    std::size_t index = 0;
    for (auto entry_result : value.get_array()) {
      if (index == entries.size()) throw detail::NotPlain{};  // cannot be: pass 1 read the same array
      const EntryFacts& facts = entries[index++];
      ondemand::value entry = entry_result.value();
      const detail::EntryVerdict verdict = assembly.classify(facts.has_resource, facts.type, facts.id);
      if (!facts.has_resource) continue;  // read whole in pass 1
      for (auto member : entry.get_object()) {
        const Key name = read_key(member);
        if (name != "resource") continue;
        ondemand::value resource_value = member.value();
        if (verdict.kind == detail::EntryVerdict::Kind::kSkip || verdict.kind == detail::EntryVerdict::Kind::kRepeat) {
          check(resource_value, kResourceDepth);
          continue;
        }
        ondemand::object resource = resource_value.get_object();
        switch (verdict.kind) {
          case detail::EntryVerdict::Kind::kSkip:
          case detail::EntryVerdict::Kind::kRepeat:
            break;
          case detail::EntryVerdict::Kind::kWarnings:
            assembly.add_warnings(parse_resource(resource));
            break;
          case detail::EntryVerdict::Kind::kWrite:
            write_entry_head(transaction, page.entries == 0, *verdict.target);
            if (verdict.member || facts.type == "Provenance") {
              json whole = parse_resource(resource);
              assembly.transform(whole, facts.type, facts.id, verdict);
              transaction.append(whole.dump());
            } else {
              const std::string_view target_id = std::string_view(*verdict.target).substr(facts.type.size() + 1);
              writer.write(resource, facts.type, facts.id, target_id);
              assembly.record_written(*verdict.target);
            }
            write_entry_tail(transaction, *verdict.target);
            ++page.entries;
            break;
        }
      }
    }
  }

  std::string provenance = assembly.page_provenance();
  if (!out.target_references.empty()) {
    const std::string reference = "Provenance/" + out.provenance_id;
    write_entry_head(transaction, page.entries == 0, reference);
    transaction.append(provenance);
    write_entry_tail(transaction, reference);
    ++page.entries;
    page.provenance = std::move(provenance);
  }
  transaction.append("]}");
  page.streamed = true;
  return page;
}

}  // namespace

WrittenPage write_page(std::string& body, const TransformContext& context, std::string transaction) {
  // Pages deeper than 1024 levels (simdjson's default) fail in simdjson and take the DOM path.
  thread_local std::unique_ptr<ondemand::parser> parser;
  if (!parser) parser = std::make_unique<ondemand::parser>();
  try {
    WrittenPage page = stream(*parser, body, context, transaction);
    if (parser->capacity() > kKeptBetweenPagesBytes) parser.reset();
    return page;
  } catch (const detail::NotPlain&) {
  } catch (const simdjson::simdjson_error&) {
  }
  if (parser->capacity() > kKeptBetweenPagesBytes) parser.reset();
  return write_page_with_dom(body, context);
}

WrittenPage write_page_with_dom(const std::string& body, const TransformContext& context) {
  json page = json::parse(body, nullptr, false);
  if (page.is_discarded()) throw PageNotJson();
  std::optional<std::string> next = next_link(page);
  return from_dom(transform_page(std::move(page), context), std::move(next));
}

}  // namespace p2p::fhir