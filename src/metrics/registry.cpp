#include "p2p/metrics/registry.hpp"

#include <cmath>
#include <stdexcept>
#include <algorithm>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>

namespace p2p::metrics {
namespace {

std::string format_value(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) return fmt::format("{}", static_cast<long long>(value));
  return fmt::format("{}", value);
}

std::string join_labels(std::string_view labels, std::string_view more) {
  if (labels.empty()) return std::string(more);
  return std::string(labels) + "," + std::string(more);
}

}  // namespace

std::string sample_line(std::string_view name, std::string_view labels, double value) {
  if (labels.empty()) return fmt::format("{} {}\n", name, format_value(value));
  return fmt::format("{}{{{}}} {}\n", name, labels, format_value(value));
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  std::size_t bucket = 0;
  while (bucket < bounds_.size() && !(value <= bounds_[bucket])) ++bucket;  // (NaN: only +Inf)
  std::lock_guard lock(mutex_);
  ++counts_[bucket];
  sum_ += value;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot snapshot;
  std::lock_guard lock(mutex_);
  std::uint64_t running = 0;
  for (const auto count : counts_) {
    running += count;
    snapshot.cumulative.push_back(running);
  }
  snapshot.sum = sum_;
  return snapshot;
}

using Reader = std::function<double()>;
using Sample = std::variant<std::unique_ptr<Counter>, std::unique_ptr<Gauge>, std::unique_ptr<Histogram>, Reader>;

using Samples = std::vector<std::pair<std::string, Sample>>;  // by labels, in the order declared

struct Registry::Family {
  std::string name, help, type;
  Samples samples;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Family& Registry::family(std::string_view name, std::string_view help, std::string_view type) {
  for (auto& family : families_) {
    if (family->name != name) continue;
    if (family->type != type || family->help != help) {
      throw std::logic_error("metric " + std::string(name) + " is declared twice, differently");
    }
    return *family;
  }
  families_.push_back(std::make_unique<Family>(Family{std::string(name), std::string(help), std::string(type), {}}));
  return *families_.back();
}

namespace {

Samples::iterator find(Samples& samples, std::string_view labels) {
  return std::find_if(samples.begin(), samples.end(), [labels](const auto& sample) { return sample.first == labels; });
}

template <typename Metric, typename Make>
Metric& sample(Samples& samples, std::string_view name, std::string_view labels, Make make) {
  auto found = find(samples, labels);
  if (found == samples.end()) found = samples.emplace(samples.end(), std::string(labels), make());
  auto* held = std::get_if<std::unique_ptr<Metric>>(&found->second);
  if (held == nullptr) throw std::logic_error("metric " + std::string(name) + "{" + std::string(labels) + "} is declared twice");
  return **held;
}

void add_reader(Samples& samples, std::string_view name, std::string_view labels, Reader read) {
  if (find(samples, labels) != samples.end()) {
    throw std::logic_error("metric " + std::string(name) + "{" + std::string(labels) + "} is declared twice");
  }
  samples.emplace_back(std::string(labels), std::move(read));
}

}  // namespace

void Registry::declare(std::string_view name, std::string_view help, std::string_view type) {
  std::lock_guard lock(mutex_);
  family(name, help, type);
}

Counter& Registry::counter(std::string_view name, std::string_view help, std::string_view labels) {
  std::lock_guard lock(mutex_);
  return sample<Counter>(family(name, help, "counter").samples, name, labels,
                         [] { return Sample(std::make_unique<Counter>()); });
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, std::string_view labels) {
  std::lock_guard lock(mutex_);
  return sample<Gauge>(family(name, help, "gauge").samples, name, labels, [] { return Sample(std::make_unique<Gauge>()); });
}

Histogram& Registry::histogram(std::string_view name, std::string_view help, std::span<const double> upper_bounds,
                               std::string_view labels) {
  std::lock_guard lock(mutex_);
  return sample<Histogram>(family(name, help, "histogram").samples, name, labels, [upper_bounds] {
    return Sample(std::make_unique<Histogram>(std::vector<double>(upper_bounds.begin(), upper_bounds.end())));
  });
}

void Registry::counter_reader(std::string_view name, std::string_view help, std::string_view labels, Reader read) {
  std::lock_guard lock(mutex_);
  add_reader(family(name, help, "counter").samples, name, labels, std::move(read));
}

void Registry::gauge_reader(std::string_view name, std::string_view help, std::string_view labels, Reader read) {
  std::lock_guard lock(mutex_);
  add_reader(family(name, help, "gauge").samples, name, labels, std::move(read));
}

std::string Registry::render() const {
  std::string out;
  std::lock_guard lock(mutex_);
  for (const auto& family : families_) {
    out += "# HELP " + family->name + " " + family->help + "\n";
    out += "# TYPE " + family->name + " " + family->type + "\n";
    for (const auto& [labels, sample] : family->samples) {
      if (const auto* counter = std::get_if<std::unique_ptr<Counter>>(&sample)) {
        out += sample_line(family->name, labels, static_cast<double>((*counter)->value()));
      } else if (const auto* gauge = std::get_if<std::unique_ptr<Gauge>>(&sample)) {
        out += sample_line(family->name, labels, (*gauge)->value());
      } else if (const auto* read = std::get_if<Reader>(&sample)) {
        out += sample_line(family->name, labels, (*read)());
      } else {
        const auto& histogram = *std::get<std::unique_ptr<Histogram>>(sample);
        const auto snapshot = histogram.snapshot();
        const auto& bounds = histogram.upper_bounds();
        for (std::size_t i = 0; i < bounds.size(); ++i) {
          out += sample_line(family->name + "_bucket", join_labels(labels, fmt::format("le=\"{}\"", bounds[i])),
                             static_cast<double>(snapshot.cumulative[i]));
        }
        out += sample_line(family->name + "_bucket", join_labels(labels, "le=\"+Inf\""),
                           static_cast<double>(snapshot.cumulative.back()));
        out += sample_line(family->name + "_sum", labels, snapshot.sum);
        out += sample_line(family->name + "_count", labels, static_cast<double>(snapshot.cumulative.back()));
      }
    }
  }
  return out;
}

}  // namespace p2p::metrics
