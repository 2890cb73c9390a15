// Identity (API.md "Identity"): a server started with a tokens file answers
// only requests with a bearer token of a role that allows them (401, 403
// otherwise), limits tokens to their job types, records the token's name in
// every event a request makes (data.by), and takes a changed file on reload.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "api_test_server.h"
#include "store/durable_file.h"

namespace jobstate::testing {
namespace {

using identity::Role;
using nlohmann::json;

ServerEnvironment* const env = static_cast<ServerEnvironment*>(::testing::AddGlobalTestEnvironment(
    new ServerEnvironment(TestServerOptions{.tokens = {
                                                {"ops", Role::kAdmin, ""},
                                                {"dashboard", Role::kReader, ""},
                                                {"webapp", Role::kSubmitter, ""},
                                                {"runner", Role::kWorker, ""},
                                                {"mailer", Role::kSubmitter, "email.*"},
                                                {"mail-worker", Role::kWorker, "email.*,sms"},
                                            }})));

TestServer& server() { return ServerEnvironment::server(); }

// A client that sends the named token.
std::unique_ptr<HttpClient> as(const std::string& name) {
  auto c = std::make_unique<HttpClient>(server().url());
  if (!name.empty()) c->set_token(server().token(name));
  return c;
}

std::string detail(const HttpResponse& r) {
  auto j = json::parse(r.body, nullptr, false);
  return j.is_object() ? j.value("detail", "") : "";
}

// A job of this type made by the admin, and started by it when asked.
std::string make_job(const std::string& type, bool start = false) {
  auto admin = as("ops");
  auto r = admin->post_json("/v1/jobs", {{"type", type}});
  EXPECT_EQ(r.status, 202) << r.body;
  const std::string id = r.json().value("id", "");
  if (start) {
    EXPECT_EQ(admin->post("/v1/jobs/" + id + "/start").status, 200);
  }
  return id;
}

TEST(Identity, RequestsWithoutAValidTokenGet401WithAChallenge) {
  const std::string id = make_job("report");
  struct Case {
    std::vector<std::string> headers;
    bool invalid_token;
  };
  for (const Case& c : std::vector<Case>{{{}, false},
                                         {{"Authorization: Basic b3BzOm9wcw=="}, false},
                                         {{"Authorization: Bearer"}, false},
                                         {{"Authorization: Bearer jst_0000"}, true},
                                         {{"Authorization: Bearer " + server().token("ops") + "x"}, true}}) {
    HttpClient anon(server().url());
    for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
             {"GET", "/v1/jobs"}, {"GET", "/v1/jobs/" + id}, {"POST", "/v1/jobs"},
             {"POST", "/v1/jobs/" + id + "/cancel"}, {"GET", "/v1/events"}, {"GET", "/v1/nowhere"}}) {
      auto r = anon.request(method, path, c.headers,
                            method == "POST" ? std::optional<std::string>("{\"type\":\"x\"}") : std::nullopt);
      EXPECT_TRUE(is_problem(r, 401, "unauthorized")) << method << " " << path;
      EXPECT_EQ(r.header("WWW-Authenticate").rfind("Bearer realm=\"jobstate\"", 0), 0u) << r.header("WWW-Authenticate");
      EXPECT_EQ(r.header("WWW-Authenticate").find("invalid_token") != std::string::npos, c.invalid_token)
          << r.header("WWW-Authenticate");
    }
  }
  // Nothing was changed by any of them.
  auto job = as("dashboard")->get("/v1/jobs/" + id).json();
  EXPECT_EQ(job["state"], "queued");
  EXPECT_EQ(job["version"], 1);
}

TEST(Identity, ProbesNeedNoToken) {
  HttpClient anon(server().url());
  EXPECT_EQ(anon.get("/healthz").status, 200);
  EXPECT_EQ(anon.get("/readyz").status, 200);
}

TEST(Identity, ABearerSchemeIsReadInAnyCase) {
  HttpClient anon(server().url());
  auto r = anon.get("/v1/jobs", {"Authorization: bEaReR " + server().token("dashboard")});
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST(Identity, AReaderCannotChangeAnything) {
  const std::string queued = make_job("report");
  const std::string running = make_job("report", /*start=*/true);
  auto reader = as("dashboard");
  // Every read works.
  for (const std::string& path : std::vector<std::string>{
           "/v1/jobs", "/v1/jobs/" + queued, "/v1/jobs/" + queued + "/events", "/v1/events",
        "/v1/audit/head", "/v1/webhooks", "/v1/jobs/" + running + "/wait?timeout_s=0"})
    EXPECT_EQ(reader->get(path).status, 200) << path;
  // Every write is refused, and says which role it needs.
  auto expect_refused = [&](const HttpResponse& r, const std::string& roles, const std::string& what) {
    EXPECT_TRUE(is_problem(r, 403, "forbidden")) << what;
    EXPECT_NE(detail(r).find(roles), std::string::npos) << what << ": " << detail(r);
    EXPECT_NE(detail(r).find("'dashboard' has role reader"), std::string::npos) << detail(r);
  };
  expect_refused(reader->post_json("/v1/jobs", {{"type", "report"}}), "submitter or admin", "create");
  expect_refused(reader->post("/v1/jobs/" + queued + "/cancel"), "submitter or admin", "cancel");
  expect_refused(reader->post_json("/v1/claims", {{"types", {"report"}}, {"worker", "w"}}),
                 "worker or admin", "claim");
  expect_refused(reader->post("/v1/jobs/" + queued + "/start"), "worker or admin", "start");
  for (const char* report : {"heartbeat", "succeed", "fail", "cancelled"})
    expect_refused(reader->post_json("/v1/jobs/" + running + "/" + report,
                                     std::string(report) == "fail"
                                         ? json{{"error", {{"code", "x"}, {"message", "y"}}}}
                                         : json::object()),
                   "worker or admin", report);
  // The jobs are as they were.
  EXPECT_EQ(reader->get("/v1/jobs/" + queued).json()["version"], 1);
  EXPECT_EQ(reader->get("/v1/jobs/" + running).json()["version"], 2);
  EXPECT_EQ(reader->get("/v1/jobs/" + running).json()["state"], "running");
}

TEST(Identity, ASubmitterCreatesAndCancelsButDoesNotWork) {
  auto submitter = as("webapp");
  auto created = submitter->post_json("/v1/jobs", {{"type", "report"}});
  ASSERT_EQ(created.status, 202) << created.body;
  const std::string id = created.json()["id"];
  EXPECT_EQ(submitter->get("/v1/jobs/" + id).status, 200);  // it may poll what it made
  EXPECT_TRUE(is_problem(submitter->post("/v1/jobs/" + id + "/start"), 403, "forbidden"));
  EXPECT_TRUE(is_problem(submitter->post_json("/v1/claims", {{"types", {"report"}}, {"worker", "w"}}), 403,
                         "forbidden"));
  EXPECT_EQ(submitter->post("/v1/jobs/" + id + "/cancel").status, 200);
  EXPECT_EQ(submitter->get("/v1/jobs/" + id).json()["state"], "cancelled");
}

TEST(Identity, AWorkerClaimsAndReportsButDoesNotSubmit) {
  const std::string type = "identity.worker-" + JobId::generate().to_string().substr(0, 8);
  const std::string id = make_job(type);
  auto worker = as("runner");
  EXPECT_TRUE(is_problem(worker->post_json("/v1/jobs", {{"type", type}}), 403, "forbidden"));
  EXPECT_TRUE(is_problem(worker->post("/v1/jobs/" + id + "/cancel"), 403, "forbidden"));
  auto claimed = worker->post_json("/v1/claims", {{"types", {type}}, {"worker", "w1"}});
  ASSERT_EQ(claimed.status, 200) << claimed.body;
  EXPECT_EQ(claimed.json()["id"], id);
  EXPECT_EQ(worker->post_json("/v1/jobs/" + id + "/heartbeat", json::object()).status, 200);
  EXPECT_EQ(worker->post_json("/v1/jobs/" + id + "/succeed", {{"result", 1}}).status, 200);
}

TEST(Identity, EveryEventRecordsTheTokenThatMadeIt) {
  auto submitter = as("webapp");
  auto worker = as("runner");
  const std::string id = submitter->post_json("/v1/jobs", {{"type", "report"}}).json()["id"];
  ASSERT_EQ(worker->post("/v1/jobs/" + id + "/start").status, 200);
  ASSERT_EQ(worker->post_json("/v1/jobs/" + id + "/heartbeat", json::object()).status, 200);
  ASSERT_EQ(submitter->post("/v1/jobs/" + id + "/cancel").status, 200);
  ASSERT_EQ(worker->post("/v1/jobs/" + id + "/cancelled").status, 200);
  json events = as("dashboard")->get("/v1/jobs/" + id + "/events").json()["events"];
  std::vector<std::pair<std::string, std::string>> seen;
  for (const auto& e : events) seen.emplace_back(e["type"], e["data"].value("by", "(none)"));
  EXPECT_EQ(seen, (std::vector<std::pair<std::string, std::string>>{{"created", "webapp"},
                                                                    {"started", "runner"},
                                                                    {"heartbeat", "runner"},
                                                                    {"cancel_requested", "webapp"},
                                                                    {"cancelled", "runner"}}));
  // The job resource is unchanged by it: progress, params and the rest as ever.
  EXPECT_TRUE(is_job_resource(as("dashboard")->get("/v1/jobs/" + id).json()));
}

TEST(Identity, ATokenLimitedToTypesTouchesOnlyThose) {
  auto mailer = as("mailer");       // submitter, email.*
  auto mail_worker = as("mail-worker");  // worker, email.* and sms
  auto mine = mailer->post_json("/v1/jobs", {{"type", "email.send"}});
  ASSERT_EQ(mine.status, 202) << mine.body;
  const std::string id = mine.json()["id"];
  auto other = mailer->post_json("/v1/jobs", {{"type", "report"}});
  EXPECT_TRUE(is_problem(other, 403, "forbidden"));
  EXPECT_NE(detail(other).find("email.*"), std::string::npos) << detail(other);

  const std::string report = make_job("report", /*start=*/true);
  EXPECT_TRUE(is_problem(mailer->get("/v1/jobs/" + report), 403, "forbidden"));
  EXPECT_TRUE(is_problem(mailer->get("/v1/jobs/" + report + "/events"), 403, "forbidden"));
  EXPECT_TRUE(is_problem(mailer->get("/v1/jobs/" + report + "/wait?timeout_s=0"), 403, "forbidden"));
  EXPECT_TRUE(is_problem(mailer->post("/v1/jobs/" + report + "/cancel"), 403, "forbidden"));
  EXPECT_TRUE(is_problem(mail_worker->post_json("/v1/jobs/" + report + "/heartbeat", json::object()), 403,
                         "forbidden"));
  EXPECT_EQ(mailer->get("/v1/jobs/" + id).status, 200);
  // Lists and the feed would show other types: a list must name a type of its own.
  EXPECT_TRUE(is_problem(mailer->get("/v1/jobs"), 400, "invalid-request"));
  EXPECT_EQ(mailer->get("/v1/jobs?type=email.send").status, 200);
  EXPECT_TRUE(is_problem(mailer->get("/v1/jobs?type=report"), 403, "forbidden"));
  EXPECT_TRUE(is_problem(mailer->get("/v1/events"), 403, "forbidden"));
  // Claims may only ask for types the token may touch.
  EXPECT_TRUE(is_problem(mail_worker->post_json("/v1/claims", {{"types", {"email.send", "report"}}, {"worker", "w"}}),
                         403, "forbidden"));
  auto claimed = mail_worker->post_json("/v1/claims", {{"types", {"email.send", "sms"}}, {"worker", "w"}});
  EXPECT_EQ(claimed.status, 200) << claimed.body;
  // The report job was never touched.
  auto r = as("dashboard")->get("/v1/jobs/" + report).json();
  EXPECT_EQ(r["version"], 2);
  EXPECT_EQ(r["state"], "running");
}

TEST(Identity, AddedAndRevokedTokensTakeEffectOnReload) {
  const std::string path = server().tokens_path();
  auto added = identity::add_token(path, "late", Role::kReader, "", 0);
  ASSERT_TRUE(added) << added.error().message;
  HttpClient late(server().url());
  late.set_token(*added);
  EXPECT_TRUE(is_problem(late.get("/v1/jobs"), 401, "unauthorized"));  // not yet read
  ASSERT_TRUE(server().token_set().reload());
  EXPECT_EQ(late.get("/v1/jobs").status, 200);
  ASSERT_TRUE(identity::revoke_token(path, "late"));
  ASSERT_TRUE(server().token_set().reload());
  EXPECT_TRUE(is_problem(late.get("/v1/jobs"), 401, "unauthorized"));
  // A broken file keeps the tokens loaded before.
  const std::string saved = read_file(path);
  ASSERT_TRUE(write_file_durably(path, "{not json", 0600));
  EXPECT_FALSE(server().token_set().reload());
  EXPECT_EQ(as("dashboard")->get("/v1/jobs").status, 200);
  ASSERT_TRUE(write_file_durably(path, saved, 0600));
  ASSERT_TRUE(server().token_set().reload());
}

TEST(Identity, WithTokensAnyHostIsServed) {
  // Tokens replace open access: a proxy's Host, or another machine's, is fine.
  auto r = as("dashboard")->get("/v1/jobs", {"Host: jobs.example.com"});
  EXPECT_EQ(r.status, 200) << r.body;
}

}  // namespace
}  // namespace jobstate::testing
