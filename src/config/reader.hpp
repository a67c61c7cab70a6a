#pragma once
// How the configuration is read (private to src/config): a Reader collects every issue instead of
// stopping at the first and records what each key is (KeySpec); a Section is one object of the
// document at its key path, which names each key once, where it is read, and finds the keys it does
// not know by itself (no list kept by hand).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "p2p/config/config.hpp"

namespace p2p::config {

// `text` without leading and trailing white space.
std::string trim(std::string_view text);

// The key path of `name` inside the object at `path` ("" for the root), readable whatever the document
// holds: a name that is not plain (empty, spaces, dots, brackets, quotes, control or non-ASCII
// characters) is quoted as a JSON string, a long one is cut, and one at the root says so: (root)."".
std::string key_path(const std::string& path, const std::string& name);

// Collects every issue instead of stopping at the first, naming the environment variable a value came
// from; records what each key is (KeySpec) when asked to.
class Reader {
 public:
  Reader(std::vector<ConfigIssue>& issues, const std::map<std::string, std::string>& env_sources,
         std::vector<KeySpec>* specs = nullptr)
      : issues_(issues), env_sources_(env_sources), specs_(specs) {}

  void fail(const std::string& key, const std::string& reason) {
    auto source = env_sources_.find(key);
    if (source == env_sources_.end() && key.ends_with(']')) {  // an item of a list set from the environment
      source = env_sources_.find(key.substr(0, key.rfind('[')));
    }
    issues_.push_back({source == env_sources_.end() ? key : key + " (from " + source->second + ")", reason});
  }

  std::size_t issue_count() const { return issues_.size(); }
  // Puts issues found later at `position` (a section's unknown keys go before what was found in it).
  void move_to(std::size_t position, std::size_t from) {
    std::rotate(issues_.begin() + static_cast<std::ptrdiff_t>(position), issues_.begin() + static_cast<std::ptrdiff_t>(from),
                issues_.end());
  }

  void record(KeySpec spec) {
    if (specs_ != nullptr) specs_->push_back(std::move(spec));
  }

 private:
  std::vector<ConfigIssue>& issues_;
  const std::map<std::string, std::string>& env_sources_;
  std::vector<KeySpec>* specs_;
};

enum class Presence { kOptional, kNotEmptyWhenSet, kRequired };

// One object of the document at its key path (or the place where it would be: an absent section
// reads as empty). Each key is named once, where it is read: the section records the names asked of
// it, and when it goes out of scope reports every other key it holds as unknown, listing the ones it
// knows (before the issues found in it, as a reader of the file meets them). Every typed read also
// records the key's type, default and limits (KeySpec), which is what docs/configuration.md is
// checked against.
class Section {
 public:
  Section(Reader& reader, const nlohmann::json* object, std::string path)
      : reader_(reader), object_(object), path_(std::move(path)), first_issue_(reader.issue_count()) {}
  Section(const Section&) = delete;
  Section& operator=(const Section&) = delete;
  ~Section() {
    if (object_ == nullptr) return;
    const std::size_t found_since = reader_.issue_count();
    for (const auto& [name, value] : object_->items()) {
      if (name.starts_with('_') || name == "$schema") continue;  // comments
      if (std::find(asked_.begin(), asked_.end(), name) != asked_.end()) continue;
      std::string list;
      for (const auto& known : asked_) list += (list.empty() ? "" : ", ") + known;
      reader_.fail(key_path(path_, name), "unknown key; the keys allowed here are: " + list);
    }
    reader_.move_to(first_issue_, found_since);
  }

  const std::string& path() const { return path_; }
  bool present() const { return object_ != nullptr; }
  std::string key(std::string_view name) const {
    return path_.empty() ? std::string(name) : path_ + "." + std::string(name);
  }

  // The raw value of `name` (null when absent or null), for a check of the caller's own.
  const nlohmann::json* value(std::string_view name) {
    if (std::find(asked_.begin(), asked_.end(), name) == asked_.end()) asked_.emplace_back(name);
    if (object_ == nullptr) return nullptr;
    const auto found = object_->find(name);
    if (found == object_->end() || found->is_null()) return nullptr;
    return &*found;
  }

  // The object `name` (absent: an empty section; not an object: an issue, and an empty section).
  Section child(std::string_view name) {
    const nlohmann::json* found = value(name);
    if (found != nullptr && !found->is_object()) {
      reader_.fail(key(name), "must be an object");
      found = nullptr;
    }
    return Section(reader_, found, key(name));
  }

  void string(std::string_view name, std::string& out, Presence presence = Presence::kOptional) {
    reader_.record({key(name), "string", nlohmann::json(out).dump(), std::nullopt});
    const nlohmann::json* found = value(name);
    if (found == nullptr) {
      if (presence == Presence::kRequired) reader_.fail(key(name), "is required");
      return;
    }
    if (!found->is_string()) {
      reader_.fail(key(name), "must be a string");
      return;
    }
    out = found->get<std::string>();
    if (presence != Presence::kOptional && trim(out).empty()) reader_.fail(key(name), "must not be empty");
  }

  void optional_string(std::string_view name, std::optional<std::string>& out) {
    reader_.record({key(name), "string", "null", std::nullopt});
    const nlohmann::json* found = value(name);
    if (found == nullptr) return;
    if (!found->is_string()) {
      reader_.fail(key(name), "must be a string or null");
      return;
    }
    out = found->get<std::string>();
  }

  void boolean(std::string_view name, bool& out) {
    reader_.record({key(name), "boolean", out ? "true" : "false", std::nullopt});
    const nlohmann::json* found = value(name);
    if (found == nullptr) return;
    if (!found->is_boolean()) {
      reader_.fail(key(name), "must be true or false");
      return;
    }
    out = found->get<bool>();
  }

  void string_list(std::string_view name, std::vector<std::string>& out) {
    reader_.record({key(name), "array of strings", nlohmann::json(out).dump(), std::nullopt});
    const nlohmann::json* found = value(name);
    if (found == nullptr) return;
    if (!found->is_array()) {
      reader_.fail(key(name), "must be an array of strings");
      return;
    }
    for (std::size_t i = 0; i < found->size(); ++i) {
      if (!(*found)[i].is_string()) {
        reader_.fail(key(name) + "[" + std::to_string(i) + "]", "must be a string");
      } else {
        out.push_back((*found)[i].get<std::string>());
      }
    }
  }

  template <typename Int>
  void integer(std::string_view name, Int& out, std::int64_t min, std::int64_t max) {
    reader_.record({key(name), "integer", std::to_string(out), std::make_pair(min, max)});
    const nlohmann::json* found = value(name);
    if (found == nullptr) return;
    if (!found->is_number_integer()) {
      reader_.fail(key(name), "must be an integer between " + std::to_string(min) + " and " + std::to_string(max));
      return;
    }
    const auto number = found->get<std::int64_t>();
    if (number < min || number > max) {
      reader_.fail(key(name), "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                                  std::to_string(number));
      return;
    }
    out = static_cast<Int>(number);
  }

 private:
  Reader& reader_;
  const nlohmann::json* object_;
  std::string path_;
  std::size_t first_issue_;
  std::vector<std::string> asked_;
};

}  // namespace p2p::config
