// WebhookConfig: the endpoints `jobstate serve --config FILE` delivers
// events to, from the file's top-level "webhooks" (the same file as the
// executors, executors/executor_config.h):
//
//   {
//     "webhooks": [
//       {"url": "https://hooks.example/jobstate",  // http:// or https:// only
//        "secret_env": "JOBSTATE_WEBHOOK_SECRET",  // names the variable holding "whsec_<base64>"
//        "events": ["succeeded", "failed"]}       // default: the three terminal types; ["*"]: all
//     ]
//   }
//
// The secret itself is never in the file: it is read from the environment
// when the file is loaded and kept only as key bytes (never logged or shown).
// Every error is one line naming the file, the setting and the reason, and
// never the secret's value.
#pragma once

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "domain/result.h"

namespace jobstate::webhooks {

struct WebhookEndpoint {
  std::string url;         // as configured: the cursor's key, and where deliveries go
  std::string shown_url;   // url with any password replaced by "***", for logs and GET /v1/webhooks
  std::string secret_env;  // the variable the key came from
  std::string key;         // the secret's key bytes (base64-decoded)
  // Event type names delivered ("succeeded", ...); empty when all_events.
  std::set<std::string> events;
  bool all_events = false;  // ["*"]: every event, including types added after this build

  // Whether an event of this type name is delivered to the endpoint.
  bool wants(std::string_view event_type) const {
    return all_events || events.count(std::string(event_type)) != 0;
  }
};

// Reads an environment variable; nullopt when unset.
using GetEnv = std::function<std::optional<std::string>(const std::string&)>;

// The "webhooks" of a config document (the whole file's text; other
// top-level keys are left to their own loaders). No "webhooks": an empty
// list. `source_name` prefixes errors. `getenv` defaults to the process's
// environment. kInvalidRequest on any error.
Result<std::vector<WebhookEndpoint>> parse_webhook_config(std::string_view text,
                                                          std::string_view source_name = "config",
                                                          const GetEnv& getenv = nullptr);

// Reads `path` and parses it. kInvalidRequest when it cannot be read.
Result<std::vector<WebhookEndpoint>> load_webhook_config(const std::string& path);

}  // namespace jobstate::webhooks
