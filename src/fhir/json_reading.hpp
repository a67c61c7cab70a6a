#pragma once
// Reading untrusted JSON with simdjson On-Demand so that it means what nlohmann::json would make of it
// (internal to the fhir module: the streaming page path and the transaction-response check). Anything
// these helpers cannot vouch for throws NotPlain (or simdjson_error): the caller then takes the
// nlohmann::json path, which decides.
#include <simdjson.h>

#include <cstddef>
#include <string_view>
#include <vector>

namespace p2p::fhir::detail {

namespace ondemand = simdjson::ondemand;

struct NotPlain {};

inline std::string_view trimmed(std::string_view token) {

  while (!token.empty() && (token.back() == ' ' || token.back() == '\n' || token.back() == '\r' || token.back() == '\t')) {
    token.remove_suffix(1);
  }
  return token;
}

inline bool digit(char c) { return c >= '0' && c <= '9'; }

// A JSON number nlohmann::json reads as the same value it writes back: the JSON grammar, without an
// exponent (1e999 becomes infinity there, written as null) and not absurdly long.
inline bool plain_number(std::string_view token) {
  if (token.empty() || token.size() > 300) return false;
  std::size_t i = token[0] == '-' ? 1 : 0;
  if (i == token.size()) return false;
  if (token[i] == '0') {
    ++i;
  } else if (digit(token[i])) {
    while (i < token.size() && digit(token[i])) ++i;
  } else {
    return false;
  }
  if (i < token.size() && token[i] == '.') {
    ++i;
    const std::size_t fraction = i;
    while (i < token.size() && digit(token[i])) ++i;
    if (i == fraction) return false;
  }
  return i == token.size();
}

// An object's key: as the source spelled it when it has no escape (then it is also valid JSON string
// content, written back as it is, and it points into the page, which outlives a rewind), unescaped
// otherwise.
struct Key {
  std::string_view text;
  bool plain = true;
  bool operator==(std::string_view other) const { return text == other; }
};

template <typename Field>
Key read_key(Field& field) {
  const char* const start = field.key().value().raw();
  const char* end = start;
  while (*end != '"' && *end != '\\') ++end;  // stage 1 has matched the quotes: the closing one is there
  if (*end == '"') return {std::string_view(start, static_cast<std::size_t>(end - start)), true};
  return {field.unescaped_key().value(), false};
}

// Every scalar is consumed with a get_...() call, never left for the parser to skip: On-Demand skips
// a value it was not asked to read leniently (`"a": "b": "c"` passes, a string followed by a colon
// looking like a key to it), and only a consumed value has what follows it checked.

// A string value as it is written: its JSON text as the source wrote it, quotes included, when it has
// no escape (simdjson has checked the page's UTF-8 and that no control character is unescaped);
// otherwise "" and `text` holds it unescaped (which checks the escapes, surrogates included).
inline std::string_view raw_string(ondemand::value value, std::string_view& text) {
  const std::string_view token = trimmed(value.raw_json_token());
  if (token.size() >= 2 && token.find('\\') == std::string_view::npos) {
    (void)value.get_raw_json_string().value();  // consumed, without unescaping
    return token;
  }
  text = value.get_string().value();
  return {};
}

// A number's or literal's text as the source wrote it, once it is checked (and consumed).
inline std::string_view literal_token(ondemand::value value, ondemand::json_type type) {
  const std::string_view token = trimmed(value.raw_json_token());
  switch (type) {
    case ondemand::json_type::number:
      if (!plain_number(token)) throw NotPlain{};
      (void)value.get_double().value();
      return token;
    case ondemand::json_type::boolean:
      if (token != "true" && token != "false") throw NotPlain{};
      (void)value.get_bool().value();
      return token;
    case ondemand::json_type::null:
      if (token != "null" || !value.is_null().value()) throw NotPlain{};
      return token;
    default:
      throw NotPlain{};
  }
}

inline void check_scalar(ondemand::value value, ondemand::json_type type) {
  if (type == ondemand::json_type::string) {
    std::string_view text;
    (void)raw_string(value, text);
  } else {
    (void)literal_token(value, type);
  }
}

// Keys an object may have (duplicates are looked for linearly); more throws.
constexpr std::size_t kMaxKeys = 128;

// The keys of the objects being read, innermost last: a key twice in one object means nlohmann::json
// would keep the last, so the page takes the DOM path. One vector for all levels, no allocation per
// object once it has grown.
class KeyStack {
 public:
  // The keys of one object: from construction to destruction, the innermost.
  class Scope {
   public:
    explicit Scope(KeyStack& stack) : stack_(stack), start_(stack.keys_.size()) {}
    ~Scope() { stack_.keys_.resize(start_); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

    void add(std::string_view key) {
      auto& keys = stack_.keys_;
      for (std::size_t i = start_; i < keys.size(); ++i) {
        if (keys[i] == key) throw NotPlain{};
      }
      if (keys.size() - start_ == kMaxKeys) throw NotPlain{};
      keys.push_back(key);
    }

   private:
    KeyStack& stack_;
    std::size_t start_;
  };

 private:
  std::vector<std::string_view> keys_;
};

// Reads `value` whole without writing it, as nlohmann::json reads it (keys and strings unescaped,
// numbers and literals checked), so that what nlohmann::json would refuse as invalid is refused here
// too. `depth` is the value's level (the document's root is 1); an array or object deeper than
// `max_depth` throws.
inline void check_value(ondemand::value value, std::size_t depth, std::size_t max_depth) {
  const ondemand::json_type type = value.type();
  if (type == ondemand::json_type::array) {
    if (depth > max_depth) throw NotPlain{};
    for (auto element : value.get_array()) check_value(element.value(), depth + 1, max_depth);
  } else if (type == ondemand::json_type::object) {
    if (depth > max_depth) throw NotPlain{};
    for (auto field : value.get_object()) {
      (void)read_key(field);
      check_value(field.value(), depth + 1, max_depth);
    }
  } else {
    check_scalar(value, type);
  }
}

}  // namespace p2p::fhir::detail
