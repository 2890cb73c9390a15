// The postgres backend's WebhookCursors (store/webhook_cursors.h): the table
// jobstate_webhook_cursors(url text primary key, seq bigint), created with
// CREATE TABLE IF NOT EXISTS on first use (not part of the store's schema
// version: older jobstate binaries ignore it). Every node of a shared store
// sees the same cursors; save() never moves one back (GREATEST), so a node
// that lost the lead cannot undo the leader's progress.
#pragma once

#include <memory>
#include <string>

#include "domain/result.h"
#include "store/webhook_cursors.h"

namespace jobstate {

// Connects with `uri` and creates the table when missing. kUnavailable when
// the database cannot be reached. The connection is reopened when it breaks.
Result<std::unique_ptr<WebhookCursors>> open_pg_webhook_cursors(const std::string& uri);

}  // namespace jobstate
