#pragma once
// Maps a method and path to a handler. Templates use {name} for a path segment, e.g.
// "/api/oidc_servers/{server_id}". HEAD is answered by the GET route. Pure: no I/O, no Beast.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "p2p/http/message.hpp"

namespace p2p::http {

using Handler = std::function<Response(const Request&, const PathParams&)>;
// Answers from memory on the I/O thread when it can (a cache hit); nullopt sends the request on to
// the route's handler.
using InlineHandler = std::function<std::optional<Response>(const Request&, const PathParams&)>;

// A handler that awaits (a request to the FHIR server, then database work through
// runtime::run_blocking): a coroutine on the connection's I/O thread, for routes whose work waits on
// another server. Defined in p2p/http/coroutine_handler.hpp, the one place that includes Asio for it,
// so this header stays free of Asio.
struct CoroutineHandler;

struct RouteOptions {
  bool requires_auth = true;  // API key needed (when auth is on)
  bool blocking = false;      // the handler may block (SQL): it runs on the blocking pool, not an I/O thread
  InlineHandler try_inline;   // optional fast path tried first, on the I/O thread; must not block
};

struct Route {
  std::string method;
  std::string pattern;  // the template; also the "route" label in metrics
  std::vector<std::string> segments;
  Handler handler;                                   // null for a coroutine route
  std::shared_ptr<const CoroutineHandler> coroutine;  // set for a coroutine route only
  RouteOptions options;
};

struct RouteMatch {
  enum class Kind { kFound, kNotFound, kMethodNotAllowed };
  Kind kind = Kind::kNotFound;
  const Route* route = nullptr;
  PathParams params;
  std::vector<std::string> allowed_methods;  // for kMethodNotAllowed, in registration order
};

class Router {
 public:
  void add(std::string method, std::string pattern, Handler handler, RouteOptions options = {});
  // A coroutine route (options.blocking does not apply: the handler itself awaits its blocking work).
  void add(std::string method, std::string pattern, std::shared_ptr<const CoroutineHandler> handler,
           RouteOptions options = {});
  // Throws ApiError(400) when the path has malformed percent-encoding.
  RouteMatch match(std::string_view method, std::string_view encoded_path) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

}  // namespace p2p::http
