// Small helpers shared by tests: a temporary directory removed at scope exit,
// a file's contents and its lines, assertions that print a Result's error instead of just
// "false", and a few store checks (the whole log verified from the genesis
// hash, a column family's contents).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "domain/result.h"
#include "eventstore/database.h"
#include "store/hash_chain.h"
#include "eventstore/log_reader.h"

namespace jobstate::testing {

// A fresh directory under $TMPDIR (or /tmp), deleted with everything in it
// when the object goes out of scope.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/jobstate-test-XXXXXX";
    if (!mkdtemp(tmpl.data())) throw std::system_error(errno, std::generic_category(), "mkdtemp");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name (not created).
  std::string sub(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// The whole file; empty when it cannot be read.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The lines of a text, without the empty one after the final newline.
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);) lines.push_back(line);
  return lines;
}

// "kind: message" of a failed Result, for assertion messages.
template <typename R>
std::string describe_error(const R& r) {
  if (r.ok()) return "ok";
  return std::string(error_code_name(r.error().code)) + ": " + r.error().message;
}

// Reads the whole log and checks what every store must hold: seqs 1..head
// without a gap, each stored hash equal to the hash recomputed from the
// genesis hash, the head naming the last event, and each job's versions
// 1, 2, 3, ... in seq order. *events_out (optional) gets the event count.
inline ::testing::AssertionResult log_is_intact(const EventLog& log,
                                                uint64_t* events_out = nullptr) {
  auto head = log.head();
  if (!head.ok()) return ::testing::AssertionFailure() << "head: " << describe_error(head);
  uint64_t expected_seq = 1;
  std::string previous(kGenesisHash);
  std::unordered_map<JobId, uint64_t> versions;
  std::string problem;
  Status scanned = log.scan(0, UINT64_MAX, [&](const StoredEventView& v) {
    if (v.seq != expected_seq) {
      problem = "seq " + std::to_string(expected_seq) + " missing (next is " +
                std::to_string(v.seq) + ")";
      return false;
    }
    const std::string recomputed = chain_hash(previous, v.canonical_json());
    if (recomputed != v.hash_hex()) {
      problem = "seq " + std::to_string(v.seq) + ": stored hash " + v.hash_hex() +
                " != recomputed " + recomputed;
      return false;
    }
    uint64_t& version = versions[v.job_id];
    if (v.version != version + 1) {
      problem = "seq " + std::to_string(v.seq) + ": job " + v.job_id.to_string() + " version " +
                std::to_string(v.version) + " after " + std::to_string(version);
      return false;
    }
    version = v.version;
    previous = recomputed;
    ++expected_seq;
    return true;
  });
  if (!scanned.ok()) return ::testing::AssertionFailure() << "scan: " << describe_error(scanned);
  if (!problem.empty()) return ::testing::AssertionFailure() << problem;
  if (expected_seq - 1 != head->seq)
    return ::testing::AssertionFailure()
           << "head says " << head->seq << ", log ends at " << expected_seq - 1;
  if (previous != head->hash)
    return ::testing::AssertionFailure()
           << "head hash " << head->hash << " != last event's " << previous;
  if (events_out) *events_out = head->seq;
  return ::testing::AssertionSuccess();
}
inline ::testing::AssertionResult log_is_intact(const Database& db,
                                                uint64_t* events_out = nullptr) {
  return log_is_intact(LogReader(db), events_out);
}

// Every key → value of a column family (empty when it does not exist).
inline std::map<std::string, std::string> family_contents(const Database& db,
                                                          const std::string& name) {
  std::map<std::string, std::string> out;
  auto* cf = db.cf(name);
  if (!cf) return out;
  std::unique_ptr<rocksdb::Iterator> it(db.db()->NewIterator(rocksdb::ReadOptions(), cf));
  for (it->SeekToFirst(); it->Valid(); it->Next())
    out.emplace(it->key().ToString(), it->value().ToString());
  EXPECT_TRUE(it->status().ok()) << it->status().ToString();
  return out;
}

}  // namespace jobstate::testing

// ASSERT_OK(result) / EXPECT_OK(result): the Result must hold a value; on
// failure the error code and message are printed.
#define ASSERT_OK(expr)                                                                      \
  do {                                                                                       \
    const auto& jobstate_ok_r_ = (expr);                                                     \
    ASSERT_TRUE(jobstate_ok_r_.ok()) << ::jobstate::testing::describe_error(jobstate_ok_r_); \
  } while (0)
#define EXPECT_OK(expr)                                                                      \
  do {                                                                                       \
    const auto& jobstate_ok_r_ = (expr);                                                     \
    EXPECT_TRUE(jobstate_ok_r_.ok()) << ::jobstate::testing::describe_error(jobstate_ok_r_); \
  } while (0)
// The Result must be an error with exactly this ErrorCode.
#define EXPECT_ERROR_CODE(expr, expected_code)                                   \
  do {                                                                           \
    const auto& jobstate_err_r_ = (expr);                                        \
    if (jobstate_err_r_.ok()) {                                                  \
      ADD_FAILURE() << "expected " << ::jobstate::error_code_name(expected_code) \
                    << ", got success";                                          \
    } else {                                                                     \
      EXPECT_EQ(::jobstate::error_code_name(jobstate_err_r_.error().code),       \
                std::string(::jobstate::error_code_name(expected_code)))         \
          << jobstate_err_r_.error().message;                                    \
    }                                                                            \
  } while (0)
