#include "executors/executor_config.h"

#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <sstream>
#include <unordered_map>

namespace jobstate::executors {

using nlohmann::json;

namespace {

// Reads `text` one character at a time and counts how many the JSON parser
// has taken, so a parse callback can tell where in the file it is.
// nlohmann's iterator input reads lazily (one character of lookahead at
// most), which is what makes the count a position.
class CountingIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  CountingIterator(const char* p, size_t* consumed) : p_(p), consumed_(consumed) {}
  reference operator*() const { return *p_; }
  CountingIterator& operator++() {
    ++p_;
    ++*consumed_;
    return *this;
  }
  CountingIterator operator++(int) {
    CountingIterator old = *this;
    ++*this;
    return old;
  }
  bool operator==(const CountingIterator& o) const { return p_ == o.p_; }
  bool operator!=(const CountingIterator& o) const { return p_ != o.p_; }

 private:
  const char* p_;
  size_t* consumed_;
};

// 1-based line of byte offset `pos`.
size_t line_of(std::string_view text, size_t pos) {
  pos = std::min(pos, text.size());
  size_t line = 1;
  for (size_t i = 0; i < pos; ++i)
    if (text[i] == '\n') ++line;
  return line;
}

// Where each member and array element of the document starts (its line), by
// path ("/executors/thumbnail/argv/1"), recorded while parsing.
class LineMap {
 public:
  explicit LineMap(std::string_view text) : text_(text) {}
  size_t* counter() { return &consumed_; }

  bool on_event(int /*depth*/, json::parse_event_t event, json& parsed) {
    // The last character consumed may be one character of lookahead (after a
    // number, say), possibly the newline: the token itself ends before it.
    const size_t line = line_of(text_, consumed_ == 0 ? 0 : consumed_ - 1);
    switch (event) {
      case json::parse_event_t::key:
        if (!frames_.empty()) {
          frames_.back().key = parsed.is_string() ? parsed.get<std::string>() : std::string();
          lines_.emplace(frames_.back().path + "/" + frames_.back().key, line);
        }
        break;
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start: {
        std::string path = element_path(line);
        frames_.push_back(Frame{event == json::parse_event_t::array_start, std::move(path), "", 0});
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!frames_.empty()) frames_.pop_back();
        break;
      case json::parse_event_t::value:
        element_path(line);
        break;
    }
    return true;
  }

  // The line of `path`, or of its nearest recorded ancestor; 0 when unknown.
  size_t line(std::string path) const {
    while (true) {
      auto it = lines_.find(path);
      if (it != lines_.end()) return it->second;
      auto slash = path.rfind('/');
      if (slash == std::string::npos || path.empty()) return 0;
      path.resize(slash);
    }
  }

 private:
  struct Frame {
    bool is_array;
    std::string path;
    std::string key;
    size_t next_index;
  };
  // The path of the value starting now; array elements are recorded here
  // (object members were recorded at their key).
  std::string element_path(size_t line) {
    if (frames_.empty()) {
      lines_.emplace("", line);
      return "";
    }
    Frame& top = frames_.back();
    if (!top.is_array) return top.path + "/" + top.key;
    std::string path = top.path + "/" + std::to_string(top.next_index++);
    lines_.emplace(path, line);
    return path;
  }

  std::string_view text_;
  size_t consumed_ = 0;
  std::vector<Frame> frames_;
  std::unordered_map<std::string, size_t> lines_;
};

// Raised inside validation with the path of the offending value.
struct ConfigProblem {
  std::string path;
  std::string reason;
};

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool valid_env_name(const std::string& name) {
  if (name.empty() || name.find('=') != std::string::npos) return false;
  return name.find('\0') == std::string::npos;
}

ExecutorSpec parse_spec(const std::string& type, const json& v) {
  const std::string base = "/executors/" + type;
  const std::string where = "executors." + type;
  if (!v.is_object()) throw ConfigProblem{base, where + " must be an object with \"argv\""};
  ExecutorSpec spec;
  spec.type = type;
  for (auto& [key, value] : v.items()) {
    const std::string path = base + "/" + key;
    const std::string name = where + "." + key;
    if (key == "argv") {
      if (!value.is_array() || value.empty())
        throw ConfigProblem{path, name + " must be a non-empty array of strings"};
      for (size_t i = 0; i < value.size(); ++i) {
        const std::string item_path = path + "/" + std::to_string(i);
        if (!value[i].is_string())
          throw ConfigProblem{item_path, name + "[" + std::to_string(i) + "] must be a string"};
        auto t = CommandTemplate::parse(value[i].get<std::string>());
        if (!t)
          throw ConfigProblem{item_path,
                              name + "[" + std::to_string(i) + "]: " + t.error().message};
        if (i == 0 && (t->has_placeholders() || t->source().empty()))
          throw ConfigProblem{item_path, name +
                                             "[0] (the program) must be a literal, non-empty path "
                                             "or name: params must not choose what runs"};
        spec.argv.push_back(std::move(*t));
      }
    } else if (key == "concurrency") {
      if (!value.is_number_integer() || value.get<int64_t>() < 1 || value.get<int64_t>() > 1024)
        throw ConfigProblem{path, name + " must be an integer from 1 to 1024"};
      spec.concurrency = static_cast<int>(value.get<int64_t>());
    } else if (key == "cancel_grace_s") {
      if (!value.is_number() || !(value.get<double>() >= 0.0 && value.get<double>() <= 3600.0))
        throw ConfigProblem{path, name + " must be a number of seconds from 0 to 3600"};
      spec.cancel_grace_ms = std::llround(value.get<double>() * 1000.0);
    } else if (key == "cwd") {
      if (!value.is_string() || value.get<std::string>().empty())
        throw ConfigProblem{path, name + " must be a non-empty string"};
      spec.cwd = value.get<std::string>();
      if (!is_directory(spec.cwd))
        throw ConfigProblem{path, name + ": \"" + spec.cwd + "\" is not a directory"};
    } else if (key == "env") {
      if (!value.is_object()) throw ConfigProblem{path, name + " must be an object of strings"};
      for (auto& [var, text] : value.items()) {
        const std::string var_path = path + "/" + var;
        if (!valid_env_name(var))
          throw ConfigProblem{var_path, name + ": \"" + var + "\" is not a valid variable name"};
        if (!text.is_string())
          throw ConfigProblem{var_path, name + "." + var + " must be a string"};
        auto t = CommandTemplate::parse(text.get<std::string>());
        if (!t) throw ConfigProblem{var_path, name + "." + var + ": " + t.error().message};
        spec.env.emplace(var, std::move(*t));
      }
    } else if (key == "inherit_env") {
      if (!value.is_boolean()) throw ConfigProblem{path, name + " must be true or false"};
      spec.inherit_env = value.get<bool>();
    } else {
      throw ConfigProblem{path, "unknown setting " + name +
                                    " (known: argv, concurrency, cancel_grace_s, cwd, env, "
                                    "inherit_env)"};
    }
  }
  if (spec.argv.empty()) throw ConfigProblem{base, where + " needs \"argv\""};
  return spec;
}

ExecutorConfig parse_config(const json& doc) {
  if (!doc.is_object())
    throw ConfigProblem{"", "the config must be a JSON object with \"executors\""};
  ExecutorConfig config;
  for (auto& [key, value] : doc.items()) {
    if (key == "webhooks") continue;  // webhooks/webhook_config.h reads them
    if (key != "executors")
      throw ConfigProblem{"/" + key, "unknown top-level setting \"" + key +
                                         "\" (known: executors, webhooks)"};
    if (!value.is_object())
      throw ConfigProblem{"/executors", "\"executors\" must be an object: job type → executor"};
    for (auto& [type, spec] : value.items()) {
      if (!is_valid_job_type(type))
        throw ConfigProblem{"/executors/" + type,
                            "\"" + type + "\" is not a job type (1 to 128 of A-Za-z0-9._:-)"};
      config.executors.emplace(type, parse_spec(type, spec));
    }
  }
  return config;
}

// nlohmann's parse_error text starts "[json.exception.parse_error.101] parse
// error at line 3, column 5: "; the location is given separately.
std::string parse_error_reason(const std::string& what) {
  auto at = what.find(", column ");
  if (at != std::string::npos) {
    auto colon = what.find(": ", at);
    if (colon != std::string::npos) return what.substr(colon + 2);
  }
  auto bracket = what.find("] ");
  return bracket == std::string::npos ? what : what.substr(bracket + 2);
}

}  // namespace

Result<ExecutorConfig> parse_executor_config(std::string_view text, std::string_view source_name) {
  const std::string source(source_name);
  LineMap lines(text);
  CountingIterator first(text.data(), lines.counter());
  CountingIterator last(text.data() + text.size(), lines.counter());
  json doc;
  try {
    doc = json::parse(
        first, last,
        [&lines](int depth, json::parse_event_t event, json& parsed) {
          return lines.on_event(depth, event, parsed);
        },
        /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    // e.byte is the 1-based position of the character that broke the parse.
    const size_t pos = e.byte == 0 ? 0 : e.byte - 1;
    const size_t line = line_of(text, pos);
    size_t line_start = pos;
    while (line_start > 0 && line_start <= text.size() && text[line_start - 1] != '\n')
      --line_start;
    const size_t column = pos - line_start + 1;
    return make_error(ErrorCode::kInvalidRequest, source + ":" + std::to_string(line) + ":" +
                                                      std::to_string(column) + ": " +
                                                      parse_error_reason(e.what()));
  } catch (const json::exception& e) {
    return make_error(ErrorCode::kInvalidRequest, source + ": " + e.what());
  }
  try {
    return parse_config(doc);
  } catch (const ConfigProblem& p) {
    const size_t line = lines.line(p.path);
    std::string where = source + (line ? ":" + std::to_string(line) : std::string()) + ": ";
    return make_error(ErrorCode::kInvalidRequest, where + p.reason);
  }
}

Result<ExecutorConfig> load_executor_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::kInvalidRequest, path + ": cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return make_error(ErrorCode::kInvalidRequest, path + ": read error");
  return parse_executor_config(text.str(), path);
}

}  // namespace jobstate::executors
