// The plain request / response values HTTP/1.x handlers see on the client
// port. Values only: no I/O, no Beast types.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cairn::http {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET"
  std::string target;  // as sent: "/health?exclude=NOSPACE"
  std::string path;    // "/health" (not percent-decoded)
  std::string query;   // "exclude=NOSPACE" (raw, without '?')
  HeaderList headers;  // in arrival order, names as sent
  std::string body;
  std::string remote_address;  // "127.0.0.1:53122"

  // The first header named `name` (ASCII case-insensitive), or "" if none.
  std::string_view Header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  HeaderList headers;  // extra headers; Content-Length and Connection are set here
};

using Handler = std::function<HttpResponse(const HttpRequest&)>;

// A plain-text response as Go's http.Error writes it.
HttpResponse TextResponse(int status, std::string body);

}  // namespace cairn::http
