// Open access (api/open_access.h): which Host, Origin and Content-Type
// values a server without tokens answers, as tables.
#include "api/open_access.h"

#include <gtest/gtest.h>

namespace jobstate::api {
namespace {

TEST(OpenAccess, LoopbackNames) {
  for (const char* host :
       {"localhost", "LocalHost", "localhost.", "localhost:8080", "app.localhost", "a.b.localhost:1",
        "127.0.0.1", "127.0.0.1:8080", "127.1.2.3", "127.255.255.255:65535", "[::1]", "[::1]:8080",
        "::1", "[0:0:0:0:0:0:0:1]:80"})
    EXPECT_TRUE(names_loopback(host)) << host;
  for (const char* host :
       {"", "rebind.attacker.example", "rebind.attacker.example:8080", "0.0.0.0", "0.0.0.0:8080",
        "10.0.0.1", "128.0.0.1", "127.0.0", "127.0.0.1.5", "127.0.0.256", "127.0.0.1.example",
        "localhost.example", "notlocalhost", "127.0.0.1:80x", "127.0.0.1:", "[::]", "[::1]x", "[::1",
        "::", "localhost:8080:1", " 127.0.0.1", "127.0.0.01x"})
    EXPECT_FALSE(names_loopback(host)) << host;
}

TEST(OpenAccess, LoopbackListenHosts) {
  for (const char* host : {"localhost", "127.0.0.1", "127.9.9.9", "::1", "[::1]"})
    EXPECT_TRUE(is_loopback_listen_host(host)) << host;
  // Names the resolver (and its search domains) could send anywhere.
  for (const char* host : {"jobs.localhost", "localhost.", "0.0.0.0", "::", "[::]", "10.0.0.1", "example.com", ""})
    EXPECT_FALSE(is_loopback_listen_host(host)) << host;
}

TEST(OpenAccess, LoopbackOrigins) {
  for (const char* o : {"http://127.0.0.1:8080", "http://localhost", "https://[::1]:8443",
                        "HTTP://LOCALHOST:3000"})
    EXPECT_TRUE(origin_names_loopback(o)) << o;
  for (const char* o : {"null", "", "http://rebind.attacker.example", "http://127.0.0.1.nip.io",
                        "file://", "ftp://127.0.0.1", "http://127.0.0.1/path",
                        "http://user@127.0.0.1", "127.0.0.1"})
    EXPECT_FALSE(origin_names_loopback(o)) << o;
}

TEST(OpenAccess, WhatIsRefused) {
  // `base` with one change.
  auto with = [](OpenAccessRequest base, auto change) {
    change(base);
    return base;
  };
  const OpenAccessRequest json_write{.changes_state = true,
                                     .host = "127.0.0.1:8080",
                                     .origin = std::nullopt,
                                     .content_type = "application/json",
                                     .content_type_is_json = true,
                                     .has_body = true};
  EXPECT_FALSE(open_access_refusal(json_write, false));
  // No body and no type: curl -X POST, the client library's empty reports.
  const auto bare = with(json_write, [](auto& r) {
    r.content_type.reset();
    r.content_type_is_json = false;
    r.has_body = false;
  });
  EXPECT_FALSE(open_access_refusal(bare, false));
  // A page on loopback (the dashboard) may write.
  EXPECT_FALSE(open_access_refusal(
      with(json_write, [](auto& r) { r.origin = "http://127.0.0.1:8080"; }), false));
  // Reads are never refused for their Origin or type; HTTP/1.0 sends no Host.
  OpenAccessRequest read{.changes_state = false,
                         .host = std::nullopt,
                         .origin = "http://evil.example",
                         .content_type = "text/plain",
                         .content_type_is_json = false,
                         .has_body = false};
  EXPECT_FALSE(open_access_refusal(read, false));

  struct Case {
    const char* what;
    OpenAccessRequest r;
    bool any_host;
    const char* detail_has;
  };
  const auto rebound = with(json_write, [](auto& r) { r.host = "rebind.attacker.example"; });
  const auto rebound_read = with(read, [](auto& r) { r.host = "rebind.attacker.example:8080"; });
  const auto foreign = with(json_write, [](auto& r) { r.origin = "http://evil.example"; });
  const auto opaque = with(json_write, [](auto& r) { r.origin = "null"; });
  const auto form = with(bare, [](auto& r) { r.content_type = "application/x-www-form-urlencoded"; });
  const auto plain = with(json_write, [](auto& r) {
    r.content_type = "text/plain;charset=UTF-8";
    r.content_type_is_json = false;
  });
  const auto untyped = with(json_write, [](auto& r) {
    r.content_type.reset();
    r.content_type_is_json = false;
  });
  const Case refused[] = {
      {"a rebound Host on a write", rebound, false, "rebind.attacker.example"},
      {"a rebound Host on a read", rebound_read, false, "addressed to loopback"},
      {"a foreign Origin", foreign, false, "evil.example"},
      {"a foreign Origin, any Host allowed", foreign, true, "another origin"},
      {"an opaque Origin", opaque, false, "'null'"},
      {"a form, even empty", form, false, "application/x-www-form-urlencoded"},
      {"text/plain", plain, true, "text/plain"},
      {"a body without a type", untyped, false, "with a body"},
  };
  for (const auto& c : refused) {
    auto why = open_access_refusal(c.r, c.any_host);
    ASSERT_TRUE(why.has_value()) << c.what;
    EXPECT_NE(why->find(c.detail_has), std::string::npos) << c.what << ": " << *why;
  }
  // --insecure-no-auth: any Host.
  EXPECT_FALSE(open_access_refusal(rebound, true));
}

}  // namespace
}  // namespace jobstate::api
