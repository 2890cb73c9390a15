// Abandoned-job recovery: a worker that runs jobs inside a process (the
// executors of `jobstate serve`, the embedded runner) names its jobs with a
// fixed prefix and the pid ("jobstate-executor/4242"). When such a process
// starts again on the same store, every job still running under that prefix
// belonged to a process that is gone: nobody will report it, so it is failed
// at once instead of at its heartbeat deadline.
//
// Needs the store's interfaces only (store/), so any backend serves it.
#pragma once

#include <cstddef>
#include <string>

#include "domain/result.h"
#include "store/job_writer.h"
#include "store/read_model.h"

namespace jobstate::workers {

// Fails, with code "abandoned" (details {"worker": name}), every running job
// whose worker starts with `worker_prefix`, each with the version it was read
// at, so a job that a worker finishes meanwhile keeps that outcome (not
// counted). Returns how many jobs it failed.
//
// Errors: a read that fails, or kUnavailable when the writer stops; jobs
// failed before that stay failed. REQUIRES: no worker of this prefix runs
// jobs of this store now (it would see its jobs failed); `worker_prefix` not
// empty.
//
// Thread safety: as safe as `jobs` and `writer` (both are, for every backend).
// Cost: lists every running job, one blocking write per abandoned job.
Result<size_t> fail_abandoned_jobs(const ReadModel& jobs, JobWriter& writer,
                                   const std::string& worker_prefix);

}  // namespace jobstate::workers
