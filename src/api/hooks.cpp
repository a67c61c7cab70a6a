// The rest-hook receiver for the add-payer Subscription: the FHIR server delivers each matching Task
// change here (HAPI FHIR / Smile CDR style). The shared secret is the credential (no API key); each
// Task is read back from the FHIR server by its id, whatever the body says; the e-mails are committed
// to the outbox before the 200. See docs/notifications.md.
#include <algorithm>
#include <utility>

#include <boost/asio/thread_pool.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "database_call.hpp"
#include "p2p/api/routes.hpp"
#include "p2p/http/coroutine_handler.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/notify/add_payer_task.hpp"
#include "p2p/notify/notifier.hpp"
#include "p2p/notify/subscription.hpp"
#include "p2p/runtime/run_blocking.hpp"

namespace p2p::api {
namespace {

namespace asio = boost::asio;
using nlohmann::json;
using notify::HookOutcome;

// A delivery names at most this many Tasks: each is read back from the FHIR server one by one.
constexpr std::size_t kMaxTasksPerDelivery = 100;

// The add-payer Tasks as the FHIR server holds them. A delivery only says which Tasks changed (and
// to which version): the secret proves the caller knows it, not that the body is what the server
// stored, so recipients and contents are never taken from the body. Each delivered Task is read by
// its id, at the version the body names when it names one (so quick successive changes each get their
// e-mail; a version the server does not have falls back to the current one). An empty-body delivery
// means the Task in the path, or the recently changed ones.
asio::awaitable<std::vector<notify::AddPayerRequest>> read_back_tasks(notify::Notifier& notifier,
                                                                      const notify::HookPayload& payload,
                                                                      const std::optional<std::string>& path_task_id) {
  std::vector<json> resources;
  if (payload.empty && !path_task_id) {
    resources = co_await notifier.search_recent_tasks();
  } else {
    std::vector<std::pair<std::string, std::string>> wanted;  // id, version ("" = current), each once
    if (payload.empty) wanted.emplace_back(*path_task_id, "");
    for (const auto& task : payload.tasks) {
      std::pair<std::string, std::string> key{task.task_id, task.version_id};
      if (std::find(wanted.begin(), wanted.end(), key) != wanted.end()) continue;
      // Refused at the first one too many: the search above stays within the cap however long the body.
      if (wanted.size() == kMaxTasksPerDelivery) {
        throw http::ApiError(413, "a delivery may name at most " + std::to_string(kMaxTasksPerDelivery) +
                                      " Tasks (each is read back from the FHIR server); this one names more");
      }
      wanted.push_back(std::move(key));
    }
    for (const auto& [id, version] : wanted) {
      auto task = co_await notifier.read_task(id, version);
      if (!task && !version.empty()) task = co_await notifier.read_task(id);
      if (task) {
        resources.push_back(std::move(*task));
      } else {
        spdlog::warn("notifications: a delivery named Task {}, but the FHIR server has no Task {}; nothing sent", id, id);
      }
    }
  }
  std::vector<notify::AddPayerRequest> tasks;
  for (const auto& resource : resources) {
    if (!notify::is_add_payer_task(resource)) continue;
    try {
      tasks.push_back(notify::read_add_payer_task(resource));
    } catch (const notify::PayloadError& error) {
      spdlog::warn("notifications: skipped an add-payer Task read from the FHIR server: {}", error.what());
    }
  }
  co_return tasks;
}

// Checks the secret and parses the body: what can be refused before any request or query.
notify::HookPayload accept_delivery(const http::Request& request, const http::PathParams& params,
                                    notify::Notifier& notifier, std::optional<std::string>& path_task_id) {
  if (!notifier.enabled()) {
    throw http::ApiError(404, "notifications are off: set notifications.enabled (P2P_NOTIFICATIONS_ENABLED=true) to "
                              "receive add-payer Task deliveries");
  }
  if (!notifier.check_hook_secret(request.header(notify::kHookSecretHeader))) {
    notifier.count_hook(HookOutcome::kUnauthorized);
    throw http::ApiError(401, "the " + std::string(notify::kHookSecretHeader) +
                                  " header is missing or wrong: the Subscription's channel.header carries it "
                                  "(notifications.hookSecret)");
  }
  if (const auto found = params.find("task_id"); found != params.end()) {
    if (!fhir::is_fhir_id(found->second)) {
      notifier.count_hook(HookOutcome::kInvalid);
      throw http::ApiError(400, "the Task id in the path is not a valid FHIR id");
    }
    path_task_id = found->second;
  }
  try {
    return notify::parse_hook_payload(request.body, path_task_id);
  } catch (const notify::PayloadError& error) {
    notifier.count_hook(HookOutcome::kInvalid);
    throw http::ApiError(400, std::string(error.what()));
  }
}

// A coroutine on the connection's I/O thread: the Tasks are read back from the FHIR server there (on
// the notifier's strand), and the outbox is written on the blocking pool.
asio::awaitable<http::Response> receive_delivery(const http::Request& request, const http::PathParams& params,
                                                 notify::Notifier& notifier, store::Database& database,
                                                 asio::thread_pool& blocking) {
  std::optional<std::string> path_task_id;
  notify::HookPayload payload = accept_delivery(request, params, notifier, path_task_id);
  try {
    payload.tasks = co_await read_back_tasks(notifier, payload, path_task_id);
  } catch (const notify::FhirUnavailable& error) {
    notifier.count_hook(HookOutcome::kError);
    spdlog::warn("notifications: {}", error.what());
    throw http::ApiError(502, std::string(error.what()) + "; the delivery can be retried");
  } catch (const http::ApiError&) {
    notifier.count_hook(HookOutcome::kInvalid);  // too many Tasks named
    throw;
  }
  const auto queue_all = [&notifier, &database, &payload] {
    return with_database(database, [&](pqxx::connection& connection) {
      int queued = 0;
      for (const auto& task : payload.tasks) queued += notifier.queue(connection, task).queued;
      return queued;
    });
  };
  int queued = 0;
  try {
    queued = co_await runtime::run_blocking(blocking, queue_all);
  } catch (const http::ApiError&) {
    notifier.count_hook(HookOutcome::kError);
    throw;
  }
  if (queued > 0) notifier.wake_sender();
  notifier.count_hook(payload.tasks.empty() ? HookOutcome::kIgnored
                                            : (queued > 0 ? HookOutcome::kQueued : HookOutcome::kDuplicate));
  co_return http::Response::json(200, json{{"tasks", payload.tasks.size()}, {"emailsQueued", queued}});
}

}  // namespace

void add_hook_routes(http::Router& router, ApiContext context) {
  const http::RouteOptions options{.requires_auth = false};
  notify::Notifier& notifier = context.notifier;
  store::Database& database = context.database;
  asio::thread_pool& blocking = context.blocking;
  const auto handler = std::make_shared<const http::CoroutineHandler>(http::CoroutineHandler{
      [&notifier, &database, &blocking](const http::Request& request, const http::PathParams& params) {
        return receive_delivery(request, params, notifier, database, blocking);
      }});
  const std::string base(notify::kHookPath);
  for (const char* method : {"POST", "PUT"}) {
    router.add(method, base, handler, options);
    router.add(method, base + "/Task", handler, options);
    router.add(method, base + "/Task/{task_id}", handler, options);
  }
}

}  // namespace p2p::api
