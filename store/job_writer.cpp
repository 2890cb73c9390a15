#include "store/job_writer.h"

#include <future>

namespace jobstate {

const JobState& CommandOutcome::state() const {
  static const JobState kNone;
  return job ? *job : kNone;
}

const char* write_health_name(WriteHealth::State state) {
  switch (state) {
    case WriteHealth::State::kOk:
      return "open";
    case WriteHealth::State::kDiskFull:
      return "disk-full";
    case WriteHealth::State::kWriteFailed:
      return "write-failed";
  }
  return "open";
}

Result<CommandOutcome> JobWriter::execute(CommandRequest request) {
  std::promise<Result<CommandOutcome>> promise;
  auto future = promise.get_future();
  submit(std::move(request),
         [&promise](Result<CommandOutcome> r) { promise.set_value(std::move(r)); });
  return future.get();
}

}  // namespace jobstate
