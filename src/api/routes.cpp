#include "p2p/api/routes.hpp"

#include "p2p/api/swagger_ui.hpp"

namespace p2p::api {

void add_routes(http::Router& router, ApiContext context) {
  add_operations_routes(router, context);
  add_swagger_ui_routes(router, context.swagger_ui);
  add_oidc_server_routes(router, context);
  add_batch_job_routes(router, context);
  add_hook_routes(router, context);
  add_jwks_routes(router, context);
  add_member_connect_routes(router, context);
}

}  // namespace p2p::api
