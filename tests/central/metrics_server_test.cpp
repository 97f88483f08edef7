#include "central/metrics_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "base/printable.h"

namespace edgesync {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;

// A connected TCP socket to the server, closed when destroyed.
class Client {
 public:
  explicit Client(uint16_t port, bool ipv6 = false) {
    fd_ = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd_, 0) << std::strerror(errno);
    int rc;
    if (ipv6) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(port);
      a.sin6_addr = in6addr_loopback;
      rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    }
    EXPECT_EQ(rc, 0) << std::strerror(errno);
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  int fd() const { return fd_; }
  void Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      ASSERT_GT(n, 0) << std::strerror(errno);
      data.remove_prefix(static_cast<size_t>(n));
    }
  }
  // Everything the server sends until it closes the connection (a reset
  // ends it too). Fails the test after 20 s: a hang is a bug.
  std::string ReadAll() {
    std::string out;
    char buf[4096];
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      const int ready = left.count() <= 0 ? 0 : ::poll(&p, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) {
        ADD_FAILURE() << "the server neither answered nor closed; got so far: " << out;
        return out;
      }
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  int fd_ = -1;
};

std::string Exchange(uint16_t port, std::string_view request) {
  Client c(port);
  c.Send(request);
  return c.ReadAll();
}

int StatusCode(const std::string& response) {
  if (response.size() < 12 || response.compare(0, 9, "HTTP/1.1 ") != 0) return -1;
  return std::stoi(response.substr(9, 3));
}

std::string Body(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

// How many connections wait in the accept queue of the listener on
// 127.0.0.1:`port` (from /proc/net/tcp), or -1 if that cannot be read.
int AcceptQueue(uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  char local[32];
  std::snprintf(local, sizeof(local), "0100007F:%04X", port);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, address, remote, state, queues;
    fields >> slot >> address >> remote >> state >> queues;
    if (address != local || state != "0A" || queues.size() != 17) continue;  // 0A: LISTEN
    return static_cast<int>(std::stoul(queues.substr(9), nullptr, 16));  // tx_queue:rx_queue
  }
  return -1;
}

std::unique_ptr<MetricsServer> StartLocal(std::chrono::milliseconds timeout = 2000ms) {
  Result<std::unique_ptr<MetricsServer>> s = MetricsServer::Start("127.0.0.1:0", timeout);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  if (!s.ok()) return nullptr;
  EXPECT_NE((*s)->port(), 0);
  return std::move(*s);
}

TEST(MetricsServer, ServesTheTextItWasGiven) {
  auto server = StartLocal();
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->port();
  server->SetText("a_total 1\n");
  std::string r = Exchange(port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_EQ(r,
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            "Content-Length: 10\r\n"
            "Connection: close\r\n"
            "\r\n"
            "a_total 1\n");

  server->SetText("b 2\nc 3\n");
  r = Exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
  EXPECT_EQ(StatusCode(r), 200);
  EXPECT_EQ(Body(r), "b 2\nc 3\n");

  // HTTP/1.0 needs no Host; bare LF line ends, a query and the
  // absolute form are accepted.
  r = Exchange(port, "GET /metrics HTTP/1.0\n\n");
  EXPECT_EQ(StatusCode(r), 200);
  EXPECT_EQ(Body(r), "b 2\nc 3\n");
  r = Exchange(port, "GET /metrics?name[]=x HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(Body(r), "b 2\nc 3\n");
  r = Exchange(port, "GET http://x:9464/metrics HTTP/1.1\r\nHost: x:9464\r\n\r\n");
  EXPECT_EQ(Body(r), "b 2\nc 3\n");

  // HEAD: the same headers, no body.
  r = Exchange(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(StatusCode(r), 200);
  EXPECT_NE(r.find("\r\nContent-Length: 8\r\n"), std::string::npos) << r;
  EXPECT_EQ(Body(r), "");

  // A large text arrives whole.
  std::string big;
  while (big.size() < (4 << 20)) big += "edgesync_some_metric{stream=\"s\"} 12345\n";
  server->SetText(big);
  r = Exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(StatusCode(r), 200);
  EXPECT_TRUE(Body(r) == big);
}

TEST(MetricsServer, EmptyUntilTheFirstText) {
  auto server = StartLocal();
  ASSERT_NE(server, nullptr);
  const std::string r = Exchange(server->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(StatusCode(r), 200);
  EXPECT_NE(r.find("\r\nContent-Length: 0\r\n"), std::string::npos) << r;
  EXPECT_EQ(Body(r), "");
}

TEST(MetricsServer, AnswersOtherRequestsWithErrors) {
  auto server = StartLocal();
  ASSERT_NE(server, nullptr);
  server->SetText("secret 1\n");
  const uint16_t port = server->port();
  struct Case {
    std::string request;
    int code;
  };
  const Case cases[] = {
      {"GET /other HTTP/1.1\r\nHost: x\r\n\r\n", 404},
      {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 404},
      {"GET /metrics/ HTTP/1.1\r\nHost: x\r\n\r\n", 404},
      {"GET /METRICS HTTP/1.1\r\nHost: x\r\n\r\n", 404},
      {"GET /%6detrics HTTP/1.1\r\nHost: x\r\n\r\n", 404},
      {"POST /other HTTP/1.1\r\nHost: x\r\n\r\n", 404},
      {"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405},
      {"PUT /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405},
      {"DELETE /metrics HTTP/1.0\r\n\r\n", 405},
      {"get /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405},  // methods are case-sensitive
      {"GET /metrics HTTP/1.1\r\n\r\n", 400},              // HTTP/1.1 without Host
      {"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505},
      {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
      {"GET /metrics\r\n\r\n", 400},  // HTTP/0.9
      {"GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1 \r\nHost: x\r\n\r\n", 400},
      {"GET /metrics HTTP/1.10\r\nHost: x\r\n\r\n", 400},
      {"GET /metrics http/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /met\x7frics HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /m\xc3\xa9trics HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"G(T /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", 400},          // space before the colon
      {"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400},  // obsolete line folding
      {"GET /metrics HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400},  // a bare CR
      {"GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n"s, 400},
      {"\r\n\r\n", 400},
      {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"s, 400},  // a TLS ClientHello, not HTTP
  };
  for (const Case& c : cases) {
    const std::string r = Exchange(port, c.request);
    EXPECT_EQ(StatusCode(r), c.code) << Printable(c.request) << " -> " << r;
    EXPECT_NE(r.find("\r\nConnection: close\r\n"), std::string::npos) << r;
    EXPECT_EQ(r.find("secret"), std::string::npos) << r;
    if (c.code == 405) {
      EXPECT_NE(r.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos) << r;
    }
  }
  // A head cut short by the client's end of input.
  {
    Client c(port);
    c.Send("GET /metrics HTTP/1.1\r\nHost: x\r\n");
    ASSERT_EQ(::shutdown(c.fd(), SHUT_WR), 0);
    EXPECT_EQ(StatusCode(c.ReadAll()), 400);
  }
  // A client that connects and leaves gets nothing, and harms nothing.
  { Client c(port); }
  EXPECT_EQ(StatusCode(Exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")), 200);
}

TEST(MetricsServer, SurvivesRandomRequests) {
  auto server = StartLocal();
  ASSERT_NE(server, nullptr);
  server->SetText("x 1\n");
  const std::string seeds[] = {
      "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n",
      "HEAD /metrics HTTP/1.0\r\n\r\n",
      "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody",
  };
  std::mt19937 rng(20240611);
  for (int i = 0; i < 400; ++i) {
    std::string r = seeds[rng() % 3];
    for (int k = rng() % 6; k > 0; --k) {
      const size_t at = r.empty() ? 0 : rng() % r.size();
      switch (rng() % 5) {
        case 0: if (!r.empty()) r[at] = static_cast<char>(rng()); break;
        case 1: r.insert(at, 1, static_cast<char>(rng())); break;
        case 2: r.erase(at, rng() % 8); break;
        case 3: r.insert(at, rng() % 2 ? "\r\n" : "\n\n"); break;
        case 4: r.insert(at, r.substr(at, rng() % 64)); break;
      }
    }
    Client c(server->port());
    c.Send(r);
    ::shutdown(c.fd(), SHUT_WR);  // a head left unfinished is answered at once
    const std::string answer = c.ReadAll();
    if (r.empty()) {
      EXPECT_EQ(answer, "");
      continue;
    }
    const int code = StatusCode(answer);
    EXPECT_TRUE(code == 200 || code == 400 || code == 404 || code == 405 || code == 431 ||
                code == 505)
        << Printable(r) << " -> " << Printable(answer);
    EXPECT_NE(answer.find("\r\nConnection: close\r\n\r\n"), std::string::npos);
    if (code == 200 && r.starts_with("GET")) {
      EXPECT_EQ(Body(answer), "x 1\n");
    }
  }
  EXPECT_EQ(StatusCode(Exchange(server->port(), seeds[0])), 200);
}

TEST(MetricsServer, RequestWithABodyStillGetsItsAnswer) {
  auto server = StartLocal();
  ASSERT_NE(server, nullptr);
  server->SetText("x 1\n");
  // The body is not read; it must not reset the connection before the
  // client has the answer.
  const std::string body(32 << 10, 'b');
  std::string r = Exchange(server->port(), "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                               std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_EQ(StatusCode(r), 405);
  r = Exchange(server->port(),
               "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(StatusCode(r), 200);
  EXPECT_EQ(Body(r), "x 1\n");
}

TEST(MetricsServer, RequestHeadOfAtMost8KiB) {
  auto server = StartLocal();
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->port();
  const std::string start = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ";
  const std::string end = "\r\n\r\n";
  const size_t max = MetricsServer::kMaxRequestHead;
  std::string fits = start + std::string(max - start.size() - end.size(), 'a') + end;
  ASSERT_EQ(fits.size(), max);
  EXPECT_EQ(StatusCode(Exchange(port, fits)), 200);
  std::string over = start + std::string(max + 1 - start.size() - end.size(), 'a') + end;
  EXPECT_EQ(StatusCode(Exchange(port, over)), 431);

  // A head that never ends: answered and closed once 8 KiB are in, though
  // the client sends on (ReadAll returns only once the server closes).
  Client c(port);
  c.Send(start + std::string(16 << 10, 'a'));
  const std::string r = c.ReadAll();
  EXPECT_EQ(StatusCode(r), 431) << r;
  EXPECT_NE(r.find("\r\nConnection: close\r\n"), std::string::npos) << r;
}

TEST(MetricsServer, SilentClientDoesNotStopTheNext) {
  auto server = StartLocal(/*timeout=*/200ms);
  ASSERT_NE(server, nullptr);
  server->SetText("x 1\n");
  Client silent(server->port());  // accepted first: the server waits on it until the timeout
  Client partial(server->port());
  partial.Send("GET /metrics HTTP/1.1\r\n");
  const std::string r = Exchange(server->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(StatusCode(r), 200) << r;
  EXPECT_EQ(Body(r), "x 1\n");
  EXPECT_EQ(StatusCode(silent.ReadAll()), 408);
  EXPECT_EQ(StatusCode(partial.ReadAll()), 408);
}

TEST(MetricsServer, SlowClientIsCutOffAtTheTimeout) {
  auto server = StartLocal(/*timeout=*/200ms);
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  // One byte at a time, each a little before the server would give up on
  // a silent client: the timeout is for the whole head, not per byte.
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " +
                              std::string(200, 'a') + "\r\n\r\n";
  size_t sent = 0;
  const auto start = std::chrono::steady_clock::now();
  for (; sent < request.size(); ++sent) {
    pollfd p{c.fd(), POLLIN, 0};
    if (::poll(&p, 1, 20) != 0) break;  // the server answered (or closed)
    if (::send(c.fd(), &request[sent], 1, MSG_NOSIGNAL) != 1) break;
  }
  EXPECT_LT(sent, request.size());
  EXPECT_EQ(StatusCode(c.ReadAll()), 408);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST(MetricsServer, StopsPromptlyWhileAClientIsSilent) {
  auto server = StartLocal(/*timeout=*/60s);
  ASSERT_NE(server, nullptr);
  Client silent(server->port());
  Client waiting(server->port());
  waiting.Send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  // The server has taken `silent` and waits on it: `waiting` alone is queued.
  // (The kernel says so through /proc only: polled.)
  const auto taken_by = std::chrono::steady_clock::now() + 10s;
  while (AcceptQueue(server->port()) > 1 && std::chrono::steady_clock::now() < taken_by) {
    std::this_thread::sleep_for(1ms);
  }
  if (AcceptQueue(server->port()) != -1) {
    EXPECT_EQ(AcceptQueue(server->port()), 1);
  }
  const auto start = std::chrono::steady_clock::now();
  server.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  // Both connections are closed, not answered.
  EXPECT_EQ(silent.ReadAll(), "");
  EXPECT_EQ(waiting.ReadAll(), "");
}

TEST(MetricsServer, SetTextWhileServing) {
  auto server = StartLocal();
  ASSERT_NE(server, nullptr);
  const std::string a(100000, 'a');
  const std::string b(50000, 'b');
  server->SetText(a);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; !done.load(); ++i) server->SetText(i % 2 == 0 ? b : a);
  });
  for (int i = 0; i < 20; ++i) {
    const std::string r = Exchange(server->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    const std::string body = Body(r);
    EXPECT_TRUE(body == a || body == b) << body.size();
    EXPECT_NE(r.find("\r\nContent-Length: " + std::to_string(body.size()) + "\r\n"),
              std::string::npos);
  }
  done = true;
  writer.join();
}

TEST(MetricsServer, ServesOnIPv6Loopback) {
  Result<std::unique_ptr<MetricsServer>> s = MetricsServer::Start("[::1]:0");
  if (!s.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << s.status().ToString();
  (*s)->SetText("v6 1\n");
  Client c((*s)->port(), /*ipv6=*/true);
  c.Send("GET /metrics HTTP/1.1\r\nHost: [::1]\r\n\r\n");
  EXPECT_EQ(Body(c.ReadAll()), "v6 1\n");
}

TEST(MetricsServer, MalformedAddresses) {
  for (const char* address :
       {"", ":", "9464", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:123456",
        "127.0.0.1:-1", "127.0.0.1:+80", "127.0.0.1:80a", "127.0.0.1: 80", " 127.0.0.1:80",
        "localhost:9464", "256.0.0.1:9464", "::1:9464", "[::1]", "[::1]9464", "[::1:9464",
        "[]:9464", "[127.0.0.1]:9464", "[::1]:", "[::1]:x", "[fe80::1%lo]:9464", "a:b:c"}) {
    Result<std::unique_ptr<MetricsServer>> s = MetricsServer::Start(address);
    ASSERT_FALSE(s.ok()) << address;
    EXPECT_EQ(s.status().code(), Status::Code::kInvalidArgument) << address;
    EXPECT_NE(s.status().message().find("metrics address"), std::string::npos)
        << s.status().message();
  }
  Result<std::unique_ptr<MetricsServer>> s = MetricsServer::Start("127.0.0.1:0", 0ms);
  EXPECT_EQ(s.status().code(), Status::Code::kInvalidArgument);
  // Control characters in the address are not echoed raw.
  s = MetricsServer::Start("x\n:1");
  EXPECT_EQ(s.status().message().find('\n'), std::string::npos) << s.status().message();
}

TEST(MetricsServer, PortInUse) {
  auto first = StartLocal();
  ASSERT_NE(first, nullptr);
  const std::string address = "127.0.0.1:" + std::to_string(first->port());
  Result<std::unique_ptr<MetricsServer>> second = MetricsServer::Start(address);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Status::Code::kIOError);
  EXPECT_EQ(second.status().message(),
            "metrics address " + address + " is in use: pick another --metrics-address");
  // The first still serves.
  EXPECT_EQ(StatusCode(Exchange(first->port(), "GET /metrics HTTP/1.0\r\n\r\n")), 200);
}

TEST(PrometheusText, FamiliesAndSamples) {
  PrometheusText p;
  p.Family("edgesync_unpack_batches_total", "counter", "Batches emitted.");
  p.Sample("edgesync_unpack_batches_total", {}, 42);
  p.Family("edgesync_unpack_lag", "gauge", "Lag, \\ and\nmore \"quoted\".");
  p.Sample("edgesync_unpack_lag", {{"device", "d1"}, {"stream", "s"}}, 0.25);
  p.Sample("edgesync_unpack_lag", {{"device", "a\"b\\c\nd"}, {"stream", ""}}, -3);
  EXPECT_EQ(p.text(),
            "# HELP edgesync_unpack_batches_total Batches emitted.\n"
            "# TYPE edgesync_unpack_batches_total counter\n"
            "edgesync_unpack_batches_total 42\n"
            "# HELP edgesync_unpack_lag Lag, \\\\ and\\nmore \"quoted\".\n"
            "# TYPE edgesync_unpack_lag gauge\n"
            "edgesync_unpack_lag{device=\"d1\",stream=\"s\"} 0.25\n"
            "edgesync_unpack_lag{device=\"a\\\"b\\\\c\\nd\",stream=\"\"} -3\n");
}

TEST(PrometheusText, LabelValuesFromAnyone) {
  PrometheusText p;
  // UTF-8 is kept; bytes that are not UTF-8 become U+FFFD; other control
  // characters are legal in the format and kept.
  p.Sample("m", {{"l", "caf\xc3\xa9 \xff\xc3 \xed\xa0\x80 \t\r}"}}, 1);
  EXPECT_EQ(p.text(),
            "m{l=\"caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
            " \t\r}\"} 1\n");
}

TEST(PrometheusText, NumberFormat) {
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(-0.0), "0");
  EXPECT_EQ(FormatMetricValue(7), "7");
  EXPECT_EQ(FormatMetricValue(-5), "-5");
  EXPECT_EQ(FormatMetricValue(1e15), "1000000000000000");
  EXPECT_EQ(FormatMetricValue(0x1p53), "9007199254740992");
  EXPECT_EQ(FormatMetricValue(static_cast<double>(uint64_t{1} << 62)), "4611686018427387904");
  EXPECT_EQ(FormatMetricValue(-0x1p63), "-9223372036854775808");
  // Past int64: the shortest form, which may still have no exponent.
  EXPECT_EQ(FormatMetricValue(0x1p63), "9223372036854775808");
  EXPECT_EQ(FormatMetricValue(1e20), "1e+20");
  EXPECT_EQ(FormatMetricValue(1e300), "1e+300");
  EXPECT_EQ(FormatMetricValue(0.1), "0.1");
  EXPECT_EQ(FormatMetricValue(1.5), "1.5");
  EXPECT_EQ(FormatMetricValue(-2.75), "-2.75");
  EXPECT_EQ(FormatMetricValue(123456789012.5), "123456789012.5");
  EXPECT_EQ(FormatMetricValue(1e-9), "1e-09");
  EXPECT_EQ(FormatMetricValue(1.0 / 3), "0.3333333333333333");
  EXPECT_EQ(std::stod(FormatMetricValue(1.0 / 3)), 1.0 / 3);
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::denorm_min()), "5e-324");
}

}  // namespace
}  // namespace edgesync
