// consumer URL: runs one job through the installed jobstate client library
// and prints its id and final state.
#include <jobstate/job_run.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer SERVER_URL\n");
    return 2;
  }
  jobstate::client::ClientOptions server;
  server.base_url = argv[1];
  jobstate::client::JobRunOptions options;
  options.create.type = "consumer";
  auto run = jobstate::client::JobRun::start(server, options);
  if (!run) {
    std::fprintf(stderr, "consumer: %s\n", run.problem().describe().c_str());
    return 1;
  }
  (*run)->set_progress(1.0, "done");
  auto done = (*run)->succeed({{"hello", "from outside the tree"}});
  if (!done) {
    std::fprintf(stderr, "consumer: %s\n", done.problem().describe().c_str());
    return 1;
  }
  std::printf("%s %s\n", done->id.c_str(), done->state.c_str());
  return 0;
}
