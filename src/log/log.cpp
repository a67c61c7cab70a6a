#include "p2p/log/log.hpp"

#include <memory>

#include <unistd.h>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>

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

// Writes formatted lines to stderr in batches: one write(2) per flush instead of one per line, which
// matters for the access log at tens of thousands of requests a second. Warnings and errors, and
// any batch over 32 KiB, are written at once; the rest within a second (and at exit).
class BatchedStderrSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  ~BatchedStderrSink() override { flush_(); }

 protected:
  void sink_it_(const spdlog::details::log_msg& message) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(message, formatted);
    buffer_.append(formatted.data(), formatted.size());
    if (message.level >= spdlog::level::warn || buffer_.size() > 32 * 1024) flush_();
  }

  void flush_() override {
    const char* data = buffer_.data();
    std::size_t left = buffer_.size();
    while (left > 0) {
      const ssize_t written = ::write(STDERR_FILENO, data, left);
      if (written <= 0) break;  // nowhere to report a failing stderr
      data += written;
      left -= static_cast<std::size_t>(written);
    }
    buffer_.clear();
  }

 private:
  std::string buffer_;
};

constexpr std::chrono::seconds kFlushInterval{1};

}  // namespace

void init(std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") throw std::invalid_argument("unknown log level");
  auto logger = std::make_shared<spdlog::logger>("p2p", std::make_shared<BatchedStderrSink>());
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<RequestIdFlag>('Q').set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l [req=%Q] %v");
  logger->set_formatter(std::move(formatter));
  logger->set_level(parsed);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  spdlog::flush_every(kFlushInterval);
}

void shutdown() {
  spdlog::default_logger()->flush();
  spdlog::shutdown();
}

RequestIdScope::RequestIdScope(std::string_view request_id) : previous_(std::move(t_request_id)) {
  t_request_id = std::string(request_id);
}

RequestIdScope::~RequestIdScope() { t_request_id = std::move(previous_); }

std::string_view current_request_id() { return t_request_id; }

}  // namespace p2p::log
