#include "http/wire.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>

namespace p2p::http::wire {

namespace bhttp = boost::beast::http;

void configure_parser(RequestParser& parser, const ServerOptions& options) {
  parser.header_limit(static_cast<std::uint32_t>(options.header_limit_bytes));
  parser.body_limit(options.body_limit_bytes);
}

bool is_json_media_type(std::string_view content_type) {
  auto media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && media.back() == ' ') media.remove_suffix(1);
  std::string lower(media);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return lower == "application/json" || (lower.starts_with("application/") && lower.ends_with("+json"));
}

Request to_request(WireRequest& wire, std::string_view request_id, std::string remote) {
  Request request;
  request.method = std::string(wire.method_string());
  request.target = std::string(wire.target());
  const auto question = request.target.find('?');
  request.path = request.target.substr(0, question);
  if (question != std::string::npos) request.query = request.target.substr(question + 1);
  for (const auto& field : wire) {
    std::string name(field.name_string());
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    request.headers.emplace_back(std::move(name), std::string(field.value()));
  }
  request.body = std::move(wire.body());
  request.request_id = std::string(request_id);
  request.remote_address = std::move(remote);
  return request;
}

ParseResult parse_request(std::string_view bytes, const ServerOptions& options) {
  ParseResult result;
  RequestParser parser;
  configure_parser(parser, options);
  parser.eager(true);  // as http::async_read sets it: parse the body along with the header
  // The loop of Beast's read_some: put what there is; need_more with progress means "call again with
  // the rest", need_more without progress means "read more", which here is the end of the stream.
  while (!parser.is_done()) {
    const auto remaining = bytes.substr(result.consumed);
    boost::system::error_code error;
    const auto used = parser.put(boost::asio::const_buffer(remaining.data(), remaining.size()), error);
    result.consumed += used;
    // In the body, an empty buffer is taken without error and without progress: that is "read more" too
    // (without this, a body cut short by the end of the input loops for ever).
    if (!error && used == 0) error = bhttp::error::need_more;
    if (error == bhttp::error::need_more) {
      if (used > 0) continue;
      error = {};
      if (parser.got_some()) {
        parser.put_eof(error);  // completes a body delimited by the end of the connection
      } else {
        error = bhttp::error::end_of_stream;
      }
      result.error = error;
      break;
    }
    if (error) {
      result.error = error;
      break;
    }
  }
  result.got_some = parser.got_some();
  result.complete = !result.error && parser.is_done();
  if (parser.is_header_done()) result.request.emplace(parser.release());
  return result;
}

}  // namespace p2p::http::wire
