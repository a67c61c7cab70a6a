// docs/configuration.md is checked against the configuration's own record of its keys
// (config::key_specs(): every key as the reader reads it, with its type, default and limits) and
// against the environment overrides, so the documentation cannot drift from the code.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "p2p/config/config.hpp"

namespace {

struct DocRow {
  std::vector<std::string> cells;  // trimmed, without the outer pipes
};

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(' ');
  if (first == std::string::npos) return {};
  return text.substr(first, text.find_last_not_of(' ') - first + 1);
}

std::vector<std::string> cells_of(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  bool code = false;
  for (std::size_t i = 1; i < line.size(); ++i) {  // after the first '|'
    const char c = line[i];
    if (c == '`') code = !code;
    if (c == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
      cell += '|';
      ++i;
      continue;
    }
    if (c == '|' && !code) {
      cells.push_back(trim(cell));
      cell.clear();
      continue;
    }
    cell += c;
  }
  return cells;
}

// The first `code span` of a cell, or the cell when it has none.
std::string first_code(const std::string& cell) {
  const auto open = cell.find('`');
  if (open == std::string::npos) return cell;
  const auto close = cell.find('`', open + 1);
  return cell.substr(open + 1, close - open - 1);
}

// The rows of the tables under `heading` (a "## " heading) whose first cell is a `code` key. A table
// introduced by "Each `some.object` key:" names its keys relative to that object; other relative
// names (an oidcServers entry's keys) are left out.
std::map<std::string, DocRow> rows_under(const std::string& heading) {
  std::ifstream file(std::string(P2P_SOURCE_DIR) + "/docs/configuration.md");
  std::map<std::string, DocRow> rows;
  bool inside = false;
  std::string prefix;
  for (std::string line; std::getline(file, line);) {
    if (line.starts_with("#")) prefix.clear();
    if (line.starts_with("## ")) inside = line.starts_with(heading);
    if (line.starts_with("Each `") && line.ends_with("` key:")) prefix = line.substr(6, line.size() - 6 - 6);
    if (!inside || !line.starts_with("| `")) continue;
    DocRow row{cells_of(line)};
    std::string key = first_code(row.cells[0]);
    if (key.find('.') == std::string::npos && heading == "## Keys") {
      if (prefix.empty()) continue;
      key = prefix + "." + key;
    }
    rows[key] = row;
  }
  return rows;
}

// The documented row of `key`: its own, or the row of an object it is in (documented as a whole, such
// as an e-mail template).
const DocRow* row_of(const std::map<std::string, DocRow>& rows, const std::string& key, bool& whole_object) {
  whole_object = false;
  if (const auto found = rows.find(key); found != rows.end()) return &found->second;
  for (auto dot = key.rfind('.'); dot != std::string::npos; dot = key.rfind('.', dot - 1)) {
    const auto parent = rows.find(key.substr(0, dot));
    if (parent != rows.end() && parent->second.cells.size() > 1 && parent->second.cells[1].starts_with("object")) {
      whole_object = true;
      return &parent->second;
    }
    if (dot == 0) break;
  }
  return nullptr;
}

std::string en_dash_range(std::int64_t min, std::int64_t max) { return std::to_string(min) + "\u2013" + std::to_string(max); }

}  // namespace

TEST(ConfigurationDocs, EveryKeyTheServiceReadsIsDocumentedWithItsTypeDefaultLimitsAndVariable) {
  const auto documented = rows_under("## Keys");
  ASSERT_GT(documented.size(), 40u) << "the key tables of docs/configuration.md were not found";
  std::map<std::string, std::string> variables;
  for (const auto& override : p2p::config::environment_overrides()) variables[override.key] = override.variable;

  for (const auto& spec : p2p::config::key_specs()) {
    bool whole_object = false;
    const DocRow* row = row_of(documented, spec.key, whole_object);
    if (row == nullptr) {
      ADD_FAILURE() << spec.key << " is read by the service but has no row in docs/configuration.md";
      continue;
    }
    if (whole_object) continue;  // its keys are described with the object
    const auto& cells = row->cells;
    ASSERT_GE(cells.size(), 5u) << spec.key;
    EXPECT_TRUE(cells[1].starts_with(spec.type)) << spec.key << ": documented as " << cells[1] << ", read as " << spec.type;
    if (spec.type != "array of strings" && cells[2] != "required") {
      EXPECT_EQ(first_code(cells[2]), spec.default_value) << spec.key << ": the documented default";
    }
    if (spec.limits) {
      EXPECT_TRUE(cells[3].starts_with(en_dash_range(spec.limits->first, spec.limits->second)))
          << spec.key << ": documented as allowing " << cells[3] << ", read with limits "
          << en_dash_range(spec.limits->first, spec.limits->second);
    }
    if (cells.size() < 6) continue;  // a table of an object's keys: no Environment column
    const auto variable = variables.find(spec.key);
    EXPECT_EQ(first_code(cells[4]), variable == variables.end() ? "\u2014" : variable->second)
        << spec.key << ": the documented environment variable";
  }
}

TEST(ConfigurationDocs, EveryDocumentedKeyIsOneTheServiceReads) {
  std::set<std::string> read;
  for (const auto& spec : p2p::config::key_specs()) read.insert(spec.key);
  for (const auto& [key, row] : rows_under("## Keys")) {
    if (row.cells.size() > 1 && row.cells[1].starts_with("object")) continue;
    EXPECT_TRUE(read.contains(key)) << key << " is documented but the service does not read it";
  }
}

TEST(ConfigurationDocs, TheEnvironmentTableIsExactlyTheOverrides) {
  std::map<std::string, std::string> documented;
  for (const auto& [variable, row] : rows_under("## Environment variables")) {
    documented[variable] = first_code(row.cells.at(1));
  }
  std::map<std::string, std::string> overrides;
  std::set<std::string> read;
  for (const auto& spec : p2p::config::key_specs()) read.insert(spec.key);
  for (const auto& override : p2p::config::environment_overrides()) {
    overrides[override.variable] = override.key;
    EXPECT_TRUE(read.contains(override.key)) << override.variable << " sets " << override.key << ", which is not read";
  }
  EXPECT_EQ(documented, overrides);
}
