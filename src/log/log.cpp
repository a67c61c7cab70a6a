#include "p2p/log/log.hpp"

#include <memory>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace p2p::log {
namespace {

thread_local std::string t_request_id;

class RequestIdFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string_view id = t_request_id.empty() ? std::string_view("-") : std::string_view(t_request_id);
    dest.append(id.data(), id.data() + id.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<RequestIdFlag>(); }
};

}  // namespace

void init(std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") throw std::invalid_argument("unknown log level");
  auto logger = std::make_shared<spdlog::logger>("p2p", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<RequestIdFlag>('Q').set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l [req=%Q] %v");
  logger->set_formatter(std::move(formatter));
  logger->set_level(parsed);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
}

RequestIdScope::RequestIdScope(std::string_view request_id) : previous_(std::move(t_request_id)) {
  t_request_id = std::string(request_id);
}

RequestIdScope::~RequestIdScope() { t_request_id = std::move(previous_); }

std::string_view current_request_id() { return t_request_id; }

}  // namespace p2p::log
