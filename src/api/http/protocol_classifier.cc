#include "api/http/protocol_classifier.h"

#include <algorithm>

namespace cairn::http {

ConnectionProtocol ClassifyPrefix(std::string_view first_bytes) {
  // 0x16 is the handshake content type; no HTTP method starts with it, and
  // the preface starts with 'P', so this check never steals a plain client.
  if (!first_bytes.empty() && first_bytes[0] == '\x16') {
    if (first_bytes.size() < 2) return ConnectionProtocol::kNeedMore;
    if (first_bytes[1] == '\x03') return ConnectionProtocol::kTls;
    return ConnectionProtocol::kHttp1;
  }
  if (!first_bytes.empty() && first_bytes[0] == '\0') {
    const size_t m = std::min(first_bytes.size(), kPeerStreamMagic.size());
    if (first_bytes.substr(0, m) != kPeerStreamMagic.substr(0, m)) return ConnectionProtocol::kHttp1;
    return m == kPeerStreamMagic.size() ? ConnectionProtocol::kPeerStream : ConnectionProtocol::kNeedMore;
  }
  const size_t n = first_bytes.size() < kHttp2Preface.size() ? first_bytes.size()
                                                             : kHttp2Preface.size();
  if (first_bytes.substr(0, n) != kHttp2Preface.substr(0, n)) return ConnectionProtocol::kHttp1;
  return n == kHttp2Preface.size() ? ConnectionProtocol::kHttp2 : ConnectionProtocol::kNeedMore;
}

}  // namespace cairn::http
