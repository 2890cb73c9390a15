// Webhooks without a network: the Standard Webhooks signature against
// vectors computed independently (Python's hmac, and the scheme's own
// example), base64, secrets, and the "webhooks" of the --config file: what
// it accepts, its defaults, and a one-line error for each mistake that never
// shows the secret.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "executors/executor_config.h"
#include "test_util.h"
#include "webhooks/signature.h"
#include "webhooks/webhook_config.h"

namespace jobstate::webhooks {
namespace {

using nlohmann::json;

// base64 of the bytes 0, 1, ..., 31.
constexpr const char* kSecret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

TEST(WebhookSignature, MatchesPythonHmac) {
  // python3: base64.b64encode(hmac.new(bytes(range(32)),
  //   b'evt_7.1700000000.{"event":{"seq":7},"job":{"id":"x"}}', hashlib.sha256).digest())
  auto key = decode_webhook_secret(kSecret);
  ASSERT_OK(key);
  std::string expected_key;
  for (int i = 0; i < 32; ++i) expected_key += static_cast<char>(i);
  EXPECT_EQ(*key, expected_key);
  EXPECT_EQ(webhook_signature(*key, "evt_7", 1700000000, R"({"event":{"seq":7},"job":{"id":"x"}})"),
            "v1,R7391mTCE/fIz5p3SfHoh27s0M/ST2Y1zXXBNsOrEFo=");
}

// Random ids, timestamps, bodies and keys, each signed here and by
// python3's hmac module (scripts/install-deps installs python3).
TEST(WebhookSignature, MatchesPythonHmacOnRandomInputs) {
  ASSERT_EQ(std::system("python3 -c pass >/dev/null 2>&1"), 0) << "python3 is missing";
  std::mt19937_64 rng(20261206);
  auto random_bytes = [&](size_t n) {
    std::string out;
    for (size_t i = 0; i < n; ++i) out += static_cast<char>(rng() & 0xff);
    return out;
  };
  auto hex = [](const std::string& bytes) {
    static const char* const kHex = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
    return out;
  };
  for (int i = 0; i < 5; ++i) {
    const std::string key = random_bytes(24 + rng() % 41);
    const std::string id = "evt_" + std::to_string(rng() % 1'000'000);
    const int64_t timestamp = 1'600'000'000 + static_cast<int64_t>(rng() % 400'000'000);
    const std::string body = "{\"event\":\"" + hex(random_bytes(rng() % 200)) + "\"}";
    const std::string cmd =
        "python3 -c 'import base64,hashlib,hmac,sys; k=bytes.fromhex(sys.argv[1]); "
        "m=sys.argv[2].encode()+b\".\"+sys.argv[3].encode()+b\".\"+bytes.fromhex(sys.argv[4]); "
        "print(\"v1,\"+base64.b64encode(hmac.new(k,m,hashlib.sha256).digest()).decode())' " +
        hex(key) + " " + id + " " + std::to_string(timestamp) + " " + hex(body);
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    char line[256] = {};
    const bool got = fgets(line, sizeof line, p) != nullptr;
    pclose(p);
    ASSERT_TRUE(got);
    std::string expected(line);
    while (!expected.empty() && expected.back() == '\n') expected.pop_back();
    EXPECT_EQ(webhook_signature(key, id, timestamp, body), expected);
    // And the same key through its whsec_ form.
    auto decoded = decode_webhook_secret("whsec_" + base64_encode(key));
    ASSERT_OK(decoded);
    EXPECT_EQ(*decoded, key);
  }
}

TEST(WebhookSignature, MatchesTheSchemesExample) {
  // The example of the Standard Webhooks specification.
  auto key = decode_webhook_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  ASSERT_OK(key);
  EXPECT_EQ(webhook_signature(*key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                              R"({"test": 2432232314})"),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST(WebhookSignature, Base64RoundTrips) {
  const std::map<std::string, std::string> table = {{"", ""},
                                                    {"f", "Zg=="},
                                                    {"fo", "Zm8="},
                                                    {"foo", "Zm9v"},
                                                    {"foob", "Zm9vYg=="},
                                                    {"fooba", "Zm9vYmE="},
                                                    {"foobar", "Zm9vYmFy"},
                                                    {std::string("\xff\xfe\x00", 3), "//4A"}};
  for (const auto& [bytes, text] : table) {
    EXPECT_EQ(base64_encode(bytes), text);
    auto back = base64_decode(text);
    ASSERT_OK(back);
    EXPECT_EQ(*back, bytes);
  }
  EXPECT_EQ(*base64_decode("Zm8"), "fo");  // padding is optional
  for (const char* bad : {"Zm9v!", "Z", "Zm9=v", "Zh==", "Zm9vY==="})
    EXPECT_FALSE(base64_decode(bad).ok()) << bad;
}

TEST(WebhookSignature, SecretsMustBeWhsecBase64OfTwentyFourToSixtyFourBytes) {
  EXPECT_FALSE(decode_webhook_secret("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").ok());
  EXPECT_FALSE(decode_webhook_secret("whsec_not base64!").ok());
  EXPECT_FALSE(decode_webhook_secret("whsec_" + base64_encode(std::string(23, 'k'))).ok());
  EXPECT_FALSE(decode_webhook_secret("whsec_" + base64_encode(std::string(65, 'k'))).ok());
  EXPECT_TRUE(decode_webhook_secret("whsec_" + base64_encode(std::string(24, 'k'))).ok());
  EXPECT_TRUE(decode_webhook_secret("whsec_" + base64_encode(std::string(64, 'k'))).ok());
}

GetEnv env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

Result<std::vector<WebhookEndpoint>> parse(const json& webhooks,
                                           std::map<std::string, std::string> vars = {
                                               {"HOOK_SECRET", kSecret}}) {
  return parse_webhook_config(json{{"webhooks", webhooks}}.dump(), "hooks.json", env(vars));
}

TEST(WebhookConfig, DefaultsToTheTerminalEvents) {
  auto c =
      parse(json::array({{{"url", "http://127.0.0.1:9/hook"}, {"secret_env", "HOOK_SECRET"}}}));
  ASSERT_OK(c);
  ASSERT_EQ(c->size(), 1u);
  const WebhookEndpoint& e = (*c)[0];
  EXPECT_EQ(e.url, "http://127.0.0.1:9/hook");
  EXPECT_EQ(e.key.size(), 32u);
  EXPECT_FALSE(e.all_events);
  EXPECT_EQ(e.events, (std::set<std::string>{"succeeded", "failed", "cancelled"}));
  EXPECT_TRUE(e.wants("failed"));
  EXPECT_FALSE(e.wants("created"));
  EXPECT_FALSE(e.wants("heartbeat"));
}

TEST(WebhookConfig, StarMeansEveryEventTypeEvenOnesAddedLater) {
  auto c = parse(json::array(
      {{{"url", "https://hooks.example/x"}, {"secret_env", "HOOK_SECRET"}, {"events", {"*"}}}}));
  ASSERT_OK(c);
  EXPECT_TRUE((*c)[0].all_events);
  for (const char* t : {"created", "started", "heartbeat", "succeeded", "retry_scheduled"})
    EXPECT_TRUE((*c)[0].wants(t)) << t;
}

TEST(WebhookConfig, AChosenListOfEvents) {
  auto c = parse(json::array({{{"url", "HTTP://Hooks.example/x"},
                               {"secret_env", "HOOK_SECRET"},
                               {"events", {"started", "succeeded"}}}}));
  ASSERT_OK(c);
  EXPECT_TRUE((*c)[0].wants("started"));
  EXPECT_FALSE((*c)[0].wants("failed"));
}

TEST(WebhookConfig, NoWebhooksIsAnEmptyList) {
  auto c = parse_webhook_config(R"({"executors": {}})", "x.json", env({}));
  ASSERT_OK(c);
  EXPECT_TRUE(c->empty());
  // ... and the executors' loader leaves "webhooks" to this one.
  EXPECT_TRUE(executors::parse_executor_config(R"({"webhooks": []})").ok());
}

TEST(WebhookConfig, APasswordInTheUrlIsNotShown) {
  auto c = parse(json::array(
      {{{"url", "https://bot:hunter2@hooks.example/x"}, {"secret_env", "HOOK_SECRET"}}}));
  ASSERT_OK(c);
  EXPECT_EQ((*c)[0].shown_url, "https://bot:***@hooks.example/x");
  EXPECT_EQ((*c)[0].url, "https://bot:hunter2@hooks.example/x");
}

// Each mistake: one line, naming the file and the setting, without the secret.
TEST(WebhookConfig, MistakesGiveOneLineErrors) {
  const json ok_hook = {{"url", "http://127.0.0.1:9/h"}, {"secret_env", "HOOK_SECRET"}};
  struct Case {
    json webhooks;
    std::map<std::string, std::string> vars;
    std::string expected;  // a part of the message
  };
  const std::string short_secret = "whsec_" + base64_encode("short");
  const std::vector<Case> cases = {
      {json::array({{{"url", "ftp://h/x"}, {"secret_env", "HOOK_SECRET"}}}),
       {{"HOOK_SECRET", kSecret}},
       "webhooks[0].url: \"ftp://h/x\" must start with http:// or https://"},
      {json::array({{{"url", "127.0.0.1:9/h"}, {"secret_env", "HOOK_SECRET"}}}),
       {{"HOOK_SECRET", kSecret}},
       "must start with http:// or https://"},
      {json::array({ok_hook}),
       {},
       "webhooks[0].secret_env: the environment variable HOOK_SECRET is not set"},
      {json::array({ok_hook}),
       {{"HOOK_SECRET", "plain-text-secret"}},
       "the value of HOOK_SECRET does not start with whsec_"},
      {json::array({ok_hook}), {{"HOOK_SECRET", "whsec_%%%%"}}, "is not whsec_ followed by base64"},
      {json::array({ok_hook}), {{"HOOK_SECRET", short_secret}}, "holds a key of 5 bytes"},
      {json::array(
           {{{"url", "http://h/x"}, {"secret_env", "HOOK_SECRET"}, {"events", {"succeded"}}}}),
       {{"HOOK_SECRET", kSecret}},
       "webhooks[0].events[0]: \"succeded\" is not an event type"},
      {json::array(
           {{{"url", "http://h/x"}, {"secret_env", "HOOK_SECRET"}, {"events", {"*", "failed"}}}}),
       {{"HOOK_SECRET", kSecret}},
       "\"*\" must be alone"},
      {json::array(
           {{{"url", "http://h/x"}, {"secret_env", "HOOK_SECRET"}, {"events", json::array()}}}),
       {{"HOOK_SECRET", kSecret}},
       "webhooks[0].events must be a non-empty array"},
      {json::array({{{"url", "http://h/x"}, {"secret", kSecret}}}),
       {{"HOOK_SECRET", kSecret}},
       "unknown setting webhooks[0].secret"},
      {json::array({{{"url", "http://h/x"}}}), {{"HOOK_SECRET", kSecret}}, "needs \"secret_env\""},
      {json::array({{{"secret_env", "HOOK_SECRET"}}}), {{"HOOK_SECRET", kSecret}}, "needs \"url\""},
      {json::array({ok_hook, ok_hook}),
       {{"HOOK_SECRET", kSecret}},
       "webhooks[1].url: \"http://127.0.0.1:9/h\" is listed twice"},
      {json{{"url", "http://h/x"}}, {{"HOOK_SECRET", kSecret}}, "\"webhooks\" must be an array"},
  };
  for (const auto& c : cases) {
    auto r = parse(c.webhooks, c.vars);
    ASSERT_FALSE(r.ok()) << c.webhooks.dump();
    const std::string& m = r.error().message;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidRequest);
    EXPECT_NE(m.find(c.expected), std::string::npos) << m;
    EXPECT_EQ(m.rfind("hooks.json: ", 0), 0u) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    EXPECT_EQ(m.find("AAECAwQF"), std::string::npos) << m;
    EXPECT_EQ(m.find("plain-text-secret"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace jobstate::webhooks
