// The metrics library (metrics/metrics.h) and the route templates its HTTP
// labels use: the text format's details a scraper depends on.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "api/request_parts.h"
#include "metrics/metrics.h"

namespace jobstate {
namespace {

TEST(Metrics, CountersAndHistogramsRenderInTheTextFormat) {
  metrics::Registry r;
  auto& requests = r.counter("jobstate_test_requests_total", "Requests", {"route", "code"});
  requests.with({"/v1/jobs", "202"}).inc(3);
  requests.with({"/v1/jobs", "202"}).inc();
  requests.with({"a\"b\\c\nd", "500"}).inc();
  auto& h = r.histogram("jobstate_test_seconds", "Durations", {0.1, 1, 10}).with({});
  for (double v : {0.05, 0.1, 0.5, 5.0, 50.0}) h.observe(v);
  const std::string text = r.render();
  EXPECT_NE(text.find("# HELP jobstate_test_requests_total Requests\n# TYPE jobstate_test_requests_total counter\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("jobstate_test_requests_total{route=\"/v1/jobs\",code=\"202\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("jobstate_test_requests_total{route=\"a\\\"b\\\\c\\nd\",code=\"500\"} 1\n"), std::string::npos)
      << "label values are escaped: " << text;
  // Cumulative buckets; a value on a bound falls in that bound's bucket.
  EXPECT_NE(text.find("jobstate_test_seconds_bucket{le=\"0.1\"} 2\n"
                      "jobstate_test_seconds_bucket{le=\"1\"} 3\n"
                      "jobstate_test_seconds_bucket{le=\"10\"} 4\n"
                      "jobstate_test_seconds_bucket{le=\"+Inf\"} 5\n"
                      "jobstate_test_seconds_sum 55.65\n"
                      "jobstate_test_seconds_count 5\n"),
            std::string::npos) << text;
}

TEST(Metrics, CollectorsWriteGaugesAtEachScrape) {
  metrics::Registry r;
  int value = 1;
  const auto id = r.add_collector([&](metrics::SampleWriter& w) {
    w.declare("jobstate_test_gauge", "gauge", "A gauge");
    w.declare("jobstate_test_gauge", "gauge", "declared once per scrape");
    w.sample("jobstate_test_gauge", {{"state", "queued"}}, value);
  });
  EXPECT_NE(r.render().find("jobstate_test_gauge{state=\"queued\"} 1\n"), std::string::npos);
  value = 7;
  const std::string text = r.render();
  EXPECT_NE(text.find("jobstate_test_gauge{state=\"queued\"} 7\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("declared once"), std::string::npos);
  r.remove_collector(id);
  EXPECT_EQ(r.render().find("jobstate_test_gauge"), std::string::npos);
}

TEST(Metrics, LongLabelValuesAreCut) {
  metrics::Registry r;
  r.counter("jobstate_test_total", "x", {"type"}).with({std::string(1000, 'x')}).inc();
  const std::string text = r.render();
  EXPECT_NE(text.find("{type=\"" + std::string(128, 'x') + "\"} 1\n"), std::string::npos) << text;
}

TEST(Metrics, ConcurrentUpdatesAreAllCounted) {
  metrics::Registry r;
  auto& c = r.counter("jobstate_test_total", "x", {"t"});
  auto& h = r.histogram("jobstate_test_seconds", "x", metrics::request_seconds_buckets(), {"t"});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        c.with({t % 2 ? "odd" : "even"}).inc();
        h.with({"all"}).observe(0.001);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.with({"odd"}).value() + c.with({"even"}).value(), 40000u);
  EXPECT_EQ(h.with({"all"}).snapshot().count, 40000u);
}

TEST(Metrics, RouteTemplatesNameEveryRouteAndNothingElse) {
  using api::route_template;
  using api::split_path;
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"/healthz", "/healthz"},
      {"/readyz", "/readyz"},
      {"/metrics", "/metrics"},
      {"/openapi.yaml", "/openapi.yaml"},
      {"/ui", "/ui"},
      {"/ui/", "/ui"},
      {"/ui/app.js", "/ui/{file}"},
      {"/v1/jobs", "/v1/jobs"},
      {"/v1/jobs/0b1e6c1e-0000-4000-8000-000000000000", "/v1/jobs/{id}"},
      {"/v1/jobs/x/heartbeat", "/v1/jobs/{id}/heartbeat"},
      {"/v1/jobs/x/wait", "/v1/jobs/{id}/wait"},
      {"/v1/jobs/x/events", "/v1/jobs/{id}/events"},
      {"/v1/jobs/x/cancelled", "/v1/jobs/{id}/cancelled"},
      {"/v1/events", "/v1/events"},
      {"/v1/claims", "/v1/claims"},
      {"/v1/audit/head", "/v1/audit/head"},
      {"/v1/webhooks", "/v1/webhooks"},
      {"/", "unmatched"},
      {"/v1/jobs/x/explode", "unmatched"},
      {"/v1/jobs/x/heartbeat/more", "unmatched"},
      {"/v2/jobs", "unmatched"},
      {"/ui/a/b", "unmatched"},
      {"/random-attacker-chosen-text", "unmatched"},
  };
  for (const auto& [path, route] : cases) EXPECT_STREQ(route_template(split_path(path)), route) << path;
}

}  // namespace
}  // namespace jobstate
