// The test support library's own promises, where a broken one would make other tests flaky.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "service_process.hpp"

namespace {

using p2p::test::ServiceProcess;

// The first port the kernel hands out to outgoing connections and bind(0) (ip_local_port_range).
int ephemeral_start() {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  range >> low;
  return low;
}

bool can_bind(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return bound;
}

// A test that must name its service's port before starting it (the OAuth peer's redirect URI) holds
// a port nothing has bound: one from the ephemeral range could be taken meanwhile by any outgoing
// connection of a test running beside it (a libpq connection, a peer's request), and the service
// then fails to start ("Address already in use"), as MemberConnectTest did once under ctest -j2.
TEST(TestSupport, FreePortsAreFreeAndOutsideTheRangeOutgoingConnectionsTakeTheirsFrom) {
  const int start = ephemeral_start();
  // free_port() draws from [max(1024, start - 12000), start); with fewer than 1000 ports there, it
  // takes bind(0)'s, as before.
  if (start - 1024 < 1000) GTEST_SKIP() << "ip_local_port_range starts at " << start << ": no room below it";
  for (int i = 0; i < 20; ++i) {
    const int port = ServiceProcess::free_port();
    EXPECT_GE(port, 1024);
    EXPECT_LT(port, start);
    EXPECT_TRUE(can_bind(port)) << port;
  }
}

}  // namespace
