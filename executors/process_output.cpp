#include "executors/process_output.h"

#include "workers/exit_outcome.h"
#include "workers/progress_line.h"
#include "workers/utf8.h"

namespace jobstate::executors {

using nlohmann::json;

namespace {
// A progress line as a heartbeat carries it: the message cut to
// max_message_bytes and made valid UTF-8.
json progress_json(const workers::ProgressLine& line, size_t max_message_bytes) {
  json message = nullptr;
  if (!line.message.empty())
    message = workers::sanitize_utf8(workers::cut_utf8(line.message, max_message_bytes));
  return json{{"fraction", line.fraction}, {"message", std::move(message)}, {"details", nullptr}};
}
}  // namespace

void ProcessOutput::add_stdout(std::string_view bytes) {
  while (!bytes.empty()) {
    size_t nl = bytes.find('\n');
    std::string_view piece = bytes.substr(0, nl);
    if (!partial_overflow_) {
      if (partial_.size() + piece.size() > limits_.max_line_bytes) {
        partial_overflow_ = true;
        partial_.clear();
        partial_.shrink_to_fit();
      } else {
        partial_.append(piece);
      }
    }
    if (nl == std::string_view::npos) return;
    if (!partial_overflow_) on_line(partial_);
    partial_.clear();
    partial_overflow_ = false;
    bytes.remove_prefix(nl + 1);
  }
}

void ProcessOutput::finish_stdout() {
  if (!partial_overflow_ && !partial_.empty()) on_line(partial_);
  partial_.clear();
  partial_overflow_ = false;
}

void ProcessOutput::on_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (auto p = workers::parse_progress_line(line)) {
    progress_ = progress_json(*p, limits_.max_progress_message_bytes);
    return;
  }
  if (line.find_first_not_of(" \t") == std::string_view::npos) return;
  last_line_.assign(line);
}

void ProcessOutput::add_stderr(std::string_view bytes) {
  stderr_.add(bytes);
}

std::optional<json> ProcessOutput::take_progress() {
  auto p = std::move(progress_);
  progress_.reset();
  return p;
}

json ProcessOutput::result() const {
  return workers::parse_result_line(last_line_);
}

}  // namespace jobstate::executors
