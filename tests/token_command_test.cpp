// `jobstate token add|list|revoke` and `serve --tokens` as an operator uses
// them: the real binary, a real server process, SIGHUP to reload, and
// `jobstate run` / `work` taking their token from JOBSTATE_TOKEN.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "api_test_server.h"
#include "child_process.h"
#include "serve_process.h"
#include "store/durable_file.h"
#include "store/hash_chain.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;

// `jobstate token add`: the token it prints alone on its last line.
std::string add_token(const std::string& file, const std::string& name, const std::string& role,
                      const std::vector<std::string>& more = {}) {
  std::vector<std::string> args = {JOBSTATE_BIN, "token", "add", "--tokens", file,
                                   "--role",     role,    "--name", name};
  args.insert(args.end(), more.begin(), more.end());
  auto out = run_process(args);
  EXPECT_EQ(out.status, 0) << out.err;
  std::string text = out.out;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text.substr(text.rfind('\n') + 1);
}

TEST(TokenCommand, AddPrintsTheTokenOnceAndTheFileKeepsOnlyItsHash) {
  TempDir dir;
  const std::string file = dir.sub("tokens.json");
  const std::string token = add_token(file, "ci", "submitter", {"--types", "build.*"});
  EXPECT_EQ(token.rfind("jst_", 0), 0u) << token;
  EXPECT_EQ(token.size(), 4u + 64u);
  const std::string text = read_file(file);
  EXPECT_EQ(text.find(token.substr(4)), std::string::npos) << "the token itself is in the file";
  EXPECT_NE(text.find(sha256_hex(token)), std::string::npos) << text;
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the tokens file must be private";

  // A second token gets a different secret; names are unique.
  const std::string other = add_token(file, "dash", "reader");
  EXPECT_NE(other, token);
  auto dup = run_process({JOBSTATE_BIN, "token", "add", "--tokens", file, "--role", "reader", "--name", "ci"});
  EXPECT_NE(dup.status, 0);
  EXPECT_NE(dup.err.find("already exists"), std::string::npos) << dup.err;
  EXPECT_EQ(std::count(dup.err.begin(), dup.err.end(), '\n'), 1) << dup.err;

  auto list = run_process({JOBSTATE_BIN, "token", "list", "--tokens", file});
  EXPECT_EQ(list.status, 0) << list.err;
  EXPECT_NE(list.out.find("ci"), std::string::npos);
  EXPECT_NE(list.out.find("submitter"), std::string::npos);
  EXPECT_NE(list.out.find("build.*"), std::string::npos);
  EXPECT_NE(list.out.find("dash"), std::string::npos);
  EXPECT_EQ(list.out.find(token), std::string::npos) << "list must never show a token";

  EXPECT_EQ(run_process({JOBSTATE_BIN, "token", "revoke", "--tokens", file, "ci"}).status, 0);
  list = run_process({JOBSTATE_BIN, "token", "list", "--tokens", file});
  EXPECT_EQ(list.out.find("submitter"), std::string::npos) << list.out;
  auto again = run_process({JOBSTATE_BIN, "token", "revoke", "--tokens", file, "ci"});
  EXPECT_NE(again.status, 0);
  EXPECT_NE(again.err.find("no token named 'ci'"), std::string::npos) << again.err;
}

TEST(TokenCommand, BadInputIsAOneLineError) {
  TempDir dir;
  const std::string file = dir.sub("tokens.json");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--role", "root", "--name", "x"},
        std::vector<std::string>{"--role", "reader", "--name", "has space"},
        std::vector<std::string>{"--role", "reader", "--name", "x", "--types", "a,,b"},
        std::vector<std::string>{"--role", "reader", "--name", "x", "--types", "a b"}}) {
    std::vector<std::string> full = {JOBSTATE_BIN, "token", "add", "--tokens", file};
    full.insert(full.end(), args.begin(), args.end());
    auto out = run_process(full);
    EXPECT_NE(out.status, 0) << args[1] << " " << args[3];
    EXPECT_EQ(std::count(out.err.begin(), out.err.end(), '\n'), 1) << out.err;
    EXPECT_TRUE(out.out.empty()) << out.out;
  }
  EXPECT_FALSE(std::filesystem::exists(file)) << "a refused add wrote the file";
}

TEST(TokenCommand, ServeRefusesAMissingOrBrokenTokensFile) {
  TempDir dir;
  for (const std::string& content : {std::string(), std::string("{\"tokens\": [{\"name\": \"x\"}]}")}) {
    const std::string file = dir.sub("tokens.json");
    if (!content.empty()) {
      ASSERT_TRUE(write_file_durably(file, content, 0600));
    }
    auto out = run_process({JOBSTATE_BIN, "serve", "--data-dir", dir.sub("data"), "--listen",
                            "127.0.0.1:0", "--tokens", file});
    EXPECT_EQ(out.status, 2) << out.err;
    EXPECT_NE(out.err.find("--tokens"), std::string::npos) << out.err;
    EXPECT_EQ(std::count(out.err.begin(), out.err.end(), '\n'), 1) << out.err;
  }
  auto both = run_process({JOBSTATE_BIN, "serve", "--data-dir", dir.sub("data"), "--listen", "127.0.0.1:0",
                           "--tokens", dir.sub("tokens.json"), "--insecure-no-auth"});
  EXPECT_EQ(both.status, 2) << both.err;
}

class ServeWithTokens : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = dir_.sub("tokens.json");
    admin_ = add_token(file_, "ops", "admin");
    server_ = std::make_unique<ServeProcess>(ServeOptions{
        .data_dir = dir_.sub("data"),
        .output_path = dir_.sub("serve.out"),
        .flags = {"--tokens", file_, "--log-level", "info"},
        .teardown = Teardown::kTerminate});
    ASSERT_FALSE(server_->url().empty()) << server_->output();
  }
  // SIGHUP, then waits until the server accepts `token` (the reload is
  // asynchronous).
  void reload_until_accepted(const std::string& token) {
    server_->signal(SIGHUP);
    HttpClient c(server_->url());
    c.set_token(token);
    ASSERT_TRUE(eventually([&] { return c.get("/v1/audit/head").status == 200; }, std::chrono::seconds(10)))
        << server_->output();
  }
  TempDir dir_;
  std::string file_;
  std::string admin_;
  std::unique_ptr<ServeProcess> server_;
};

TEST_F(ServeWithTokens, SighupTakesAddedAndRevokedTokens) {
  HttpClient c(server_->url());
  c.set_token(admin_);
  EXPECT_EQ(c.get("/v1/jobs").status, 200);
  const std::string reader = add_token(file_, "dash", "reader");
  HttpClient r(server_->url());
  r.set_token(reader);
  EXPECT_TRUE(is_problem(r.get("/v1/jobs"), 401, "unauthorized"));
  server_->signal(SIGHUP);
  EXPECT_TRUE(eventually([&] { return r.get("/v1/jobs").status == 200; }, std::chrono::seconds(10)))
      << server_->output();
  // An info line: out within the second (docs/operations.md, "Logs").
  EXPECT_TRUE(eventually([&] { return server_->output().find("reloaded") != std::string::npos; },
                         std::chrono::seconds(5)))
      << server_->output();
  ASSERT_EQ(run_process({JOBSTATE_BIN, "token", "revoke", "--tokens", file_, "dash"}).status, 0);
  server_->signal(SIGHUP);
  EXPECT_TRUE(eventually([&] { return r.get("/v1/jobs").status == 401; }, std::chrono::seconds(10)));
  EXPECT_EQ(c.get("/v1/jobs").status, 200) << "the admin's token survives the reload";
}

TEST_F(ServeWithTokens, RunAndWorkTakeTheirTokenFromTheEnvironment) {
  // Without a token the job cannot even be created: the command does not run.
  const std::string marker = dir_.sub("ran");
  auto refused = run_process({JOBSTATE_BIN, "run", "--server", server_->url(), "--", "touch", marker});
  EXPECT_EQ(refused.status, 125) << refused.err;
  EXPECT_NE(refused.err.find("401"), std::string::npos) << refused.err;
  EXPECT_FALSE(std::filesystem::exists(marker));

  // `run` creates and starts its job: a token that may do both (admin, here
  // limited to the type it runs).
  const std::string runner = add_token(file_, "ci-runner", "admin", {"--types", "command"});
  reload_until_accepted(runner);
  HttpClient admin(server_->url());
  admin.set_token(admin_);
  auto ran = run_process({JOBSTATE_BIN, "run", "--server", server_->url(), "--", "sh", "-c", "echo '{\"n\":1}'"},
                         {"JOBSTATE_TOKEN=" + runner});
  ASSERT_EQ(ran.status, 0) << ran.err;
  auto jobs = admin.get("/v1/jobs?type=command").json()["jobs"];
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0]["state"], "succeeded");
  auto events = admin.get("/v1/jobs/" + jobs[0]["id"].get<std::string>() + "/events").json()["events"];
  for (const auto& e : events) EXPECT_EQ(e["data"].value("by", ""), "ci-runner") << e.dump();

  // `work` claims with a worker's token.
  const std::string worker_token = add_token(file_, "fleet", "worker", {"--types", "thumbs"});
  reload_until_accepted(worker_token);
  auto created = admin.post_json("/v1/jobs", {{"type", "thumbs"}});
  ASSERT_EQ(created.status, 202);
  const std::string id = created.json()["id"];
  pid_t worker = spawn_process({JOBSTATE_BIN, "work", "--server", server_->url(), "--type", "thumbs", "--",
                                "true"},
                               -1, dir_.sub("work.err"), {"JOBSTATE_TOKEN=" + worker_token});
  ProcessGroupReaper reaper(worker);
  EXPECT_TRUE(eventually([&] { return admin.get("/v1/jobs/" + id).json()["state"] == "succeeded"; },
                         std::chrono::seconds(30)))
      << read_file(dir_.sub("work.err"));
  auto started = admin.get("/v1/jobs/" + id + "/events").json()["events"][1];
  EXPECT_EQ(started["data"].value("by", ""), "fleet") << started.dump();
}

}  // namespace
}  // namespace jobstate::testing
