#pragma once
// A route handler that is a coroutine (router.hpp, Router::add with a CoroutineHandler): it runs on
// the connection's I/O thread, awaits requests to other servers there, and reaches blocking work
// (PostgreSQL) only through runtime::run_blocking. It must not block between its awaits; bounded CPU
// work stays on the I/O thread (the hook parses its body, at most http.bodyLimitBytes, and the FHIR
// server's answers, at most 16 MiB, there: milliseconds for the Tasks it reads). The server
// spawns it on a log::RequestIdExecutor, so every step of it logs with the request's id.
#include <functional>

#include <boost/asio/awaitable.hpp>

#include "p2p/http/message.hpp"
#include "p2p/http/router.hpp"

namespace p2p::http {

struct CoroutineHandler {
  std::function<boost::asio::awaitable<Response>(const Request&, const PathParams&)> call;
};

}  // namespace p2p::http
