#pragma once
// Reading Prometheus text exposition (GET /metrics) in tests.
#include <sstream>
#include <string>

namespace p2p::test {

// The value of an unlabelled metric sample ("name value"), or -1 when the line is missing.
inline double metric_value(const std::string& metrics, const std::string& name) {
  std::istringstream lines(metrics);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

}  // namespace p2p::test
