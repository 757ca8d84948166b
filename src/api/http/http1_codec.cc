#include "api/http/http1_codec.h"

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <cstdio>
#include <limits>

namespace cairn::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;

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

bool HasLineBreak(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

// The answer to a request that could not be read, or none (just close).
std::optional<HttpResponse> ReadErrorResponse(const beast::error_code& ec) {
  if (ec == bhttp::error::body_limit) {
    return TextResponse(413, "http: request body too large\n");
  }
  if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
    return TextResponse(431, "431 Request Header Fields Too Large");
  }
  if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message) {
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

HttpResponse TextResponse(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  // As Go's http.Error, so clients that sniff see the same thing.
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return response;
}

struct Http1RequestReader::Parser {
  bhttp::request_parser<bhttp::string_body> parser;
};

Http1RequestReader::Http1RequestReader(size_t max_header_bytes, size_t max_body_bytes)
    : max_header_bytes_(max_header_bytes), max_body_bytes_(max_body_bytes) {
  State ignored = Next();
  (void)ignored;
}

Http1RequestReader::~Http1RequestReader() = default;

bool Http1RequestReader::started() const {
  return !pending_.empty() || parser_->parser.got_some();
}

Http1RequestReader::State Http1RequestReader::Feed(std::string_view bytes) {
  pending_.append(bytes.data(), bytes.size());
  return Parse();
}

Http1RequestReader::State Http1RequestReader::FeedEof() {
  if (state_ != State::kNeedMore) return state_;
  beast::error_code ec;
  parser_->parser.put_eof(ec);
  if (!ec && parser_->parser.is_done()) return state_ = State::kDone;
  error_response_.reset();  // a half-sent request gets no answer, as Go's server
  return state_ = State::kError;
}

Http1RequestReader::State Http1RequestReader::Parse() {
  auto& parser = parser_->parser;
  while (!pending_.empty() && !parser.is_done()) {
    beast::error_code ec;
    const size_t used = parser.put(net::buffer(pending_.data(), pending_.size()), ec);
    pending_.erase(0, used);
    if (ec == bhttp::error::need_more) break;
    if (ec) {
      error_response_ = ReadErrorResponse(ec);
      return state_ = State::kError;
    }
    if (used == 0) break;
  }
  if (parser.is_done()) return state_ = State::kDone;
  return state_ = State::kNeedMore;
}

bool Http1RequestReader::TakeContinueRequest() {
  auto& parser = parser_->parser;
  if (continue_checked_ || !parser.is_header_done()) return false;
  continue_checked_ = true;
  return !parser.is_done() && parser.get().version() == 11 &&
         EqualsIgnoreCase(ToStd(parser.get()[bhttp::field::expect]), "100-continue");
}

HttpRequest Http1RequestReader::TakeRequest(std::string remote_address) {
  bhttp::request<bhttp::string_body> req = parser_->parser.release();
  keep_alive_ = req.keep_alive();
  version_ = req.version();
  head_ = req.method() == bhttp::verb::head;
  HttpRequest request;
  request.method = std::string(ToStd(req.method_string()));
  request.target = std::string(ToStd(req.target()));
  const size_t question = request.target.find('?');
  request.path = request.target.substr(0, question);
  if (question != std::string::npos) request.query = request.target.substr(question + 1);
  for (const auto& field : req) {
    request.headers.emplace_back(ToStd(field.name_string()), ToStd(field.value()));
  }
  request.body = std::move(req.body());
  request.remote_address = std::move(remote_address);
  return request;
}

Http1RequestReader::State Http1RequestReader::Next() {
  parser_ = std::make_unique<Parser>();
  parser_->parser.header_limit(static_cast<uint32_t>(
      std::min<size_t>(max_header_bytes_, std::numeric_limits<uint32_t>::max())));
  parser_->parser.body_limit(max_body_bytes_);
  continue_checked_ = false;
  error_response_.reset();
  state_ = State::kNeedMore;
  return Parse();
}

namespace {

bhttp::response<bhttp::string_body> MakeHead(const HttpResponse& response, const HeaderList& defaults,
                                              unsigned version) {
  bhttp::response<bhttp::string_body> res;
  res.version(version == 10 ? 10 : 11);
  int status = response.status;
  if (status < 100 || status > 999) status = 500;
  res.result(static_cast<unsigned>(status));
  for (const auto& [name, value] : defaults) {
    if (name.empty() || HasLineBreak(name) || HasLineBreak(value)) continue;
    res.set(name, value);
  }
  for (const auto& [name, value] : response.headers) {
    if (name.empty() || HasLineBreak(name) || HasLineBreak(value)) continue;
    res.insert(name, value);
  }
  if (!response.content_type.empty() && !HasLineBreak(response.content_type)) {
    res.set(bhttp::field::content_type, response.content_type);
  }
  return res;
}

std::string Serialize(bhttp::response<bhttp::string_body>& res, bool head_only) {
  std::string out;
  bhttp::serializer<false, bhttp::string_body> serializer(res);
  serializer.split(head_only);
  beast::error_code ec;
  while (!ec && !(head_only ? serializer.is_header_done() : serializer.is_done())) {
    serializer.next(ec, [&](beast::error_code&, const auto& buffers) {
      size_t n = 0;
      for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers);
           ++it) {
        net::const_buffer b(*it);
        out.append(static_cast<const char*>(b.data()), b.size());
        n += b.size();
      }
      serializer.consume(n);
    });
  }
  return out;
}

}  // namespace

std::string SerializeResponse(const HttpResponse& response, const HeaderList& defaults,
                              unsigned version, bool keep_alive, bool head_only) {
  auto res = MakeHead(response, defaults, version);
  res.keep_alive(keep_alive);
  res.content_length(response.body.size());
  if (!head_only) res.body() = response.body;
  return Serialize(res, head_only);
}

std::string SerializeStreamHead(const HttpResponse& head, const HeaderList& defaults, unsigned version,
                                bool keep_alive) {
  auto res = MakeHead(head, defaults, version);
  if (version == 10) {
    res.keep_alive(false);
  } else {
    res.keep_alive(keep_alive);
    res.chunked(true);
  }
  return Serialize(res, /*head_only=*/true);
}

std::string SerializeChunk(std::string_view bytes) {
  if (bytes.empty()) return "";
  char size[32];
  const int n = std::snprintf(size, sizeof(size), "%zx\r\n", bytes.size());
  std::string out(size, static_cast<size_t>(n));
  out.append(bytes);
  out.append("\r\n");
  return out;
}

}  // namespace cairn::http
