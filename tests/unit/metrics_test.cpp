#include "ops/metrics.hpp"

#include <gtest/gtest.h>

using nimbus::ops::Metrics;

TEST(Metrics, CountsAndHistogramsByRoute) {
  Metrics m;
  m.bind_routes({{"GET", "/v1/polls/{id}"}});
  m.observe_request(0, 200, 0.003);
  m.observe_request(0, 200, 0.2);
  m.observe_request(0, 404, 0.0001);
  m.observe_request(m.unmatched_slot(), 405, 0.0001);
  auto text = m.render();

  EXPECT_NE(text.find(R"(nimbus_http_requests_total{route="/v1/polls/{id}",method="GET",status="200"} 2)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(nimbus_http_requests_total{route="/v1/polls/{id}",method="GET",status="404"} 1)"),
            std::string::npos);
  EXPECT_NE(text.find(R"(nimbus_http_requests_total{route="unmatched",method="*",status="405"} 1)"), std::string::npos);
  // Buckets are cumulative: 0.0001 <= 0.0005; 0.003 <= 0.005; 0.2 <= 0.25.
  EXPECT_NE(
      text.find(R"(nimbus_http_request_duration_seconds_bucket{route="/v1/polls/{id}",method="GET",le="0.0005"} 1)"),
      std::string::npos);
  EXPECT_NE(
      text.find(R"(nimbus_http_request_duration_seconds_bucket{route="/v1/polls/{id}",method="GET",le="0.005"} 2)"),
      std::string::npos);
  EXPECT_NE(
      text.find(R"(nimbus_http_request_duration_seconds_bucket{route="/v1/polls/{id}",method="GET",le="+Inf"} 3)"),
      std::string::npos);
  EXPECT_NE(text.find(R"(nimbus_http_request_duration_seconds_count{route="/v1/polls/{id}",method="GET"} 3)"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE nimbus_http_request_duration_seconds histogram"), std::string::npos);
}

TEST(Metrics, ExtensionMetricsAreStableAndRendered) {
  Metrics m;
  auto& c = m.counter("nimbus_jobs_total", "Jobs.", "queue=\"image.process\"");
  c.add(3);
  EXPECT_EQ(&c, &m.counter("nimbus_jobs_total", "Jobs.", "queue=\"image.process\""));
  m.gauge("nimbus_pool_size", "Pool size.").set(7);
  m.gauge_fn("nimbus_up", "Always one.", [] { return 1.0; });
  auto text = m.render();
  EXPECT_NE(text.find("nimbus_jobs_total{queue=\"image.process\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("nimbus_pool_size 7\n"), std::string::npos);
  EXPECT_NE(text.find("nimbus_up 1\n"), std::string::npos);
}
