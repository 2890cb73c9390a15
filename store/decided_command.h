// decide_command: what one command appends, built completely before anything
// is written. decide() against the job's state, then for each new event the
// next seq and version, its canonical data text, its chain hash, and apply().
// Every backend's writer runs each command through this, so seq, version,
// the hashed bytes and the hash follow one definition.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "domain/job.h"
#include "domain/result.h"
#include "store/event_log.h"
#include "store/job_writer.h"

namespace jobstate {

struct DecidedCommand {
  std::vector<Event> events;            // with seq, version and hash; empty: nothing to append
  std::vector<std::string> data_texts;  // each event's data as canonical text, as hashed
  // The job after the events (nullptr when there are none).
  std::shared_ptr<const JobState> after;
  // The progress of the last heartbeat as its event's text (empty: none), so
  // the status row can reuse it.
  std::string progress_text;
  LogHead head;  // after the last event (the given head when there are none)
};

// `before` is the job's newest state (nullptr: no such job); `head` the log's
// head the events follow. Refusals come from decide(); kInvalidRequest when a
// string is not valid UTF-8; nothing of a refused command is returned.
// The context a writer decides `req` in: now, the server's start, If-Match,
// Job-Lease, and a fresh jitter for a retry's backoff.
DecideContext decide_context(const CommandRequest& req, TimeMs now_ms, TimeMs server_start_ms);

Result<DecidedCommand> decide_command(const JobState* before, const JobId& job_id,
                                      const Command& command, const DecideContext& ctx,
                                      const LogHead& head);

}  // namespace jobstate
