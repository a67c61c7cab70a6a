#pragma once
// A private PostgreSQL cluster (scripts/pg.sh) that a test may stop and start under a running
// service, on a free loopback port, removed when the object goes away.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "p2p/util/crypto.hpp"
#include "service_process.hpp"

namespace p2p::test {

class PrivateCluster {
 public:
  PrivateCluster() : dir_("/tmp/p2p-pg-" + p2p::util::random_hex(4)), port_(ServiceProcess::free_port()) {
    start();
  }
  ~PrivateCluster() {
    stop();
    std::filesystem::remove_all(dir_);
    std::filesystem::remove(dir_ + "/data.initdb.log");
  }
  PrivateCluster(const PrivateCluster&) = delete;
  PrivateCluster& operator=(const PrivateCluster&) = delete;

  void start() { shell("pg_start " + dir_ + "/data " + std::to_string(port_)); }
  void stop() { shell("pg_stop " + dir_ + "/data"); }
  std::string url(const std::string& database) const {
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + database;
  }

 private:
  static void shell(const std::string& command) {
    const std::string line = "bash -c 'source " + std::string(P2P_SOURCE_DIR) + "/scripts/pg.sh && " + command + "'";
    ASSERT_EQ(std::system(line.c_str()), 0) << line;
  }
  std::string dir_;
  int port_;
};

}  // namespace p2p::test
