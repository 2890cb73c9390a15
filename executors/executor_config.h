// ExecutorConfig: which job types `jobstate serve` runs itself, and how. Read
// from a JSON file (comments allowed) given with `serve --config FILE`:
//
//   {
//     "executors": {
//       "thumbnail": {
//         "argv": ["/usr/bin/convert", "{params.src}", "-resize", "200x200", "{params.dst}"],
//         "concurrency": 2,        // processes of this type at once (default 1)
//         "cancel_grace_s": 10,    // SIGTERM → SIGKILL delay on cancel (default 10)
//         "cwd": "/srv/media",     // working directory (default: the server's)
//         "env": {"LANG": "C.UTF-8", "JOB_ID": "{job.id}"},  // added or replaced
//         "inherit_env": true      // start from the server's environment (default true)
//       }
//     }
//   }
//
// The same file's top-level "webhooks" is read by webhooks/webhook_config.h.
// docs/executors.md is the user's description; this header is the contract.
// Every error names the file, the line (and column for syntax errors) and
// the reason, so `serve` can refuse to start with a message a person can act on.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "domain/result.h"
#include "executors/command_template.h"

namespace jobstate::executors {

struct ExecutorSpec {
  std::string type;                   // the job type this executor runs
  std::vector<CommandTemplate> argv;  // argv[0] is literal: params never pick the program
  int concurrency = 1;                // 1–1024
  int64_t cancel_grace_ms = 10'000;   // 0–3600 s, from cancel_grace_s (fractions allowed)
  std::string cwd;                    // empty: the server's working directory
  std::map<std::string, CommandTemplate> env;  // set in the child's environment
  bool inherit_env = true;                     // false: the child sees only `env`
};

struct ExecutorConfig {
  std::map<std::string, ExecutorSpec> executors;  // by job type

  const ExecutorSpec* find(std::string_view type) const {
    auto it = executors.find(std::string(type));
    return it == executors.end() ? nullptr : &it->second;
  }
};

// Parses config text. `source_name` prefixes error messages
// ("<source_name>:<line>[:<column>]: <reason>"). kInvalidRequest on any error.
Result<ExecutorConfig> parse_executor_config(std::string_view text,
                                             std::string_view source_name = "config");

// Reads and parses `path`. kInvalidRequest when it cannot be read or parsed.
Result<ExecutorConfig> load_executor_config(const std::string& path);

}  // namespace jobstate::executors
