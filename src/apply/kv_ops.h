// etcd's KV request semantics over the MVCC store: validation as the gRPC
// layer of etcd does it before proposing (v3rpc/key.go), and execution as its
// applier does it (etcdserver/apply.go). Shared by the apply thread (writes)
// and the read path (ranges and read-only txns), so both answer alike.
//
// Thread safety: stateless functions; the views passed in are not shared.
#pragma once

#include "common/status.h"
#include "etcdserverpb/rpc.pb.h"
#include "lease/lessor.h"
#include "mvcc/kv_store.h"

namespace cairn::apply {

// Validation before a request enters the mutation path.
Status CheckRangeRequest(const etcdserverpb::RangeRequest& r);
Status CheckPutRequest(const etcdserverpb::PutRequest& r);
Status CheckDeleteRequest(const etcdserverpb::DeleteRangeRequest& r);
// Includes the op-count limit and etcd's duplicate-key interval check.
Status CheckTxnRequest(const etcdserverpb::TxnRequest& r, int max_txn_ops);

bool IsTxnReadOnly(const etcdserverpb::TxnRequest& r);

// Execution. Headers carry only the revision; the API layer fills the rest.
Result<etcdserverpb::RangeResponse> Range(mvcc::ReadView& view,
                                          const etcdserverpb::RangeRequest& r);
Result<etcdserverpb::PutResponse> Put(mvcc::WriteTxn& txn, const lease::Lessor& lessor,
                                      const etcdserverpb::PutRequest& r);
Result<etcdserverpb::DeleteRangeResponse> DeleteRange(mvcc::WriteTxn& txn,
                                                      const etcdserverpb::DeleteRangeRequest& r);
// `write` is null for a read-only txn evaluated on `view`; otherwise `view`
// must be `*write`.
Result<etcdserverpb::TxnResponse> Txn(mvcc::ReadView& view, mvcc::WriteTxn* write,
                                      const lease::Lessor& lessor,
                                      const etcdserverpb::TxnRequest& r);

// Status for invalid sort options (etcd's ErrGRPCInvalidSortOption).
Status InvalidSortOption();

}  // namespace cairn::apply
