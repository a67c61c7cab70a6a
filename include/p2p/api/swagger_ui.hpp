#pragma once
// Swagger UI for the OpenAPI document: assets from the swagger-ui-dist npm package, read from disk
// once at start-up. Without them the service still runs and "/" says how to install them.
#include <filesystem>
#include <map>
#include <string>

#include "p2p/http/router.hpp"

namespace p2p::api {

class SwaggerUi {
 public:
  struct Asset {
    std::string content;
    std::string content_type;
  };

  // Loads the assets from `directory`; missing files leave the UI unavailable (not an error).
  explicit SwaggerUi(std::filesystem::path directory);

  bool available() const { return available_; }
  const std::filesystem::path& directory() const { return directory_; }
  const Asset* asset(const std::string& name) const;
  std::string index_html() const;

 private:
  std::filesystem::path directory_;
  bool available_ = false;
  std::map<std::string, Asset, std::less<>> assets_;
};

void add_swagger_ui_routes(http::Router& router, const SwaggerUi& ui);

}  // namespace p2p::api
