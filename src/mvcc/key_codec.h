// Order-preserving encodings of MVCC records in the storage engine.
//
// Column kKey holds one record per version of a key:
//     escape(key) 0x00 0x01 BE64(~main) BE64(~sub)  ->  'v' KeyValue | 't' (tombstone)
// escape() turns every 0x00 byte into 0x00 0xFF, so the encoded keys sort as
// the user keys do and 0x00 0x01 ends a key; the inverted revision puts the
// newest version first, so one Seek finds "the version visible at rev R".
// The sub revision is part of the key because one txn may put and then
// delete the same key (etcd allows it with a from-key delete): both changes
// stay in history for watchers.
//
// Column kRev is the change log, one record per change:
//     BE64(main) BE64(sub)  ->  'v'|'t' key
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace cairn::mvcc {

// escape(key): the prefix all versions of `key` share, without terminator.
std::string EscapeKey(std::string_view key);
// escape(key) 0x00 0x01: the prefix of exactly this key's versions.
std::string KeyPrefix(std::string_view key);
// A string greater than every version of `key` and smaller than any version
// of the next key.
std::string KeyPrefixEnd(std::string_view key);
constexpr size_t kVersionSuffixBytes = 16;
// Encoded record key of `key` at revision {main, sub}.
std::string VersionKey(std::string_view key, int64_t main, int64_t sub);
// A seek target that lands on the newest version of `key` at or below main
// revision `rev` (any sub revision).
std::string VersionSeekKey(std::string_view key, int64_t rev);
// Splits an encoded record key; returns false if malformed.
bool DecodeVersionKey(std::string_view encoded, std::string* key, int64_t* main, int64_t* sub);
// The main revision of an encoded record key (REQUIRES: well formed).
int64_t VersionMain(std::string_view encoded);
// Given an encoded version key, the seek target of the next user key.
std::string NextKeySeekTarget(std::string_view encoded_version_key);

std::string RevKey(int64_t main, int64_t sub);

// etcd's key-bucket record of a version (its bbolt backend and snapshots):
// the key BE64(main) '_' BE64(sub), 't' appended for a deletion, and a
// deletion's value, a KeyValue holding only the key. A live version's value
// is the KeyValue cairn stores after its 'v'.
std::string EtcdRevisionKey(int64_t main, int64_t sub, bool tombstone);
std::string EtcdTombstoneValue(std::string_view key);
bool DecodeRevKey(std::string_view encoded, int64_t* main, int64_t* sub);

}  // namespace cairn::mvcc
