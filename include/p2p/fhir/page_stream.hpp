#pragma once
// The job runner's page path: one page's bytes as the source sent them in, the transaction for the
// target out as bytes, without building a DOM of the page (issue #11, docs/performance.md).
//
// The transaction means exactly what transform_page() (page_transform.hpp) makes of the same page: the
// same entries, ids, references, tags, identifiers, counts and warnings. Only the spelling may differ:
// keys keep the source's order, numbers keep the source's text (FHIR decimals keep their precision),
// strings are escaped minimally.
//
// How: simdjson's On-Demand parser reads the page twice. The first pass checks the Bundle, reads its
// next link and, per entry, fullUrl, resourceType and id; the second writes each written resource as
// it reads it, rewriting id, meta, identifier and every reference on the way. A page the streaming
// path cannot take with certainty of the same meaning (invalid JSON, a key twice in one object, nesting
// deeper than 256 levels, a number with an exponent or of more than 300 characters, a meta or
// identifier of an unusual JSON type) takes the DOM path instead: nlohmann::json and transform_page(),
// as before. Resources whose steps need the whole resource (the member's Patient with MDM, Provenance,
// OperationOutcome) are parsed with nlohmann::json one by one.
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "p2p/fhir/page_transform.hpp"

namespace p2p::fhir {

// The memory kept from one page to the next for reuse, each buffer up to this size: a job's buffers for
// the page's body and the transaction, and the parsers each runner thread shares between its jobs (the
// page's, the transaction-response's). A buffer that grew past it, for a page near
// exchange.maxPageBytes, is let go once that page (or answer) is done with it rather than kept for the
// pages after (docs/exchange.md, "Memory").
inline constexpr std::size_t kKeptBetweenPagesBytes = 4 * 1024 * 1024;

// The page is not JSON at all.
class PageNotJson : public std::runtime_error {
 public:
  PageNotJson() : std::runtime_error("the page is not valid JSON") {}
};

struct WrittenPage {
  TransformedPage summary;        // counts, warnings, target references, provenance id; its transaction is null
  std::string transaction;        // the transaction Bundle, serialised, as it is sent
  std::size_t entries = 0;        // entries of the transaction (the written resources and the page's Provenance)
  std::string provenance;         // the page's Provenance, serialised as in the transaction; "" when nothing is written
  std::optional<std::string> next;  // Bundle.link[relation=next].url, as next_link() reads it
  bool streamed = false;          // false: the page took the DOM path
};

// `body` is the page; it may grow by 64 bytes of padding (its capacity, not its text). Throws
// PageNotJson, std::invalid_argument (not a Bundle, or nested too deep) and nlohmann::json::exception
// as transform_page() does. The parser is one per thread (the job runner's jobs share their thread's),
// its buffers kept between pages up to kKeptBetweenPagesBytes. `transaction`: storage
// whose capacity the transaction reuses (the one of a page sent before), its text replaced.
WrittenPage write_page(std::string& body, const TransformContext& context, std::string transaction = {});

// The DOM path only (the fallback; for the differential test and the fuzzer).
WrittenPage write_page_with_dom(const std::string& body, const TransformContext& context);

}  // namespace p2p::fhir
