// The endpoint table of API.md against a real server on a loopback port:
// status codes, headers and bodies of every row, the error slugs the server
// can produce, the order of checks on transitions, idempotent creates,
// paging, and HTTP/1.1 keep-alive without a Connection header.
#include <gtest/gtest.h>

#include <future>
#include <set>
#include <thread>

#include "api_test_server.h"
#include "store/hash_chain.h"
#include "raw_socket.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;

[[maybe_unused]] auto* const kEnv = ::testing::AddGlobalTestEnvironment(new ServerEnvironment());

TestServer& srv() { return ServerEnvironment::server(); }

class Api : public ::testing::Test {
 protected:
  HttpClient c{srv().url()};
};

// ---- POST /v1/jobs ------------------------------------------------------------

TEST_F(Api, CreateAnswers202WithLocationEtagRetryAfterAndTheWholeJob) {
  const std::string type = unique_type("thumbnail");
  auto r = c.post_json("/v1/jobs", {{"type", type},
                                    {"params", {{"width", 320}, {"src", "a.png"}}},
                                    {"heartbeat_timeout_s", 30},
                                    {"labels", {{"team", "media"}}}});
  ASSERT_TRUE(is_json_response(r, 202));
  json j = r.json();
  ASSERT_TRUE(is_job_resource(j));
  EXPECT_EQ(r.header("Location"), "/v1/jobs/" + j["id"].get<std::string>());
  EXPECT_EQ(r.header("ETag"), "\"1\"");
  EXPECT_TRUE(r.has_header("Retry-After"));
  EXPECT_EQ(j["type"], type);
  EXPECT_EQ(j["state"], "queued");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["heartbeat_timeout_s"], 30);
  EXPECT_EQ(j["params"], (json{{"width", 320}, {"src", "a.png"}}));
  EXPECT_EQ(j["labels"], (json{{"team", "media"}}));
  for (const char* unset : {"started_at", "last_heartbeat_at", "finished_at", "deadline_at", "progress",
                            "worker", "result", "error"})
    EXPECT_TRUE(j[unset].is_null()) << unset << " = " << j[unset];
  EXPECT_EQ(j["cancel_requested"], false);

  // The Location answers with the same job.
  auto g = c.get(r.header("Location"));
  ASSERT_TRUE(is_json_response(g, 200));
  EXPECT_EQ(g.json(), j);
}

TEST_F(Api, CreateDefaultsParamsLabelsAndHeartbeatTimeout) {
  json j = create_job(c, unique_type("defaults"));
  ASSERT_TRUE(is_job_resource(j));
  EXPECT_EQ(j["params"], json::object());
  EXPECT_EQ(j["labels"], json::object());
  EXPECT_EQ(j["heartbeat_timeout_s"], 120);
}

TEST_F(Api, CreateAcceptsTheEdgesOfEveryLimit) {
  std::string type128(128, 'a');
  json labels = json::object();
  for (int i = 0; i < 32; ++i) labels["k" + std::to_string(i)] = "v";
  for (json body : {json{{"type", type128}}, json{{"type", "A.z_0:9-x"}},
                    json{{"type", "edge"}, {"heartbeat_timeout_s", 1}},
                    json{{"type", "edge"}, {"heartbeat_timeout_s", 86400}},
                    json{{"type", "edge"}, {"labels", labels}},
                    json{{"type", "edge"}, {"params", nullptr}}}) {
    auto r = c.post_json("/v1/jobs", body);
    EXPECT_TRUE(is_json_response(r, 202)) << body.dump();
  }
}

// Text that a storage layer must quote or escape (PostgreSQL's array
// literals, SQL, JSON) comes back byte for byte, in the job, in its events
// and through an idempotent replay.
TEST_F(Api, TextThatNeedsEscapingIsKeptExactly) {
  const std::string type = unique_type("escape");
  const json tricky = {{"quote", "a\"b"},     {"backslash", "c\\d\\\\"}, {"braces", "{x,y}"},
                       {"null", "NULL"},       {"empty", ""},              {"space", " { , } "},
                       {"unicode", "\u00e9\u6f22\U0001F600"}, {"control", "tab\tline\n"},
                       {"nested", {{"q", "\"\\\""}, {"list", {"\"", "\\", ","}}}}};
  const std::string key = "Idempotency-Key: " + type + "-\\\"{},";
  const json body = {{"type", type}, {"params", tricky}, {"labels", {{"k", "v\"\\}"}}}};
  auto r = c.post_json("/v1/jobs", body, {key});
  ASSERT_TRUE(is_json_response(r, 202));
  const json job = r.json();
  EXPECT_EQ(job["params"], tricky);
  auto g = c.get("/v1/jobs/" + job["id"].get<std::string>());
  ASSERT_TRUE(is_json_response(g, 200));
  EXPECT_EQ(g.json()["params"], tricky);
  EXPECT_EQ(g.json()["labels"], (json{{"k", "v\"\\}"}}));
  auto events = c.get("/v1/jobs/" + job["id"].get<std::string>() + "/events");
  ASSERT_TRUE(is_json_response(events, 200));
  ASSERT_FALSE(events.json()["events"].empty());
  EXPECT_EQ(events.json()["events"][0]["data"]["params"], tricky);
  // The key with quotes and a backslash finds the same job again.
  auto again = c.post_json("/v1/jobs", body, {key});
  ASSERT_TRUE(is_json_response(again, 202));
  EXPECT_EQ(again.json()["id"], job["id"]);
}

TEST_F(Api, CreateRejectsInvalidBodiesWith400) {
  json labels33 = json::object();
  for (int i = 0; i < 33; ++i) labels33["k" + std::to_string(i)] = "v";
  const json bad[] = {
      json::object(),                                         // type missing
      json{{"type", ""}},                                     // empty
      json{{"type", std::string(129, 'a')}},                  // too long
      json{{"type", "has space"}},                            // bad character
      json{{"type", "slash/no"}},
      json{{"type", 7}},                                      // not a string
      json{{"type", "x"}, {"heartbeat_timeout_s", 0}},
      json{{"type", "x"}, {"heartbeat_timeout_s", -5}},
      json{{"type", "x"}, {"heartbeat_timeout_s", 86401}},
      json{{"type", "x"}, {"heartbeat_timeout_s", 1.5}},
      json{{"type", "x"}, {"heartbeat_timeout_s", "10"}},
      json{{"type", "x"}, {"heartbeat_timeout_s", 18446744073709551615ull}},
      json{{"type", "x"}, {"labels", labels33}},
      json{{"type", "x"}, {"labels", {{"k", 1}}}},
      json{{"type", "x"}, {"labels", json::array({"a"})}},
      json{{"type", "x"}, {"unknown_member", 1}},
      json::array({json{{"type", "x"}}}),                     // not an object
  };
  for (const json& body : bad) {
    auto r = c.post_json("/v1/jobs", body);
    EXPECT_TRUE(is_problem(r, 400, "invalid-request")) << body.dump();
  }
  EXPECT_TRUE(is_problem(c.post("/v1/jobs"), 400, "invalid-request")) << "empty body";
}

TEST_F(Api, IdempotencyKeyReturnsTheSameJobAndRefusesADifferentBody) {
  const std::string type = unique_type("idem");
  const std::string key = "Idempotency-Key: key-" + type;
  auto first = c.post_json("/v1/jobs", {{"type", type}, {"params", {{"a", 1}, {"b", 2}}}}, {key});
  ASSERT_TRUE(is_json_response(first, 202));
  // Same body (members in another order, other whitespace): the same job.
  auto again = c.post("/v1/jobs", std::string("{ \"params\": {\"b\": 2, \"a\": 1},\n \"type\": \"") + type + "\" }",
                      {key});
  ASSERT_TRUE(is_json_response(again, 202));
  EXPECT_EQ(again.json()["id"], first.json()["id"]);
  EXPECT_EQ(again.header("Location"), first.header("Location"));
  EXPECT_EQ(again.json()["version"], 1);

  // Another body with the same key: 422, and no job is created.
  auto other = c.post_json("/v1/jobs", {{"type", type}, {"params", {{"a", 2}}}}, {key});
  EXPECT_TRUE(is_problem(other, 422, "idempotency-key-reused"));

  // A different key creates a different job.
  auto fresh = c.post_json("/v1/jobs", {{"type", type}, {"params", {{"a", 1}, {"b", 2}}}},
                           {"Idempotency-Key: other-" + type});
  ASSERT_TRUE(is_json_response(fresh, 202));
  EXPECT_NE(fresh.json()["id"], first.json()["id"]);

  auto list = c.get("/v1/jobs?type=" + type);
  ASSERT_TRUE(is_json_response(list, 200));
  EXPECT_EQ(list.json()["jobs"].size(), 2u);
  // Once the job moved on, a replay returns its current state, still the same job.
  act(c, first.json(), "start", json{{"worker", "w"}});
  auto replay = c.post_json("/v1/jobs", {{"type", type}, {"params", {{"a", 1}, {"b", 2}}}}, {key});
  ASSERT_TRUE(is_json_response(replay, 202));
  EXPECT_EQ(replay.json()["id"], first.json()["id"]);
}

TEST_F(Api, IdempotencyKeysMustBe1To255Characters) {
  const std::string type = unique_type("idem-len");
  EXPECT_TRUE(is_problem(c.post_json("/v1/jobs", {{"type", type}}, {"Idempotency-Key;"}), 400, "invalid-request"));
  EXPECT_TRUE(is_problem(c.post_json("/v1/jobs", {{"type", type}}, {"Idempotency-Key: " + std::string(256, 'k')}),
                         400, "invalid-request"));
  const std::string longest = (type + std::string(255, 'k')).substr(0, 255);
  EXPECT_EQ(c.post_json("/v1/jobs", {{"type", type}}, {"Idempotency-Key: " + longest}).status, 202);
  EXPECT_EQ(c.get("/v1/jobs?type=" + type).json()["jobs"].size(), 1u);
}

TEST_F(Api, ConcurrentCreatesWithOneIdempotencyKeyMakeOneJob) {
  const std::string type = unique_type("idem-race");
  std::vector<std::future<std::string>> ids;
  for (int t = 0; t < 6; ++t)
    ids.push_back(std::async(std::launch::async, [&] {
      HttpClient mine(srv().url());
      auto r = mine.post_json("/v1/jobs", {{"type", type}}, {"Idempotency-Key: race-" + type});
      EXPECT_EQ(r.status, 202) << r.body;
      return r.status == 202 ? r.json()["id"].get<std::string>() : std::string();
    }));
  std::set<std::string> distinct;
  for (auto& f : ids) distinct.insert(f.get());
  EXPECT_EQ(distinct.size(), 1u);
  EXPECT_EQ(c.get("/v1/jobs?type=" + type).json()["jobs"].size(), 1u);
}

// ---- GET /v1/jobs/{id} --------------------------------------------------------

TEST_F(Api, GetJobCarriesEtagAndRetryAfterOnlyWhileNotTerminal) {
  json j = create_job(c, unique_type("etag"));
  auto q = c.get(job_path(j));
  ASSERT_TRUE(is_json_response(q, 200));
  EXPECT_EQ(q.header("ETag"), "\"1\"");
  EXPECT_TRUE(q.has_header("Retry-After"));
  EXPECT_GT(std::stol(q.header("Retry-After")), 0);

  act(c, j, "start", json{{"worker", "host-1/1"}});
  auto running = c.get(job_path(j));
  EXPECT_EQ(running.header("ETag"), "\"2\"");
  EXPECT_TRUE(running.has_header("Retry-After"));

  act(c, j, "succeed", json{{"result", 1}});
  auto done = c.get(job_path(j));
  ASSERT_TRUE(is_json_response(done, 200));
  EXPECT_EQ(done.header("ETag"), "\"3\"");
  EXPECT_FALSE(done.has_header("Retry-After"));

  // Failed and cancelled are terminal too.
  json f = create_job(c, unique_type("etag"));
  act(c, f, "fail", json{{"error", {{"code", "x"}}}});
  EXPECT_FALSE(c.get(job_path(f)).has_header("Retry-After"));
  json k = create_job(c, unique_type("etag"));
  act(c, k, "cancel");
  EXPECT_FALSE(c.get(job_path(k)).has_header("Retry-After"));
}

TEST_F(Api, IfNoneMatchAnswers304WhileNothingChanged) {
  json j = create_job(c, unique_type("inm"));
  auto same = c.get(job_path(j), {"If-None-Match: \"1\""});
  EXPECT_EQ(same.status, 304);
  EXPECT_TRUE(same.body.empty());
  EXPECT_EQ(same.header("ETag"), "\"1\"");
  act(c, j, "start");
  auto moved = c.get(job_path(j), {"If-None-Match: \"1\""});
  ASSERT_TRUE(is_json_response(moved, 200));
  EXPECT_EQ(moved.json()["version"], 2);
  EXPECT_EQ(c.get(job_path(j), {"If-None-Match: \"2\""}).status, 304);
  EXPECT_TRUE(is_problem(c.get(job_path(j), {"If-None-Match: \"two\""}), 400, "invalid-request"));
}

TEST_F(Api, HeadOnAJobAnswersLikeGetWithoutABody) {
  json j = create_job(c, unique_type("head"));
  auto r = c.request("HEAD", job_path(j));
  EXPECT_EQ(r.status, 200) << r.curl_error;
  EXPECT_EQ(r.header("ETag"), "\"1\"");
  EXPECT_TRUE(r.body.empty());
}

TEST_F(Api, UnknownJobIs404JobNotFoundEverywhere) {
  const std::string id = JobId::generate().to_string();
  auto r = c.get("/v1/jobs/" + id);
  ASSERT_TRUE(is_problem(r, 404, "job-not-found"));
  EXPECT_EQ(r.json()["job_id"], id);
  EXPECT_TRUE(is_problem(c.get("/v1/jobs/" + id + "/events"), 404, "job-not-found"));
  EXPECT_TRUE(is_problem(c.get("/v1/jobs/" + id + "/wait?timeout_s=0"), 404, "job-not-found"));
  for (const char* action : {"start", "heartbeat", "succeed", "cancel", "cancelled"})
    EXPECT_TRUE(is_problem(c.post("/v1/jobs/" + id + "/" + action), 404, "job-not-found")) << action;
  EXPECT_TRUE(is_problem(c.post_json("/v1/jobs/" + id + "/fail", {{"error", {{"code", "x"}}}}), 404,
                         "job-not-found"));
}

TEST_F(Api, BadIdsAre400NotFound404) {
  const std::string v4 = JobId::generate().to_string();
  std::string upper = v4;
  for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  std::string no_dashes = v4;
  std::erase(no_dashes, '-');
  const std::string bad_ids[] = {
      upper,
      "6ba7b810-9dad-11d1-80b4-00c04fd430c8",  // UUID v1
      "6ba7b810-9dad-41d1-c0b4-00c04fd430c8",  // v4 nibble, wrong variant
      no_dashes,
      v4.substr(0, 35),
      v4 + "0",
      "{" + v4 + "}",
      "not-a-uuid",
      "00000000-0000-0000-0000-000000000000",
      "12345",
  };
  for (const auto& id : bad_ids) {
    const std::string p = "/v1/jobs/" + id;
    EXPECT_TRUE(is_problem(c.get(p), 400, "invalid-request")) << id;
    EXPECT_TRUE(is_problem(c.get(p + "/events"), 400, "invalid-request")) << id;
    EXPECT_TRUE(is_problem(c.get(p + "/wait?timeout_s=0"), 400, "invalid-request")) << id;
    EXPECT_TRUE(is_problem(c.post(p + "/heartbeat"), 400, "invalid-request")) << id;
  }
}

// ---- transitions ---------------------------------------------------------------

TEST_F(Api, AJobsWholeLifeThroughTheApi) {
  json j = create_job(c, {{"type", unique_type("life")}, {"heartbeat_timeout_s", 60}});
  const TimeMs created = ms_of(j["created_at"]);

  auto s = c.post_json(job_path(j) + "/start", {{"worker", "host-1/4242"}});
  ASSERT_TRUE(is_json_response(s, 200));
  json started = s.json();
  ASSERT_TRUE(is_job_resource(started));
  EXPECT_EQ(s.header("ETag"), "\"2\"");
  EXPECT_TRUE(s.has_header("Retry-After"));
  EXPECT_EQ(started["state"], "running");
  EXPECT_EQ(started["version"], 2);
  EXPECT_EQ(started["worker"], "host-1/4242");
  EXPECT_GE(ms_of(started["started_at"]), created);
  EXPECT_EQ(ms_of(started["deadline_at"]), ms_of(started["started_at"]) + 60'000);
  EXPECT_TRUE(started["last_heartbeat_at"].is_null());

  json hb = act(c, j, "heartbeat",
                json{{"progress", {{"fraction", 0.42}, {"message", "page 42/100"}, {"details", {{"page", 42}}}}}});
  ASSERT_TRUE(is_job_resource(hb));
  EXPECT_EQ(hb["version"], 3);
  EXPECT_EQ(hb["progress"]["fraction"], 0.42);
  EXPECT_EQ(hb["progress"]["message"], "page 42/100");
  EXPECT_EQ(hb["progress"]["details"], (json{{"page", 42}}));
  EXPECT_EQ(ms_of(hb["deadline_at"]), ms_of(hb["last_heartbeat_at"]) + 60'000);
  EXPECT_EQ(hb["cancel_requested"], false);

  // A heartbeat without a body keeps the progress.
  json hb2 = act(c, j, "heartbeat");
  EXPECT_EQ(hb2["version"], 4);
  EXPECT_EQ(hb2["progress"], hb["progress"]);
  EXPECT_GE(ms_of(hb2["last_heartbeat_at"]), ms_of(hb["last_heartbeat_at"]));

  auto done = c.post_json(job_path(j) + "/succeed", {{"result", {{"thumbnail", "t.png"}}}});
  ASSERT_TRUE(is_json_response(done, 200));
  json fin = done.json();
  ASSERT_TRUE(is_job_resource(fin));
  EXPECT_EQ(fin["state"], "succeeded");
  EXPECT_EQ(fin["version"], 5);
  EXPECT_EQ(fin["result"], (json{{"thumbnail", "t.png"}}));
  EXPECT_TRUE(fin["deadline_at"].is_null());
  EXPECT_GE(ms_of(fin["finished_at"]), ms_of(fin["started_at"]));
  EXPECT_FALSE(done.has_header("Retry-After"));
  EXPECT_EQ(done.header("ETag"), "\"5\"");

  // The history, oldest first, with the data of each type.
  auto hist = job_history(c, j);
  ASSERT_EQ(hist.size(), 5u);
  const char* types[] = {"created", "started", "heartbeat", "heartbeat", "succeeded"};
  for (size_t i = 0; i < hist.size(); ++i) {
    EXPECT_EQ(hist[i]["type"], types[i]);
    EXPECT_EQ(hist[i]["version"], i + 1);
    EXPECT_EQ(hist[i]["job_id"], j["id"]);
    EXPECT_TRUE(is_rfc3339_ms(hist[i]["at"]));
    EXPECT_EQ(hist[i]["hash"].get<std::string>().size(), 64u);
    if (i) {
      EXPECT_GT(hist[i]["seq"], hist[i - 1]["seq"]);
    }
  }
  EXPECT_EQ(hist[0]["data"]["type"], j["type"]);
  EXPECT_EQ(hist[0]["data"]["heartbeat_timeout_s"], 60);
  EXPECT_EQ(hist[0]["data"]["params"], json::object());
  EXPECT_EQ(hist[0]["data"]["labels"], json::object());
  // The started event keeps the worker and only a hash of the attempt's lease.
  EXPECT_EQ(hist[1]["data"]["worker"], "host-1/4242");
  EXPECT_EQ(hist[1]["data"]["lease_hash"].get<std::string>().size(), 64u);
  EXPECT_EQ(hist[1]["data"].size(), 2u);
  EXPECT_EQ(hist[2]["data"]["progress"]["message"], "page 42/100");
  EXPECT_EQ(hist[4]["data"], (json{{"result", {{"thumbnail", "t.png"}}}}));
  EXPECT_EQ(fin["created_at"], hist[0]["at"]);
  EXPECT_EQ(fin["finished_at"], hist[4]["at"]);
}

TEST_F(Api, FailRecordsTheErrorAndNeedsOne) {
  json j = create_job(c, unique_type("fail"));
  act(c, j, "start");
  EXPECT_TRUE(is_problem(c.post(job_path(j) + "/fail"), 400, "invalid-request"));
  EXPECT_TRUE(is_problem(c.post_json(job_path(j) + "/fail", json::object()), 400, "invalid-request"));
  EXPECT_TRUE(is_problem(c.post_json(job_path(j) + "/fail", {{"error", {{"message", "no code"}}}}), 400,
                         "invalid-request"));
  json f = act(c, j, "fail",
               json{{"error", {{"code", "oom"}, {"message", "out of memory"}, {"details", {{"rss_mb", 900}}}}}});
  ASSERT_TRUE(is_job_resource(f));
  EXPECT_EQ(f["state"], "failed");
  EXPECT_EQ(f["error"], (json{{"code", "oom"}, {"message", "out of memory"}, {"details", {{"rss_mb", 900}}}}));
  EXPECT_TRUE(f["result"].is_null());
  // A queued job can fail too (the worker could not even start it).
  json q = create_job(c, unique_type("fail"));
  EXPECT_EQ(act(c, q, "fail", json{{"error", {{"code", "no-worker"}}}})["state"], "failed");
}

TEST_F(Api, TransitionBodiesAreValidated) {
  json j = create_job(c, unique_type("bodies"));
  EXPECT_TRUE(is_problem(c.post_json(job_path(j) + "/start", {{"wrker", "typo"}}), 400, "invalid-request"));
  EXPECT_TRUE(is_problem(c.post_json(job_path(j) + "/start", {{"worker", 5}}), 400, "invalid-request"));
  EXPECT_TRUE(is_problem(c.post_json(job_path(j) + "/start", json::array()), 400, "invalid-request"));
  act(c, j, "start");
  for (json progress : {json{{"fraction", 1.5}}, json{{"fraction", -0.1}}, json{{"fraction", "half"}},
                        json{{"message", 3}}, json{{"percent", 3}}, json("text")})
    EXPECT_TRUE(is_problem(c.post_json(job_path(j) + "/heartbeat", {{"progress", progress}}), 400,
                           "invalid-request"))
        << progress.dump();
  EXPECT_TRUE(is_problem(c.post_json(job_path(j) + "/cancel", {{"reason", 1}}), 400, "invalid-request"));
  // None of the refused requests changed the job.
  EXPECT_EQ(c.get(job_path(j)).json()["version"], 2);
}

TEST_F(Api, CancelAQueuedJobCancelsIt) {
  json j = create_job(c, unique_type("cancel"));
  json k = act(c, j, "cancel", json{{"reason", "not needed"}});
  ASSERT_TRUE(is_job_resource(k));
  EXPECT_EQ(k["state"], "cancelled");
  EXPECT_FALSE(k["finished_at"].is_null());
  auto hist = job_history(c, j);
  ASSERT_EQ(hist.size(), 2u);
  EXPECT_EQ(hist[1]["type"], "cancelled");
  EXPECT_EQ(hist[1]["data"], (json{{"reason", "not needed"}}));
}

TEST_F(Api, CancelARunningJobAsksTheWorkerAndARepeatAppendsNothing) {
  json j = create_job(c, unique_type("cancel"));
  act(c, j, "start");
  json asked = act(c, j, "cancel", json{{"reason", "user"}});
  EXPECT_EQ(asked["state"], "running");
  EXPECT_EQ(asked["cancel_requested"], true);
  EXPECT_EQ(asked["version"], 3);

  // Again: 200, same version, no event appended.
  auto again = c.post_json(job_path(j) + "/cancel", {{"reason", "again"}});
  ASSERT_TRUE(is_json_response(again, 200));
  EXPECT_EQ(again.json()["version"], 3);
  EXPECT_EQ(again.header("ETag"), "\"3\"");
  EXPECT_EQ(job_history(c, j).size(), 3u);

  // The worker learns it from its heartbeat, then confirms.
  json hb = act(c, j, "heartbeat");
  EXPECT_EQ(hb["cancel_requested"], true);
  json done = act(c, j, "cancelled", json{{"reason", "stopped at page 3"}});
  EXPECT_EQ(done["state"], "cancelled");
  auto hist = job_history(c, j);
  ASSERT_EQ(hist.size(), 5u);
  EXPECT_EQ(hist[2]["type"], "cancel_requested");
  EXPECT_EQ(hist[2]["data"], (json{{"reason", "user"}}));
  EXPECT_EQ(hist[4]["type"], "cancelled");
}

TEST_F(Api, OutOfOrderTransitionsAre409InvalidTransition) {
  json j = create_job(c, unique_type("order"));
  struct Case {
    const char* action;
    json body;
  };
  for (const Case& k : {Case{"heartbeat", nullptr}, Case{"succeed", json{{"result", 1}}},
                        Case{"cancelled", nullptr}}) {
    auto r = k.body.is_null() ? c.post(job_path(j) + "/" + k.action)
                              : c.post_json(job_path(j) + "/" + k.action, k.body);
    ASSERT_TRUE(is_problem(r, 409, "invalid-transition")) << k.action;
    EXPECT_EQ(r.json()["state"], "queued");
    EXPECT_EQ(r.json()["version"], 1);
    EXPECT_EQ(r.json()["job_id"], j["id"]);
  }
  act(c, j, "start");
  auto twice = c.post(job_path(j) + "/start");
  ASSERT_TRUE(is_problem(twice, 409, "invalid-transition"));
  EXPECT_EQ(twice.json()["state"], "running");
  // "cancelled" without a pending cancel request.
  EXPECT_TRUE(is_problem(c.post(job_path(j) + "/cancelled"), 409, "invalid-transition"));
  EXPECT_EQ(c.get(job_path(j)).json()["version"], 2);
}

TEST_F(Api, EveryReportOnATerminalJobIs409JobTerminalWithItsState) {
  struct Finish {
    const char* action;
    json body;
    const char* state;
  };
  for (const Finish& f : {Finish{"succeed", json{{"result", nullptr}}, "succeeded"},
                          Finish{"fail", json{{"error", {{"code", "e"}}}}, "failed"},
                          Finish{"cancel", json::object(), "cancelled"}}) {
    json j = create_job(c, unique_type("terminal"));
    if (std::string(f.action) != "cancel") act(c, j, "start");
    act(c, j, f.action, f.body);
    const uint64_t version = c.get(job_path(j)).json()["version"];
    for (const char* action : {"start", "heartbeat", "succeed", "cancel", "cancelled"}) {
      auto r = c.post(job_path(j) + "/" + action);
      ASSERT_TRUE(is_problem(r, 409, "job-terminal")) << f.state << " + " << action;
      EXPECT_EQ(r.json()["state"], f.state);
      EXPECT_EQ(r.json()["job_id"], j["id"]);
    }
    auto fail = c.post_json(job_path(j) + "/fail", {{"error", {{"code", "late"}}}});
    EXPECT_TRUE(is_problem(fail, 409, "job-terminal"));
    EXPECT_EQ(c.get(job_path(j)).json()["version"], version);
  }
}

TEST_F(Api, IfMatchGuardsEveryTransition) {
  json j = create_job(c, unique_type("ifmatch"));
  // Matching version: accepted.
  auto ok = c.post(job_path(j) + "/start", std::nullopt, {"If-Match: \"1\""});
  ASSERT_TRUE(is_json_response(ok, 200));
  // Stale version: 412 with the current version, nothing appended.
  auto stale = c.post(job_path(j) + "/heartbeat", std::nullopt, {"If-Match: \"1\""});
  ASSERT_TRUE(is_problem(stale, 412, "version-mismatch"));
  EXPECT_EQ(stale.json()["version"], 2);
  EXPECT_EQ(stale.json()["state"], "running");
  auto future_v = c.post_json(job_path(j) + "/succeed", {{"result", 1}}, {"If-Match: \"3\""});
  EXPECT_TRUE(is_problem(future_v, 412, "version-mismatch"));
  EXPECT_EQ(c.get(job_path(j)).json()["version"], 2);
  // Unquoted is accepted too.
  EXPECT_EQ(c.post(job_path(j) + "/heartbeat", std::nullopt, {"If-Match: 2"}).status, 200);
  // Malformed If-Match values are 400.
  for (const char* bad : {"If-Match: abc", "If-Match: \"-1\"", "If-Match: W/\"3\"", "If-Match: \"3",
                          "If-Match: \"3\", \"4\"", "If-Match: \"\""})
    EXPECT_TRUE(is_problem(c.post(job_path(j) + "/heartbeat", std::nullopt, {bad}), 400, "invalid-request"))
        << bad;
  EXPECT_EQ(c.get(job_path(j)).json()["version"], 3);
}

TEST_F(Api, OrderOfChecksTerminalThenVersionThenTransition) {
  // Terminal wins over a wrong If-Match.
  json t = create_job(c, unique_type("checks"));
  act(c, t, "cancel");
  auto r = c.post(job_path(t) + "/heartbeat", std::nullopt, {"If-Match: \"99\""});
  ASSERT_TRUE(is_problem(r, 409, "job-terminal"));
  EXPECT_EQ(r.json()["state"], "cancelled");

  // On a live job a wrong If-Match wins over an invalid transition.
  json q = create_job(c, unique_type("checks"));
  EXPECT_TRUE(is_problem(c.post(job_path(q) + "/heartbeat", std::nullopt, {"If-Match: \"7\""}), 412,
                         "version-mismatch"));
  // With the right version the transition itself is judged.
  EXPECT_TRUE(is_problem(c.post(job_path(q) + "/heartbeat", std::nullopt, {"If-Match: \"1\""}), 409,
                         "invalid-transition"));
}

TEST_F(Api, RepeatedCancelOnARunningJobWithIfMatchOfTheCurrentVersionAppendsNothing) {
  json j = create_job(c, unique_type("cancel-twice"));
  act(c, j, "start");
  act(c, j, "cancel");
  auto again = c.post(job_path(j) + "/cancel", std::nullopt, {"If-Match: \"3\""});
  ASSERT_TRUE(is_json_response(again, 200));
  EXPECT_EQ(again.json()["version"], 3);
  EXPECT_EQ(job_history(c, j).size(), 3u);
}

// ---- lists and paging ----------------------------------------------------------

std::vector<std::string> ids_of(const json& page) {
  std::vector<std::string> ids;
  for (auto& j : page["jobs"]) ids.push_back(j["id"]);
  return ids;
}

TEST_F(Api, ListIsNewestFirstAndFiltersByStateTypeAndBoth) {
  const std::string type = unique_type("list");
  std::vector<json> jobs;
  for (int i = 0; i < 5; ++i) jobs.push_back(create_job(c, type));
  act(c, jobs[1], "start");
  act(c, jobs[3], "start");
  act(c, jobs[4], "cancel");

  auto all = c.get("/v1/jobs?type=" + type);
  ASSERT_TRUE(is_json_response(all, 200));
  json page = all.json();
  ASSERT_EQ(page["jobs"].size(), 5u);
  EXPECT_TRUE(page["next_page_token"].is_null());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(page["jobs"][i]["id"], jobs[4 - i]["id"]);
    EXPECT_TRUE(is_job_resource(page["jobs"][i]));
  }
  // The listed job equals its own GET.
  EXPECT_EQ(page["jobs"][1], c.get(job_path(jobs[3])).json());

  auto running = c.get("/v1/jobs?type=" + type + "&state=running").json();
  EXPECT_EQ(ids_of(running), (std::vector<std::string>{jobs[3]["id"], jobs[1]["id"]}));
  auto queued = c.get("/v1/jobs?state=queued&type=" + type).json();
  EXPECT_EQ(ids_of(queued), (std::vector<std::string>{jobs[2]["id"], jobs[0]["id"]}));
  EXPECT_EQ(c.get("/v1/jobs?state=cancelled&type=" + type).json()["jobs"].size(), 1u);
  EXPECT_EQ(c.get("/v1/jobs?state=succeeded&type=" + type).json()["jobs"].size(), 0u);

  // State alone: every job listed is in that state, newest first.
  auto by_state = c.get("/v1/jobs?state=running&limit=1000").json();
  ASSERT_GE(by_state["jobs"].size(), 2u);
  std::string previous_created = "9999";
  for (auto& j : by_state["jobs"]) {
    EXPECT_EQ(j["state"], "running");
    EXPECT_LE(j["created_at"].get<std::string>(), previous_created);
    previous_created = j["created_at"];
  }
  // No filter: the newest job of all comes first.
  json newest = create_job(c, unique_type("list"));
  EXPECT_EQ(c.get("/v1/jobs?limit=1").json()["jobs"][0]["id"], newest["id"]);
}

TEST_F(Api, ListRejectsBadQueryValues) {
  for (const char* q : {"state=done", "state=RUNNING", "state=", "type=has%20space", "type=",
                        "limit=0", "limit=-1", "limit=abc", "limit=", "limit=1.5", "limit=%2B5",
                        "limit=99999999999999999999999", "page_token=abc", "page_token=0",
                        "page_token=-3", "page_token="}) {
    EXPECT_TRUE(is_problem(c.get(std::string("/v1/jobs?") + q), 400, "invalid-request")) << q;
  }
}

TEST_F(Api, ListLimitDefaultsTo50AndIsClampedAt1000) {
  const std::string type = unique_type("clamp");
  // 1001 jobs straight through the writer: one batch instead of 1001 fsyncs.
  std::vector<std::future<Result<CommandOutcome>>> futures;
  for (int i = 0; i < 1001; ++i) {
    auto p = std::make_shared<std::promise<Result<CommandOutcome>>>();
    futures.push_back(p->get_future());
    CommandRequest req;
    req.job_id = JobId::generate();
    req.command = CreateJob{type};
    srv().store().writer().submit(std::move(req), [p](Result<CommandOutcome> r) { p->set_value(std::move(r)); });
  }
  for (auto& f : futures) ASSERT_OK(f.get());

  json dflt = c.get("/v1/jobs?type=" + type).json();
  EXPECT_EQ(dflt["jobs"].size(), 50u);
  EXPECT_TRUE(dflt["next_page_token"].is_string());
  auto big = c.get("/v1/jobs?type=" + type + "&limit=5000");
  ASSERT_TRUE(is_json_response(big, 200));
  json page = big.json();
  EXPECT_EQ(page["jobs"].size(), 1000u);
  ASSERT_TRUE(page["next_page_token"].is_string());
  json rest = c.get("/v1/jobs?type=" + type + "&limit=5000&page_token=" +
                    page["next_page_token"].get<std::string>())
                  .json();
  EXPECT_EQ(rest["jobs"].size(), 1u);
  EXPECT_TRUE(rest["next_page_token"].is_null());
}

TEST_F(Api, PageTokensAreStableWhileJobsAreCreatedBetweenPages) {
  const std::string type = unique_type("paging");
  std::vector<std::string> created;
  for (int i = 0; i < 23; ++i) created.push_back(create_job(c, type)["id"]);

  std::vector<std::string> seen;
  std::optional<std::string> token;
  for (int pages = 0; pages < 20; ++pages) {
    std::string path = "/v1/jobs?type=" + type + "&limit=5";
    if (token) path += "&page_token=" + *token;
    auto r = c.get(path);
    ASSERT_TRUE(is_json_response(r, 200)) << path;
    json page = r.json();
    for (auto& id : ids_of(page)) seen.push_back(id);
    // New jobs arrive between pages (same type, and others).
    create_job(c, type);
    create_job(c, type);
    create_job(c, unique_type("paging-other"));
    if (page["next_page_token"].is_null()) break;
    token = page["next_page_token"].get<std::string>();
  }
  // Exactly the jobs that existed at the first page, newest first: no
  // duplicates, no skips.
  std::vector<std::string> expected(created.rbegin(), created.rend());
  EXPECT_EQ(seen, expected);
}

TEST_F(Api, PagingWithAStateAndTypeFilterVisitsEachMatchingJobOnce) {
  const std::string type = unique_type("paging2");
  std::set<std::string> running;
  for (int i = 0; i < 12; ++i) {
    json j = create_job(c, type);
    if (i % 2 == 0) {
      act(c, j, "start");
      running.insert(j["id"]);
    }
  }
  std::vector<std::string> seen;
  std::optional<std::string> token;
  for (int pages = 0; pages < 20; ++pages) {
    std::string path = "/v1/jobs?state=running&type=" + type + "&limit=4";
    if (token) path += "&page_token=" + *token;
    json page = c.get(path).json();
    for (auto& id : ids_of(page)) seen.push_back(id);
    if (page["next_page_token"].is_null()) break;
    token = page["next_page_token"].get<std::string>();
  }
  EXPECT_EQ(seen.size(), running.size());
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), running);
}

// ---- per-job events and the global feed -------------------------------------------

TEST_F(Api, JobEventsPageWithNextAfterVersion) {
  json j = create_job(c, unique_type("events"));
  act(c, j, "start");
  for (int i = 0; i < 4; ++i) act(c, j, "heartbeat", json{{"progress", {{"fraction", i / 4.0}}}});
  act(c, j, "succeed");  // 7 events

  auto page = [&](const std::string& q) {
    auto r = c.get(job_path(j) + "/events" + q);
    EXPECT_TRUE(is_json_response(r, 200)) << q;
    return r.json();
  };
  auto versions = [](const json& p) {
    std::vector<int> v;
    for (auto& e : p["events"]) v.push_back(e["version"]);
    return v;
  };
  json p1 = page("?limit=3");
  EXPECT_EQ(versions(p1), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(p1["next_after_version"], 3);
  json p2 = page("?after_version=3&limit=3");
  EXPECT_EQ(versions(p2), (std::vector<int>{4, 5, 6}));
  EXPECT_EQ(p2["next_after_version"], 6);
  json p3 = page("?after_version=6&limit=3");
  EXPECT_EQ(versions(p3), (std::vector<int>{7}));
  EXPECT_TRUE(p3["next_after_version"].is_null());
  // A page that ends exactly at the last event says there is no more.
  json exact = page("?after_version=4&limit=3");
  EXPECT_EQ(versions(exact), (std::vector<int>{5, 6, 7}));
  EXPECT_TRUE(exact["next_after_version"].is_null());
  json beyond = page("?after_version=7");
  EXPECT_TRUE(beyond["events"].empty());
  EXPECT_TRUE(beyond["next_after_version"].is_null());
  json all = page("");
  EXPECT_EQ(all["events"].size(), 7u);
  EXPECT_TRUE(all["next_after_version"].is_null());
  EXPECT_EQ(page("?limit=100000")["events"].size(), 7u);

  for (const char* q : {"?after_version=-1", "?after_version=x", "?limit=0", "?limit=-2", "?limit=ten"})
    EXPECT_TRUE(is_problem(c.get(job_path(j) + "/events" + q), 400, "invalid-request")) << q;
}

TEST_F(Api, GlobalFeedIsGaplessChainedAndEndsAtTheAuditHead) {
  for (int i = 0; i < 3; ++i) act(c, create_job(c, unique_type("feed")), "start");
  auto head_r = c.get("/v1/audit/head");
  ASSERT_TRUE(is_json_response(head_r, 200));
  json head = head_r.json();
  const uint64_t head_seq = head["seq"];
  ASSERT_GE(head_seq, 6u);
  EXPECT_EQ(head["hash"].get<std::string>().size(), 64u);

  uint64_t after = 0;
  uint64_t expected = 1;
  std::string previous(kGenesisHash);
  int pages = 0;
  while (after < head_seq && pages++ < 100000) {
    auto r = c.get("/v1/events?after_seq=" + std::to_string(after) + "&limit=1000");
    ASSERT_TRUE(is_json_response(r, 200));
    json page = r.json();
    ASSERT_FALSE(page["events"].empty()) << "after_seq " << after;
    for (auto& e : page["events"]) {
      ASSERT_EQ(e["seq"], expected) << "gap in the feed";
      ++expected;
      json without = e;
      without.erase("hash");
      // API.md: sha256(previous hash hex + canonical JSON without "hash").
      EXPECT_EQ(chain_hash(previous, without.dump()), e["hash"].get<std::string>()) << e.dump();
      previous = e["hash"];
    }
    EXPECT_EQ(page["next_after_seq"], page["events"].back()["seq"]);
    after = page["next_after_seq"];
  }
  ASSERT_GE(after, head_seq);
  // The audit head names the newest event at the time it was read.
  auto at_head = c.get("/v1/events?after_seq=" + std::to_string(head_seq - 1) + "&limit=1").json();
  ASSERT_EQ(at_head["events"].size(), 1u);
  EXPECT_EQ(at_head["events"][0]["hash"], head["hash"]);

  // Paging with a small limit gives the same events.
  auto small = c.get("/v1/events?after_seq=2&limit=3").json();
  ASSERT_EQ(small["events"].size(), 3u);
  EXPECT_EQ(small["events"][0]["seq"], 3);
  EXPECT_EQ(small["next_after_seq"], 5);

  // An empty page repeats after_seq.
  const uint64_t now_head = c.get("/v1/audit/head").json()["seq"];
  auto empty = c.get("/v1/events?after_seq=" + std::to_string(now_head + 50)).json();
  EXPECT_TRUE(empty["events"].empty());
  EXPECT_EQ(empty["next_after_seq"], now_head + 50);

  for (const char* q : {"after_seq=-1", "after_seq=x", "limit=0", "limit=-1", "limit=abc", "wait_s=-1",
                        "wait_s=soon"})
    EXPECT_TRUE(is_problem(c.get(std::string("/v1/events?") + q), 400, "invalid-request")) << q;
}

TEST_F(Api, FeedDefaultLimitIs100AndLargerIsClampedTo1000) {
  // Make sure there are more than 1000 events.
  const std::string type = unique_type("feed-many");
  std::vector<std::future<Result<CommandOutcome>>> futures;
  for (int i = 0; i < 1050; ++i) {
    auto p = std::make_shared<std::promise<Result<CommandOutcome>>>();
    futures.push_back(p->get_future());
    CommandRequest req;
    req.job_id = JobId::generate();
    req.command = CreateJob{type};
    srv().store().writer().submit(std::move(req), [p](Result<CommandOutcome> r) { p->set_value(std::move(r)); });
  }
  for (auto& f : futures) ASSERT_OK(f.get());
  EXPECT_EQ(c.get("/v1/events").json()["events"].size(), 100u);
  EXPECT_EQ(c.get("/v1/events?limit=100000").json()["events"].size(), 1000u);
  json j = create_job(c, unique_type("ev-limit"));
  for (int i = 0; i < 3; ++i) act(c, j, i == 0 ? "start" : "heartbeat");
  EXPECT_EQ(c.get(job_path(j) + "/events").json()["events"].size(), 4u);
}

TEST_F(Api, AsOfSeqShowsTheJobAsItWasAtThatEvent) {
  json j = create_job(c, unique_type("asof"));
  act(c, j, "start", json{{"worker", "w1"}});
  act(c, j, "succeed", json{{"result", "ok"}});
  auto hist = job_history(c, j);
  ASSERT_EQ(hist.size(), 3u);
  const uint64_t created = hist[0]["seq"], started = hist[1]["seq"], done = hist[2]["seq"];

  auto at = [&](uint64_t seq) { return c.get(job_path(j) + "?as_of_seq=" + std::to_string(seq)); };
  auto r1 = at(created);
  ASSERT_TRUE(is_json_response(r1, 200));
  json v1 = r1.json();
  ASSERT_TRUE(is_job_resource(v1));
  EXPECT_EQ(v1["state"], "queued");
  EXPECT_EQ(v1["version"], 1);
  EXPECT_EQ(r1.header("ETag"), "\"1\"");
  EXPECT_TRUE(r1.has_header("Retry-After"));
  // An event of another job between two of this one's leaves it unchanged.
  json v2 = at(started).json();
  EXPECT_EQ(v2["state"], "running");
  EXPECT_EQ(v2["worker"], "w1");
  EXPECT_EQ(at(done - 1).json()["version"], 2);
  auto r3 = at(done);
  EXPECT_EQ(r3.json(), c.get(job_path(j)).json());
  EXPECT_FALSE(r3.has_header("Retry-After"));
  const uint64_t head = c.get("/v1/audit/head").json()["seq"];
  EXPECT_EQ(at(head).json()["version"], 3);

  // Before the job existed: not found. Beyond the head, negative, not a number: 400.
  EXPECT_TRUE(is_problem(at(created - 1), 404, "job-not-found"));
  EXPECT_TRUE(is_problem(at(head + 1), 400, "invalid-request"));
  for (const char* q : {"?as_of_seq=-1", "?as_of_seq=abc", "?as_of_seq=", "?as_of_seq=1e3"})
    EXPECT_TRUE(is_problem(c.get(job_path(j) + q), 400, "invalid-request")) << q;
}

// ---- the rest of the table ------------------------------------------------------

TEST_F(Api, AuditHeadMovesWithEveryWrite) {
  json before = c.get("/v1/audit/head").json();
  json j = create_job(c, unique_type("audit"));
  auto r = c.get("/v1/audit/head");
  ASSERT_TRUE(is_json_response(r, 200));
  json after = r.json();
  EXPECT_GT(after["seq"].get<uint64_t>(), before["seq"].get<uint64_t>());
  EXPECT_NE(after["hash"], before["hash"]);
  EXPECT_TRUE(std::regex_match(after["hash"].get<std::string>(), std::regex("[0-9a-f]{64}")));
  auto hist = job_history(c, j);
  EXPECT_LE(hist[0]["seq"].get<uint64_t>(), after["seq"].get<uint64_t>());
}

TEST_F(Api, HealthAndReadiness) {
  auto h = c.get("/healthz");
  EXPECT_TRUE(is_json_response(h, 200));
  auto r = c.get("/readyz");
  EXPECT_TRUE(is_json_response(r, 200)) << r.body;
  EXPECT_EQ(c.request("HEAD", "/healthz").status, 200);
}

TEST_F(Api, NotReadyWhileTheWatchdogIsStopped) {
  srv().watchdog().stop();
  auto r = c.get("/readyz");
  srv().watchdog().start();
  EXPECT_TRUE(is_json_response(r, 503));
  EXPECT_EQ(r.json()["watchdog"], "stopped");
  EXPECT_EQ(c.get("/healthz").status, 200);
  EXPECT_EQ(c.get("/readyz").status, 200);
}

TEST_F(Api, UnknownPathsAre404NotFound) {
  const std::string id = create_job(c, unique_type("paths"))["id"];
  for (const std::string& p : std::vector<std::string>{"/", "/v1", "/v2/jobs", "/v1/job", "/v1/jobs/" + id + "/bogus",
                              "/v1/jobs/" + id + "/events/1", "/v1/audit", "/v1/audit/tail",
                              "/healthz/x", "/v1/jobs/" + id + "/start/x"})
    EXPECT_TRUE(is_problem(c.get(p), 404, "not-found")) << p;
  EXPECT_TRUE(is_problem(c.post("/v1/nothing"), 404, "not-found"));
}

// The contract (docs/openapi.yaml) and the dashboard, compiled in: served
// with a strong ETag, revalidated, never sniffed; other files under /ui are 404.
TEST_F(Api, TheContractAndTheDashboardAreServedFromTheBinary) {
  auto spec = c.get("/openapi.yaml");
  ASSERT_EQ(spec.status, 200) << spec.body;
  EXPECT_EQ(spec.header("Content-Type"), "application/yaml");
  EXPECT_EQ(spec.body.rfind("openapi: 3.1.0\n", 0), 0u) << spec.body.substr(0, 80);
  EXPECT_EQ(spec.header("Cache-Control"), "no-cache");
  EXPECT_EQ(spec.header("X-Content-Type-Options"), "nosniff");
  const std::string tag = spec.header("ETag");
  ASSERT_FALSE(tag.empty());
  auto again = c.get("/openapi.yaml", {"If-None-Match: " + tag});
  EXPECT_EQ(again.status, 304);
  EXPECT_TRUE(again.body.empty());
  EXPECT_EQ(c.request("HEAD", "/openapi.yaml").status, 200);

  for (const std::string path : {"/ui", "/ui/", "/ui/index.html"}) {
    auto page = c.get(path);
    EXPECT_EQ(page.status, 200) << path;
    EXPECT_EQ(page.header("Content-Type").rfind("text/html", 0), 0u) << path;
    EXPECT_FALSE(page.header("Content-Security-Policy").empty()) << path;
  }
  EXPECT_TRUE(is_problem(c.get("/ui/no-such-file.js"), 404, "not-found"));
  EXPECT_TRUE(is_problem(c.post("/openapi.yaml"), 405, "method-not-allowed"));
}

TEST_F(Api, WrongMethodsAre405WithAllow) {
  const std::string id = create_job(c, unique_type("methods"))["id"];
  struct Case {
    std::string method, path, allow_has, allow_lacks;
  };
  const Case cases[] = {
      {"DELETE", "/v1/jobs", "POST", "DELETE"},
      {"PUT", "/v1/jobs", "GET", "PUT"},
      {"DELETE", "/v1/jobs/" + id, "GET", "POST"},
      {"POST", "/v1/jobs/" + id, "GET", "POST"},
      {"PATCH", "/v1/jobs/" + id, "GET", "PATCH"},
      {"GET", "/v1/jobs/" + id + "/start", "POST", "GET"},
      {"PUT", "/v1/jobs/" + id + "/heartbeat", "POST", "PUT"},
      {"POST", "/v1/jobs/" + id + "/events", "GET", "POST"},
      {"POST", "/v1/jobs/" + id + "/wait", "GET", "POST"},
      {"POST", "/v1/events", "GET", "POST"},
      {"POST", "/v1/audit/head", "GET", "POST"},
      {"POST", "/healthz", "GET", "POST"},
      {"DELETE", "/readyz", "GET", "DELETE"},
      {"OPTIONS", "/v1/jobs", "GET", "OPTIONS"},
  };
  for (const Case& k : cases) {
    auto r = c.request(k.method, k.path);
    ASSERT_TRUE(is_problem(r, 405, "method-not-allowed")) << k.method << " " << k.path;
    const std::string allow = r.header("Allow");
    EXPECT_NE(allow.find(k.allow_has), std::string::npos) << k.method << " " << k.path << ": " << allow;
    EXPECT_EQ(allow.find(k.allow_lacks), std::string::npos) << k.method << " " << k.path << ": " << allow;
  }
  // Nothing was created or changed by any of them.
  EXPECT_EQ(c.get("/v1/jobs/" + id).json()["version"], 1);
}

TEST_F(Api, StorageFailureIs503UnavailableAndNothingIsAcknowledged) {
  const std::string type = unique_type("disk");
  json j = create_job(c, type);
  act(c, j, "start");
  srv().set_fail_writes(true);
  auto create = c.post_json("/v1/jobs", {{"type", type}});
  auto beat = c.post(job_path(j) + "/heartbeat");
  auto ready = c.get("/readyz");
  srv().set_fail_writes(false);
  for (const auto* r : {&create, &beat}) {
    EXPECT_TRUE(is_problem(*r, 503, "unavailable"));
    EXPECT_EQ(r->body.find("secret"), std::string::npos) << "internal error text leaked: " << r->body;
    EXPECT_EQ(r->body.find("injected"), std::string::npos) << "internal error text leaked: " << r->body;
  }
  // Nothing of the failed batch is visible; the store takes writes again.
  EXPECT_EQ(c.get("/v1/jobs?type=" + type).json()["jobs"].size(), 1u);
  EXPECT_EQ(c.get(job_path(j)).json()["version"], 2);
  EXPECT_EQ(act(c, j, "heartbeat")["version"], 3);
  EXPECT_EQ(create_job(c, type)["version"], 1);
  EXPECT_TRUE(log_is_intact(srv().store().log()));
  // The embedded store knows when it does not take writes: /readyz says
  // so and why, until a write succeeds again (postgres: each write fails alone).
  if (!testing_postgres()) {
    EXPECT_TRUE(is_json_response(ready, 503)) << ready.body;
    EXPECT_EQ(ready.json()["store"], "write-failed");
    EXPECT_EQ(ready.json()["accepting_writes"], false);
    EXPECT_FALSE(ready.json().value("reason", "").empty()) << ready.body;
    EXPECT_EQ(ready.body.find("secret"), std::string::npos) << ready.body;
  }
  EXPECT_EQ(c.get("/readyz").status, 200);
}

// ---- connections -----------------------------------------------------------------

TEST_F(Api, ConnectionsStayOpenWithoutAConnectionHeader) {
  auto first = c.get("/healthz");
  ASSERT_EQ(first.status, 200);
  EXPECT_NE(first.header("Connection"), "Close");
  EXPECT_NE(first.header("Connection"), "close");
  // Every kind of answer keeps the connection: a JSON 200, 202, 304, 400, 404, 405, 409.
  json j = create_job(c, unique_type("keepalive"));
  std::vector<HttpResponse> rs;
  rs.push_back(c.get("/healthz"));
  rs.push_back(c.post_json("/v1/jobs", {{"type", unique_type("keepalive")}}));
  rs.push_back(c.get(job_path(j), {"If-None-Match: \"1\""}));
  rs.push_back(c.get("/v1/jobs/NOT-AN-ID"));
  rs.push_back(c.get("/nope"));
  rs.push_back(c.request("DELETE", "/v1/jobs"));
  rs.push_back(c.post(job_path(j) + "/heartbeat"));
  rs.push_back(c.get("/v1/jobs?limit=2"));
  for (size_t i = 0; i < rs.size(); ++i) {
    EXPECT_NE(rs[i].status, 0) << i << ": " << rs[i].curl_error;
    EXPECT_EQ(rs[i].new_connections, 0) << "request " << i << " (status " << rs[i].status
                                        << ") needed a new connection";
    EXPECT_EQ(rs[i].local_port, first.local_port) << "request " << i;
  }
}

TEST_F(Api, ConnectionCloseIsHonoured) {
  auto r = c.get("/healthz", {"Connection: close"});
  ASSERT_EQ(r.status, 200);
  auto next = c.get("/healthz");
  ASSERT_EQ(next.status, 200);
  EXPECT_EQ(next.new_connections, 1);
}

// The server itself ends the connection after answering "Connection: close",
// for answers given on the reactor (a read) and by the writer (a write).
TEST_F(Api, ConnectionCloseEndsTheConnectionAfterTheAnswer) {
  const std::string id = create_job(c, unique_type("close-me"))["id"];
  const std::vector<std::string> requests = {
      "GET /v1/jobs/" + id + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
      "POST /v1/jobs/" + id +
          "/start HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
          "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
  };
  for (const auto& request : requests) {
    RawSocket s(srv().port());
    ASSERT_TRUE(s.connected());
    s.send(request);
    std::string reply = s.read_for(5000);
    EXPECT_EQ(reply.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << reply;
    EXPECT_NE(reply.find("Connection: Close\r\n"), std::string::npos) << reply;
    EXPECT_NE(reply.find("\"id\":\"" + id + "\""), std::string::npos) << reply;
    EXPECT_TRUE(s.peer_closed()) << request;
  }
}

// The body of an HTTP response whose head and body are all in `reply`, or "".
std::string whole_body(const std::string& reply) {
  const size_t head_end = reply.find("\r\n\r\n");
  const size_t at = reply.find("Content-Length: ");
  if (head_end == std::string::npos || at == std::string::npos || at > head_end) return "";
  const size_t length = std::stoul(reply.substr(at + 16));
  if (reply.size() - head_end - 4 < length) return "";
  return reply.substr(head_end + 4, length);
}

// Reads one whole response (head and Content-Length body) from `s`, slowly:
// the first read only after the server has filled what the socket takes.
std::string read_slowly(RawSocket& s) {
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string reply;
  for (int i = 0; i < 100 && whole_body(reply).empty(); ++i) reply += s.read_for(100);
  return reply;
}

// Answers bigger than the socket takes at once still arrive whole at a
// client that reads slowly, in order, and the connection stays usable: a
// ~900 KB job from the writer (the create), and a ~5 MB page of jobs from
// the reactor (more than the kernel buffers, so the rest waits in the server).
TEST_F(Api, LargeAnswersReachASlowReaderWhole) {
  const std::string big(900'000, 'x');
  const std::string type = unique_type("big");
  const std::string body = json{{"type", type}, {"params", {{"blob", big}}}}.dump();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(c.post("/v1/jobs", body).status, 202);

  RawSocket s(srv().port(), /*receive_buffer_bytes=*/4096);
  ASSERT_TRUE(s.connected());
  s.send("POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body);
  std::string reply = read_slowly(s);
  ASSERT_EQ(reply.rfind("HTTP/1.1 202 Accepted\r\n", 0), 0u) << reply.substr(0, 300);
  EXPECT_EQ(json::parse(whole_body(reply))["params"]["blob"], big);

  s.send("GET /v1/jobs?type=" + type + "&limit=10 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  reply = read_slowly(s);
  ASSERT_EQ(reply.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << reply.substr(0, 300);
  json page = json::parse(whole_body(reply));
  ASSERT_EQ(page["jobs"].size(), 6u);
  for (const auto& j : page["jobs"]) EXPECT_EQ(j["params"]["blob"], big);

  s.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  EXPECT_EQ(s.read_for(500).rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
}

}  // namespace
}  // namespace jobstate::testing
