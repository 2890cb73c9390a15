// The client library as an outside project gets it: `cmake --install` of the
// "client" component into a fresh prefix, then examples/find_package_consumer
// (find_package(jobstate), jobstate::client) configured and built out of tree
// against that prefix only, then run against a real server.
#include <gtest/gtest.h>

#include <filesystem>

#include "jobstate/client.h"
#include "tests/client_test_support.h"

namespace jobstate::client {
namespace {

using jobstate::testing::client_test_server;
using jobstate::testing::run_process;
using jobstate::testing::ServeProcess;
using jobstate::testing::TempDir;
using std::chrono::minutes;

TEST(ClientInstallTest, FindPackageConsumerBuildsAndRunsAgainstTheInstalledLibrary) {
  TempDir dir;
  const std::string build_dir = std::filesystem::path(JOBSTATE_BIN).parent_path().parent_path();
  const std::string prefix = dir.sub("prefix");

  auto installed =
      run_process({"cmake", "--install", build_dir, "--prefix", prefix, "--component", "client"},
                  {}, minutes(2));
  ASSERT_EQ(installed.status, 0) << installed.out << installed.err;
  EXPECT_TRUE(std::filesystem::exists(prefix + "/include/jobstate/job_run.h"));
  // Only the client: the server's headers and libraries stay out.
  EXPECT_FALSE(std::filesystem::exists(prefix + "/include/eventstore"));

  const std::string consumer_build = dir.sub("consumer-build");
  auto configured = run_process(
      {"cmake", "-S", std::string(JOBSTATE_SOURCE_DIR) + "/examples/find_package_consumer", "-B",
       consumer_build, "-DCMAKE_PREFIX_PATH=" + prefix},
      {}, minutes(3));
  ASSERT_EQ(configured.status, 0) << configured.out << configured.err;
  auto built = run_process({"cmake", "--build", consumer_build, "-j", "1"}, {}, minutes(5));
  ASSERT_EQ(built.status, 0) << built.out << built.err;

  // The consumer links libcurl and nlohmann_json, not RocksDB or Pistache.
  const std::string link_line =
      jobstate::testing::read_file(consumer_build + "/CMakeFiles/consumer.dir/link.txt");
  EXPECT_EQ(link_line.find("rocksdb"), std::string::npos) << link_line;
  EXPECT_EQ(link_line.find("pistache"), std::string::npos) << link_line;
  EXPECT_NE(link_line.find("curl"), std::string::npos) << link_line;

  ServeProcess server(client_test_server(dir.sub("data")));
  ASSERT_FALSE(server.url().empty()) << server.output();
  auto ran = run_process({consumer_build + "/consumer", server.url()});
  ASSERT_EQ(ran.status, 0) << ran.err;
  const std::string id = ran.out.substr(0, 36);
  EXPECT_EQ(ran.out, id + " succeeded\n");
  ClientOptions o;
  o.base_url = server.url();
  Client client(o);
  auto job = client.get(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->result.at("hello"), "from outside the tree");
}

}  // namespace
}  // namespace jobstate::client
