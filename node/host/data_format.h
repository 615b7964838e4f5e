// The data dir's format version: `<data-dir>/format`, one line
// "starling data dir format N". A plain file beside the store, so that it is
// read before RocksDB opens (which writes) and an operator can `cat` it.
//
// Formats (each a step a newer starlingd takes in place, after a checkpoint):
//   1  every data dir before the format was recorded (no file)
//   2  the format is recorded
//   3  the store also keeps the release that last ran on the dir
//      (node/release); starlingd-next writes it, this release reads up to 2
// A starlingd refuses a data dir of a newer format than its version unit's
// DataFormat() and touches nothing; one of an older format is checkpointed
// to `<data-dir>/backup-<old format>` (RocksDB checkpoint plus the keyring),
// then migrated step by step.
#pragma once

#include <cstdint>
#include <string>

#include "starling/status.h"
#include "starling/store/node_store.h"

namespace starling::node {

// What the data dir at `dir` holds: 0 for a new (empty or missing) dir.
Result<uint32_t> ReadDataFormat(const std::string& dir);

// Why this binary cannot run on `dir`, or OK: a format newer than it
// writes. Reads the format file only.
Status CheckDataFormat(const std::string& dir, uint32_t ours, const std::string& release);

// Brings the open store in `dir`, of format `found` when it was opened (0:
// new), to format `ours`: a checkpoint first when it is older, then each
// step, then the format file (synced, renamed into place). `release` is
// recorded by format 3. What it did goes to the log.
Status MigrateDataDir(store::NodeStore& store, const std::string& dir, uint32_t found, uint32_t ours,
                      const std::string& release);

// Takes the open store in `dir` down to format `to` (for a restart into an
// older release): a checkpoint first, as for a migration up, then each
// step down. Formats this code does not know how to leave are refused.
Status StepDataDirDown(store::NodeStore& store, const std::string& dir, uint32_t to);

// `starlingd --restore-backup NAME`: replaces the store in `dir` (the daemon
// stopped) with the checkpoint `dir/NAME`, keeping what it replaces in
// `dir/replaced-<format>`. Refuses a backup of a format newer than `ours`.
Status RestoreBackup(const std::string& dir, const std::string& name, uint32_t ours);

// A line for `starlingd --check-data-dir`: what this binary would do with
// `dir`; kConflict when it would refuse it.
Result<std::string> DescribeDataDir(const std::string& dir, uint32_t ours, const std::string& release);

}  // namespace starling::node
