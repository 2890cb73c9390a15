#include "webhooks/webhook_config.h"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "domain/event.h"
#include "webhooks/signature.h"

namespace jobstate::webhooks {

using nlohmann::json;

namespace {

constexpr const char* kTerminalTypes[] = {"succeeded", "failed", "cancelled"};

struct ConfigProblem {
  std::string reason;
};

// "user:password@" in the authority becomes "user:***@".
std::string hide_password(const std::string& url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return url;
  const size_t authority = scheme_end + 3;
  const size_t authority_end = url.find_first_of("/?#", authority);
  const size_t at = url.rfind('@', authority_end == std::string::npos ? url.size() : authority_end);
  if (at == std::string::npos || at < authority) return url;
  const size_t colon = url.find(':', authority);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

bool has_scheme(const std::string& url, std::string_view scheme) {
  if (url.size() <= scheme.size()) return false;
  for (size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(url[i])) != scheme[i]) return false;
  return true;
}

WebhookEndpoint parse_endpoint(const json& v, const std::string& where, const GetEnv& getenv) {
  if (!v.is_object())
    throw ConfigProblem{where + " must be an object with \"url\" and \"secret_env\""};
  WebhookEndpoint e;
  bool events_given = false;
  for (auto& [key, value] : v.items()) {
    const std::string name = where + "." + key;
    if (key == "url") {
      if (!value.is_string()) throw ConfigProblem{name + " must be a string"};
      e.url = value.get<std::string>();
      if (!has_scheme(e.url, "http://") && !has_scheme(e.url, "https://"))
        throw ConfigProblem{name + ": \"" + hide_password(e.url) +
                            "\" must start with http:// or https://"};
      if (e.url.find_first_of(" \t\r\n") != std::string::npos)
        throw ConfigProblem{name + " must not contain whitespace"};
    } else if (key == "secret_env") {
      if (!value.is_string() || value.get<std::string>().empty())
        throw ConfigProblem{name + " must name an environment variable"};
      e.secret_env = value.get<std::string>();
    } else if (key == "events") {
      events_given = true;
      if (!value.is_array() || value.empty())
        throw ConfigProblem{name + " must be a non-empty array of event types, or [\"*\"]"};
      for (size_t i = 0; i < value.size(); ++i) {
        const std::string item = name + "[" + std::to_string(i) + "]";
        if (!value[i].is_string()) throw ConfigProblem{item + " must be a string"};
        const std::string type = value[i].get<std::string>();
        if (type == "*") {
          if (value.size() != 1) throw ConfigProblem{name + ": \"*\" must be alone"};
          e.all_events = true;
        } else if (!parse_event_type(type)) {
          throw ConfigProblem{item + ": \"" + type + "\" is not an event type"};
        } else {
          e.events.insert(type);
        }
      }
    } else {
      throw ConfigProblem{"unknown setting " + name + " (known: url, secret_env, events)"};
    }
  }
  if (e.url.empty()) throw ConfigProblem{where + " needs \"url\""};
  if (e.secret_env.empty())
    throw ConfigProblem{where +
                        " needs \"secret_env\": the environment variable holding its "
                        "whsec_ secret (secrets are never written in the config file)"};
  if (!events_given) e.events.insert(std::begin(kTerminalTypes), std::end(kTerminalTypes));
  const auto secret = getenv(e.secret_env);
  if (!secret || secret->empty())
    throw ConfigProblem{where + ".secret_env: the environment variable " + e.secret_env +
                        " is not set"};
  auto key = decode_webhook_secret(*secret);
  if (!key)
    throw ConfigProblem{where + ".secret_env: the value of " + e.secret_env + " " +
                        key.error().message + " (a Standard Webhooks secret is whsec_<base64>)"};
  e.key = std::move(*key);
  e.shown_url = hide_password(e.url);
  return e;
}

}  // namespace

Result<std::vector<WebhookEndpoint>> parse_webhook_config(std::string_view text,
                                                          std::string_view source_name,
                                                          const GetEnv& getenv_fn) {
  const std::string source(source_name);
  GetEnv getenv = getenv_fn;
  if (!getenv)
    getenv = [](const std::string& name) -> std::optional<std::string> {
      const char* v = std::getenv(name.c_str());
      if (!v) return std::nullopt;
      return std::string(v);
    };
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false,
                         /*ignore_comments=*/true);
  if (doc.is_discarded())
    return make_error(ErrorCode::kInvalidRequest, source + ": not valid JSON");
  std::vector<WebhookEndpoint> out;
  if (!doc.is_object() || !doc.contains("webhooks")) return out;
  try {
    const json& list = doc["webhooks"];
    if (!list.is_array())
      throw ConfigProblem{"\"webhooks\" must be an array of {\"url\", \"secret_env\", \"events\"}"};
    for (size_t i = 0; i < list.size(); ++i) {
      WebhookEndpoint e = parse_endpoint(list[i], "webhooks[" + std::to_string(i) + "]", getenv);
      for (const auto& other : out)
        if (other.url == e.url)
          throw ConfigProblem{"webhooks[" + std::to_string(i) + "].url: \"" + e.shown_url +
                              "\" is listed twice"};
      out.push_back(std::move(e));
    }
  } catch (const ConfigProblem& p) {
    return make_error(ErrorCode::kInvalidRequest, source + ": " + p.reason);
  }
  return out;
}

Result<std::vector<WebhookEndpoint>> load_webhook_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::kInvalidRequest, path + ": cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return make_error(ErrorCode::kInvalidRequest, path + ": read error");
  return parse_webhook_config(text.str(), path);
}

}  // namespace jobstate::webhooks
