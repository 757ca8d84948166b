// TLS between members (https:// peer URLs), with etcd's --peer-* flags, on
// gRPC's TLS credentials:
//  - the peer server presents --peer-cert-file/--peer-key-file and, when
//    --peer-trusted-ca-file or --peer-client-cert-auth is given, requires
//    and verifies the connecting member's certificate (etcd's rule); with
//    --peer-cert-allowed-cn the certificate's CN must be one of those, checked
//    during the handshake as etcd does;
//  - a member dialing an https peer URL presents --peer-client-cert-file (or
//    --peer-cert-file) and verifies the server against --peer-trusted-ca-file
//    (the system's roots without one) and its URL's host;
//  - --peer-auto-tls: a self-signed certificate under <data-dir>/fixtures/peer,
//    and, as etcd does for self-signed certificates, no verification of the
//    other side's;
//  - the files are watched (re-read every 60 s by gRPC's file watcher), so
//    rotated certificates are picked up without a restart.
// Limits: gRPC 1.51 offers no TLS version or cipher settings, so
// --tls-min-version, --tls-max-version and --cipher-suites apply to the
// client URLs only; peers use gRPC's defaults (TLS 1.2 and 1.3, AEAD suites).
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "api/server_config.h"
#include "common/status.h"

namespace cairn::api {

struct PeerCredentials {
  // For https:// listen peer URLs; null when none is https.
  std::shared_ptr<grpc::ServerCredentials> server;
  // For dialing https:// peer URLs.
  std::shared_ptr<grpc::ChannelCredentials> channel;
};

// Checks the files (etcd's start-up errors) and builds both credentials.
// `data_dir` is where --peer-auto-tls keeps its certificate.
Result<PeerCredentials> BuildPeerCredentials(const ServerConfig& config, const std::string& data_dir);

}  // namespace cairn::api
