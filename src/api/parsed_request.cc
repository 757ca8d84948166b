#include "api/parsed_request.h"

#include <google/protobuf/io/coded_stream.h>

namespace cairn::api {

bool ParsedRequest::ParseInto(int recursion_limit, google::protobuf::Message* out,
                              ParseError* error) const {
  bool ok = false;
  {
    // Reads the slices in place: a request may be MiBs.
    grpc::ProtoBufferReader reader(&bytes_);
    if (!reader.status().ok()) {
      error->reason = reader.status().error_message();
      return false;
    }
    google::protobuf::io::CodedInputStream input(&reader);
    input.SetRecursionLimit(recursion_limit);
    ok = out->ParseFromCodedStream(&input) && input.ConsumedEntireMessage();
  }
  if (!ok) {
    // Protobuf C++ gives no reason; grpc-go's decoder's ("unexpected EOF",
    // "proto: wrong wireType ...") cannot be reproduced.
    error->reason = "proto: cannot parse invalid wire-format data as " +
                    out->GetDescriptor()->full_name();
  }
  bytes_.Clear();
  return ok;
}

grpc::Status UnmarshalError(const std::string& reason) {
  return grpc::Status(grpc::StatusCode::INTERNAL, "grpc: error unmarshalling request: " + reason);
}

grpc::Status StreamUnmarshalError(const std::string& reason) {
  return grpc::Status(grpc::StatusCode::INTERNAL,
                      "grpc: failed to unmarshal the received message " + reason);
}

}  // namespace cairn::api
