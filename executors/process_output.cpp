#include "executors/process_output.h"

#include <charconv>
#include <cmath>

namespace jobstate::executors {

using nlohmann::json;

namespace {
constexpr int kMaxResultDepth = 64;  // API.md's nesting limit for JSON

// Thrown from the parse callback to stop at the depth limit (a deep document
// would otherwise cost recursion later when it is encoded).
struct TooDeep {};

// Cuts `s` to at most `max` bytes without splitting a UTF-8 sequence.
std::string_view cut_utf8(std::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}
}  // namespace

std::string sanitize_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    }
    bool ok = len != 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values beyond U+10FFFF are invalid too.
    if (ok) {
      const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
      if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) ok = false;
    }
    if (ok) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

std::optional<json> parse_progress_line(std::string_view line, size_t max_message_bytes) {
  // The same grammar as `jobstate run` (client/run_command.cpp): the keyword,
  // blanks, a fraction, optionally blanks and a message.
  constexpr std::string_view kKeyword = "PROGRESS";
  auto skip_blanks = [](std::string_view& s) {
    while (!s.empty() && (s[0] == ' ' || s[0] == '\t')) s.remove_prefix(1);
  };
  if (line.substr(0, kKeyword.size()) != kKeyword) return std::nullopt;
  std::string_view rest = line.substr(kKeyword.size());
  if (rest.empty() || (rest[0] != ' ' && rest[0] != '\t')) return std::nullopt;
  skip_blanks(rest);
  const size_t end = rest.find_first_of(" \t");
  std::string_view number = rest.substr(0, end);
  double fraction = 0;
  auto [ptr, ec] = std::from_chars(number.data(), number.data() + number.size(), fraction);
  if (number.empty() || ec != std::errc() || ptr != number.data() + number.size() ||
      !(fraction >= 0.0 && fraction <= 1.0))
    return std::nullopt;
  json message = nullptr;
  if (end != std::string_view::npos) {
    std::string_view text = rest.substr(end);
    skip_blanks(text);
    if (!text.empty()) message = sanitize_utf8(cut_utf8(text, max_message_bytes));
  }
  return json{{"fraction", fraction}, {"message", std::move(message)}, {"details", nullptr}};
}

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
  if (auto p = parse_progress_line(line, limits_.max_progress_message_bytes)) {
    progress_ = std::move(*p);
    return;
  }
  if (line.find_first_not_of(" \t") == std::string_view::npos) return;
  last_line_.assign(line);
}

void ProcessOutput::add_stderr(std::string_view bytes) {
  if (bytes.size() >= limits_.tail_bytes) {
    stderr_.assign(bytes.substr(bytes.size() - limits_.tail_bytes));
    return;
  }
  stderr_.append(bytes);
  // Trim only once the buffer is twice the tail: amortized O(1) per byte.
  if (stderr_.size() > 2 * limits_.tail_bytes)
    stderr_.erase(0, stderr_.size() - limits_.tail_bytes);
}

std::optional<json> ProcessOutput::take_progress() {
  auto p = std::move(progress_);
  progress_.reset();
  return p;
}

json ProcessOutput::result() const {
  if (last_line_.empty()) return nullptr;
  try {
    return json::parse(last_line_, [](int depth, json::parse_event_t event, json&) {
      if ((event == json::parse_event_t::object_start ||
           event == json::parse_event_t::array_start) &&
          depth >= kMaxResultDepth)
        throw TooDeep{};
      return true;
    });
  } catch (const json::exception&) {
    return nullptr;
  } catch (const TooDeep&) {
    return nullptr;
  }
}

std::string ProcessOutput::stderr_tail() const {
  std::string_view tail = stderr_;
  if (tail.size() > limits_.tail_bytes) tail.remove_prefix(tail.size() - limits_.tail_bytes);
  // Skip continuation bytes of a character whose start was trimmed away.
  size_t skip = 0;
  while (skip < tail.size() && skip < 3 && (static_cast<unsigned char>(tail[skip]) & 0xC0) == 0x80)
    ++skip;
  return sanitize_utf8(tail.substr(skip));
}

std::string ProcessOutput::last_stderr_line() const {
  std::string tail = stderr_tail();
  size_t end = tail.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return "";
  size_t start = tail.rfind('\n', end);
  start = start == std::string::npos ? 0 : start + 1;
  return std::string(cut_utf8(std::string_view(tail).substr(start, end - start + 1), 200));
}

}  // namespace jobstate::executors
