#include "store/decided_command.h"

#include <optional>
#include <random>

#include "domain/json_text.h"
#include "store/hash_chain.h"

namespace jobstate {

DecideContext decide_context(const CommandRequest& req, TimeMs now_ms, TimeMs server_start_ms) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  DecideContext ctx;
  ctx.now_ms = now_ms;
  ctx.server_start_ms = server_start_ms;
  ctx.expected_version = req.expected_version;
  ctx.lease_hash = req.lease_hash;
  ctx.by = req.by;
  ctx.jitter = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  return ctx;
}

Result<DecidedCommand> decide_command(const JobState* before, const JobId& job_id,
                                      const Command& command, const DecideContext& ctx,
                                      const LogHead& head) {
  auto decided = decide(before, command, ctx);
  if (!decided) return decided.error();
  DecidedCommand out;
  out.head = head;
  if (decided->empty()) return out;

  std::optional<JobState> cur;
  out.events.reserve(decided->size());
  out.data_texts.reserve(decided->size());
  for (auto& ne : *decided) {
    const JobState* prev = cur ? &*cur : before;
    Event e;
    e.seq = ++out.head.seq;
    e.job_id = job_id;
    e.version = prev ? prev->version + 1 : 1;
    e.type = ne.type;
    e.at_ms = ctx.now_ms;
    e.data = std::move(ne.data);
    std::string data_text;
    try {
      data_text = canonical_dump(e.data);
    } catch (const nlohmann::json::exception&) {
      return make_error(ErrorCode::kInvalidRequest, "strings must be valid UTF-8");
    }
    out.head.hash = chain_hash(
        out.head.hash, canonical_event_json(e.seq, e.job_id, e.version, e.type, e.at_ms, data_text));
    e.hash = out.head.hash;
    auto next = apply(prev, e);
    if (!next)
      return make_error(ErrorCode::kInternal, "decide/apply disagree: " + next.error().message);
    // (A heartbeat without progress keeps the job's previous progress.)
    out.progress_text.clear();
    if (e.type == EventType::kHeartbeat)
      if (auto p = member_text(data_text, "progress"); p && *p != "null")
        out.progress_text = *p;
    cur = std::move(*next);
    out.events.push_back(std::move(e));
    out.data_texts.push_back(std::move(data_text));
  }
  out.after = std::make_shared<const JobState>(std::move(*cur));
  return out;
}

}  // namespace jobstate
