// A throwaway PostgreSQL 15 for tests: scripts/pg-test-server starts it in a
// directory of its own (initdb as an unprivileged user, a free loopback
// port, fsync and synchronous_commit on) and stops it when the object goes.
// Tests that run "on both backends" ask test_store_location() where their
// store lives: JOBSTATE_TEST_STORE=postgres selects PostgreSQL.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>

#include "test_util.h"

namespace jobstate::testing {

class TestPostgres {
 public:
  // Throws std::runtime_error when the server does not start.
  TestPostgres() {
    const std::string cmd = std::string(JOBSTATE_SOURCE_DIR) + "/scripts/pg-test-server start " +
                            dir_.path() + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) throw std::runtime_error("cannot run scripts/pg-test-server");
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof buf, p)) out += buf;
    const int status = pclose(p);
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    if (status != 0 || out.rfind("postgresql://", 0) != 0)
      throw std::runtime_error("scripts/pg-test-server start failed: " + out);
    uri_ = out;
  }
  ~TestPostgres() {
    const std::string cmd = std::string(JOBSTATE_SOURCE_DIR) + "/scripts/pg-test-server stop " +
                            dir_.path() + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "pg-test-server stop failed\n");
  }
  TestPostgres(const TestPostgres&) = delete;
  TestPostgres& operator=(const TestPostgres&) = delete;

  // postgresql://jobstate@127.0.0.1:PORT/jobstate
  const std::string& uri() const { return uri_; }

 private:
  TempDir dir_;
  std::string uri_;
};

// True when this test run is for the postgres backend (JOBSTATE_TEST_STORE=postgres).
inline bool testing_postgres() {
  const char* v = std::getenv("JOBSTATE_TEST_STORE");
  return v && std::string(v) == "postgres";
}

}  // namespace jobstate::testing
