// Operational endpoints shared by every Nimbus binary: /healthz, /readyz, /metrics.
#pragma once

#include "http/router.hpp"
#include "ops/metrics.hpp"
#include "ops/readiness.hpp"

namespace nimbus::http {

// `readiness` and `metrics` must outlive the router.
void add_ops_routes(Router& router, ops::Readiness& readiness, const ops::Metrics& metrics);
// /healthz and /readyz only: the probes, on a listener that also serves the public API.
void add_probe_routes(Router& router, ops::Readiness& readiness);

}  // namespace nimbus::http
