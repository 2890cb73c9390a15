#include "api/request_parts.h"

#include <sstream>

namespace jobstate::api {

using namespace Pistache;

std::optional<std::string> header_text(const Http::Request& req, const std::string& name) {
  if (auto raw = req.headers().tryGetRaw(name)) return raw->value();
  if (auto typed = req.headers().tryGet(name)) {
    std::ostringstream os;
    typed->write(os);
    return os.str();
  }
  return std::nullopt;
}

bool has_json_content_type(const Http::Request& req) {
  auto ct = req.headers().tryGet<Http::Header::ContentType>();
  return ct && ct->mime().top() == Http::Mime::Type::Application &&
         ct->mime().sub() == Http::Mime::Subtype::Json;
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  if (path.empty() || path[0] != '/') return parts;
  path.remove_prefix(1);
  while (true) {
    size_t slash = path.find('/');
    parts.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

}  // namespace jobstate::api
