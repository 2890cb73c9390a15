// Files compiled into the binary at build time: the dashboard (ui/, served
// under /ui/) and the API's contract (docs/openapi.yaml, served at
// /openapi.yaml). assets/embed.cmake generates the table; a user needs no
// build step and the server reads no file at run time.
#pragma once

#include <span>
#include <string_view>

namespace jobstate::assets {

struct Asset {
  std::string_view url;           // "/ui/app.js", "/openapi.yaml"
  std::string_view body;
  std::string_view content_type;  // "text/javascript; charset=utf-8"
  std::string_view etag;          // a quoted strong validator, from the file's SHA-256
};

std::span<const Asset> all();

// The asset served at `url`, or null. "/ui" and "/ui/" are the dashboard's
// index.html.
const Asset* find(std::string_view url);

}  // namespace jobstate::assets
