#pragma once
// Writes one source resource as the target gets it while reading it (the streaming page path's writer,
// internal to the fhir module): every value copied as the source wrote it, but for what the reference
// rules of detail::Rewriter change (Reference.reference, Attachment.url, never an extension's url),
// the id replaced, meta (versionId and lastUpdated dropped, the exchange's tag, source) and the
// traceability identifier added. Means what PageAssembly::transform() does to the same resource; what it
// cannot be sure of throws NotPlain (json_reading.hpp) and the page takes the DOM path.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include <simdjson.h>

#include "page_rules.hpp"

namespace p2p::fhir::detail {

// Resources start at level 4 of a page: Bundle, entry array, entry, resource.
constexpr std::size_t kResourceDepth = 4;

class ResourceWriter {
 public:
  // Appends to `out`; counts the references that do not survive in `replaced`.
  ResourceWriter(std::string& out, const Rewriter& rewriter, std::size_t& replaced, const TransformContext& context);
  ~ResourceWriter();
  ResourceWriter(const ResourceWriter&) = delete;
  ResourceWriter& operator=(const ResourceWriter&) = delete;

  // One resource of `type` whose source id is `source_id`, written under `target_id`.
  void write(simdjson::ondemand::object resource, std::string_view type, std::string_view source_id,
             std::string_view target_id);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace p2p::fhir::detail
