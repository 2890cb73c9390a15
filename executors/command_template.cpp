#include "executors/command_template.h"

namespace jobstate::executors {

namespace {
Error invalid(std::string msg) {
  return make_error(ErrorCode::kInvalidRequest, std::move(msg));
}

std::vector<std::string> split_dots(std::string_view name) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    out.emplace_back(name.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return out;
}

// Digits only, no leading zero (except "0"): an array index.
bool parse_index(const std::string& s, size_t& out) {
  if (s.empty() || s.size() > 9 || (s.size() > 1 && s[0] == '0')) return false;
  out = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    out = out * 10 + static_cast<size_t>(c - '0');
  }
  return true;
}
}  // namespace

Result<CommandTemplate> CommandTemplate::parse(std::string_view text) {
  CommandTemplate t;
  t.source_ = std::string(text);
  std::string literal;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '}') {
      if (i + 1 < text.size() && text[i + 1] == '}') {
        literal += '}';
        ++i;
        continue;
      }
      return invalid("'}' without '{' in \"" + t.source_ + "\" (write '}}' for a literal brace)");
    }
    if (c != '{') {
      literal += c;
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '{') {
      literal += '{';
      ++i;
      continue;
    }
    size_t close = text.find('}', i + 1);
    if (close == std::string_view::npos)
      return invalid("'{' without '}' in \"" + t.source_ + "\" (write '{{' for a literal brace)");
    std::string_view name = text.substr(i + 1, close - i - 1);
    Piece p;
    p.placeholder = true;
    p.text = "{" + std::string(name) + "}";
    if (name == "job.id" || name == "job.type") {
      p.path = split_dots(name);
    } else {
      p.path = split_dots(name);
      if (p.path.front() != "params")
        return invalid(
            "unknown placeholder " + p.text + " in \"" + t.source_ +
            "\" (known: {params}, {params.NAME...}, {job.id}, {job.type}; write {{ and }} for "
            "literal braces)");
      for (const auto& key : p.path)
        if (key.empty())
          return invalid("empty name in placeholder " + p.text + " in \"" + t.source_ + "\"");
    }
    if (!literal.empty()) t.pieces_.push_back(Piece{false, std::move(literal), {}});
    literal.clear();
    t.pieces_.push_back(std::move(p));
    i = close;
  }
  if (!literal.empty()) t.pieces_.push_back(Piece{false, std::move(literal), {}});
  return t;
}

bool CommandTemplate::has_placeholders() const {
  for (const auto& p : pieces_)
    if (p.placeholder) return true;
  return false;
}

Result<std::string> CommandTemplate::render(const JobState& job) const {
  std::string out;
  for (const auto& p : pieces_) {
    if (!p.placeholder) {
      out += p.text;
      continue;
    }
    if (p.path[0] == "job") {
      out += p.path[1] == "id" ? job.id.to_string() : job.type;
      continue;
    }
    const nlohmann::json* v = &job.params;
    for (size_t k = 1; k < p.path.size() && v; ++k) {
      const std::string& key = p.path[k];
      if (v->is_object()) {
        auto it = v->find(key);
        v = it == v->end() ? nullptr : &*it;
      } else if (size_t index = 0; v->is_array() && parse_index(key, index)) {
        v = index < v->size() ? &(*v)[index] : nullptr;
      } else {
        v = nullptr;
      }
    }
    std::string name = p.text.substr(1, p.text.size() - 2);
    if (!v || v->is_null()) return invalid(name + " is missing (needed by \"" + source_ + "\")");
    if (v->is_string()) {
      out += v->get_ref<const std::string&>();
    } else {
      out += v->dump();
    }
  }
  if (out.find('\0') != std::string::npos)
    return invalid("\"" + source_ +
                   "\" would contain a NUL byte, which a command argument cannot carry");
  return out;
}

}  // namespace jobstate::executors
