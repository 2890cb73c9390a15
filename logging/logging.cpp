#include "logging/logging.h"

#include <openssl/rand.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>

#include "domain/clock.h"

namespace jobstate::logging {
namespace {

Format g_format = Format::kText;
thread_local std::string t_request_id;
// The fields of the line being written on this thread (set by log(), read by
// the formatter: spdlog's default logger formats on the calling thread).
thread_local const Fields* t_fields = nullptr;

const char* level_name(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

TimeMs to_ms(spdlog::log_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

void append_text_value(std::string& out, const nlohmann::json& v) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    // Bare when it reads unambiguously, quoted (JSON) otherwise.
    bool bare = !s.empty();
    for (char c : s)
      if (c <= ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) >= 0x7f) bare = false;
    out += bare ? s : v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    out += v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
}

std::string json_line(TimeMs at, spdlog::level::level_enum level, std::string_view message,
                      const Fields* fields) {
  // In the order written: time, level, message first, for a person reading.
  nlohmann::ordered_json line = nlohmann::ordered_json::object();
  line["time"] = format_rfc3339_ms(at);
  line["level"] = level_name(level);
  line["message"] = std::string(message);
  if (!t_request_id.empty()) line["request_id"] = t_request_id;
  if (fields)
    for (const auto& [k, v] : *fields)
      if (k != "time" && k != "level" && k != "message") line[std::string(k)] = v;
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string text_line(TimeMs at, spdlog::level::level_enum level, std::string_view message,
                      const Fields* fields) {
  std::string out = "[" + format_rfc3339_ms(at) + "] [" + level_name(level) + "] ";
  out += message;
  if (fields)
    for (const auto& [k, v] : *fields) {
      out += ' ';
      out += k;
      out += '=';
      append_text_value(out, v);
    }
  if (!t_request_id.empty()) {
    out += " request_id=";
    out += t_request_id;
  }
  return out;
}

class LineFormatter final : public spdlog::formatter {
 public:
  explicit LineFormatter(Format f) : format_(f) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string_view message(msg.payload.data(), msg.payload.size());
    const std::string line = format_ == Format::kJson
                                 ? json_line(to_ms(msg.time), msg.level, message, t_fields)
                                 : text_line(to_ms(msg.time), msg.level, message, t_fields);
    dest.append(line.data(), line.data() + line.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<LineFormatter>(format_);
  }

 private:
  Format format_;
};

}  // namespace

std::optional<Format> parse_format(std::string_view name) {
  if (name == "text") return Format::kText;
  if (name == "json") return Format::kJson;
  return std::nullopt;
}

void configure(Format format, spdlog::level::level_enum level) {
  g_format = format;
  auto logger = spdlog::default_logger();
  logger->set_formatter(std::make_unique<LineFormatter>(format));
  logger->set_level(level);
  // Warnings and errors reach the file at once; info lines (an access line
  // per request) are buffered and flushed every second, so a busy server
  // does not pay a write(2) per request. A SIGKILL may lose the last second
  // of info lines; stdout_line() flushes everything before it.
  logger->flush_on(spdlog::level::warn);
  static std::once_flag every_second;
  std::call_once(every_second, [] { spdlog::flush_every(std::chrono::seconds(1)); });
}

Format format() { return g_format; }

bool enabled(spdlog::level::level_enum level) { return spdlog::default_logger_raw()->should_log(level); }

void log(spdlog::level::level_enum level, std::string_view message, Fields fields) {
  auto logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  t_fields = &fields;
  logger->log(level, "{}", message);
  t_fields = nullptr;
}

namespace {
void bare_line(FILE* to, spdlog::level::level_enum level, std::string_view message, const Fields* fields) {
  const std::string line = g_format == Format::kJson
                               ? json_line(SystemClock().now_ms(), level, message, fields)
                               : std::string(message);
  std::fwrite(line.data(), 1, line.size(), to);
  std::fputc('\n', to);
  std::fflush(to);
}
}  // namespace

void stdout_line(std::string_view message, Fields fields) {
  bare_line(stdout, spdlog::level::info, message, &fields);
}

void stderr_line(spdlog::level::level_enum level, std::string_view message) {
  bare_line(stderr, level, message, nullptr);
}

RequestScope::RequestScope(std::string_view id) : previous_(std::move(t_request_id)) {
  t_request_id.assign(id);
}
RequestScope::~RequestScope() { t_request_id = std::move(previous_); }

const std::string& current_request_id() { return t_request_id; }

std::optional<std::string> accept_request_id(std::string_view sent) {
  if (sent.empty() || sent.size() > 128) return std::nullopt;
  for (char c : sent)
    if (c < 0x21 || c > 0x7e) return std::nullopt;
  return std::string(sent);
}

std::string new_request_id() {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    thread_local std::mt19937_64 fallback{std::random_device{}()};
    for (auto& b : raw) b = static_cast<unsigned char>(fallback());
  }
  static const char* const kHex = "0123456789abcdef";
  std::string out(32, '0');
  for (size_t i = 0; i < sizeof raw; ++i) {
    out[2 * i] = kHex[raw[i] >> 4];
    out[2 * i + 1] = kHex[raw[i] & 15];
  }
  return out;
}

}  // namespace jobstate::logging
