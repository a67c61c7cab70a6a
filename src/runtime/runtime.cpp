#include "p2p/runtime/runtime.hpp"

#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

namespace p2p::runtime {

void run(boost::asio::io_context& io, int threads) {
  std::vector<std::thread> others;
  for (int i = 1; i < threads; ++i) others.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& thread : others) thread.join();
}

}  // namespace p2p::runtime
