#include "p2p/api/swagger_ui.hpp"

#include <fstream>
#include <sstream>

#include "p2p/http/problem.hpp"

namespace p2p::api {
namespace {

constexpr const char* kContentSecurityPolicy =
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

// Our own start-up script, served as a file so the page needs no inline script.
constexpr const char* kInitScript =
    "window.onload = function () {\n"
    "  window.ui = SwaggerUIBundle({ url: '/api/openapi.json', dom_id: '#swagger-ui', deepLinking: true });\n"
    "};\n";

std::optional<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream input(path, std::ios::binary);
  if (!input) return std::nullopt;
  std::ostringstream content;
  content << input.rdbuf();
  return content.str();
}

}  // namespace

SwaggerUi::SwaggerUi(std::filesystem::path directory) : directory_(std::move(directory)) {
  static const std::pair<const char*, const char*> kFiles[] = {
      {"swagger-ui.css", "text/css; charset=utf-8"},
      {"swagger-ui-bundle.js", "text/javascript; charset=utf-8"},
      {"favicon-32x32.png", "image/png"},
      {"favicon-16x16.png", "image/png"},
  };
  bool all_required = true;
  for (const auto& [name, type] : kFiles) {
    auto content = read_file(directory_ / name);
    if (!content) {
      if (std::string_view(name).ends_with(".css") || std::string_view(name).ends_with(".js")) all_required = false;
      continue;
    }
    assets_.emplace(name, Asset{std::move(*content), type});
  }
  assets_.emplace("p2p-init.js", Asset{kInitScript, "text/javascript; charset=utf-8"});
  available_ = all_required;
}

const SwaggerUi::Asset* SwaggerUi::asset(const std::string& name) const {
  auto found = assets_.find(name);
  return found == assets_.end() ? nullptr : &found->second;
}

std::string SwaggerUi::index_html() const {
  if (!available_) {
    return "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>p2p-exchange API</title></head>\n"
           "<body><h1>p2p-exchange API</h1>\n"
           "<p>Swagger UI is not installed: its assets were not found in the folder set by http.swaggerUiDir. "
           "Run <code>scripts/setup.sh</code> (it installs the swagger-ui-dist package) and restart, "
           "or point http.swaggerUiDir / P2P_SWAGGER_UI_DIR at a swagger-ui-dist folder.</p>\n"
           "<p>The OpenAPI document is at <a href=\"/api/openapi.json\">/api/openapi.json</a>.</p>\n"
           "</body></html>\n";
  }
  return "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>p2p-exchange API</title>\n"
         "<link rel=\"icon\" type=\"image/png\" href=\"/swagger-ui/favicon-32x32.png\">\n"
         "<link rel=\"stylesheet\" href=\"/swagger-ui/swagger-ui.css\"></head>\n"
         "<body><div id=\"swagger-ui\"></div>\n"
         "<script src=\"/swagger-ui/swagger-ui-bundle.js\"></script>\n"
         "<script src=\"/swagger-ui/p2p-init.js\"></script>\n"
         "</body></html>\n";
}

void add_swagger_ui_routes(http::Router& router, const SwaggerUi& ui) {
  router.add("GET", "/",
             [&ui](const http::Request&, const http::PathParams&) {
               auto response = http::Response::text(200, ui.index_html(), "text/html; charset=utf-8");
               response.set_header("Content-Security-Policy", kContentSecurityPolicy);
               return response;
             },
             {.requires_auth = false});
  router.add("GET", "/swagger-ui/{asset}",
             [&ui](const http::Request&, const http::PathParams& params) {
               const auto* asset = ui.asset(params.find("asset")->second);
               if (asset == nullptr) throw http::ApiError(404, "no such Swagger UI asset");
               auto response = http::Response::text(200, asset->content, asset->content_type);
               response.set_header("Cache-Control", "public, max-age=3600");
               return response;
             },
             {.requires_auth = false});
}

}  // namespace p2p::api
