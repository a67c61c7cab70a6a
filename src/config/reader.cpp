#include "reader.hpp"

#include <cctype>

#include "p2p/util/text.hpp"

namespace p2p::config {

using nlohmann::json;

std::string trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

std::string key_path(const std::string& path, const std::string& name) {
  constexpr std::size_t kShownBytes = 64;
  const bool plain = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '$';
  });
  const bool long_name = name.size() > kShownBytes;
  std::string shown(util::utf8_prefix(name, kShownBytes));
  if (!plain) shown = json(shown).dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
  if (long_name) shown += "...(" + std::to_string(name.size()) + " bytes)";
  if (path.empty()) return plain ? shown : "(root)." + shown;
  return path + "." + shown;
}


}  // namespace p2p::config
