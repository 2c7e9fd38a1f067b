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

TEST(Histogram, ObservedValuesLandInTheirBuckets) {
  nimbus::ops::Histogram h({1, 2, 4, 8});
  for (double v : {1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 9.0, 300.0}) h.observe(v);
  // A value equal to a bound belongs to that bucket (le); above the last, +Inf.
  EXPECT_EQ(h.counts(), (std::vector<std::uint64_t>{1, 1, 2, 2, 2}));
  EXPECT_DOUBLE_EQ(h.sum(), 332.0);
}

TEST(Histogram, RendersCumulativeBucketsSumAndCount) {
  Metrics m;
  auto sizes = std::make_shared<nimbus::ops::Histogram>(std::vector<double>{1, 2, 4, 8, 16, 32, 64, 128, 256});
  m.histogram("nimbus_vote_batch_size", "Ballots per batch.", sizes);
  sizes->observe(1);
  sizes->observe(3);
  sizes->observe(256);
  sizes->observe(1'000'001);  // the sum keeps every digit: a scraper subtracts two of them
  auto text = m.render();
  EXPECT_NE(text.find("# TYPE nimbus_vote_batch_size histogram\n"), std::string::npos) << text;
  EXPECT_NE(text.find("nimbus_vote_batch_size_bucket{le=\"1\"} 1\n"
                      "nimbus_vote_batch_size_bucket{le=\"2\"} 1\n"
                      "nimbus_vote_batch_size_bucket{le=\"4\"} 2\n"
                      "nimbus_vote_batch_size_bucket{le=\"8\"} 2\n"
                      "nimbus_vote_batch_size_bucket{le=\"16\"} 2\n"
                      "nimbus_vote_batch_size_bucket{le=\"32\"} 2\n"
                      "nimbus_vote_batch_size_bucket{le=\"64\"} 2\n"
                      "nimbus_vote_batch_size_bucket{le=\"128\"} 2\n"
                      "nimbus_vote_batch_size_bucket{le=\"256\"} 3\n"
                      "nimbus_vote_batch_size_bucket{le=\"+Inf\"} 4\n"
                      "nimbus_vote_batch_size_sum 1000261\n"
                      "nimbus_vote_batch_size_count 4\n"),
            std::string::npos)
      << text;
}

TEST(Histogram, RendersLabels) {
  nimbus::ops::Histogram h({0.5});
  h.observe(0.25);
  std::string out;
  h.render(out, "x", "pool=\"votes\"");
  EXPECT_EQ(out,
            "x_bucket{pool=\"votes\",le=\"0.5\"} 1\nx_bucket{pool=\"votes\",le=\"+Inf\"} 1\n"
            "x_sum{pool=\"votes\"} 0.25\nx_count{pool=\"votes\"} 1\n");
}
