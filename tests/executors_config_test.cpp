// The executor config file, command templates and the stdout/stderr protocol:
// what a user writes and what the executors make of a process's output.
#include <gtest/gtest.h>

#include <fstream>

#include "executors/command_template.h"
#include "executors/executor_config.h"
#include "executors/process_output.h"
#include "test_util.h"
#include "workers/utf8.h"

namespace jobstate::executors {
namespace {

using jobstate::testing::TempDir;
using nlohmann::json;

JobState job_with(json params) {
  JobState s;
  s.id = JobId::generate();
  s.type = "thumbnail";
  s.params = std::move(params);
  return s;
}

std::string render(const std::string& text, const json& params) {
  auto t = CommandTemplate::parse(text);
  EXPECT_TRUE(t.ok()) << t.error().message;
  if (!t) return "";
  auto r = t->render(job_with(params));
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r ? *r : "";
}

TEST(CommandTemplate, FillsParamsAsOneArgumentEach) {
  json p = {{"path", "/tmp/a b; rm -rf /"},
            {"n", 3},
            {"flag", true},
            {"nested", {{"x", "y"}}},
            {"files", {"f0", "f1"}}};
  EXPECT_EQ(render("{params.path}", p), "/tmp/a b; rm -rf /");  // no shell: the text as it is
  EXPECT_EQ(render("--count={params.n}", p), "--count=3");
  EXPECT_EQ(render("{params.flag}", p), "true");
  EXPECT_EQ(render("{params.nested.x}", p), "y");
  EXPECT_EQ(render("{params.files.1}", p), "f1");
  EXPECT_EQ(render("{params.nested}", p), R"({"x":"y"})");
  EXPECT_EQ(render("{{literal}} {params.n}", p), "{literal} 3");
  JobState s = job_with(p);
  auto t = CommandTemplate::parse("{job.type}:{job.id}");
  ASSERT_OK(t);
  EXPECT_EQ(*t->render(s), "thumbnail:" + s.id.to_string());
}

TEST(CommandTemplate, MissingOrNullParamIsAClearError) {
  for (json params : {json::object(), json{{"path", nullptr}}, json{{"path", {{"other", 1}}}}}) {
    std::string text = params.contains("path") && params["path"].is_object() ? "{params.path.name}"
                                                                             : "{params.path}";
    auto t = CommandTemplate::parse(text);
    ASSERT_OK(t);
    auto r = t->render(job_with(params));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("is missing"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("params.path"), std::string::npos) << r.error().message;
  }
}

TEST(CommandTemplate, NulByteIsRefused) {
  auto t = CommandTemplate::parse("{params.s}");
  ASSERT_OK(t);
  auto r = t->render(job_with({{"s", std::string("a\0b", 3)}}));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("NUL"), std::string::npos);
}

TEST(CommandTemplate, MalformedTemplatesAreRefused) {
  for (const char* bad : {"{params.path", "oops}", "{env.HOME}", "{params..x}", "{}"}) {
    EXPECT_FALSE(CommandTemplate::parse(bad).ok()) << bad;
  }
}

constexpr const char* kGoodConfig = R"({
  // comments are allowed
  "executors": {
    "thumbnail": {
      "argv": ["/usr/bin/convert", "{params.src}", "{params.dst}"],
      "concurrency": 3,
      "cancel_grace_s": 2.5,
      "cwd": "/tmp",
      "env": {"LANG": "C", "JOB": "{job.id}"},
      "inherit_env": false
    },
    "report": {"argv": ["make-report"]}
  }
})";

TEST(ExecutorConfig, ParsesEverySetting) {
  auto c = parse_executor_config(kGoodConfig);
  ASSERT_OK(c);
  ASSERT_EQ(c->executors.size(), 2u);
  const ExecutorSpec* t = c->find("thumbnail");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->argv.size(), 3u);
  EXPECT_EQ(t->concurrency, 3);
  EXPECT_EQ(t->cancel_grace_ms, 2500);
  EXPECT_EQ(t->cwd, "/tmp");
  EXPECT_EQ(t->env.size(), 2u);
  EXPECT_FALSE(t->inherit_env);
  const ExecutorSpec* r = c->find("report");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->concurrency, 1);
  EXPECT_EQ(r->cancel_grace_ms, 10'000);
  EXPECT_TRUE(r->inherit_env);
  EXPECT_EQ(c->find("other"), nullptr);
}

struct BadConfig {
  const char* text;
  const char* where;   // "cfg:<line>" prefix expected
  const char* reason;  // a part of the reason
};

TEST(ExecutorConfig, ErrorsNameTheLineAndTheReason) {
  const BadConfig cases[] = {
      {"{\n  \"executors\": {\n    \"a\": {\"argv\": [\"x\"],}\n  }\n}", "cfg:3:", "syntax error"},
      {"{\n  \"executors\": {\n    \"a\": {\n      \"argv\": [\"/bin/x\"],\n      \"concurrency\": "
       "0\n    }\n  }\n}",
       "cfg:5: ", "concurrency must be an integer from 1 to 1024"},
      {"{\n  \"executors\": {\n    \"a\": {\n      \"argv\": [\"/bin/x\",\n               "
       "\"{params.p\"]\n    }\n  }\n}",
       "cfg:5: ", "'{' without '}'"},
      {"{\n  \"executors\": {\n    \"a\": {\n      \"argv\": [\"{params.prog}\"]\n    }\n  }\n}",
       "cfg:4: ", "must be a literal"},
      {"{\n  \"executors\": {\n    \"a\": {\n      \"argv\": [\"/bin/x\"],\n      \"concurency\": "
       "2\n    }\n  }\n}",
       "cfg:5: ", "unknown setting executors.a.concurency"},
      {"{\n  \"executors\": {\n    \"bad type!\": {\"argv\": [\"/bin/x\"]}\n  }\n}",
       "cfg:3: ", "is not a job type"},
      {"{\n  \"executors\": {\n    \"a\": {\n      \"concurrency\": 2\n    }\n  }\n}",
       "cfg:3: ", "needs \"argv\""},
      {"{\n  \"executors\": {\n    \"a\": {\n      \"argv\": [],\n    }\n  }\n}",
       "cfg:5:", "syntax error"},
      {"{\"executors\": {\"a\": {\"argv\": [\"/bin/x\"], \"cwd\": \"/no/such/dir\"}}}",
       "cfg:1: ", "is not a directory"},
      {"{\n\"executors\": {}, \"extra\": 1}", "cfg:2: ", "unknown top-level setting"},
      {"[1, 2]", "cfg:1: ", "must be a JSON object"},
      {"", "cfg:1:", "unexpected end of input"},
  };
  for (const auto& c : cases) {
    auto r = parse_executor_config(c.text, "cfg");
    ASSERT_FALSE(r.ok()) << c.text;
    const std::string& m = r.error().message;
    EXPECT_EQ(m.rfind(c.where, 0), 0u) << "message: " << m << "\nconfig:\n" << c.text;
    EXPECT_NE(m.find(c.reason), std::string::npos) << "message: " << m;
  }
}

TEST(ExecutorConfig, LoadNamesTheFile) {
  TempDir dir;
  const std::string path = dir.sub("executors.json");
  std::ofstream(path)
      << "{\"executors\": {\"a\": {\"argv\": [\"/bin/true\"], \"concurrency\": \"2\"}}}";
  auto r = load_executor_config(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message.rfind(path + ":1: ", 0), 0u) << r.error().message;
  auto missing = load_executor_config(dir.sub("nope.json"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("cannot be read"), std::string::npos);
}

TEST(ProcessOutput, ProgressLinesAndTheLastLineAsResult) {
  ProcessOutput out;
  out.add_stdout("starting\nPROGRESS 0.25 a quarter\n");
  auto p = out.take_progress();
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(*p, json({{"fraction", 0.25}, {"message", "a quarter"}, {"details", nullptr}}));
  EXPECT_FALSE(out.take_progress().has_value());
  // Split across reads, with CRLF; the newest of several progress lines wins.
  out.add_stdout("PROGRESS 0.5\r\nPROGRESS 0.");
  out.add_stdout("75 three quarters\n{\"pages\":");
  out.add_stdout(" 3}\n\n");
  p = out.take_progress();
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ((*p)["fraction"], 0.75);
  EXPECT_EQ((*p)["message"], "three quarters");
  out.finish_stdout();
  EXPECT_EQ(out.result(), json({{"pages", 3}}));
  // Blanks may be tabs or several spaces (the grammar of `jobstate run`,
  // workers/progress_line.h).
  ProcessOutput tab_out;
  tab_out.add_stdout("PROGRESS\t0.2   two  words\n");
  auto tabs = tab_out.take_progress();
  ASSERT_TRUE(tabs.has_value());
  EXPECT_EQ((*tabs)["fraction"], 0.2);
  EXPECT_EQ((*tabs)["message"], "two  words");
  ProcessOutput keyword_out;
  keyword_out.add_stdout("PROGRESSING 0.2\n");
  EXPECT_FALSE(keyword_out.take_progress().has_value());
  // A long message is cut at max_progress_message_bytes, at a character
  // boundary, and made valid UTF-8.
  ProcessOutputLimits small;
  small.max_progress_message_bytes = 3;
  ProcessOutput cut_out(small);
  cut_out.add_stdout("PROGRESS 0.3 ab\xC3\xA9xyz\n");
  auto cut = cut_out.take_progress();
  ASSERT_TRUE(cut.has_value());
  EXPECT_EQ((*cut)["message"], "ab");
}

TEST(ProcessOutput, NonJsonOrMalformedProgressIsNotAResult) {
  ProcessOutput out;
  out.add_stdout("{\"a\": 1}\nall done");  // the unterminated last line counts
  out.finish_stdout();
  EXPECT_TRUE(out.result().is_null());
  for (const char* line :
       {"PROGRESS 1.5 too far", "PROGRESS abc", "PROGRESS -0.1", "PROGRESS nan"}) {
    ProcessOutput o;
    o.add_stdout(std::string(line) + "\n");
    EXPECT_FALSE(o.take_progress().has_value()) << line;
  }
}

TEST(ProcessOutput, BoundedMemoryWhateverTheChildWrites) {
  ProcessOutputLimits limits;
  limits.max_line_bytes = 100;
  limits.tail_bytes = 16;
  ProcessOutput out(limits);
  out.add_stdout("[1]\n" + std::string(1000, 'x') + "\n");
  out.finish_stdout();
  EXPECT_EQ(out.result(), json({1}));  // the overlong line was dropped
  for (int i = 0; i < 100; ++i) out.add_stderr("line " + std::to_string(i) + "\n");
  EXPECT_LE(out.stderr_tail().size(), 16u);
  EXPECT_EQ(out.last_stderr_line(), "line 99");
  // Deeper than 64 levels: not a result (the API's nesting limit).
  ProcessOutput deep;
  deep.add_stdout(std::string(65, '[') + std::string(65, ']') + "\n");
  EXPECT_TRUE(deep.result().is_null());
  ProcessOutput ok_depth;
  ok_depth.add_stdout(std::string(64, '[') + std::string(64, ']') + "\n");
  EXPECT_FALSE(ok_depth.result().is_null());
}

TEST(ProcessOutput, InvalidUtf8BecomesReplacementCharacters) {
  EXPECT_EQ(workers::sanitize_utf8("ok \xff\xfe é"), "ok \xEF\xBF\xBD\xEF\xBF\xBD é");
  EXPECT_EQ(workers::sanitize_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
  ProcessOutput out;
  out.add_stderr("bad \xff byte\n");
  EXPECT_NO_THROW(json({{"tail", out.stderr_tail()}}).dump());
}

}  // namespace
}  // namespace jobstate::executors
