#include "central/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstring>
#include <system_error>

#include "base/printable.h"
#include "base/utf8.h"

namespace edgesync {
namespace {

using Clock = std::chrono::steady_clock;

// What a request body or a rejected head may leave unread is read and
// dropped, up to this much, before the connection is closed: closing with
// unread bytes sends a reset, which can destroy the response in flight.
constexpr size_t kMaxDrainBytes = 64 << 10;

struct ListenAddress {
  sockaddr_storage addr{};
  socklen_t len = 0;
  bool dual_stack = false;  // ":port": IPv6 and IPv4 both, or IPv4 alone without IPv6
};

Status BadAddress(const std::string& address, const char* why) {
  return Status::InvalidArgument("metrics address \"" + Printable(address) + "\": " + why);
}

Result<ListenAddress> ParseAddress(const std::string& address) {
  static constexpr const char* kForms = "expected host:port, [ipv6]:port or :port";
  std::string_view host;
  std::string_view port;
  bool bracketed = false;
  if (!address.empty() && address[0] == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return BadAddress(address, kForms);
    }
    host = std::string_view(address).substr(1, close - 1);
    port = std::string_view(address).substr(close + 2);
    bracketed = true;
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) return BadAddress(address, kForms);
    host = std::string_view(address).substr(0, colon);
    port = std::string_view(address).substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return BadAddress(address, "put an IPv6 address in brackets, as in [::1]:9464");
    }
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || port.size() > 5 || ec != std::errc() || end != port.data() + port.size() ||
      value > 65535) {
    return BadAddress(address, "the port must be a number from 0 to 65535");
  }
  ListenAddress out;
  const std::string host_z(host);
  if (bracketed) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(static_cast<uint16_t>(value));
    if (::inet_pton(AF_INET6, host_z.c_str(), &a.sin6_addr) != 1) {
      return BadAddress(address, "the host in brackets is not a numeric IPv6 address");
    }
    std::memcpy(&out.addr, &a, sizeof(a));
    out.len = sizeof(a);
  } else if (host.empty()) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(static_cast<uint16_t>(value));
    a.sin6_addr = in6addr_any;
    std::memcpy(&out.addr, &a, sizeof(a));
    out.len = sizeof(a);
    out.dual_stack = true;
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(value));
    if (::inet_pton(AF_INET, host_z.c_str(), &a.sin_addr) != 1) {
      return BadAddress(address, "the host is not a numeric IPv4 address (no names)");
    }
    std::memcpy(&out.addr, &a, sizeof(a));
    out.len = sizeof(a);
  }
  return out;
}

// An IPv4 listener on every interface, for ":port" on a host without IPv6.
ListenAddress AnyIPv4(const ListenAddress& any6) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = reinterpret_cast<const sockaddr_in6*>(&any6.addr)->sin6_port;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  ListenAddress out;
  std::memcpy(&out.addr, &a, sizeof(a));
  out.len = sizeof(a);
  return out;
}

// A listening socket; on failure *err is the errno.
Result<int> Listen(const ListenAddress& la, const std::string& address, int* err) {
  const int family = la.addr.ss_family;
  const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    *err = errno;
    return Status::FromErrno("metrics address " + Printable(address), *err);
  }
  const int one = 1;
  // A restart may bind while the last run's connections are in TIME_WAIT;
  // a live listener on the port still makes bind fail.
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (family == AF_INET6) {
    const int v6only = la.dual_stack ? 0 : 1;
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&la.addr), la.len) != 0 ||
      ::listen(fd, 16) != 0) {
    *err = errno;
    ::close(fd);
    if (*err == EADDRINUSE) {
      return Status::IOError("metrics address " + Printable(address) +
                             " is in use: pick another --metrics-address");
    }
    return Status::FromErrno("metrics address " + Printable(address), *err);
  }
  return fd;
}

enum class Wait { kReady, kTimeout, kStop };

// Waits until `fd` has one of `events`, the deadline passes or `wake_fd`
// says stop. kReady also for an error or hang-up: the next call reports it.
Wait WaitFor(int fd, short events, int wake_fd, Clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return Wait::kTimeout;
    pollfd p[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
    const int n = ::poll(p, 2, static_cast<int>(std::min<int64_t>(left.count(), INT_MAX)));
    if (n < 0 && errno != EINTR) return Wait::kStop;  // ENOMEM, say: give up this client
    if (n <= 0) continue;
    if (p[1].revents != 0) return Wait::kStop;
    if (p[0].revents != 0) return Wait::kReady;
  }
}

// Sends `a` then `b`; false when the peer is gone or too slow, or on stop.
bool SendAll(int fd, std::string_view a, std::string_view b, int wake_fd,
             Clock::time_point deadline) {
  while (!a.empty() || !b.empty()) {
    iovec iov[2] = {{const_cast<char*>(a.data()), a.size()},
                    {const_cast<char*>(b.data()), b.size()}};
    msghdr msg{};
    msg.msg_iov = a.empty() ? iov + 1 : iov;
    msg.msg_iovlen = a.empty() ? 1 : 2;
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
      if (WaitFor(fd, POLLOUT, wake_fd, deadline) != Wait::kReady) return false;
      continue;
    }
    size_t sent = static_cast<size_t>(n);
    const size_t from_a = std::min(sent, a.size());
    a.remove_prefix(from_a);
    b.remove_prefix(sent - from_a);
  }
  return true;
}

bool IsTokenChar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenChar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

struct Reply {
  int code = 400;
  bool head_only = false;  // a HEAD request: the headers of the GET answer, no body
  bool body_follows = false;  // the client announced a body (which is never read)
};

// The path of a request target: origin-form "/p?q" or absolute-form
// "http://host/p?q". Empty for any other form.
std::string_view TargetPath(std::string_view target) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (EqualsIgnoreCase(target.substr(0, scheme.size()), scheme)) {
      const size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      break;
    }
  }
  if (target.empty() || target[0] != '/') return {};
  return target.substr(0, target.find('?'));
}

// Judges the request head `head` (its lines, the blank line excluded).
Reply Judge(std::string_view head) {
  Reply r;
  std::vector<std::string_view> lines;
  while (!head.empty()) {
    const size_t nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    head = nl == std::string_view::npos ? std::string_view() : head.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
  }
  if (lines.empty()) return r;
  // request-line = method SP request-target SP HTTP-version
  const std::string_view line = lines[0];
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) return r;
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method) || target.empty()) return r;
  for (char c : target) {
    if (c <= ' ' || c >= 0x7F) return r;  // a signed char: bytes above 0x7F are negative
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return r;
  }
  int hosts = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view field = lines[i];
    const size_t colon = field.find(':');
    if (colon == std::string_view::npos || !IsToken(field.substr(0, colon))) return r;
    for (char ch : field.substr(colon + 1)) {
      const unsigned char c = static_cast<unsigned char>(ch);
      if ((c < 0x20 && c != '\t') || c == 0x7F) return r;
    }
    const std::string_view name = field.substr(0, colon);
    if (EqualsIgnoreCase(name, "host")) ++hosts;
    if (EqualsIgnoreCase(name, "content-length") || EqualsIgnoreCase(name, "transfer-encoding")) {
      r.body_follows = true;
    }
  }
  r.head_only = method == "HEAD";
  if (version[5] != '1') {
    r.code = 505;
  } else if (version[7] != '0' && hosts != 1) {
    r.code = 400;  // HTTP/1.1 wants exactly one Host
  } else if (TargetPath(target).empty()) {
    r.code = 400;
  } else if (TargetPath(target) != "/metrics") {
    r.code = 404;
  } else if (method != "GET" && method != "HEAD") {
    r.code = 405;
  } else {
    r.code = 200;
  }
  return r;
}

const char* Reason(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 505: return "HTTP Version Not Supported";
  }
  return "Error";
}

std::string ResponseHead(int code, std::string_view content_type, size_t length) {
  std::string h = "HTTP/1.1 " + std::to_string(code) + " " + Reason(code) + "\r\n";
  h += "Content-Type: ";
  h += content_type;
  h += "\r\nContent-Length: " + std::to_string(length) + "\r\n";
  if (code == 405) h += "Allow: GET, HEAD\r\n";
  h += "Connection: close\r\n\r\n";
  return h;
}

}  // namespace

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& address) {
  return Start(address, kDefaultClientTimeout);
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& address, std::chrono::milliseconds client_timeout) {
  if (client_timeout.count() <= 0) {
    return Status::InvalidArgument("metrics server: the client timeout must be positive");
  }
  Result<ListenAddress> la = ParseAddress(address);
  if (!la.ok()) return la.status();
  int listen_err = 0;
  Result<int> fd = Listen(*la, address, &listen_err);
  const bool no_ipv6 = listen_err == EAFNOSUPPORT || listen_err == EPROTONOSUPPORT ||
                       listen_err == EADDRNOTAVAIL;
  if (!fd.ok() && la->dual_stack && no_ipv6) fd = Listen(AnyIPv4(*la), address, &listen_err);
  if (!fd.ok()) return fd.status();
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  if (::getsockname(*fd, reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    const int err = errno;
    ::close(*fd);
    return Status::FromErrno("metrics address " + Printable(address), err);
  }
  const uint16_t port = ntohs(bound.ss_family == AF_INET6
                                  ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                                  : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  const int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    const int err = errno;
    ::close(*fd);
    return Status::FromErrno("metrics server eventfd", err);
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer(*fd, wake, port, client_timeout));
  try {
    server->thread_ = std::thread(&MetricsServer::Run, server.get());
  } catch (const std::system_error& e) {
    return Status::IOError(std::string("metrics server thread: ") + e.what());
  }
  return server;
}

MetricsServer::MetricsServer(int listen_fd, int wake_fd, uint16_t port,
                             std::chrono::milliseconds timeout)
    : listen_fd_(listen_fd),
      wake_fd_(wake_fd),
      port_(port),
      timeout_(timeout),
      text_(std::make_shared<const std::string>()) {}

MetricsServer::~MetricsServer() {
  const uint64_t one = 1;
  while (::write(wake_fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
  }
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(wake_fd_);
}

void MetricsServer::SetText(std::string text) {
  auto next = std::make_shared<const std::string>(std::move(text));
  std::lock_guard<std::mutex> lock(mu_);
  text_.swap(next);  // the old text is freed outside the lock, or by its last reader
}

std::shared_ptr<const std::string> MetricsServer::Text() {
  std::lock_guard<std::mutex> lock(mu_);
  return text_;
}

void MetricsServer::Run() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int n = ::poll(p, 2, -1);
    if (n > 0 && p[1].revents != 0) return;
    int c = -1;
    if (n > 0) c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c >= 0) {
      Serve(c);
      ::close(c);
      continue;
    }
    // EAGAIN: the client gave up before it was accepted; ECONNABORTED and
    // the network errors accept() passes on: the next client may do. Out of
    // descriptors or memory (or a failed poll): wait a little, not spin.
    const int err = errno;
    if (err == EINTR || (n > 0 && (err == EAGAIN || err == EWOULDBLOCK || err == ECONNABORTED))) {
      continue;
    }
    pollfd w{wake_fd_, POLLIN, 0};
    if (::poll(&w, 1, 100) > 0) return;
  }
}

void MetricsServer::Serve(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  std::array<char, kMaxRequestHead> buf;
  size_t len = 0;
  size_t lines_end = 0;  // the head's lines are buf[0, lines_end), once its blank line is seen
  size_t head_end = 0;   // past that blank line
  int code = 0;          // an answer decided before the head was whole
  const Clock::time_point read_deadline = Clock::now() + timeout_;
  while (head_end == 0) {
    if (len == buf.size()) {
      code = 431;
      break;
    }
    const ssize_t n = ::recv(fd, buf.data() + len, buf.size() - len, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return;  // reset: no one to answer
      const Wait w = WaitFor(fd, POLLIN, wake_fd_, read_deadline);
      if (w == Wait::kStop) return;
      if (w == Wait::kTimeout) {
        code = 408;
        break;
      }
      continue;
    }
    if (n == 0) {
      if (len == 0) return;  // connected and left: a port check
      code = 400;             // the head was cut short
      break;
    }
    if (len == 0 && !IsTokenChar(static_cast<unsigned char>(buf[0])) && buf[0] != '\r' &&
        buf[0] != '\n') {
      code = 400;  // not HTTP (a TLS handshake, say): no need to wait for the rest
      break;
    }
    // The head ends at the first empty line (CRLF, or leniently LF alone).
    const size_t from = len < 3 ? 0 : len - 3;
    len += static_cast<size_t>(n);
    for (size_t i = from; i + 1 < len && head_end == 0; ++i) {
      if (buf[i] != '\n') continue;
      if (buf[i + 1] == '\n') {
        head_end = i + 2;
      } else if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n') {
        head_end = i + 3;
      }
      if (head_end != 0) lines_end = i;
    }
  }

  Reply reply;
  bool unread = code == 431;  // the client may still be sending, and waits for an answer
  if (code == 0) {
    reply = Judge(std::string_view(buf.data(), lines_end));
    code = reply.code;
    unread = len > head_end || reply.body_follows;
  }
  std::shared_ptr<const std::string> text;
  std::string_view body;
  std::string error_body;
  std::string_view content_type = "text/plain; charset=utf-8";
  if (code == 200) {
    text = Text();
    body = *text;
    content_type = "text/plain; version=0.0.4; charset=utf-8";
  } else {
    error_body = std::to_string(code) + " " + Reason(code) + "\n";
    if (code == 404) error_body += "Only /metrics is served here.\n";
    body = error_body;
  }
  const std::string response_head = ResponseHead(code, content_type, body.size());
  if (reply.head_only) body = {};
  const Clock::time_point write_deadline = Clock::now() + timeout_;
  if (!SendAll(fd, response_head, body, wake_fd_, write_deadline) || !unread) return;
  // Closing with bytes unread would reset the connection, and could destroy
  // the answer before the client has it: read what it still sends (within
  // bounds) until it closes.
  ::shutdown(fd, SHUT_WR);
  size_t drained = 0;
  while (drained < kMaxDrainBytes) {
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n == 0) return;
    if (n > 0) {
      drained += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return;
    if (WaitFor(fd, POLLIN, wake_fd_, write_deadline) != Wait::kReady) return;
  }
}

namespace {

void AppendEscaped(std::string_view s, bool quote, std::string* out) {
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '"' && quote) {
      out->append("\\\"");
    } else if (static_cast<unsigned char>(c) < 0x80) {
      out->push_back(c);
    } else {
      uint32_t cp = 0;
      const size_t n = DecodeUtf8(s, i, &cp);
      if (n == 0) {
        AppendUtf8(0xFFFD, out);
        ++i;
      } else {
        out->append(s.substr(i, n));
        i += n;
      }
      continue;
    }
    ++i;
  }
}

[[maybe_unused]] bool IsMetricName(std::string_view s, bool colon_ok) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || (c == ':' && colon_ok);
    if (!ok) return false;
  }
  return true;
}

// Writes `v` into `buf` (at least 32 bytes); returns the end.
char* FormatValue(double v, char* buf) {
  if (std::isnan(v)) return std::strcpy(buf, "NaN") + 3;
  if (std::isinf(v)) return std::strcpy(buf, v > 0 ? "+Inf" : "-Inf") + 4;
  if (v == std::trunc(v) && v >= -0x1p63 && v < 0x1p63) {
    return std::to_chars(buf, buf + 32, static_cast<int64_t>(v)).ptr;
  }
  return std::to_chars(buf, buf + 32, v).ptr;  // the shortest form that reads back as v
}

}  // namespace

std::string FormatMetricValue(double value) {
  char buf[32];
  return std::string(buf, FormatValue(value, buf));
}

void PrometheusText::Family(std::string_view name, std::string_view type, std::string_view help) {
  assert(IsMetricName(name, true));
  assert(type == "counter" || type == "gauge" || type == "untyped" || type == "summary" ||
         type == "histogram");
  text_.append("# HELP ").append(name).push_back(' ');
  AppendEscaped(help, /*quote=*/false, &text_);
  text_.append("\n# TYPE ").append(name).push_back(' ');
  text_.append(type).push_back('\n');
}

void PrometheusText::Sample(std::string_view name,
                            const std::vector<std::pair<std::string, std::string>>& labels,
                            double value) {
  assert(IsMetricName(name, true));
  text_.append(name);
  if (!labels.empty()) {
    text_.push_back('{');
    for (size_t i = 0; i < labels.size(); ++i) {
      assert(IsMetricName(labels[i].first, false));
      if (i > 0) text_.push_back(',');
      text_.append(labels[i].first).append("=\"");
      AppendEscaped(labels[i].second, /*quote=*/true, &text_);
      text_.push_back('"');
    }
    text_.push_back('}');
  }
  char buf[32];
  text_.push_back(' ');
  text_.append(buf, FormatValue(value, buf));
  text_.push_back('\n');
}

}  // namespace edgesync
