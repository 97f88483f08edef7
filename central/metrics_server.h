// MetricsServer: edgesync-unpack's Prometheus endpoint. A small HTTP/1.x
// server on its own thread that answers GET (and HEAD) /metrics with the
// text last given to SetText (text format 0.0.4); every other request gets
// an error status. Anyone who can reach the port may connect, so it trusts
// nothing it reads: one request per connection, always "Connection: close";
// at most 8 KiB of request head, and a client has the client timeout to send
// it and the same again to take the response, so a silent or slow client
// holds the server no longer than that. Clients are served one at a time:
// many such clients can delay a scrape, never stop the server or grow its
// memory. Bind to a private address, or firewall the port, if the numbers
// themselves are not for everyone.
//
// PrometheusText builds the text: families, each with its samples.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/status.h"

namespace edgesync {

class MetricsServer {
 public:
  static constexpr size_t kMaxRequestHead = 8 << 10;
  static constexpr std::chrono::milliseconds kDefaultClientTimeout{2000};

  // Listens on `address` and starts serving: "127.0.0.1:9464", "[::1]:9464",
  // or ":9464" for every interface (IPv6 and IPv4 where the host has both).
  // The host is a numeric address, not a name; port 0 takes any free port
  // (see port()). InvalidArgument for a malformed address or a timeout that
  // is not positive; IOError naming the address when it cannot be bound
  // (in use, not an address of this host, a port below 1024 without privilege).
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& address);
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& address,
                                                      std::chrono::milliseconds client_timeout);
  ~MetricsServer();  // stops the thread (promptly, even mid-request), closes the socket
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  uint16_t port() const { return port_; }  // the bound port
  // Replaces what GET /metrics returns ("" until the first call). Thread-safe
  // and cheap: a response already being sent keeps the text it started with.
  void SetText(std::string text);

 private:
  MetricsServer(int listen_fd, int wake_fd, uint16_t port, std::chrono::milliseconds timeout);
  void Run();
  void Serve(int fd);
  std::shared_ptr<const std::string> Text();

  const int listen_fd_;
  const int wake_fd_;  // an eventfd: readable once the destructor wants the thread to stop
  const uint16_t port_;
  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::shared_ptr<const std::string> text_;  // guarded by mu_
  std::thread thread_;
};

// Prometheus' text format, version 0.0.4. Names are the caller's constants
// (metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*);
// label values may be anything, from anyone.
class PrometheusText {
 public:
  // "# HELP name help" and "# TYPE name type" (help escaped: \\ and \n).
  // Once per family, followed by all of its samples.
  void Family(std::string_view name, std::string_view type /*counter|gauge*/,
              std::string_view help);
  // name{label="value",...} value, or "name value" without labels. Label
  // values are escaped (\\, \", \n), and bytes that are not UTF-8 become
  // U+FFFD (the scraper would refuse the whole text). A whole number of
  // magnitude below 2^63 is written as an integer (exact up to 2^53, as a
  // double is), any other number in the shortest form that reads back the
  // same; NaN, +Inf and -Inf as such.
  void Sample(std::string_view name, const std::vector<std::pair<std::string, std::string>>& labels,
              double value);
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

// `value` as Sample writes it: "42", "0.25", "1e+300", "NaN", "+Inf".
std::string FormatMetricValue(double value);

}  // namespace edgesync
