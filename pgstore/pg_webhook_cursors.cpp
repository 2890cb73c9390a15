#include "pgstore/pg_webhook_cursors.h"

#include <mutex>

#include "pgstore/pg.h"

namespace jobstate {

namespace {

// Serialises the table's creation among nodes starting at once (two
// concurrent CREATE TABLE IF NOT EXISTS can collide in the catalog).
constexpr const char* kCreateTable =
    "BEGIN; SELECT pg_advisory_xact_lock(7239003); "
    "CREATE TABLE IF NOT EXISTS jobstate_webhook_cursors "
    "(url text PRIMARY KEY, seq bigint NOT NULL); COMMIT";

class PgWebhookCursors final : public WebhookCursors {
 public:
  explicit PgWebhookCursors(std::string uri) : uri_(std::move(uri)) {}

  Status connect() {
    std::lock_guard lock(mu_);
    auto c = connection();
    if (!c) return c.error();
    return ok_status();
  }

  Result<std::optional<uint64_t>> load(const std::string& url) override {
    std::lock_guard lock(mu_);
    auto c = connection();
    if (!c) return c.error();
    auto rows = (*c)->exec("SELECT seq FROM jobstate_webhook_cursors WHERE url = $1", {url});
    if (!rows) return rows.error();
    if (rows->size() == 0) return std::optional<uint64_t>();
    return std::optional<uint64_t>(static_cast<uint64_t>(rows->i64(0, 0)));
  }

  Result<uint64_t> load_or_init(const std::string& url, uint64_t initial) override {
    std::lock_guard lock(mu_);
    auto c = connection();
    if (!c) return c.error();
    // The first node's initial value wins; the others read it back.
    auto rows = (*c)->exec(
        "WITH added AS (INSERT INTO jobstate_webhook_cursors (url, seq) VALUES ($1, $2) "
        "ON CONFLICT (url) DO NOTHING RETURNING seq) "
        "SELECT seq FROM added UNION ALL "
        "SELECT seq FROM jobstate_webhook_cursors WHERE url = $1 AND NOT EXISTS (SELECT 1 FROM "
        "added)",
        {url, pg::num(static_cast<int64_t>(initial))});
    if (!rows) return rows.error();
    if (rows->size() != 1)
      return make_error(ErrorCode::kInternal, "webhook cursor of " + url + ": no row");
    return static_cast<uint64_t>(rows->i64(0, 0));
  }

  Status save(const std::string& url, uint64_t seq) override {
    std::lock_guard lock(mu_);
    auto c = connection();
    if (!c) return c.error();
    auto rows = (*c)->exec(
        "INSERT INTO jobstate_webhook_cursors (url, seq) VALUES ($1, $2) ON CONFLICT (url) "
        "DO UPDATE SET seq = GREATEST(jobstate_webhook_cursors.seq, EXCLUDED.seq)",
        {url, pg::num(static_cast<int64_t>(seq))});
    if (!rows) return rows.error();
    return ok_status();
  }

 private:
  // REQUIRES: mu_ held. The open connection, reopened (and the table made
  // sure of) when it broke.
  Result<pg::Connection*> connection() {
    if (conn_ && conn_->ok()) return conn_.get();
    conn_.reset();
    auto c = pg::Connection::open(uri_);
    if (!c) return c.error();
    if (auto s = (*c)->exec_script(kCreateTable); !s) return s.error();
    conn_ = std::move(*c);
    return conn_.get();
  }

  std::string uri_;
  std::mutex mu_;
  std::unique_ptr<pg::Connection> conn_;
};

}  // namespace

Result<std::unique_ptr<WebhookCursors>> open_pg_webhook_cursors(const std::string& uri) {
  auto cursors = std::make_unique<PgWebhookCursors>(uri);
  if (auto s = cursors->connect(); !s) return s.error();
  return std::unique_ptr<WebhookCursors>(std::move(cursors));
}

}  // namespace jobstate
