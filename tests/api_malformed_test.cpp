// Hostile and broken input: malformed JSON, invalid UTF-8, deep nesting,
// oversized bodies, wrong content types, bad ids and query values, broken
// HTTP on a raw socket. Each gets its 4xx (a problem+json where the server
// answers it) and the server keeps serving afterwards.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "api/problem.h"
#include "api_test_server.h"
#include "raw_socket.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;

[[maybe_unused]] auto* const kEnv = ::testing::AddGlobalTestEnvironment(new ServerEnvironment());

TestServer& srv() { return ServerEnvironment::server(); }

class Malformed : public ::testing::Test {
 protected:
  // After each test: the server still answers, on a fresh connection and on
  // the test's own, and still takes writes.
  void TearDown() override {
    HttpClient fresh(srv().url());
    EXPECT_EQ(fresh.get("/healthz").status, 200) << "the server stopped answering";
    auto own = c.get("/healthz");
    EXPECT_EQ(own.status, 200) << "the test's connection is broken: " << own.curl_error << " " << own.body;
    EXPECT_EQ(fresh.post_json("/v1/jobs", {{"type", "still-writing"}}).status, 202);
  }
  HttpClient c{srv().url()};
};

TEST_F(Malformed, MalformedJsonIs400) {
  const std::string bodies[] = {
      "{",
      "}",
      "{\"type\":}",
      "{\"type\": \"a\",}",
      "{'type': 'a'}",
      "{type: \"a\"}",
      "nul",
      "[1,]",
      "{\"type\":\"a\"} {\"type\":\"b\"}",
      "{\"type\":\"a\"} trailing",
      "{\"type\":\"a\\x\"}",
      "{\"type\":\"a\",\"params\":NaN}",
      "{\"type\":\"a\",\"params\":01}",
      "\"just a string\"",
      "42",
      "null",
      "[]",
      std::string("{\"type\":\"a\0b\"}", 14),
  };
  for (const auto& body : bodies) {
    auto r = c.post("/v1/jobs", body);
    EXPECT_TRUE(is_problem(r, 400, "invalid-request")) << body;
  }
  json j = create_job(c, unique_type("malformed"));
  for (const char* body : {"{", "{\"progress\":", "[", "{\"progress\":{\"fraction\":.5}}"}) {
    EXPECT_TRUE(is_problem(c.post(job_path(j) + "/start", std::string(body)), 400, "invalid-request")) << body;
  }
  EXPECT_EQ(c.get(job_path(j)).json()["version"], 1);
}

TEST_F(Malformed, InvalidUtf8Is400) {
  const std::string bad_strings[] = {
      "a\xff",              // never valid
      "\xc3\x28",           // bad continuation
      "\xc0\xaf",           // overlong
      "\xed\xa0\x80",       // UTF-16 surrogate encoded in UTF-8
      "\xe2\x82",           // truncated
      "\xf4\x90\x80\x80",   // beyond U+10FFFF
      "\x80",               // lone continuation byte
  };
  for (const auto& s : bad_strings) {
    EXPECT_TRUE(is_problem(c.post("/v1/jobs", "{\"type\":\"x\",\"params\":{\"s\":\"" + s + "\"}}"), 400,
                           "invalid-request"));
    EXPECT_TRUE(is_problem(c.post("/v1/jobs", "{\"type\":\"x\",\"params\":{\"" + s + "\":1}}"), 400,
                           "invalid-request"));
    EXPECT_TRUE(is_problem(c.post("/v1/jobs", "{\"type\":\"x\",\"labels\":{\"k\":\"" + s + "\"}}"), 400,
                           "invalid-request"));
  }
  // Escaped lone surrogates are not Unicode scalar values either.
  for (const char* esc : {"\\ud800", "\\udc00", "\\ud800\\u0041"})
    EXPECT_TRUE(is_problem(c.post("/v1/jobs", std::string("{\"type\":\"x\",\"params\":\"") + esc + "\"}"), 400,
                           "invalid-request"))
        << esc;
  // Invalid bytes outside strings.
  EXPECT_TRUE(is_problem(c.post("/v1/jobs", "{\"type\":\"x\"}\xff"), 400, "invalid-request"));

  // The same on transitions, none of which changes the job.
  json j = create_job(c, unique_type("utf8"));
  EXPECT_TRUE(is_problem(c.post(job_path(j) + "/start", "{\"worker\":\"host\xff\"}"), 400, "invalid-request"));
  act(c, j, "start");
  EXPECT_TRUE(is_problem(c.post(job_path(j) + "/heartbeat", "{\"progress\":{\"message\":\"\xc0\xaf\"}}"), 400,
                         "invalid-request"));
  EXPECT_TRUE(is_problem(c.post(job_path(j) + "/succeed", "{\"result\":\"\xed\xa0\x80\"}"), 400,
                         "invalid-request"));
  EXPECT_TRUE(is_problem(c.post(job_path(j) + "/fail", "{\"error\":{\"code\":\"\xff\"}}"), 400,
                         "invalid-request"));
  EXPECT_EQ(c.get(job_path(j)).json()["version"], 2);

  // Valid multi-byte UTF-8 and escapes round-trip unchanged.
  json ok = create_job(c, json{{"type", "utf8"}, {"params", {{"s", "naïve ☃ 𝄞 \u00e9"}, {"e", "\u0001\"\\/"}}}});
  EXPECT_EQ(ok["params"]["s"], "naïve ☃ 𝄞 \u00e9");
  EXPECT_EQ(c.get(job_path(ok)).json()["params"], ok["params"]);
}

std::string nested_arrays(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }
std::string nested_objects(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += "{\"a\":";
  s += "1";
  s += std::string(depth, '}');
  return s;
}

TEST_F(Malformed, NestingUpTo64IsAcceptedAndDeeperIs400) {
  // The body object is level 1: params may add 63 more.
  for (const auto& params : {nested_arrays(63), nested_objects(63)}) {
    auto r = c.post("/v1/jobs", "{\"type\":\"nest\",\"params\":" + params + "}");
    ASSERT_TRUE(is_json_response(r, 202)) << r.body;
    // The stored job and its history render at full depth.
    json j = r.json();
    EXPECT_EQ(c.get(job_path(j)).json()["params"], json::parse(params));
    EXPECT_EQ(job_history(c, j).size(), 1u);
  }
  for (const auto& params : {nested_arrays(64), nested_objects(64), nested_arrays(5000)}) {
    EXPECT_TRUE(is_problem(c.post("/v1/jobs", "{\"type\":\"nest\",\"params\":" + params + "}"), 400,
                           "invalid-request"));
  }
  // Only structure counts: brackets inside strings do not.
  auto in_string = c.post("/v1/jobs", "{\"type\":\"nest\",\"params\":\"" + nested_arrays(200) + "\\\"[[\"}");
  EXPECT_TRUE(is_json_response(in_string, 202)) << in_string.body;
  // Deeply nested garbage near the size limit: refused without a crash.
  EXPECT_TRUE(is_problem(c.post("/v1/jobs", std::string(1'000'000, '[')), 400, "invalid-request"));
  EXPECT_TRUE(is_problem(c.post("/v1/jobs", std::string(500'000, '{')), 400, "invalid-request"));

  // Heartbeat details: body 1, progress 2, details 3.
  json j = create_job(c, unique_type("nest"));
  act(c, j, "start");
  EXPECT_EQ(c.post(job_path(j) + "/heartbeat",
                   "{\"progress\":{\"details\":" + nested_arrays(62) + "}}")
                .status,
            200);
  EXPECT_TRUE(is_problem(c.post(job_path(j) + "/heartbeat",
                                "{\"progress\":{\"details\":" + nested_arrays(63) + "}}"),
                         400, "invalid-request"));
}

// A create body of exactly `size` bytes.
std::string body_of_size(size_t size) {
  const std::string head = "{\"type\":\"big\",\"params\":{\"s\":\"";
  const std::string tail = "\"}}";
  return head + std::string(size - head.size() - tail.size(), 'x') + tail;
}

TEST_F(Malformed, BodiesUpTo1MiBAreAcceptedAndLargerAre413) {
  const std::string exact_body = body_of_size(1u << 20);
  auto exact = c.post("/v1/jobs", exact_body);
  ASSERT_TRUE(is_json_response(exact, 202)) << exact.body.substr(0, 200);
  EXPECT_EQ(exact.json()["params"], json::parse(exact_body)["params"]);

  HttpClient other(srv().url());
  auto over = other.post("/v1/jobs", body_of_size((1u << 20) + 1));
  EXPECT_TRUE(is_problem(over, 413, "payload-too-large"));
  // The refusal closes that connection (the body was not meant for us); the
  // same client goes on working.
  EXPECT_EQ(other.get("/healthz").status, 200);

  json j = create_job(c, unique_type("big"));
  act(c, j, "start");
  HttpClient third(srv().url());
  auto hb = third.post(job_path(j) + "/heartbeat",
                       "{\"progress\":{\"message\":\"" + std::string((1u << 20) + 10, 'm') + "\"}}");
  EXPECT_TRUE(is_problem(hb, 413, "payload-too-large"));
  EXPECT_EQ(c.get(job_path(j)).json()["version"], 2);
}

TEST_F(Malformed, FarTooLargeBodiesAre413AndTheServerKeepsServing) {
  // Refused from the Content-Length alone, before the body is read.
  for (size_t size : {size_t{(1u << 20) + (100u << 10)}, size_t{(1u << 20) + (512u << 10)},
                      size_t{4300000}}) {
    HttpClient big(srv().url());
    auto r = big.post("/v1/jobs", body_of_size(size));
    // The server may answer before reading the whole body; curl then reports
    // the 413 or a send error, never another status.
    if (r.status != 0) {
      EXPECT_EQ(r.status, 413) << r.body.substr(0, 200);
    }
    HttpClient fresh(srv().url());
    auto after = fresh.get("/healthz");
    EXPECT_EQ(after.status, 200) << after.curl_error << " " << after.body;
  }
}

// Without tokens (API.md "Identity") a write must be one no browser page
// could make: JSON or no body, no foreign Origin; and every request must be
// addressed to loopback (a DNS rebinding sends the attacker's name in Host).
TEST_F(Malformed, WritesABrowserPageCouldMakeAre403) {
  const std::string body = "{\"type\":\"ct\"}";
  for (const char* ct : {"Content-Type: text/plain", "Content-Type: application/x-www-form-urlencoded",
                         "Content-Type: multipart/form-data; boundary=x", "Content-Type: application/xml",
                         "Content-Type: application/vnd.api+json", "Content-Type: text/plain; charset=utf-8",
                         "Content-Type:"}) {
    EXPECT_TRUE(is_problem(c.post("/v1/jobs", body, {ct}), 403, "forbidden")) << ct;
  }
  // A media type Pistache's own header parser cannot read: 415 problem+json.
  EXPECT_TRUE(is_problem(c.post("/v1/jobs", body, {"Content-Type: text/json-ish"}), 415,
                         "unsupported-media-type"));
  json j = create_job(c, unique_type("ct"));
  // A form POST with an empty body (what an <form> with no fields sends)
  // must not start, succeed or cancel anything.
  for (const char* action : {"/start", "/cancel"}) {
    EXPECT_TRUE(is_problem(c.post(job_path(j) + action, std::string(),
                                  {"Content-Type: application/x-www-form-urlencoded"}),
                           403, "forbidden"))
        << action;
    EXPECT_TRUE(is_problem(c.post(job_path(j) + action, std::string("{}"), {"Content-Type: text/plain"}), 403,
                           "forbidden"))
        << action;
  }
  // A foreign Origin: refused whatever the body; a loopback one is the dashboard's.
  for (const char* origin : {"Origin: http://rebind.attacker.example", "Origin: null",
                             "Origin: http://127.0.0.1.attacker.example"})
    EXPECT_TRUE(is_problem(c.post(job_path(j) + "/cancel", std::string(), {origin}), 403, "forbidden"))
        << origin;
  EXPECT_EQ(c.get(job_path(j)).json()["version"], 1) << "a refused write changed the job";
  // A rebound Host: refused for reads too (the params are secrets as well);
  // the probes answer anyone.
  for (const char* host : {"Host: rebind.attacker.example", "Host: rebind.attacker.example:8080",
                           "Host: 0.0.0.0"}) {
    EXPECT_TRUE(is_problem(c.get(job_path(j), {host}), 403, "forbidden")) << host;
    EXPECT_TRUE(is_problem(c.post("/v1/jobs", body, {host}), 403, "forbidden")) << host;
    EXPECT_EQ(c.get("/healthz", {host}).status, 200) << host;
  }
  for (const char* host : {"Host: localhost", "Host: localhost:1234", "Host: 127.0.0.1", "Host: [::1]:9"})
    EXPECT_EQ(c.get(job_path(j), {host}).status, 200) << host;
  // JSON with parameters is JSON; an empty body needs no type at all.
  for (const char* ct : {"Content-Type: application/json; charset=utf-8", "Content-Type: Application/JSON",
                         "Content-Type: application/json;charset=UTF-8"})
    EXPECT_EQ(c.post("/v1/jobs", body, {ct}).status, 202) << ct;
  EXPECT_EQ(c.post(job_path(j) + "/start", std::string(), {"Origin: http://localhost:8080"}).status, 200);
}

TEST_F(Malformed, BadIdsAndQueryValuesAre400) {
  json j = create_job(c, unique_type("query"));
  const std::string id = j["id"];
  const std::string paths[] = {
      "/v1/jobs/" + id + "?as_of_seq=-1",
      "/v1/jobs/" + id + "?as_of_seq=99999999999999999999",
      "/v1/jobs/" + id + "?as_of_seq=18446744073709551615",
      "/v1/jobs/" + id + "/wait?timeout_s=-1",
      "/v1/jobs/" + id + "/wait?timeout_s=abc",
      "/v1/jobs/" + id + "/wait?timeout_s=1.5",
      "/v1/jobs/" + id + "/wait?after_version=-1",
      "/v1/jobs/" + id + "/wait?after_version=x",
      "/v1/jobs/" + id + "/events?limit=0",
      "/v1/jobs/" + id + "/events?after_version=%ff",
      "/v1/jobs?limit=0",
      "/v1/jobs?limit=-1",
      "/v1/jobs?limit=abc",
      "/v1/jobs?limit=%00",
      "/v1/jobs?limit=1%00",
      "/v1/jobs?state=%ff",
      "/v1/jobs?type=%ff",
      "/v1/jobs?type=" + std::string(129, 't'),
      "/v1/jobs?page_token=xyz",
      "/v1/events?after_seq=-1",
      "/v1/events?limit=0",
      "/v1/events?wait_s=x",
      "/v1/jobs/" + id.substr(0, 35) + "X",
      "/v1/jobs/%00",
      "/v1/jobs/" + std::string(5000, 'a'),
  };
  for (const auto& p : paths) EXPECT_TRUE(is_problem(c.get(p), 400, "invalid-request")) << p;
  // Odd but harmless requests: some answer, never a 5xx.
  for (const char* p : {"/v1/jobs?limit=1&limit=2", "/v1/jobs?unknown=1", "/v1/jobs?&&&", "/v1/jobs?=",
                              "/v1/events?after_seq=0&after_seq=1", "//v1/jobs", "/v1/jobs#frag"}) {
    auto r = c.get(p);
    EXPECT_GE(r.status, 200) << p << " " << r.curl_error;
    EXPECT_LT(r.status, 500) << p << " " << r.body;
  }
}

// Query values are percent-decoded (RFC 3986) before they are read; a bad
// escape is 400, as is every undecodable value.
TEST_F(Malformed, QueryValuesArePercentDecoded) {
  const std::string type = unique_type("pct");
  for (int i = 0; i < 3; ++i) create_job(c, type);
  auto two = c.get("/v1/jobs?limit=%32&state=%71ueued&type=" + type);  // limit=2, state=queued
  ASSERT_EQ(two.status, 200) << two.body;
  EXPECT_EQ(two.json()["jobs"].size(), 2u) << two.body;
  auto all = c.get("/v1/jobs?limit=%31%30&type=" + type);  // limit=10
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_EQ(all.json()["jobs"].size(), 3u);
  // Leading zeros, however many (fuzz_query_ids: 21 characters were refused).
  auto zeros = c.get("/v1/jobs?limit=0000000000000000000000002&type=" + type);
  ASSERT_EQ(zeros.status, 200) << zeros.body;
  EXPECT_EQ(zeros.json()["jobs"].size(), 2u);
  EXPECT_TRUE(is_problem(c.get("/v1/jobs?limit=00000000000000000000099999999999999999999"), 400,
                         "invalid-request"));
  for (const char* bad : {"/v1/jobs?limit=%3", "/v1/jobs?limit=%", "/v1/jobs?limit=%zz1",
                          "/v1/jobs?state=queue%64%"})
    EXPECT_TRUE(is_problem(c.get(bad), 400, "invalid-request")) << bad;
}

// A JSON object with a member twice: which one a reader sees is not
// defined, so the body is refused, at any depth; the same name in two
// objects is fine.
TEST_F(Malformed, DuplicateMembersAre400) {
  const std::string type = unique_type("dup");
  for (const std::string& body : std::vector<std::string>{
           R"({"type":"a","type":"b"})", "{\"type\":\"" + type + "\",\"params\":{\"n\":1,\"n\":2}}",
        "{\"type\":\"" + type + "\",\"labels\":{\"a\":\"x\"},\"labels\":{}}",
        "{\"type\":\"" + type + "\",\"params\":[{\"k\":1,\"k\":1}]}"}) {
    auto r = c.post("/v1/jobs", body);
    EXPECT_TRUE(is_problem(r, 400, "invalid-request")) << body;
    EXPECT_NE(r.body.find("twice"), std::string::npos) << r.body;
  }
  auto fine = c.post("/v1/jobs", "{\"type\":\"" + type + "\",\"params\":{\"type\":1,\"x\":{\"type\":2}}}");
  EXPECT_EQ(fine.status, 202) << fine.body;
  // Nothing was created by the refused ones.
  EXPECT_EQ(c.get("/v1/jobs?type=" + type).json()["jobs"].size(), 1u);
}

TEST_F(Malformed, NoInternalErrorTextReachesAClient) {
  for (ErrorCode code : {ErrorCode::kInternal, ErrorCode::kCorruption, ErrorCode::kUnavailable}) {
    api::Problem p = api::problem_from_error(make_error(code, "rocksdb: IO error: /var/lib/secret/000123.sst"));
    EXPECT_EQ(p.body().find("secret"), std::string::npos) << p.body();
    EXPECT_EQ(p.body().find("rocksdb"), std::string::npos) << p.body();
  }
  api::Problem internal = api::problem_from_error(make_error(ErrorCode::kInternal, "boom"));
  EXPECT_EQ(internal.status, 500);
  EXPECT_EQ(internal.slug, "internal-error");
  json body = json::parse(internal.body());
  EXPECT_EQ(body["type"], "/problems/internal-error");
  EXPECT_EQ(body["status"], 500);
  // A problem body is valid JSON even when the detail holds invalid UTF-8 (it came from input).
  api::Problem weird = api::problem("invalid-request", "bad \xff byte");
  EXPECT_FALSE(json::parse(weird.body(), nullptr, false).is_discarded());
}

// ---- broken HTTP on a raw socket -----------------------------------------------

TEST_F(Malformed, BrokenHttpGetsAnErrorOrAClosedConnection) {
  {
    RawSocket s(srv().port());
    ASSERT_TRUE(s.connected());
    s.send("THIS IS NOT HTTP\r\n\r\n");
    std::string reply = s.read_for(500);
    if (!reply.empty()) {
      EXPECT_EQ(reply.rfind("HTTP/1.1 4", 0), 0u) << reply;
    }
  }
  {
    // Headers begun, never finished; the client goes away.
    RawSocket s(srv().port());
    s.send("POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Len");
    s.close();
  }
  {
    // A body shorter than its Content-Length; the client goes away.
    RawSocket s(srv().port());
    s.send("POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ty");
    s.close();
  }
  {
    // A request sent and the client gone before the answer.
    RawSocket s(srv().port());
    s.send("POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n"
           "{\"type\":\"gone\"}");
    s.close();
  }
  {
    // HTTP/1.0 without a Connection header: answered, then closed.
    RawSocket s(srv().port());
    s.send("GET /healthz HTTP/1.0\r\n\r\n");
    std::string reply = s.read_for(5000);
    EXPECT_EQ(reply.rfind("HTTP/1.", 0), 0u) << reply;
    EXPECT_NE(reply.find(" 200 "), std::string::npos) << reply;
    EXPECT_TRUE(s.peer_closed()) << "an HTTP/1.0 client reading to the end would wait forever";
  }
}

// ---- the HTTP edge (docs/api.md "The HTTP edge") ---------------------------

std::string raw_post(const std::string& path, const std::string& body, const std::string& extra_headers = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + extra_headers +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

::testing::AssertionResult is_raw_problem(const RawResponse& r, int status, const std::string& slug) {
  if (r.status != status) return ::testing::AssertionFailure() << "status " << r.status << ": " << r.body;
  if (r.headers.count("content-type") == 0 || r.headers.at("content-type") != "application/problem+json")
    return ::testing::AssertionFailure() << "not problem+json: " << r.body;
  auto j = json::parse(r.body, nullptr, false);
  if (j.is_discarded() || j["type"] != "/problems/" + slug)
    return ::testing::AssertionFailure() << "not a " << slug << " problem: " << r.body;
  for (const char* internal : {"basic_string", "stoull", "stol", "what()", "exception", "Pistache"})
    if (r.body.find(internal) != std::string::npos)
      return ::testing::AssertionFailure() << "internal text in " << r.body;
  return ::testing::AssertionSuccess();
}

size_t jobs_of_type(HttpClient& c, const std::string& type) {
  return c.get("/v1/jobs?type=" + type).json()["jobs"].size();
}

TEST_F(Malformed, PipelinedRequestsAreEachAnsweredInOrder) {
  json j = create_job(c, unique_type("pipe"));
  const std::string type = unique_type("pipe");
  RawSocket s(srv().port());
  ASSERT_TRUE(s.connected());
  // Five requests in one write: reads answered at once, writes answered
  // later by the writer; each answer in its request's place.
  std::string five = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" +
                     raw_post("/v1/jobs", "{\"type\":\"" + type + "\",\"params\":{\"n\":1}}") +
                     "GET " + job_path(j) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" +
                     raw_post("/v1/jobs", "{\"type\":\"" + type + "\",\"params\":{\"n\":2}}") +
                     raw_post("/v1/jobs", "{\"type\":\"" + type + "\",\"params\":{\"n\":3}}");
  s.send(five);
  auto answers = parse_responses(s.read_responses(5, 10000));
  ASSERT_EQ(answers.size(), 5u);
  EXPECT_EQ(answers[0].status, 200);
  EXPECT_EQ(answers[1].status, 202);
  EXPECT_EQ(json::parse(answers[1].body)["params"]["n"], 1);
  EXPECT_EQ(answers[2].status, 200);
  EXPECT_EQ(json::parse(answers[2].body)["id"], j["id"]);
  EXPECT_EQ(json::parse(answers[3].body)["params"]["n"], 2);
  EXPECT_EQ(json::parse(answers[4].body)["params"]["n"], 3);
  EXPECT_EQ(jobs_of_type(c, type), 3u);
  // The connection is still usable; requests split at odd places too.
  const std::string next = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + raw_post("/v1/jobs", "{\"type\":\"" + type + "\"}");
  s.send(next.substr(0, 7));
  std::string got = s.read_for(50);
  s.send(next.substr(7, 50));
  got += s.read_for(50);
  s.send(next.substr(57));
  got += s.read_responses(2 - parse_responses(got).size(), 10000);
  answers = parse_responses(got);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].status, 200);
  EXPECT_EQ(answers[1].status, 202);
}

TEST_F(Malformed, AmbiguousContentLengthsAre400AndClose) {
  const std::string type = unique_type("cl");
  const std::string body = "{\"type\":\"" + type + "\"}";
  const std::string n = std::to_string(body.size());
  for (const std::string& headers :
       {"Content-Length: " + n + "\r\nContent-Length: 2\r\n", "Content-Length: " + n + ", 2\r\n",
        "Content-Length: +" + n + "\r\n", std::string("Content-Length: -1\r\n"),
        std::string("Content-Length: 18446744073709551616\r\n"), std::string("Content-Length: 99999999999999999999\r\n"),
        std::string("Transfer-Encoding: chunked\r\n"), "Transfer-Encoding: gzip\r\nContent-Length: " + n + "\r\n"}) {
    RawSocket s(srv().port());
    s.send("POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + headers + "\r\n" + body);
    std::string rest;
    auto answers = parse_responses(s.read_responses(1, 5000), &rest);
    ASSERT_EQ(answers.size(), 1u) << headers;
    EXPECT_TRUE(is_raw_problem(answers[0], 400, "invalid-request")) << headers;
    EXPECT_EQ(answers[0].headers["connection"], "Close") << headers;
    rest += s.read_for(3000);
    EXPECT_EQ(rest, "") << headers;
    EXPECT_TRUE(s.peer_closed()) << headers;
  }
  EXPECT_EQ(jobs_of_type(c, type), 0u);
}

TEST_F(Malformed, EveryBodyOverTheLimitIs413AndCloses) {
  for (size_t size : {size_t{(1u << 20) + 1}, size_t{4300000}, size_t{10000000}}) {
    RawSocket s(srv().port());
    // The head alone is enough for the answer.
    s.send("POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
           std::to_string(size) + "\r\n\r\n");
    auto answers = parse_responses(s.read_responses(1, 5000));
    ASSERT_EQ(answers.size(), 1u) << size;
    EXPECT_TRUE(is_raw_problem(answers[0], 413, "payload-too-large")) << size;
    // The body sent anyway is never read as requests: nothing more comes back.
    const std::string chunk(1u << 16, 'x');
    for (size_t sent = 0; sent < size; sent += chunk.size()) s.send(chunk);
    EXPECT_EQ(s.read_for(1000), "") << size;
  }
  // The same from a client that sends everything at once (curl).
  HttpClient big(srv().url());
  auto r = big.post("/v1/jobs", std::string(10000000, ' '));
  if (r.status != 0) {
    EXPECT_TRUE(is_problem(r, 413, "payload-too-large")) << r.body.substr(0, 200);
  }
}

TEST_F(Malformed, AHalfClosedRequestIsStillAnswered) {
  const std::string type = unique_type("halfclose");
  for (int i = 0; i < 5; ++i) {
    RawSocket s(srv().port());
    s.send(raw_post("/v1/jobs", "{\"type\":\"" + type + "\"}") + "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    s.shutdown_write();
    auto answers = parse_responses(s.read_responses(2, 10000));
    ASSERT_EQ(answers.size(), 2u) << i;
    EXPECT_EQ(answers[0].status, 202);
    EXPECT_EQ(answers[1].status, 200);
  }
  EXPECT_EQ(jobs_of_type(c, type), 5u);
}

size_t open_descriptors() {
  size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// A long-poll whose client goes away holds no descriptor of ours while it
// stays parked (only an owed answer to a write keeps one: see above).
TEST_F(Malformed, AbandonedLongPollsHoldNoDescriptors) {
  json j = create_job(c, unique_type("abandoned"));
  const size_t before = open_descriptors();
  for (int i = 0; i < 50; ++i) {
    RawSocket s(srv().port());
    s.send("GET " + job_path(j) + "/wait?timeout_s=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    s.read_for(20);
    s.shutdown_write();
  }
  // The server takes a moment to see the 50 ends (bounded wait).
  size_t after = open_descriptors();
  for (int i = 0; i < 100 && after > before + 10; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    after = open_descriptors();
  }
  EXPECT_LE(after, before + 10) << "abandoned long-polls kept descriptors";
}

TEST_F(Malformed, BadMethodsAndVersionsGetProblems) {
  for (const char* request : {"BREW /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                              "GET /healthz HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n",
                              "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:notaport\r\n\r\n",
                              "GET /healthz\r\n\r\n", "THIS IS NOT HTTP\r\n\r\n"}) {
    RawSocket s(srv().port());
    s.send(request);
    auto answers = parse_responses(s.read_responses(1, 5000));
    ASSERT_EQ(answers.size(), 1u) << request;
    EXPECT_GE(answers[0].status, 400) << request;
    EXPECT_LT(answers[0].status, 500) << request;
    EXPECT_TRUE(is_raw_problem(answers[0], answers[0].status,
                               answers[0].status == 404 ? "not-found" : "invalid-request"))
        << request;
  }
}

TEST_F(Malformed, EventPagesAreBoundedByBytes) {
  json j = create_job(c, unique_type("bigevents"));
  act(c, j, "start");
  // Eight heartbeats of about 900 KB: 7 MB of events in all.
  for (int i = 0; i < 8; ++i)
    ASSERT_EQ(c.post_json(job_path(j) + "/heartbeat",
                          json{{"progress", {{"message", std::string(900000, static_cast<char>('a' + i))}}}})
                  .status,
              200);
  const size_t total = 10;  // created, started, eight heartbeats
  size_t seen = 0;
  uint64_t after = 0;
  for (int page = 0; page < 20; ++page) {
    auto r = c.get(job_path(j) + "/events?limit=1000&after_version=" + std::to_string(after));
    ASSERT_EQ(r.status, 200);
    EXPECT_LT(r.body.size(), 6u << 20);
    auto events = r.json()["events"];
    ASSERT_GE(events.size(), 1u);
    for (auto& e : events) EXPECT_EQ(e["version"], ++after);
    seen += events.size();
    if (r.json()["next_after_version"].is_null()) break;
    EXPECT_EQ(r.json()["next_after_version"], after);
  }
  EXPECT_EQ(seen, total);
  // The feed likewise: from just before this job's first event to its last.
  const uint64_t first_seq = c.get(job_path(j) + "/events?limit=1").json()["events"][0]["seq"];
  uint64_t after_seq = first_seq - 1;
  size_t ours = 0;
  for (int page = 0; page < 40 && ours < total; ++page) {
    auto r = c.get("/v1/events?limit=1000&after_seq=" + std::to_string(after_seq));
    ASSERT_EQ(r.status, 200);
    EXPECT_LT(r.body.size(), 6u << 20);
    auto events = r.json()["events"];
    ASSERT_GE(events.size(), 1u);
    for (auto& e : events) {
      EXPECT_EQ(e["seq"], after_seq + 1);
      after_seq = e["seq"];
      if (e["job_id"] == j["id"]) ++ours;
    }
    EXPECT_EQ(r.json()["next_after_seq"], after_seq);
  }
  EXPECT_EQ(ours, total);
}

TEST_F(Malformed, ManyConcurrentBadRequestsLeaveTheServerServing) {
  std::vector<std::thread> threads;
  std::atomic<int> server_errors{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      HttpClient mine(srv().url());
      for (int i = 0; i < 50; ++i) {
        HttpResponse r;
        switch ((i + t) % 5) {
          case 0: r = mine.post("/v1/jobs", std::string("{\"type\":")); break;
          case 1: r = mine.post("/v1/jobs", std::string("{\"type\":\"x\xff\"}")); break;
          case 2: r = mine.get("/v1/jobs/NOPE"); break;
          case 3: r = mine.post("/v1/jobs", std::string("{}"), {"Content-Type: text/plain"}); break;
          case 4: r = mine.get("/v1/jobs?limit=-1"); break;
        }
        if (r.status < 400 || r.status >= 500) server_errors++;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(server_errors.load(), 0);
}

}  // namespace
}  // namespace jobstate::testing
