// Infrastructure failures shared by every client (STYLE.md, error policy).
//
// Outcomes caused by input are values; a dependency that cannot be reached is an
// exception of this type, which the HTTP layer answers with 503
// `dependency_unavailable` + Retry-After, and never with internals.
#pragma once

#include <stdexcept>
#include <string>

namespace nimbus {

class DependencyUnavailable : public std::runtime_error {
 public:
  DependencyUnavailable(std::string dependency, const std::string& detail)
      : std::runtime_error(dependency + ": " + detail), dependency_(std::move(dependency)) {}
  const std::string& dependency() const { return dependency_; }

 private:
  std::string dependency_;
};

}  // namespace nimbus
