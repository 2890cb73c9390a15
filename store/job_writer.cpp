#include "store/job_writer.h"

#include <future>

namespace jobstate {

const JobState& CommandOutcome::state() const {
  static const JobState kNone;
  return job ? *job : kNone;
}

Result<CommandOutcome> JobWriter::execute(CommandRequest request) {
  std::promise<Result<CommandOutcome>> promise;
  auto future = promise.get_future();
  submit(std::move(request),
         [&promise](Result<CommandOutcome> r) { promise.set_value(std::move(r)); });
  return future.get();
}

}  // namespace jobstate
