// The ceiling for scripts/bench-api.sh: the smallest Beast coroutine server that answers every request
// with a fixed JSON body, on the same thread count as the service. Not part of the product.
#include <cstdlib>
#include <iostream>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/beast.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> session(beast::tcp_stream stream) {
  beast::flat_buffer buffer;
  while (true) {
    http::request<http::string_body> request;
    stream.expires_after(std::chrono::seconds(30));
    auto [error, bytes] = co_await http::async_read(stream, buffer, request, kTuple);
    if (error) break;
    http::response<http::string_body> response{http::status::ok, request.version()};
    response.set(http::field::content_type, "application/json");
    response.body() = R"({"pid":1,"name":"hello"})";
    response.keep_alive(request.keep_alive());
    response.prepare_payload();
    auto [write_error, written] = co_await http::async_write(stream, response, kTuple);
    if (write_error || !response.keep_alive()) break;
  }
}

asio::awaitable<void> listen(asio::io_context& io, tcp::acceptor& acceptor) {
  while (true) {
    auto [error, socket] = co_await acceptor.async_accept(asio::make_strand(io), kTuple);
    if (error) continue;
    asio::co_spawn(socket.get_executor(), session(beast::tcp_stream(tcp::socket(std::move(socket)))), asio::detached);
  }
}

int main(int argc, char** argv) {
  const unsigned short port = argc > 1 ? static_cast<unsigned short>(std::atoi(argv[1])) : 8081;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  asio::io_context io(threads);
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), port});
  asio::co_spawn(io, listen(io, acceptor), asio::detached);
  std::cout << "hello server on 127.0.0.1:" << port << std::endl;
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&io] { io.run(); });
  io.run();
}
