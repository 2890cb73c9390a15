// WebhookCursors (store/webhook_cursors.h) as open_webhook_cursors gives
// them: files next to a RocksDB store, and the postgres table with
// JOBSTATE_TEST_STORE=postgres (ctest's pg.webhooks_cursors_test). A cursor
// is stored once by load_or_init and kept, save() never moves it back, it
// outlives the object that wrote it, and a leftover temporary file from a
// crash mid-save changes nothing.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <memory>

#include "postgres_fixture.h"
#include "service/open_store.h"
#include "test_util.h"
#include "webhooks/file_cursors.h"

namespace jobstate::testing {
namespace {

class WebhookCursorsTest : public ::testing::Test {
 protected:
  WebhookCursorsTest() {
    if (testing_postgres()) postgres_ = std::make_unique<TestPostgres>();
    ::mkdir(dir_.sub("data").c_str(), 0755);  // the store's directory, as open_store leaves it
  }
  std::string location() const { return postgres_ ? postgres_->uri() : dir_.sub("data"); }
  std::unique_ptr<WebhookCursors> open() {
    auto c = open_webhook_cursors(location());
    EXPECT_OK(c);
    return c ? std::move(*c) : nullptr;
  }

  TempDir dir_;
  std::unique_ptr<TestPostgres> postgres_;
};

TEST_F(WebhookCursorsTest, InitOnceSaveForwardOnlyAndDurable) {
  const std::string a = "http://127.0.0.1:9/a";
  const std::string b = "https://user:pw@hooks.example/b?x=1";
  {
    auto cursors = open();
    ASSERT_TRUE(cursors);
    auto none = cursors->load(a);
    ASSERT_OK(none);
    EXPECT_FALSE(none->has_value());
    // The first initial value is stored; a later one does not replace it.
    auto first = cursors->load_or_init(a, 17);
    ASSERT_OK(first);
    EXPECT_EQ(*first, 17u);
    auto again = cursors->load_or_init(a, 99);
    ASSERT_OK(again);
    EXPECT_EQ(*again, 17u);
    ASSERT_OK(cursors->save(a, 20));
    ASSERT_OK(cursors->save(a, 19));  // never backwards
    auto loaded = cursors->load(a);
    ASSERT_OK(loaded);
    EXPECT_EQ(loaded->value_or(0), 20u);
    // Each URL its own.
    ASSERT_OK(cursors->save(b, 3));
    EXPECT_EQ(cursors->load(b)->value_or(0), 3u);
    EXPECT_EQ(cursors->load(a)->value_or(0), 20u);
  }
  // Another object (another process, another node) reads what was saved.
  auto reopened = open();
  ASSERT_TRUE(reopened);
  EXPECT_EQ(reopened->load(a)->value_or(0), 20u);
  EXPECT_EQ(reopened->load(b)->value_or(0), 3u);
  // A node that lost the lead and saves an older cursor does not move it back.
  ASSERT_OK(reopened->save(a, 5));
  EXPECT_EQ(open()->load(a)->value_or(0), 20u);
}

// RocksDB's cursor files (pg.webhooks_cursors_test leaves out *RocksDbOnly).
class WebhookCursorsRocksDbOnly : public WebhookCursorsTest {};

TEST_F(WebhookCursorsRocksDbOnly, FilesSurviveATornTemporaryFile) {
  ASSERT_EQ(postgres_, nullptr);
  auto opened = webhooks::FileWebhookCursors::open(dir_.sub("data") + "/webhooks");
  ASSERT_OK(opened);
  auto& cursors = **opened;
  const std::string url = "http://127.0.0.1:9/torn";
  ASSERT_OK(cursors.save(url, 41));
  // A crash between writing the temporary file and renaming it.
  std::ofstream(cursors.path_of(url) + ".tmp") << "{\"seq\": 4";
  auto again = webhooks::FileWebhookCursors::open(dir_.sub("data") + "/webhooks");
  ASSERT_OK(again);
  EXPECT_EQ((*again)->load(url)->value_or(0), 41u);
  ASSERT_OK((*again)->save(url, 42));
  EXPECT_EQ((*again)->load(url)->value_or(0), 42u);
  // A file that is not a cursor for this URL is an error, not a zero.
  std::ofstream(cursors.path_of(url), std::ios::trunc) << "garbage";
  auto broken = webhooks::FileWebhookCursors::open(dir_.sub("data") + "/webhooks");
  ASSERT_OK(broken);
  EXPECT_ERROR_CODE((*broken)->load(url), ErrorCode::kCorruption);
}

}  // namespace
}  // namespace jobstate::testing
