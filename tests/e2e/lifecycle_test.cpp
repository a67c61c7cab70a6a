// The binary's life: command line, configuration errors, graceful shutdown with requests in flight,
// PostgreSQL going away and coming back, several instances starting on one database at once.
#include <arpa/inet.h>
#include <csignal>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <thread>

#include "e2e_fixture.hpp"
#include "private_cluster.hpp"
#include "p2p/store/migrations.hpp"
#include "p2p/util/crypto.hpp"

using nlohmann::json;
using namespace p2p::test;
using namespace std::chrono_literals;

namespace {

// Runs the binary to completion and returns {exit code, output}.
std::pair<int, std::string> run_binary(const std::string& arguments, const std::string& env = "") {
  const std::string command = "env -i PATH=/usr/bin:/bin " + env + " " + P2P_BINARY + " " + arguments + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string output;
  char buffer[4096];
  while (std::fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace

TEST(CommandLine, VersionHelpAndUnknownArguments) {
  auto [code, out] = run_binary("--version");
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out, "p2p-exchange 0.1.0\n");
  std::tie(code, out) = run_binary("--help");
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("Usage: p2p-exchange [--config FILE] [--check-config] [--help] [--version]"), std::string::npos);
  std::tie(code, out) = run_binary("--frobnicate");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("unknown argument \"--frobnicate\""), std::string::npos);
}

TEST(CommandLine, CheckConfigValidatesTheExampleAndReportsProblemsByKey) {
  auto [code, out] = run_binary("--check-config --config " + std::string(P2P_SOURCE_DIR) + "/config/p2p-exchange.json",
                                "P2P_API_KEYS=local-key-0123456789abcdef P2P_TOKEN_ENCRYPTION_KEY=" + kTokenKey + "");
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("configuration is valid"), std::string::npos);

  std::tie(code, out) = run_binary("--check-config", "P2P_API_KEYS=local-key-0123456789abcdef P2P_TOKEN_ENCRYPTION_KEY=" + kTokenKey + " P2P_HTTP_PORT=eighty");
  EXPECT_EQ(code, 2);
  EXPECT_EQ(out, "p2p-exchange: invalid configuration:\n  http.port (from P2P_HTTP_PORT): must be an integer, got \"eighty\"\n");

  std::tie(code, out) = run_binary("--check-config");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("auth.apiKeys: at least one API key is required"), std::string::npos);
  EXPECT_NE(out.find("exchange.tokenEncryptionKey: is required to encrypt members' tokens at rest"), std::string::npos);

  std::tie(code, out) = run_binary("--check-config --config /nonexistent.json", "P2P_API_KEYS=local-key-0123456789abcdef P2P_TOKEN_ENCRYPTION_KEY=" + kTokenKey + "");
  EXPECT_EQ(code, 2);
  EXPECT_EQ(out, "p2p-exchange: invalid configuration:\n  /nonexistent.json: cannot be read: check the path and its permissions\n");
}

TEST(CommandLine, APortInUseFailsWithAClearMessage) {
  TestDatabase database;
  auto env = service_env(database);
  ServiceProcess first(env);
  ASSERT_TRUE(first.wait_for("/healthz", 200));
  env["P2P_HTTP_PORT"] = std::to_string(first.port());
  ServiceProcess second(env);
  EXPECT_EQ(second.wait_exit(10s), 1);
  EXPECT_NE(second.log().find("cannot listen on 127.0.0.1:" + std::to_string(first.port())), std::string::npos)
      << second.log();
}

TEST(Shutdown, SigtermFinishesInFlightRequestsThenExitsZero) {
  TestDatabase database;
  ServiceProcess service(service_env(database));
  ASSERT_TRUE(service.wait_for("/readyz", 200)) << service.log();
  exec_sql(database.url(), "INSERT INTO oidc_servers (name, issuer) VALUES ('A', 'https://a.example.com')");

  // Hold a lock so that the next API request blocks inside PostgreSQL: it is in flight at SIGTERM.
  pqxx::connection locker(database.url());
  pqxx::work lock(locker);
  lock.exec0("LOCK TABLE oidc_servers IN ACCESS EXCLUSIVE MODE");
  auto in_flight = std::async(std::launch::async, [&] {
    return http_request("GET", service.url("/api/oidc_servers"), {kAuthHeader});
  });
  // SIGTERM only once the request really waits for the lock inside PostgreSQL.
  pqxx::connection observer(database.url());
  const bool blocked = eventually([&] {
    pqxx::nontransaction tx(observer);
    return tx.exec1("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'")[0].as<int>() >= 1;
  }, 30s);
  if (!blocked) {
    lock.abort();
    in_flight.wait();
    FAIL() << "the API request never waited for the table lock\n" << service.log();
  }
  service.send_signal(SIGTERM);
  // Logged when the service closes its listening socket (the line reaches the file within a second).
  ASSERT_TRUE(service.wait_for_log("shutting down: no new connections", 30s)) << service.log();
  EXPECT_TRUE(service.running()) << "the service must wait for the in-flight request";
  // The request still waits for the lock, so the service is draining all along.
  EXPECT_TRUE(eventually([&] { return http_request("GET", service.url("/healthz"), {}, {}, 2).status == 0; }))
      << "no new connections are accepted while draining";

  lock.abort();
  const auto result = in_flight.get();
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.body, R"({"servers":[{"pid":1,"name":"A"}]})");
  EXPECT_EQ(service.wait_exit(10s), 0) << service.log();
  EXPECT_NE(service.log().find("shutting down: no new connections; finishing 1 in-flight request(s)"), std::string::npos);
}

TEST(Shutdown, SigintWithIdleKeepAliveConnectionsExitsPromptly) {
  TestDatabase database;
  ServiceProcess service(service_env(database));
  ASSERT_TRUE(service.wait_for("/healthz", 200));
  // An idle keep-alive connection must not hold the shutdown for the idle timeout.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(service.port()));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  const auto started = std::chrono::steady_clock::now();
  service.send_signal(SIGINT);
  EXPECT_EQ(service.wait_exit(15s), 0);
  // Well under the 10 s header timeout that the idle connection would hold the shutdown for otherwise.
  EXPECT_LT(std::chrono::steady_clock::now() - started, 8s);
  ::close(fd);
}

TEST(Database, StoppedAndRestartedUnderTheRunningService) {
  PrivateCluster cluster;
  {
    pqxx::connection admin(cluster.url("postgres"));
    pqxx::nontransaction tx(admin);
    tx.exec0("CREATE DATABASE p2p");
  }
  ServiceProcess service({{"P2P_DATABASE_URL", cluster.url("p2p")}, {"P2P_API_KEYS", kApiKey}, {"P2P_TOKEN_ENCRYPTION_KEY", kTokenKey}});
  ASSERT_TRUE(service.wait_for("/readyz", 200)) << service.log();
  exec_sql(cluster.url("p2p"), "INSERT INTO oidc_servers (name, issuer) VALUES ('A', 'https://a.example.com')");
  ASSERT_EQ(http_get(service.url("/api/oidc_servers/1"), {kAuthHeader}).status, 200);

  cluster.stop();
  // The cached answer is dropped as soon as the service's change listener loses its connection.
  EXPECT_TRUE(eventually([&] { return http_get(service.url("/api/oidc_servers/1"), {kAuthHeader}).status == 503; }));
  const auto down = http_get(service.url("/api/oidc_servers/1"), {kAuthHeader});
  EXPECT_EQ(down.status, 503);
  EXPECT_EQ(down.header("content-type"), "application/problem+json");
  EXPECT_EQ(json::parse(down.body)["detail"], "the database is unreachable; retry shortly (the service reconnects by itself)");
  EXPECT_EQ(down.header("retry-after"), "5");
  EXPECT_EQ(http_get(service.url("/readyz")).status, 503);
  EXPECT_EQ(http_get(service.url("/healthz")).status, 200) << "the process itself stays alive";

  cluster.start();
  EXPECT_TRUE(service.wait_for("/readyz", 200, 20s)) << service.log();
  const auto up = http_get(service.url("/api/oidc_servers/1"), {kAuthHeader});
  EXPECT_EQ(up.status, 200);
  EXPECT_EQ(json::parse(up.body)["name"], "A");
  EXPECT_TRUE(service.running());
}

TEST(Database, ServiceStartsBeforeItsDatabaseAndMigratesWhenItArrives) {
  PrivateCluster cluster;
  cluster.stop();
  ServiceProcess service({{"P2P_DATABASE_URL", cluster.url("postgres")}, {"P2P_API_KEYS", kApiKey},
                          {"P2P_TOKEN_ENCRYPTION_KEY", kTokenKey}});
  ASSERT_TRUE(service.wait_for("/healthz", 200)) << service.log();
  EXPECT_EQ(http_get(service.url("/readyz")).status, 503);
  EXPECT_EQ(http_get(service.url("/api/oidc_servers"), {kAuthHeader}).status, 503);
  cluster.start();
  EXPECT_TRUE(service.wait_for("/readyz", 200, 30s)) << service.log();
  EXPECT_EQ(http_get(service.url("/api/oidc_servers"), {kAuthHeader}).body, R"({"servers":[]})");
}

TEST(Database, SeveralInstancesStartingAtOnceMigrateOnce) {
  TestDatabase database;
  // Started side by side: each ServiceProcess waits until its service listens before it returns.
  std::vector<std::future<std::unique_ptr<ServiceProcess>>> starting;
  for (int i = 0; i < 3; ++i) {
    starting.push_back(std::async(std::launch::async, [&database] { return std::make_unique<ServiceProcess>(service_env(database)); }));
  }
  std::vector<std::unique_ptr<ServiceProcess>> instances;
  for (auto& started : starting) instances.push_back(started.get());
  for (auto& instance : instances) EXPECT_TRUE(instance->wait_for("/readyz", 200)) << instance->log();
  pqxx::connection connection(database.url());
  pqxx::read_transaction tx(connection);
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM schema_migrations")[0].as<int>(), p2p::store::latest_known_migration());
  int applied_logs = 0;
  for (auto& instance : instances) {
    instance->send_signal(SIGTERM);  // an orderly exit flushes each log
    EXPECT_EQ(instance->wait_exit(10s), 0);
    if (instance->log().find("applying database migration 0001_init.sql") != std::string::npos) ++applied_logs;
    EXPECT_NE(instance->log().find("p2p-exchange stopped"), std::string::npos);
  }
  EXPECT_EQ(applied_logs, 1);
}
