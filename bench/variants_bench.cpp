// The worker's two variants of local files, `threads` files at a time — the image
// pipeline alone (src/worker/thumbnails.cpp), without storage, queue or database.
// bench/images.py runs it next to sharp on the same files to split the gap between
// upload → ready and sharp into the pipeline's share and the rest.
//
// Usage: nimbus-bench-variants <threads> <file>...   (prints one JSON line)
// NIMBUS_BENCH_DECODE_BUDGET=<bytes>: each decode first takes its images::decode_cost of
// a worker's DecodeBudget of that size, as the worker does (bench/decode_memory.py).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "images/sniff.hpp"
#include "worker/decode_budget.hpp"
#include "worker/thumbnails.hpp"

namespace {

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

std::string slurp(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: nimbus-bench-variants <threads> <file>...\n");
    return 2;
  }
  const int threads = std::max(1, std::atoi(argv[1]));
  nimbus::worker::init_vips(argv[0]);
  std::vector<std::string> files;
  std::vector<nimbus::images::Format> formats;
  for (int i = 2; i < argc; ++i) {
    files.push_back(slurp(argv[i]));
    const auto format = nimbus::images::sniff(files.back());
    if (!format) {
      std::fprintf(stderr, "%s: not an accepted image format\n", argv[i]);
      return 2;
    }
    formats.push_back(*format);
  }

  std::optional<nimbus::worker::DecodeBudget> budget;
  if (const char* b = std::getenv("NIMBUS_BENCH_DECODE_BUDGET"); b != nullptr && std::atoll(b) > 0) {
    budget.emplace(static_cast<std::uint64_t>(std::atoll(b)));
  }
  std::atomic<std::size_t> next{0}, bytes{0}, failed{0};
  std::atomic<std::uint64_t> decode_us{0}, encode_us{0};
  const auto started = std::chrono::steady_clock::now();
  const double cpu = process_cpu_seconds();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (std::size_t i = next++; i < files.size(); i = next++) {
        try {
          // Held until the variants are made, as in the worker.
          auto lease =
              budget ? budget->acquire(nimbus::images::decode_cost(nimbus::images::read_header(formats[i], files[i])))
                     : std::optional<nimbus::worker::DecodeBudget::Lease>();
          nimbus::worker::VariantCost cost;
          for (const auto& v : nimbus::worker::make_variants(files[i], formats[i], 100'000'000, &cost))
            bytes += v.data.size();
          decode_us += static_cast<std::uint64_t>(cost.decode * 1e6);
          encode_us += static_cast<std::uint64_t>(cost.encode * 1e6);
        } catch (const std::exception&) {
          ++failed;
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const std::size_t made = files.size() - failed;
  std::printf(
      "{\"vips\":\"%s\",\"images\":%zu,\"failed\":%zu,\"seconds\":%.4f,\"cpu_seconds\":%.4f,\"bytes\":%zu,"
      "\"decode_seconds\":%.4f,\"encode_seconds\":%.4f}\n",
      nimbus::worker::libvips_version().c_str(), made, failed.load(), seconds, process_cpu_seconds() - cpu,
      bytes.load(), static_cast<double>(decode_us.load()) / 1e6, static_cast<double>(encode_us.load()) / 1e6);
  return failed == 0 ? 0 : 1;
}
