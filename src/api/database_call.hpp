#pragma once
// Runs store work for a handler and maps an unreachable database to 503, in one place for all routes.
#include "p2p/http/problem.hpp"
#include "p2p/store/database.hpp"

namespace p2p::api {

template <typename Work>
auto with_database(store::Database& database, Work&& work) {
  try {
    return database.with_connection(std::forward<Work>(work));
  } catch (const store::DatabaseUnavailable&) {
    throw http::ApiError(503, "the database is unreachable; retry shortly (the service reconnects by itself)",
                         {{"Retry-After", "5"}});
  }
}

}  // namespace p2p::api
