#include "mail/smtp.hpp"

#include <cstring>
#include <ctime>
#include <curl/curl.h>
#include <memory>
#include <stdexcept>

#include "core/env.hpp"

namespace nimbus::mail {

SmtpConfig SmtpConfig::from_env() {
  SmtpConfig c;
  c.host = env::string("NIMBUS_SMTP_HOST", c.host);
  c.port = static_cast<int>(env::integer("NIMBUS_SMTP_PORT", c.port, 1, 65535));
  auto tls = env::string("NIMBUS_SMTP_TLS", "none");
  if (tls == "none")
    c.tls = Tls::none;
  else if (tls == "starttls")
    c.tls = Tls::starttls;
  else if (tls == "tls")
    c.tls = Tls::implicit;
  else
    throw env::ConfigError("NIMBUS_SMTP_TLS=\"" + tls + "\" is invalid: expected none|starttls|tls");
  c.user = env::string("NIMBUS_SMTP_USER", "");
  c.password = env::string("NIMBUS_SMTP_PASSWORD", "");
  c.timeout = env::duration("NIMBUS_SMTP_TIMEOUT", c.timeout);
  return c;
}

namespace {

std::string clean(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c != '\r' && c != '\n') out += c;
  }
  return out;
}

std::string address_of(const std::string& from) {
  auto lt = from.find('<'), gt = from.find('>');
  if (lt != std::string::npos && gt != std::string::npos && gt > lt) return from.substr(lt + 1, gt - lt - 1);
  return from;
}

}  // namespace

std::string render(const Email& e, std::chrono::system_clock::time_point now) {
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char date[64];
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  std::string body;
  // Normalise line ends to CRLF and dot-stuff nothing: curl does SMTP dot-escaping.
  for (std::size_t i = 0; i < e.text.size(); ++i) {
    if (e.text[i] == '\n' && (i == 0 || e.text[i - 1] != '\r')) body += '\r';
    body += e.text[i];
  }
  return "Date: " + std::string(date) + "\r\nFrom: " + clean(e.from) + "\r\nTo: " + clean(e.to) +
         "\r\nSubject: " + clean(e.subject) + "\r\nMessage-ID: <" + clean(e.message_id) + "@nimbus>\r\n" +
         "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
         body;
}

void send(const SmtpConfig& config, const Email& email) {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) throw std::runtime_error("curl init failed");
  const std::string scheme = config.tls == SmtpConfig::Tls::implicit ? "smtps" : "smtp";
  const std::string url = scheme + "://" + config.host + ":" + std::to_string(config.port);
  const auto message = render(email, std::chrono::system_clock::now());
  struct Source {
    const std::string& data;
    std::size_t offset = 0;
  } source{message};
  curl_slist* rcpt = curl_slist_append(nullptr, ("<" + clean(email.to) + ">").c_str());
  const auto from = "<" + clean(address_of(email.from)) + ">";
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_MAIL_FROM, from.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(curl.get(), CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(config.timeout.count()));
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  if (config.tls == SmtpConfig::Tls::starttls) curl_easy_setopt(curl.get(), CURLOPT_USE_SSL, CURLUSESSL_ALL);
  if (!config.user.empty()) {
    curl_easy_setopt(curl.get(), CURLOPT_USERNAME, config.user.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_PASSWORD, config.password.c_str());
  }
  curl_easy_setopt(curl.get(), CURLOPT_READDATA, &source);
  curl_easy_setopt(
      curl.get(), CURLOPT_READFUNCTION, +[](char* buf, std::size_t size, std::size_t n, void* user) -> std::size_t {
        auto* s = static_cast<Source*>(user);
        const auto take = std::min(size * n, s->data.size() - s->offset);
        std::memcpy(buf, s->data.data() + s->offset, take);
        s->offset += take;
        return take;
      });
  const CURLcode rc = curl_easy_perform(curl.get());
  curl_slist_free_all(rcpt);
  if (rc != CURLE_OK) throw std::runtime_error(std::string("smtp: ") + curl_easy_strerror(rc));
}

}  // namespace nimbus::mail
