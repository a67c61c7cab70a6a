#include "resource_writer.hpp"

#include "json_reading.hpp"

namespace p2p::fhir::detail {
namespace {

using json_type = ondemand::json_type;

// The parts of a normal object the reference rules look at, across its keys.
struct ObjectState {
  bool first = true;  // no member written yet
  bool has_identifier = false;
  bool has_display = false;
  std::string dropped_display;  // set when the object's reference was not copied
};

}  // namespace

// The reference rules of Rewriter::rewrite, applied while copying.
class ResourceWriter::Impl {
 public:
  Impl(std::string& out, const Rewriter& rewriter, std::size_t& replaced, const TransformContext& context)
      : out_(out), rewriter_(rewriter), replaced_(replaced), context_(context) {
    write_coding(tag_, context.exchange_tag_system, context.exchange_tag_code);
    trace_prefix_ = R"({"use":"secondary","system":)";
    write_string(trace_prefix_, context.traceability_system);
    trace_prefix_.append(R"(,"value":)");
    trace_suffix_ = R"(,"assigner":{"display":)";
    write_string(trace_suffix_, context.source_organization_name);
    trace_suffix_.append("}}");
    source_prefix_ = meta_source_prefix(context);
  }

  // Rewriter::rewrite: any value.
  void node(ondemand::value value, std::size_t depth) {
    const json_type type = value.type();
    if (type == json_type::array) {
      check_depth(depth);
      out_.push_back('[');
      bool first = true;
      for (auto element : value.get_array()) {
        if (!first) out_.push_back(',');
        first = false;
        node(element.value(), depth + 1);
      }
      out_.push_back(']');
    } else if (type == json_type::object) {
      check_depth(depth);
      ObjectState state;
      KeyStack::Scope keys(keys_);
      out_.push_back('{');
      for (auto field : value.get_object()) {
        const Key key = read_key(field);
        keys.add(key.text);
        normal_member(key, field.value(), depth, state);
      }
      close_object(state);
    } else {
      scalar(value, type);
    }
  }

  // A resource to write: its members copied with the reference rules, id replaced, meta and the
  // traceability identifier added.
  void resource(ondemand::object object, std::string_view type, std::string_view source_id, std::string_view target_id) {
    const auto shape = identifier_shape(type);
    const std::size_t depth = kResourceDepth;
    ObjectState state;
    KeyStack::Scope keys(keys_);
    bool seen_meta = false;
    bool seen_identifier = false;
    out_.push_back('{');
    for (auto field : object) {
      const Key key = read_key(field);
      keys.add(key.text);
      ondemand::value value = field.value();
      if (key == "id") {
        member_key(state, key);
        write_string(out_, target_id);
      } else if (key == "meta") {
        seen_meta = true;
        if (value.type() != json_type::object) throw NotPlain{};
        member_key(state, key);
        meta(value.get_object(), depth + 1, type, source_id);
      } else if (key == "identifier" && shape == IdentifierShape::kList) {
        seen_identifier = true;
        state.has_identifier = true;
        open_list_to_append(state, key, value, depth);
        traceability(type, source_id);
        out_.push_back(']');
      } else {
        if (key == "identifier") seen_identifier = true;
        normal_member(key, value, depth, state);
      }
    }
    if (!seen_meta) {
      member_key(state, "meta");
      out_.append("{\"tag\":[").append(tag_).append("],\"source\":");
      write_meta_source(type, source_id);
      out_.push_back('}');
    }
    if (!seen_identifier && shape != IdentifierShape::kNone) {
      // The reference rules above saw no identifier either, as the DOM path's do.
      member_key(state, "identifier");
      if (shape == IdentifierShape::kList) out_.push_back('[');
      traceability(type, source_id);
      if (shape == IdentifierShape::kList) out_.push_back(']');
    }
    close_object(state);
  }

 private:
  static void check_depth(std::size_t depth) {
    if (depth > kMaxPageDepth) throw NotPlain{};
  }

  void scalar(ondemand::value value, json_type type) {
    if (type != json_type::string) {
      out_.append(literal_token(value, type));
      return;
    }
    std::string_view text;
    const std::string_view raw = raw_string(value, text);
    if (!raw.empty()) {
      out_.append(raw);
    } else {
      write_string(out_, text);
    }
  }

  // A list the exchange appends to (identifier, meta.tag), member of an object at `depth`: its key, its
  // elements with the reference rules and a comma; the caller writes the element it adds and the `]`.
  // Not an array: the DOM path replaces it (after rewriting it), so the page takes that path.
  void open_list_to_append(ObjectState& state, Key key, ondemand::value value, std::size_t depth) {
    if (value.type() != json_type::array) throw NotPlain{};
    check_depth(depth + 1);
    member_key(state, key);
    out_.push_back('[');
    for (auto element : value.get_array()) {
      node(element.value(), depth + 2);
      out_.push_back(',');
    }
  }

  // The identifier that says where a resource came from (traceability_identifier).
  void traceability(std::string_view type, std::string_view source_id) {
    out_.append(trace_prefix_);
    scratch_.assign(type).append("/").append(source_id);
    write_string(out_, scratch_);
    out_.append(trace_suffix_);
  }

  // meta_source(), without a string of its own.
  void write_meta_source(std::string_view type, std::string_view source_id) {
    scratch_.assign(source_prefix_).append(type).append("/").append(source_id);
    write_string(out_, scratch_);
  }

  void member_key(ObjectState& state, Key key) {
    if (!state.first) out_.push_back(',');
    state.first = false;
    if (key.plain) {
      out_.push_back('"');
      out_.append(key.text);
      out_.append("\":", 2);
    } else {
      write_string(out_, key.text);
      out_.push_back(':');
    }
  }

  void member_key(ObjectState& state, const char* key) { member_key(state, Key{key, true}); }

  void close_object(ObjectState& state) {
    if (!state.dropped_display.empty() && !state.has_identifier && !state.has_display) {
      member_key(state, "display");
      write_string(out_, state.dropped_display);
    }
    out_.push_back('}');
  }

  // One member of an object the reference rules apply to (Rewriter::rewrite's object case).
  void normal_member(Key key, ondemand::value value, std::size_t depth, ObjectState& state) {
    if (key == "identifier") state.has_identifier = true;
    if (key == "display") state.has_display = true;
    if ((key == "reference" || key == "url") && value.type() == json_type::string) {
      const std::string_view text = value.get_string().value();
      if (key == "reference") {
        const Decision decision = rewriter_.decide(text);
        if (decision.target) {
          member_key(state, key);
          write_string(out_, *decision.target);
        } else if (!decision.reason.empty()) {
          state.dropped_display = not_copied_display(text, decision.reason);
          ++replaced_;
        } else {
          member_key(state, key);
          write_string(out_, text);
        }
        return;
      }
      const UrlDecision decision = rewriter_.decide_url(text);
      switch (decision.action) {
        case UrlDecision::Action::kKeep:
          member_key(state, key);
          write_string(out_, text);
          break;
        case UrlDecision::Action::kReplace:
          member_key(state, key);
          write_string(out_, *decision.value);
          break;
        case UrlDecision::Action::kDrop:
          ++replaced_;
          break;
      }
      return;
    }
    member_key(state, key);
    if (key == "extension" || key == "modifierExtension") {
      extensions(value, depth + 1);
    } else {
      node(value, depth + 1);
    }
  }

  // Rewriter::rewrite_extensions: an extension's own url is never looked at.
  void extensions(ondemand::value value, std::size_t depth) {
    if (value.type() != json_type::array) {
      node(value, depth);
      return;
    }
    check_depth(depth);
    out_.push_back('[');
    bool first = true;
    for (auto element_result : value.get_array()) {
      if (!first) out_.push_back(',');
      first = false;
      ondemand::value element = element_result.value();
      if (element.type() != json_type::object) {
        node(element, depth + 1);
        continue;
      }
      check_depth(depth + 1);
      ObjectState state;
      KeyStack::Scope keys(keys_);
      out_.push_back('{');
      for (auto field : element.get_object()) {
        const Key key = read_key(field);
        keys.add(key.text);
        ondemand::value child = field.value();
        member_key(state, key);
        if (key == "url" && child.type() == json_type::string) {
          write_string(out_, child.get_string().value());
        } else if (key == "extension" || key == "modifierExtension") {
          extensions(child, depth + 2);
        } else {
          node(child, depth + 2);
        }
      }
      out_.push_back('}');
    }
    out_.push_back(']');
  }

  // A resource's meta: the reference rules apply to it as to any object; versionId and lastUpdated go,
  // the exchange's tag is appended, source is set.
  void meta(ondemand::object object, std::size_t depth, std::string_view type, std::string_view source_id) {
    check_depth(depth);
    ObjectState state;
    KeyStack::Scope keys(keys_);
    bool seen_tag = false;
    out_.push_back('{');
    for (auto field : object) {
      const Key key = read_key(field);
      keys.add(key.text);
      ondemand::value value = field.value();
      if (key == "versionId" || key == "lastUpdated" || key == "source") {
        const json_type value_type = value.type();
        if (value_type == json_type::object || value_type == json_type::array) throw NotPlain{};
        check_scalar(value, value_type);
      } else if (key == "tag") {
        seen_tag = true;
        open_list_to_append(state, key, value, depth);
        out_.append(tag_).push_back(']');
      } else {
        normal_member(key, value, depth, state);
      }
    }
    if (!seen_tag) {
      member_key(state, "tag");
      out_.append("[").append(tag_).append("]");
    }
    member_key(state, "source");
    write_meta_source(type, source_id);
    close_object(state);
  }

  std::string& out_;
  const Rewriter& rewriter_;
  std::size_t& replaced_;
  const TransformContext& context_;
  std::string tag_;
  std::string trace_prefix_;
  std::string trace_suffix_;
  std::string source_prefix_;  // meta_source_prefix()
  std::string scratch_;
  KeyStack keys_;
};


ResourceWriter::ResourceWriter(std::string& out, const Rewriter& rewriter, std::size_t& replaced,
                               const TransformContext& context)
    : impl_(std::make_unique<Impl>(out, rewriter, replaced, context)) {}

ResourceWriter::~ResourceWriter() = default;

void ResourceWriter::write(ondemand::object resource, std::string_view type, std::string_view source_id,
                           std::string_view target_id) {
  impl_->resource(resource, type, source_id, target_id);
}

}  // namespace p2p::fhir::detail
