// api/http_framing.h: where each request ends, from the bytes alone, and
// which heads are refused before a parser sees them.
#include "api/http_framing.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace jobstate::api {
namespace {

using Kind = Frame::Kind;

std::string post(const std::string& length_headers, const std::string& body) {
  return "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n" + length_headers + "\r\n" + body;
}

TEST(HttpFraming, AWholeRequestEndsAfterItsBody) {
  const std::string get = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  Frame f = next_request(get);
  ASSERT_EQ(f.kind, Kind::kRequest);
  EXPECT_EQ(f.size, get.size());
  EXPECT_EQ(f.head_size, get.size());

  const std::string p = post("Content-Length: 13\r\n", "{\"type\":\"a\"}x");
  f = next_request(p);
  ASSERT_EQ(f.kind, Kind::kRequest);
  EXPECT_EQ(f.size, p.size());
  EXPECT_EQ(f.size - f.head_size, 13u);
  // The name is case-insensitive; whitespace around the value is fine.
  f = next_request(post("content-LENGTH:\t 13 \r\n", "{\"type\":\"a\"}x"));
  EXPECT_EQ(f.kind, Kind::kRequest);
  EXPECT_EQ(f.size - f.head_size, 13u);
}

TEST(HttpFraming, PipelinedRequestsAreFramedOneAtATime) {
  const std::string one = post("Content-Length: 2\r\n", "{}");
  const std::string two = "GET /healthz HTTP/1.1\r\n\r\n";
  std::string all = one + two + one;
  std::string_view rest = all;
  for (size_t expected : {one.size(), two.size(), one.size()}) {
    Frame f = next_request(rest);
    ASSERT_EQ(f.kind, Kind::kRequest);
    EXPECT_EQ(f.size, expected);
    rest.remove_prefix(f.size);
  }
  EXPECT_TRUE(rest.empty());
}

TEST(HttpFraming, EveryPrefixOfARequestIsIncomplete) {
  const std::string p = post("Content-Length: 13\r\n", "{\"type\":\"a\"}x");
  for (size_t n = 0; n < p.size(); ++n)
    EXPECT_EQ(next_request(std::string_view(p).substr(0, n)).kind, Kind::kIncomplete) << n;
  EXPECT_EQ(next_request(p).kind, Kind::kRequest);
}

TEST(HttpFraming, AmbiguousLengthsAre400) {
  for (const char* headers :
       {"Content-Length: 13\r\nContent-Length: 2\r\n", "Content-Length: 13, 2\r\n",
        "Content-Length: 2\r\nContent-Length: 2\r\n", "Content-Length: +13\r\n", "Content-Length: -1\r\n",
        "Content-Length: 99999999999999999999\r\n", "Content-Length: 1e3\r\n", "Content-Length: 0x10\r\n",
        "Content-Length:\r\n", "Content-Length: 1 3\r\n", "Content-Length : 13\r\n",
        "Transfer-Encoding: chunked\r\n", "Transfer-Encoding: gzip\r\nContent-Length: 13\r\n",
        "transfer-encoding: identity\r\n", "X-A: b\r\n folded\r\n", "No colon here\r\n", ": empty name\r\n"}) {
    Frame f = next_request(post(headers, "{\"type\":\"a\"}x"));
    EXPECT_EQ(f.kind, Kind::kRefused) << headers;
    EXPECT_EQ(f.status, 400) << headers;
    EXPECT_NE(std::string(f.detail), "") << headers;
  }
}

TEST(HttpFraming, ABodyOverTheLimitIs413FromTheHeadAlone) {
  FramingLimits limits;
  for (const char* length : {"1048577", "4300000", "10000000", "999999999999999999"}) {
    // Only the head has arrived: refused at once, the body is never awaited.
    Frame f = next_request(post(std::string("Content-Length: ") + length + "\r\n", ""), limits);
    EXPECT_EQ(f.kind, Kind::kRefused) << length;
    EXPECT_EQ(f.status, 413) << length;
  }
  Frame exact = next_request(post("Content-Length: 1048576\r\n", ""), limits);
  EXPECT_EQ(exact.kind, Kind::kIncomplete);
}

TEST(HttpFraming, AHeadOverItsLimitIs400) {
  FramingLimits limits;
  limits.max_head = 1024;
  std::string head = "GET / HTTP/1.1\r\nX-Long: " + std::string(2000, 'a');
  Frame f = next_request(head, limits);
  EXPECT_EQ(f.kind, Kind::kRefused);
  EXPECT_EQ(f.status, 400);
  EXPECT_EQ(next_request(head.substr(0, 1000), limits).kind, Kind::kIncomplete);
}

// Random bytes and random cuts of real requests: an answer always, and a
// request is never longer than the bytes given.
TEST(HttpFraming, RandomInputNeverOverreads) {
  std::mt19937 rng(14);
  const std::string base = post("Content-Length: 13\r\n", "{\"type\":\"a\"}x") + "GET / HTTP/1.1\r\n\r\n";
  const char alphabet[] = "\r\n: ,+-0123456789aCcLlTt\t";
  for (int i = 0; i < 20000; ++i) {
    std::string s = base;
    const int edits = static_cast<int>(rng() % 6);
    for (int e = 0; e < edits; ++e) s[rng() % s.size()] = alphabet[rng() % (sizeof alphabet - 1)];
    s.resize(rng() % (s.size() + 1));
    Frame f = next_request(s);
    if (f.kind == Kind::kRequest) {
      EXPECT_LE(f.size, s.size());
      EXPECT_LE(f.head_size, f.size);
    }
  }
}

}  // namespace
}  // namespace jobstate::api
