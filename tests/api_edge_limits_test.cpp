// The connection limits of the HTTP edge (docs/api.md "The HTTP edge"): idle
// connections are closed after the idle timeout, connections beyond
// --max-connections get 503 and are closed, and the cap stays below the
// descriptor limit.
#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

#include "api/server.h"
#include "api_test_server.h"
#include "raw_socket.h"

namespace jobstate::testing {
namespace {

constexpr int64_t kMaxConnections = 8;
constexpr int64_t kIdleTimeoutS = 2;

[[maybe_unused]] auto* const kEnv = ::testing::AddGlobalTestEnvironment(new ServerEnvironment(
    TestServerOptions{.idle_timeout_s = kIdleTimeoutS, .max_connections = kMaxConnections}));

TestServer& srv() { return ServerEnvironment::server(); }

const std::string kHealthz = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

// A GET /healthz on a fresh connection, until one is answered 200 (bounded):
// connections closed by a test may take a moment to be counted as closed.
bool healthz_answers() {
  for (int i = 0; i < 100; ++i) {
    RawSocket s(srv().port());
    s.send(kHealthz);
    auto r = parse_responses(s.read_responses(1, 2000));
    if (r.size() == 1 && r[0].status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

TEST(EdgeLimits, IdleConnectionsAreClosedAfterTheIdleTimeout) {
  ASSERT_TRUE(healthz_answers());
  RawSocket used(srv().port());
  used.send(kHealthz);
  ASSERT_EQ(parse_responses(used.read_responses(1, 5000)).size(), 1u);
  RawSocket never_used(srv().port());
  // Well past the 2 s idle timeout, each is closed by the server (bounded wait).
  EXPECT_EQ(used.read_for(15000), "");
  EXPECT_TRUE(used.peer_closed()) << "an idle keep-alive connection stayed open";
  EXPECT_EQ(never_used.read_for(15000), "");
  EXPECT_TRUE(never_used.peer_closed()) << "a connection that never sent a request stayed open";
}

TEST(EdgeLimits, ConnectionsBeyondTheCapGet503AndAreClosed) {
  ASSERT_TRUE(healthz_answers());
  std::vector<std::unique_ptr<RawSocket>> held;
  for (int64_t i = 0; i < kMaxConnections; ++i) {
    // (A connection closed just before may not be counted out yet: retry.)
    bool served = false;
    for (int attempt = 0; attempt < 100 && !served; ++attempt) {
      auto s = std::make_unique<RawSocket>(srv().port());
      s->send(kHealthz);
      auto r = parse_responses(s->read_responses(1, 5000));
      ASSERT_EQ(r.size(), 1u) << i;
      served = r[0].status == 200;
      if (served)
        held.push_back(std::move(s));
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(served) << i;
  }
  for (int extra = 0; extra < 3; ++extra) {
    RawSocket over(srv().port());
    std::string rest;
    auto r = parse_responses(over.read_responses(1, 5000), &rest);
    ASSERT_EQ(r.size(), 1u) << extra;
    EXPECT_EQ(r[0].status, 503);
    EXPECT_EQ(r[0].headers["content-type"], "application/problem+json");
    EXPECT_EQ(nlohmann::json::parse(r[0].body)["type"], "/problems/unavailable");
    over.read_for(3000);
    EXPECT_TRUE(over.peer_closed()) << "a refused connection was kept open";
  }
  // The connections within the cap still work.
  for (auto& s : held) {
    s->send(kHealthz);
    auto r = parse_responses(s->read_responses(1, 5000));
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].status, 200);
  }
  held.clear();
  EXPECT_TRUE(healthz_answers()) << "new connections still refused after the others closed";
}

TEST(EdgeLimits, TheCapStaysBelowTheDescriptorLimit) {
  EXPECT_EQ(api::connection_limit(0, 1024), 768);  // systemd's default soft limit
  EXPECT_EQ(api::connection_limit(5000, 1024), 768);
  EXPECT_EQ(api::connection_limit(100, 1024), 100);
  EXPECT_EQ(api::connection_limit(0, 1u << 20), 10000);
  EXPECT_EQ(api::connection_limit(50000, 1u << 20), 50000);
  EXPECT_GE(api::connection_limit(0, 64), 16);
}

}  // namespace
}  // namespace jobstate::testing
