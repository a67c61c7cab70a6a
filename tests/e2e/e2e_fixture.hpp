#pragma once
// Shared set-up for end-to-end tests: a fresh database, the binary started against it, helpers to
// call the API with or without the key.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <thread>

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
