// The one way tests open a store: the RocksDB JobStore on a temporary
// directory and a ManualClock, opened, closed and reopened by the test.
//
// - StoreTest, a GoogleTest fixture base: dir_, clock_ and store_ (the
//   concrete JobStore, for tests that look at RocksDB itself: db(),
//   projection()), and store() (the Store interface, for tests of behaviour
//   any backend must have). open_store() fails the test on an error.
// - open_test_store() / test_store_options(): the same options for a store at
//   any path on any clock, for tests that open several stores, open one in a
//   child process, or expect an open to fail.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "domain/clock.h"
#include "domain/result.h"
#include "projections/job_store.h"
#include "test_util.h"

namespace jobstate::testing {

// The options of a test store at `path` on `clock`. REQUIRES: clock outlives
// the store.
inline JobStoreOptions test_store_options(const std::string& path, const Clock& clock,
                                          WriterOptions writer = {},
                                          bool create_if_missing = true) {
  JobStoreOptions o;
  o.data_dir = path;
  o.clock = &clock;
  o.writer = std::move(writer);
  o.create_if_missing = create_if_missing;
  return o;
}

// Opens (creating it unless told not to) the store at `path` on `clock`.
inline Result<std::unique_ptr<JobStore>> open_test_store(const std::string& path,
                                                         const Clock& clock,
                                                         WriterOptions writer = {},
                                                         bool create_if_missing = true) {
  return JobStore::open(test_store_options(path, clock, std::move(writer), create_if_missing));
}

// 2027-01-15T08:00:00.000Z, the default start of a fixture's clock.
inline constexpr TimeMs kStoreTestT0 = 1'800'000'000'000;

class StoreTest : public ::testing::Test {
 protected:
  explicit StoreTest(TimeMs start_ms = kStoreTestT0) : clock_(start_ms) {}
  ~StoreTest() override { close_store(); }

  // Opens the store at store_path() (again, after close_store()) on clock_, or
  // on the clock given to use_clock(). Fails the test when it cannot;
  // store_ then stays empty. REQUIRES: the store is closed.
  void open_store(WriterOptions writer = {}) {
    auto s = open_test_store(store_path(), *store_clock_, std::move(writer));
    ASSERT_OK(s);
    store_ = std::move(*s);
  }
  // Stops the writer (finishing what is queued) and closes the store.
  void close_store() { store_.reset(); }
  // What a restarted server sees: the same directory, no in-memory state.
  void reopen_store(WriterOptions writer = {}) {
    close_store();
    open_store(std::move(writer));
  }

  // The store through its interface. REQUIRES: open.
  Store& store() { return *store_; }
  // The store's directory (inside dir_).
  std::string store_path() const { return dir_.sub("store"); }
  // Stores opened from now on run on `clock` instead of clock_ (a real clock
  // for tests that wait on real heartbeats). REQUIRES: clock outlives them.
  void use_clock(const Clock& clock) { store_clock_ = &clock; }

  TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<JobStore> store_;

 private:
  const Clock* store_clock_ = &clock_;
};

}  // namespace jobstate::testing
