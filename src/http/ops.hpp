// Operational endpoints shared by every Nimbus binary: /healthz, /readyz, /metrics.
#pragma once

#include "http/metrics.hpp"
#include "http/readiness.hpp"
#include "http/router.hpp"

namespace nimbus::http {

// `readiness` and `metrics` must outlive the router.
void add_ops_routes(Router& router, Readiness& readiness, const Metrics& metrics);
// /healthz and /readyz only: the probes, on a listener that also serves the public API.
void add_probe_routes(Router& router, Readiness& readiness);

}  // namespace nimbus::http
