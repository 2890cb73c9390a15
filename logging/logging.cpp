#include "logging/logging.h"

#include <openssl/rand.h>
#include <spdlog/formatter.h>
#include <spdlog/sinks/base_sink.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <memory>
#include <mutex>
#include <random>
#include <utility>

#include "domain/clock.h"

namespace jobstate::logging {
namespace {

Format g_format = Format::kText;
thread_local std::string t_request_id;
// Set while logging::log hands spdlog a line it has already formatted: the
// formatter (which runs under the sink's lock) then only copies it.
thread_local bool t_preformatted = false;

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

// A JSON string: plain printable ASCII is copied as it is; anything else
// (quotes, control characters, UTF-8, invalid bytes) goes through nlohmann.
void append_json_string(std::string& out, std::string_view s) {
  for (char c : s)
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
      out += nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      return;
    }
  out += '"';
  out += s;
  out += '"';
}

// Numbers without a temporary string (access lines carry three).
bool append_number(std::string& out, const nlohmann::json& v) {
  char buf[32];
  std::to_chars_result r{};
  if (v.is_number_unsigned())
    r = std::to_chars(buf, buf + sizeof buf, v.get<uint64_t>());
  else if (v.is_number_integer())
    r = std::to_chars(buf, buf + sizeof buf, v.get<int64_t>());
  else if (v.is_number_float() && std::isfinite(v.get<double>()))
    r = std::to_chars(buf, buf + sizeof buf, v.get<double>());
  else
    return false;
  if (r.ec != std::errc()) return false;
  out.append(buf, r.ptr);
  return true;
}

void append_json(std::string& out, const nlohmann::json& v) {
  if (v.is_string()) return append_json_string(out, v.get_ref<const std::string&>());
  if (v.is_boolean()) {
    out += v.get<bool>() ? "true" : "false";
    return;
  }
  if (append_number(out, v)) return;
  out += v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A value in a text line: bare when it reads unambiguously, quoted (JSON)
// otherwise.
void append_text_string(std::string& out, std::string_view s) {
  bool bare = !s.empty();
  for (char c : s)
    if (c <= ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) >= 0x7f) bare = false;
  if (bare)
    out += s;
  else
    append_json_string(out, s);
}

void append_text_value(std::string& out, const nlohmann::json& v) {
  if (v.is_string())
    append_text_string(out, v.get_ref<const std::string&>());
  else
    append_json(out, v);
}

bool reserved(std::string_view key) {
  return key == "time" || key == "level" || key == "message" || key == "request_id";
}

// {"time":…,"level":…,"message":…,"request_id":…, then the fields}: keys in
// this order, for a person reading. Field names are identifiers of ours.
void append_json_line(std::string& out, TimeMs at, spdlog::level::level_enum level,
                      std::string_view message, const Fields* fields) {
  out += "{\"time\":\"";
  append_rfc3339_ms(out, at);
  out += "\",\"level\":\"";
  out += level_name(level);
  out += "\",\"message\":";
  append_json_string(out, message);
  if (!t_request_id.empty()) {
    out += ",\"request_id\":";
    append_json_string(out, t_request_id);
  }
  if (fields)
    for (const auto& [k, v] : *fields) {
      if (reserved(k)) continue;
      out += ",\"";
      out += k;
      out += "\":";
      append_json(out, v);
    }
  out += '}';
}

// A message in a text line: control characters escaped (\n, \r, \t,
// \xNN), so an exception's text cannot split the line.
void append_text_message(std::string& out, std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) {
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      static const char* const kHex = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
}

// [time] [level] message key=value ... request_id=…
void append_text_line(std::string& out, TimeMs at, spdlog::level::level_enum level,
                      std::string_view message, const Fields* fields) {
  out += '[';
  append_rfc3339_ms(out, at);
  out += "] [";
  out += level_name(level);
  out += "] ";
  append_text_message(out, message);
  if (fields)
    for (const auto& [k, v] : *fields) {
      if (reserved(k)) continue;
      out += ' ';
      out += k;
      out += '=';
      append_text_value(out, v);
    }
  if (!t_request_id.empty()) {
    out += " request_id=";
    append_text_string(out, t_request_id);
  }
}

void append_line(std::string& out, Format format, TimeMs at, spdlog::level::level_enum level,
                 std::string_view message, const Fields* fields) {
  if (format == Format::kJson)
    append_json_line(out, at, level, message, fields);
  else
    append_text_line(out, at, level, message, fields);
}

class LineFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (t_preformatted) {
      dest.append(payload.data(), payload.data() + payload.size());
    } else {
      // A plain spdlog::info(...) from anywhere in the tree.
      std::string line;
      append_line(line, g_format, to_ms(msg.time), msg.level, payload, nullptr);
      dest.append(line.data(), line.data() + line.size());
    }
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<LineFormatter>(); }
};

// spdlog's stdout sinks fflush after every line (a write(2) per access
// line, under the sink's lock); this one leaves stdout's buffering alone:
// line by line on a terminal, blocks otherwise, with the logger's flush_on
// and the flush thread (configure()) deciding when a block goes out.
class StdoutLines final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    std::fwrite(line.data(), 1, line.size(), stdout);
  }
  void flush_() override { std::fflush(stdout); }
};

}  // namespace

std::optional<Format> parse_format(std::string_view name) {
  if (name == "text") return Format::kText;
  if (name == "json") return Format::kJson;
  return std::nullopt;
}

void configure(Format format, spdlog::level::level_enum level) {
  g_format = format;
  auto logger = std::make_shared<spdlog::logger>("", std::make_shared<StdoutLines>());
  spdlog::set_default_logger(logger);
  logger->set_formatter(std::make_unique<LineFormatter>());
  logger->set_level(level);
  // Warnings and errors reach the file at once; info lines (an access line
  // per request) are buffered and flushed every second, so a busy server
  // does not pay a write(2) per request. A SIGKILL may lose the last second
  // of info lines; stdout_line() flushes everything before it.
  logger->flush_on(spdlog::level::warn);
  static std::once_flag every_second;
  std::call_once(every_second, [] { spdlog::flush_every(std::chrono::seconds(1)); });
}

std::string format_line(Format format, TimeMs at, spdlog::level::level_enum level, std::string_view message,
                        Fields fields) {
  std::string line;
  append_line(line, format, at, level, message, &fields);
  return line;
}

bool enabled(spdlog::level::level_enum level) { return spdlog::default_logger_raw()->should_log(level); }

void log(spdlog::level::level_enum level, std::string_view message, Fields fields) {
  auto logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  // Built here, outside the sink's lock, so threads logging at once only
  // queue for the copy into the stream.
  thread_local std::string line;
  line.clear();
  append_line(line, g_format, SystemClock().now_ms(), level, message, &fields);
  t_preformatted = true;
  logger->log(level, spdlog::string_view_t(line.data(), line.size()));
  t_preformatted = false;
}

namespace {
void bare_line(FILE* to, spdlog::level::level_enum level, std::string_view message, const Fields* fields) {
  std::string line;
  if (g_format == Format::kJson)
    append_json_line(line, SystemClock().now_ms(), level, message, fields);
  else
    line = message;
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), to);
  std::fflush(to);
}
}  // namespace

void stdout_line(std::string_view message, Fields fields) {
  bare_line(stdout, spdlog::level::info, message, &fields);
}

void stderr_line(spdlog::level::level_enum level, std::string_view message) {
  bare_line(stderr, level, message, nullptr);
}

RequestScope::RequestScope(std::string_view id) {
  std::string next(id);  // before the swap: `id` may be the current one
  previous_ = std::exchange(t_request_id, std::move(next));
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
  // A per-thread generator seeded once from OpenSSL: RAND_bytes itself
  // costs a getpid(2) per call (its fork check), on every request that
  // comes without an id. Ids correlate lines; they are not secrets.
  thread_local std::mt19937_64 gen = [] {
    uint32_t seed[8];
    if (RAND_bytes(reinterpret_cast<unsigned char*>(seed), sizeof seed) != 1) {
      std::random_device rd;
      for (auto& s : seed) s = rd();
    }
    std::seed_seq seq(std::begin(seed), std::end(seed));
    return std::mt19937_64(seq);
  }();
  static const char* const kHex = "0123456789abcdef";
  std::string out(32, '0');
  for (int half = 0; half < 2; ++half) {
    uint64_t bits = gen();
    for (int i = 0; i < 16; ++i, bits >>= 4) out[half * 16 + i] = kHex[bits & 15];
  }
  return out;
}

}  // namespace jobstate::logging
