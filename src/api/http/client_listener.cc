#include "api/http/client_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <system_error>

#include "common/check.h"
#include "common/logging.h"

namespace cairn::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using SteadyClock = std::chrono::steady_clock;

// Room in the read buffer beyond the header limit, for the body chunk and
// pipelined bytes that arrive with the headers.
constexpr size_t kReadSlackBytes = 64 * 1024;
// How often the accept loop wakes to join finished connection threads.
constexpr int kReapIntervalMs = 1000;
// Back-off after accept() fails for lack of descriptors (Go's net/http starts
// at 5 ms); the pending connection stays in the backlog meanwhile.
constexpr int kAcceptBackoffMs = 50;

// Waits until `fd` is ready for `events` or `deadline` passes. Returns 1 when
// ready (including error/hang-up, which the next call reports), 0 on timeout,
// -1 on a poll error.
int WaitFor(int fd, short events, SteadyClock::time_point deadline) {
  for (;;) {
    auto remaining =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (remaining.count() <= 0) return 0;
    struct pollfd pfd = {fd, events, 0};
    int timeout_ms =
        static_cast<int>(std::min<int64_t>(remaining.count() + 1, std::numeric_limits<int>::max()));
    int rc = ::poll(&pfd, 1, timeout_ms);
    if (rc > 0) return 1;
    if (rc < 0 && errno != EINTR) return -1;
  }
}

// A blocking socket as a Beast SyncReadStream / SyncWriteStream whose every
// call is bounded by a deadline. Asio's own sockets cannot do this: their
// synchronous reads retry forever after SO_RCVTIMEO fires.
class FdStream {
 public:
  explicit FdStream(int fd) : fd_(fd) {}

  void set_read_deadline(SteadyClock::time_point t) { read_deadline_ = t; }
  void set_write_deadline(SteadyClock::time_point t) { write_deadline_ = t; }

  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers, beast::error_code& ec) {
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers);
         ++it) {
      net::mutable_buffer b(*it);
      if (b.size() > 0) return Recv(b.data(), b.size(), ec);
    }
    ec = {};
    return 0;
  }
  // Required by the stream concept; this file only uses the error_code forms.
  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers) {
    beast::error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw beast::system_error(ec);
    return n;
  }

  template <class ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers, beast::error_code& ec) {
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers);
         ++it) {
      net::const_buffer b(*it);
      if (b.size() > 0) return Send(b.data(), b.size(), ec);
    }
    ec = {};
    return 0;
  }
  template <class ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers) {
    beast::error_code ec;
    size_t n = write_some(buffers, ec);
    if (ec) throw beast::system_error(ec);
    return n;
  }

 private:
  size_t Recv(void* data, size_t size, beast::error_code& ec) {
    for (;;) {
      ssize_t n = ::recv(fd_, data, size, MSG_DONTWAIT);
      if (n > 0) {
        ec = {};
        return static_cast<size_t>(n);
      }
      if (n == 0) {
        ec = net::error::eof;  // Beast turns this into end_of_stream
        return 0;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        ec.assign(errno, boost::system::system_category());
        return 0;
      }
      int rc = WaitFor(fd_, POLLIN, read_deadline_);
      if (rc <= 0) {
        ec = rc == 0 ? beast::error_code(beast::error::timeout)
                     : beast::error_code(errno, boost::system::system_category());
        return 0;
      }
    }
  }

  size_t Send(const void* data, size_t size, beast::error_code& ec) {
    for (;;) {
      ssize_t n = ::send(fd_, data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) {
        ec = {};
        return static_cast<size_t>(n);
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        ec.assign(errno, boost::system::system_category());
        return 0;
      }
      int rc = WaitFor(fd_, POLLOUT, write_deadline_);
      if (rc <= 0) {
        ec = rc == 0 ? beast::error_code(beast::error::timeout)
                     : beast::error_code(errno, boost::system::system_category());
        return 0;
      }
    }
  }

  const int fd_;
  SteadyClock::time_point read_deadline_ = SteadyClock::time_point::max();
  SteadyClock::time_point write_deadline_ = SteadyClock::time_point::max();
};

std::string_view ToStd(beast::string_view s) { return std::string_view(s.data(), s.size()); }

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

// strerror() in Go's style ("address already in use"), which is what etcd
// prints and what operators search for.
std::string ErrnoText(int error) {
  std::string text = std::strerror(error);
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z')
    text[0] = static_cast<char>(text[0] - 'A' + 'a');
  return text;
}

bool HasLineBreak(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

HttpResponse TextResponse(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  // As Go's http.Error, so clients that sniff see the same thing.
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return response;
}

std::string FormatAddress(const struct sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const struct sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const struct sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "";
}

void SetReceiveLowWatermark(int fd, int bytes) {
  ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes));
}

// Writes `response` with Content-Length, Connection and the default headers.
// A HEAD request gets the headers only.
bool WriteResponse(FdStream& stream, const HttpResponse& response, const HeaderList& defaults,
                   unsigned version, bool keep_alive, bool head_only) {
  bhttp::response<bhttp::string_body> res;
  res.version(version == 10 ? 10 : 11);
  int status = response.status;
  if (status < 100 || status > 999) status = 500;
  res.result(static_cast<unsigned>(status));
  for (const auto& [name, value] : defaults) res.set(name, value);
  for (const auto& [name, value] : response.headers) {
    // A handler must not be able to split the response.
    if (name.empty() || HasLineBreak(name) || HasLineBreak(value)) continue;
    res.insert(name, value);
  }
  if (!response.content_type.empty() && !HasLineBreak(response.content_type)) {
    res.set(bhttp::field::content_type, response.content_type);
  }
  res.keep_alive(keep_alive);
  res.content_length(response.body.size());
  if (!head_only) res.body() = response.body;
  beast::error_code ec;
  bhttp::serializer<false, bhttp::string_body> serializer(res);
  if (head_only) {
    bhttp::write_header(stream, serializer, ec);
  } else {
    bhttp::write(stream, serializer, ec);
  }
  return !ec;
}

// The answer to a request that could not be read, or none (just close).
std::optional<HttpResponse> ReadErrorResponse(const beast::error_code& ec) {
  if (ec == bhttp::error::body_limit) {
    return TextResponse(413, "http: request body too large\n");
  }
  if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
    return TextResponse(431, "431 Request Header Fields Too Large");
  }
  if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message ||
      ec == beast::error::timeout || ec.category() == boost::system::system_category() ||
      ec == net::error::eof) {
    return std::nullopt;
  }
  return TextResponse(400, "400 Bad Request");
}

}  // namespace

std::string_view HttpRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return value;
  }
  return {};
}

Status ClientListener::Options::Validate() const {
  if (max_connections == 0) return Status(Code::kInvalidArgument, "max_connections must be > 0");
  if (max_header_bytes == 0 || max_header_bytes > std::numeric_limits<uint32_t>::max()) {
    return Status(Code::kInvalidArgument, "max_header_bytes must be in (0, 4 GiB)");
  }
  if (max_body_bytes == 0) return Status(Code::kInvalidArgument, "max_body_bytes must be > 0");
  if (read_timeout.count() <= 0 || write_timeout.count() <= 0) {
    return Status(Code::kInvalidArgument, "read_timeout and write_timeout must be > 0");
  }
  return Status::Ok();
}

ClientListener::ClientListener(Options options) : options_(std::move(options)) {}

ClientListener::~ClientListener() { Stop(); }

void ClientListener::Handle(std::string method, std::string path, Handler handler) {
  std::unique_lock<std::shared_mutex> lock(routes_mu_);
  routes_[std::move(path)].by_method[std::move(method)] = std::move(handler);
}

Status ClientListener::Start() {
  CHECK(!started_) << "ClientListener::Start called twice";
  if (Status s = options_.Validate(); !s.ok()) return s;
  started_ = true;

  std::string host = options_.host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string address = host + ":" + std::to_string(options_.port);
  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  struct addrinfo* results = nullptr;
  const std::string port = std::to_string(options_.port);
  int gai = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &results);
  if (gai != 0) {
    return Status(Code::kInvalidArgument,
                  "listen tcp " + address + ": lookup: " + ::gai_strerror(gai));
  }
  std::string error = "no usable address";
  for (struct addrinfo* ai = results; ai != nullptr && listen_fd_ < 0; ai = ai->ai_next) {
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      error = std::string("socket: ") + ErrnoText(errno);
      continue;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      error = std::string("bind: ") + ErrnoText(errno);
      ::close(fd);
      continue;
    }
    if (::listen(fd, SOMAXCONN) != 0) {
      error = std::string("listen: ") + ErrnoText(errno);
      ::close(fd);
      continue;
    }
    listen_fd_ = fd;
  }
  ::freeaddrinfo(results);
  if (listen_fd_ < 0) return Status(Code::kUnavailable, "listen tcp " + address + ": " + error);

  struct sockaddr_storage bound = {};
  socklen_t bound_len = sizeof(bound);
  ::getsockname(listen_fd_, reinterpret_cast<struct sockaddr*>(&bound), &bound_len);
  bound_port_ = bound.ss_family == AF_INET6
                    ? ntohs(reinterpret_cast<struct sockaddr_in6*>(&bound)->sin6_port)
                    : ntohs(reinterpret_cast<struct sockaddr_in*>(&bound)->sin_port);

  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    return Status(Code::kInternal, std::string("eventfd: ") + ErrnoText(errno));
  }
  try {
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  } catch (const std::system_error& e) {
    return Status(Code::kInternal, std::string("starting accept thread: ") + e.what());
  }
  return Status::Ok();
}

size_t ClientListener::active_connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_connections_;
}

void ClientListener::AcceptLoop() {
  for (;;) {
    struct pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int rc = ::poll(fds, 2, kReapIntervalMs);
    ReapFinished();
    if (stopping_.load() || (fds[1].revents & POLLIN)) return;
    if (rc <= 0 || !(fds[0].revents & POLLIN)) continue;

    struct sockaddr_storage peer = {};
    socklen_t peer_len = sizeof(peer);
    int fd =
        ::accept4(listen_fd_, reinterpret_cast<struct sockaddr*>(&peer), &peer_len, SOCK_CLOEXEC);
    if (fd < 0) {
      const int error = errno;
      if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
        CAIRN_LOG(kWarn) << "client listener: accept: " << ErrnoText(error) << "; retrying in "
                         << kAcceptBackoffMs << "ms";
        struct pollfd wake = {wake_fd_, POLLIN, 0};
        ::poll(&wake, 1, kAcceptBackoffMs);
      }
      continue;  // EAGAIN, ECONNABORTED, EINTR: nothing to do
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    std::lock_guard<std::mutex> lock(mu_);
    // Checked under mu_: Stop() may have begun while this thread accepted.
    if (stopping_.load() || live_connections_ >= options_.max_connections) {
      ::close(fd);
      continue;
    }
    uint64_t id = next_connection_id_++;
    Connection& conn = connections_[id];
    conn.fd = fd;
    try {
      conn.thread = std::thread(
          [this, id, fd, remote = FormatAddress(peer)] { ServeConnection(id, fd, remote); });
      ++live_connections_;
    } catch (const std::system_error& e) {
      CAIRN_LOG(kWarn) << "client listener: cannot start connection thread: " << e.what();
      connections_.erase(id);
      ::close(fd);
    }
  }
}

void ClientListener::ReapFinished() {
  std::vector<std::thread> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint64_t id : finished_) {
      auto it = connections_.find(id);
      if (it == connections_.end()) continue;
      done.push_back(std::move(it->second.thread));
      connections_.erase(it);
    }
    finished_.clear();
  }
  for (std::thread& t : done) {
    if (t.joinable()) t.join();
  }
}

bool ClientListener::ReleaseConnection(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = connections_.find(id);
  if (it != connections_.end() && it->second.fd >= 0) {
    it->second.fd = -1;
    --live_connections_;
  }
  return !stopping_.load();
}

void ClientListener::FinishConnection(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  finished_.push_back(id);
}

void ClientListener::ServeConnection(uint64_t id, int fd, std::string remote_address) {
  Protocol protocol = DetectProtocol(fd);
  if (protocol == Protocol::kHttp1) ServeHttp1(fd, remote_address);
  // Untrack before close, so Stop() never shuts down a reused descriptor.
  const bool running = ReleaseConnection(id);
  if (protocol == Protocol::kHttp2 && running && !options_.http_only &&
      options_.on_grpc_connection) {
    int flags = ::fcntl(fd, F_GETFL, 0);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);  // gRPC's poller expects it
    options_.on_grpc_connection(fd);
  } else {
    ::close(fd);
  }
  FinishConnection(id);
}

// Peeks until the bytes seen either stop matching the HTTP/2 preface (HTTP/1)
// or match all 24 of it (HTTP/2). Nothing is consumed. SO_RCVLOWAT is raised
// to one byte more than already seen so poll() sleeps until new bytes arrive
// instead of spinning on the ones already buffered; it is put back to 1 for
// whoever reads the socket next.
ClientListener::Protocol ClientListener::DetectProtocol(int fd) {
  const auto deadline = SteadyClock::now() + options_.read_timeout;
  char peeked[kHttp2Preface.size()];
  int want = 1;
  Protocol result = Protocol::kClosed;
  for (;;) {
    if (stopping_.load()) break;
    SetReceiveLowWatermark(fd, want);
    if (WaitFor(fd, POLLIN | POLLRDHUP, deadline) <= 0) break;  // timeout or error
    ssize_t n = ::recv(fd, peeked, sizeof(peeked), MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) break;  // closed before saying anything
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      break;
    }
    if (std::memcmp(peeked, kHttp2Preface.data(), static_cast<size_t>(n)) != 0) {
      result = Protocol::kHttp1;
      break;
    }
    if (static_cast<size_t>(n) == kHttp2Preface.size()) {
      result = Protocol::kHttp2;
      break;
    }
    if (n < want) break;  // woken without new bytes: the peer half-closed
    want = static_cast<int>(n) + 1;
  }
  SetReceiveLowWatermark(fd, 1);
  return result;
}

void ClientListener::ServeHttp1(int fd, const std::string& remote_address) {
  FdStream stream(fd);
  beast::flat_buffer buffer(options_.max_header_bytes + kReadSlackBytes);
  for (;;) {
    if (stopping_.load()) return;
    stream.set_read_deadline(SteadyClock::now() + options_.read_timeout);
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<uint32_t>(options_.max_header_bytes));
    parser.body_limit(options_.max_body_bytes);
    beast::error_code ec;
    bhttp::read_header(stream, buffer, parser, ec);
    if (!ec && parser.get().version() == 11 &&
        EqualsIgnoreCase(ToStd(parser.get()[bhttp::field::expect]), "100-continue")) {
      // curl waits a second for this before sending a body over 1 KiB.
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      stream.set_write_deadline(SteadyClock::now() + options_.write_timeout);
      net::write(stream, net::buffer(kContinue.data(), kContinue.size()), ec);
    }
    if (!ec) bhttp::read(stream, buffer, parser, ec);
    stream.set_write_deadline(SteadyClock::now() + options_.write_timeout);
    if (ec) {
      if (auto response = ReadErrorResponse(ec)) {
        WriteResponse(stream, *response, options_.default_headers, 11, /*keep_alive=*/false,
                      /*head_only=*/false);
      }
      return;
    }

    bhttp::request<bhttp::string_body> req = parser.release();
    HttpRequest request;
    request.method = std::string(ToStd(req.method_string()));
    request.target = std::string(ToStd(req.target()));
    size_t question = request.target.find('?');
    request.path = request.target.substr(0, question);
    if (question != std::string::npos) request.query = request.target.substr(question + 1);
    for (const auto& field : req) {
      request.headers.emplace_back(ToStd(field.name_string()), ToStd(field.value()));
    }
    request.body = std::move(req.body());
    request.remote_address = remote_address;

    HttpResponse response = Dispatch(request);
    const bool keep_alive = req.keep_alive() && !stopping_.load();
    if (!WriteResponse(stream, response, options_.default_headers, req.version(), keep_alive,
                       req.method() == bhttp::verb::head)) {
      return;
    }
    if (!keep_alive) return;
  }
}

HttpResponse ClientListener::Dispatch(const HttpRequest& request) {
  Handler handler;
  {
    std::shared_lock<std::shared_mutex> lock(routes_mu_);
    const Route* route = nullptr;
    if (auto it = routes_.find(request.path); it != routes_.end()) {
      route = &it->second;
    } else {
      size_t best = 0;
      for (const auto& [pattern, candidate] : routes_) {
        if (!pattern.empty() && pattern.back() == '/' && pattern.size() > best &&
            request.path.compare(0, pattern.size(), pattern) == 0) {
          best = pattern.size();
          route = &candidate;
        }
      }
    }
    if (route == nullptr) return TextResponse(404, "404 page not found\n");
    auto it = route->by_method.find(request.method);
    if (it == route->by_method.end()) {
      std::string allow;
      for (const auto& [method, unused] : route->by_method) {
        if (!allow.empty()) allow += ", ";
        allow += method;
      }
      HttpResponse response = TextResponse(405, "Method Not Allowed\n");
      response.headers.emplace_back("Allow", allow);
      return response;
    }
    handler = it->second;
  }
  // Handlers report failures as status codes; an exception escaping one is a
  // bug, but it must not take the listener down with it.
  try {
    return handler(request);
  } catch (const std::exception& e) {
    CAIRN_LOG(kError) << "http handler for " << request.method << " " << request.path
                      << " threw: " << e.what();
  } catch (...) {
    CAIRN_LOG(kError) << "http handler for " << request.method << " " << request.path << " threw";
  }
  return TextResponse(500, "Internal Server Error\n");
}

void ClientListener::Stop() {
  if (!started_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_.exchange(true)) return;
  }
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    ssize_t ignored = ::write(wake_fd_, &one, sizeof(one));
    (void)ignored;
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;

  // Shutting down the read side wakes every reader with end-of-stream while
  // leaving the write side open, so a request already being handled still
  // gets its response before its connection closes.
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, conn] : connections_) {
      if (conn.fd >= 0) ::shutdown(conn.fd, SHUT_RD);
      threads.push_back(std::move(conn.thread));
    }
  }
  for (std::thread& t : threads) {
    if (t.joinable()) t.join();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    connections_.clear();
    finished_.clear();
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
  wake_fd_ = -1;
}

}  // namespace cairn::http
