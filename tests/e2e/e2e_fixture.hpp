#pragma once
// Shared set-up for end-to-end tests: a fresh database, the binary started against it, helpers to
// call the API with or without the key.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "eventually.hpp"
#include "http_client.hpp"
#include "service_process.hpp"
#include "test_database.hpp"

namespace p2p::test {

inline const std::string kApiKey = "e2e-api-key-0123456789abcdef";
inline const std::string kAuthHeader = "Authorization: Bearer " + kApiKey;
inline const std::string kTokenKey = "ZTJlLXRva2VuLWtleS0wMTIzNDU2Nzg5YWJjZGVmMDE=";  // base64 of 32 bytes

inline std::map<std::string, std::string> service_env(const TestDatabase& database) {
  return {{"P2P_DATABASE_URL", database.url()},
          {"P2P_API_KEYS", kApiKey},
          {"P2P_TOKEN_ENCRYPTION_KEY", kTokenKey},
          {"P2P_LOG_LEVEL", "info"}};
}

inline void exec_sql(const std::string& url, const std::string& sql) {
  pqxx::connection connection(url);
  pqxx::work tx(connection);
  tx.exec0(sql);
  tx.commit();
}

inline std::string exec_scalar(const std::string& url, const std::string& sql) {
  pqxx::connection connection(url);
  pqxx::read_transaction tx(connection);
  return tx.exec1(sql)[0].as<std::string>();
}

// The base of the end-to-end fixtures that run several instances: a fresh database, instances started
// against it (each with a config file of its own), all stopped and their files removed after the test.
class ServiceFixture : public ::testing::Test {
 protected:
  void TearDown() override {
    services_.clear();
    for (const auto& path : config_files_) std::filesystem::remove(path);
  }

  // The database the instances use; a derived fixture may give them a cluster of its own.
  virtual std::string database_url() const { return database_.url(); }

  // Writes `config` to a file of this test (removed after it) and returns its path.
  std::string write_config(const nlohmann::json& config) {
    const std::string path = "/tmp/" + database_.name() + "-" + std::to_string(config_files_.size()) + ".json";
    std::ofstream(path) << config.dump();
    config_files_.push_back(path);
    return path;
  }

  // Starts an instance with the test environment (service_env, database_url()) plus `env` and the
  // configuration `config` from a file; waits for /readyz unless `wait_ready` is false.
  ServiceProcess& launch(const std::map<std::string, std::string>& env, const nlohmann::json& config,
                         bool wait_ready = true) {
    auto full = service_env(database_);
    full["P2P_DATABASE_URL"] = database_url();
    for (const auto& [key, value] : env) full[key] = value;
    services_.push_back(std::make_unique<ServiceProcess>(full, std::vector<std::string>{"--config", write_config(config)}));
    auto& service = *services_.back();
    if (wait_ready) {
      EXPECT_TRUE(service.wait_for("/readyz", 200)) << service.log();
    }
    return service;
  }

  TestDatabase database_;
  std::vector<std::unique_ptr<ServiceProcess>> services_;
  std::vector<std::string> config_files_;
};

// One instance, started by the test with the environment it needs.
class ServiceTest : public ::testing::Test {
 protected:
  void start(std::map<std::string, std::string> extra = {}, std::vector<std::string> args = {}) {
    auto env = service_env(database_);
    for (auto& [key, value] : extra) env[key] = value;
    service_ = std::make_unique<ServiceProcess>(env, args);
    ASSERT_TRUE(service_->wait_for("/readyz", 200)) << "service did not become ready:\n" << service_->log();
  }

  HttpResult get(const std::string& path, bool with_key = true) {
    return http_request("GET", service_->url(path), with_key ? std::vector<std::string>{kAuthHeader}
                                                              : std::vector<std::string>{});
  }

  TestDatabase database_;
  std::unique_ptr<ServiceProcess> service_;
};

}  // namespace p2p::test
