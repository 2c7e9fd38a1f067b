// Function mode's caller check and event parsing (worker/function.hpp): pure, no I/O.
#include "worker/function.hpp"

#include <cstdlib>

#include <gtest/gtest.h>

#include "core/env.hpp"

using namespace nimbus;
using worker::CallerCheck;

namespace {

const std::string kToken = "0123456789abcdefghijklmnopqrstuvwxyzABCD";

http::Request with_authorization(std::optional<std::string> value) {
  http::Request request;
  request.method = http::Method::post;
  if (value) request.headers.set("Authorization", *value);
  return request;
}

std::string code_for(const CallerCheck& check, std::optional<std::string> authorization) {
  auto refused = check.refusal(with_authorization(std::move(authorization)));
  return refused ? refused->code : "ok";
}

}  // namespace

TEST(FunctionCallers, OnlyTheBearerTokenPasses) {
  const CallerCheck check(kToken);
  EXPECT_EQ(code_for(check, "Bearer " + kToken), "ok");
  EXPECT_EQ(code_for(check, "bearer " + kToken), "ok");  // the scheme is case-insensitive
  EXPECT_EQ(code_for(check, "BEARER " + kToken), "ok");
  EXPECT_EQ(code_for(check, std::nullopt), "missing_token");
  EXPECT_EQ(code_for(check, ""), "missing_token");
  EXPECT_EQ(code_for(check, "Bearer"), "missing_token");
  EXPECT_EQ(code_for(check, "Bearer "), "missing_token");
  EXPECT_EQ(code_for(check, "Basic " + kToken), "missing_token");
  EXPECT_EQ(code_for(check, kToken), "missing_token");
  EXPECT_EQ(code_for(check, "Bearer " + kToken + "x"), "invalid_token");
  EXPECT_EQ(code_for(check, "Bearer " + kToken.substr(1)), "invalid_token");
  EXPECT_EQ(code_for(check, "Bearer " + kToken.substr(0, kToken.size() - 1) + "E"), "invalid_token");
  EXPECT_EQ(code_for(check, "Bearer  " + kToken), "invalid_token");  // two spaces: not the token
  EXPECT_EQ(code_for(check, "Bearer " + std::string(1 << 16, 'a')), "invalid_token");
}

TEST(FunctionCallers, RefusalsAre401WithAChallenge) {
  const CallerCheck check(kToken);
  auto missing = worker::refused_response(*check.refusal(with_authorization(std::nullopt)));
  EXPECT_EQ(missing.status, 401U);
  EXPECT_EQ(missing.headers.get("WWW-Authenticate").value_or(""), R"(Bearer realm="nimbus-function")");
  auto invalid = worker::refused_response(*check.refusal(with_authorization("Bearer nope")));
  EXPECT_EQ(invalid.status, 401U);
  EXPECT_EQ(invalid.headers.get("WWW-Authenticate").value_or(""),
            R"(Bearer realm="nimbus-function", error="invalid_token")");
  EXPECT_NE(invalid.body.find("\"invalid_token\""), std::string::npos);
  auto malformed = worker::refused_response(worker::EventRefused{400, "malformed_event", "x"});
  EXPECT_FALSE(malformed.headers.get("WWW-Authenticate"));
}

TEST(FunctionCallers, TheTokenIsRequiredAndLongEnough) {
  ::unsetenv("NIMBUS_FUNCTION_TOKEN");
  EXPECT_THROW(worker::FunctionConfig::from_env(), env::ConfigError);
  ::setenv("NIMBUS_FUNCTION_TOKEN", std::string(31, 'k').c_str(), 1);
  EXPECT_THROW(worker::FunctionConfig::from_env(), env::ConfigError);
  ::setenv("NIMBUS_FUNCTION_TOKEN", kToken.c_str(), 1);
  EXPECT_EQ(worker::FunctionConfig::from_env().token, kToken);
  ::unsetenv("NIMBUS_FUNCTION_TOKEN");
}

TEST(FunctionEvents, ABinaryModeJobEventIsRead) {
  http::Request request;
  request.headers.set("ce-specversion", "1.0");
  request.headers.set("ce-id", "e1");
  request.headers.set("ce-source", "/s");
  request.headers.set("ce-type", "t");
  request.headers.set("Content-Type", "application/json");
  request.body = R"({"image_id":"0190a4c2-7b1e-7cc1-9a2b-3c4d5e6f7a8b"})";
  auto parsed = worker::parse_binary_event(request);
  ASSERT_TRUE(std::holds_alternative<worker::CloudEvent>(parsed));
  EXPECT_EQ(worker::to_delivery(std::get<worker::CloudEvent>(parsed)).message.message_id, "e1");
  request.headers.set("Content-Type", "application/cloudevents+json");
  parsed = worker::parse_binary_event(request);
  ASSERT_TRUE(std::holds_alternative<worker::EventRefused>(parsed));
  EXPECT_EQ(std::get<worker::EventRefused>(parsed).status, 415U);
}
