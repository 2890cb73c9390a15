// canonical_dump (domain/event.h) against Python: the canonical form is
// defined as json.dumps(v, sort_keys=True, separators=(",", ":"),
// ensure_ascii=False), so the hash chain can be checked from Python. One
// python3 child per run renders each value; any byte of difference stops
// the run.
//
// Input: one byte choosing the mode, then
//   mode 0: a JSON text. What parse_body accepts (depth ≤ 64, valid UTF-8,
//           no duplicate member) goes to both sides. Python gets
//           nlohmann's ASCII dump of the parsed value, whose floats read back
//           exactly, so both render the same value.
//   mode 1: 8 bytes, a double's bits: append_python_float against repr().
// Intended differences, not checked: numbers nlohmann reads differently
// from Python (an integer beyond uint64 becomes a double in nlohmann, stays
// an int in Python; 1e400 is refused by nlohmann, read as Infinity by
// Python): the value compared is the one nlohmann parsed.
// Also checked: member_text/only_member_text (domain/json_text.h) find each
// member's canonical text in the canonical text of an object.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "api/request_json.h"
#include "domain/event.h"
#include "domain/json_text.h"
#include "fuzz_check.h"

using namespace jobstate;
using nlohmann::json;

namespace {

// Reads "J <ascii json>" or "F <16 hex digits of a double's bits>", one per
// line; answers with the canonical text (UTF-8) on one line.
constexpr const char* kPythonRenderer = R"PY(
import json, struct, sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
for line in inp:
    kind, arg = line[:1], line[2:].rstrip(b"\n")
    if kind == b"J":
        text = json.dumps(json.loads(arg), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    else:
        text = repr(struct.unpack("<d", bytes.fromhex(arg.decode()))[0])
    out.write(text.encode("utf-8") + b"\n")
    out.flush()
)PY";

class Python {
 public:
  Python() { start(); }

  // One question, one line of answer. A child that went away (killed from
  // outside: OOM, a stray kill) is started again once and asked again; a
  // second loss on the same question is a finding.
  std::string ask(char kind, std::string_view arg) {
    if (auto a = try_ask(kind, arg)) return *a;
    int status = 0;
    waitpid(pid_, &status, 0);
    std::fprintf(stderr, "fuzz_canonical_json: python3 went away (status %d); starting it again\n",
                 status);
    close(to_);
    close(from_);
    buffered_.clear();
    start();
    auto again = try_ask(kind, arg);
    FUZZ_CHECK(again.has_value(), "python3 went away twice on this input");
    return *again;
  }

 private:
  void start() {
    int to_child[2], from_child[2];
    FUZZ_CHECK(pipe(to_child) == 0 && pipe(from_child) == 0);
    pid_ = fork();
    FUZZ_CHECK(pid_ >= 0);
    if (pid_ == 0) {
      dup2(to_child[0], 0);
      dup2(from_child[1], 1);
      close(to_child[1]);
      close(from_child[0]);
      execlp("python3", "python3", "-c", kPythonRenderer, static_cast<char*>(nullptr));
      _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    fcntl(to_child[1], F_SETFD, FD_CLOEXEC);
    fcntl(from_child[0], F_SETFD, FD_CLOEXEC);
    to_ = to_child[1];
    from_ = from_child[0];
    signal(SIGPIPE, SIG_IGN);
  }

  std::optional<std::string> try_ask(char kind, std::string_view arg) {
    std::string line(1, kind);
    line += ' ';
    line += arg;
    line += '\n';
    for (size_t off = 0; off < line.size();) {
      ssize_t n = write(to_, line.data() + off, line.size() - off);
      if (n <= 0) return std::nullopt;
      off += static_cast<size_t>(n);
    }
    std::string answer;
    while (true) {
      if (auto nl = buffered_.find('\n'); nl != std::string::npos) {
        answer = buffered_.substr(0, nl);
        buffered_.erase(0, nl + 1);
        return answer;
      }
      char buf[65536];
      ssize_t n = read(from_, buf, sizeof buf);
      if (n <= 0) return std::nullopt;
      buffered_.append(buf, static_cast<size_t>(n));
    }
  }

  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
  std::string buffered_;
};

Python& python() {
  static Python p;
  return p;
}

void check_member_texts(const json& j, const std::string& canonical) {
  if (!j.is_object()) return;
  for (auto& [k, v] : j.items()) {
    auto text = member_text(canonical, k);
    // member_text compares the key's text as written: only plain keys.
    bool plain = true;
    for (unsigned char c : k) plain = plain && c >= 0x20 && c < 0x7F && c != '"' && c != '\\';
    if (!plain) continue;
    FUZZ_CHECK(text.has_value(), k, canonical);
    FUZZ_CHECK(*text == canonical_dump(v), std::string(*text), canonical_dump(v));
    if (j.size() == 1) {
      auto only = only_member_text(canonical, k);
      FUZZ_CHECK(only && *only == *text, canonical);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Started before the first input: a run without python3 fails at once.
  FUZZ_CHECK(python().ask('J', "[1.5,\"\\u00e9\"]") == "[1.5,\"\xc3\xa9\"]", "python3 renderer");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  if (data[0] % 2 == 1) {
    if (size < 9) return 0;
    double d;
    std::memcpy(&d, data + 1, 8);
    std::string ours;
    append_python_float(ours, d);
    if (!std::isfinite(d)) {
      FUZZ_CHECK(ours == "null", ours);  // JSON has no such number
      return 0;
    }
    char hex[17];
    for (int i = 0; i < 8; ++i) std::snprintf(hex + 2 * i, 3, "%02x", data[1 + i]);
    const std::string theirs = python().ask('F', std::string_view(hex, 16));
    FUZZ_CHECK(ours == theirs, ours, theirs);
    FUZZ_CHECK(json::parse(ours).get<double>() == d || d == 0, ours);
    return 0;
  }
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (text.size() > api::kMaxBodyBytes) return 0;
  auto parsed = api::parse_body(text);
  if (!parsed || !*parsed) return 0;
  const json& j = **parsed;
  const std::string ours = canonical_dump(j);
  const std::string theirs = python().ask('J', j.dump(-1, ' ', /*ensure_ascii=*/true));
  FUZZ_CHECK(ours == theirs, ours, theirs);
  check_member_texts(j, ours);
  return 0;
}
