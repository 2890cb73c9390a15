// report_service: a small HTTP service that renders "reports" slowly, the
// way a real service triggers long work and lets its callers poll.
//
//   POST /reports {"pages": 20}        → 202 {"job_id": ..., "status_url": "/reports/<id>"}
//   GET  /reports/<id>                 → 200 {"state", "progress", "result", "error"}
//
// The trigger answers at once: it only creates a jobstate job (durable
// before the 202), then hands the id to a worker thread. The worker takes
// the job with a JobRun guard, reports progress page by page, stops when a
// cancel is requested, and succeeds. If rendering throws, the guard's
// destructor fails the job with code "abandoned" and the exception's message
// — nobody has to remember to. A page listed in "fail_at_page" throws, to
// show that path.
//
// Status reads go straight to jobstate, so they survive a restart of this
// service; a job whose worker died mid-way is failed by jobstate's watchdog.
//
// Usage: report_service --jobstate http://127.0.0.1:8080 [--listen 127.0.0.1:8090]
//                       [--workers 2] [--page-ms 100]
#include <pistache/endpoint.h>
#include <pistache/http.h>
#include <signal.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "jobstate/client.h"
#include "jobstate/job_run.h"

namespace {

using jobstate::client::Client;
using jobstate::client::ClientOptions;
using jobstate::client::JobRun;
using jobstate::client::JobRunOptions;
using nlohmann::json;
using namespace Pistache;

struct Settings {
  ClientOptions jobstate;
  std::string host = "127.0.0.1";
  uint16_t port = 8090;
  int workers = 2;
  int page_ms = 100;  // how long one page takes to "render"
};

// Renders one report as the job `job_id`. Throws when a page fails.
void render_report(const Settings& settings, const std::string& job_id) {
  JobRunOptions options;
  options.job_id = job_id;
  auto run = JobRun::start(settings.jobstate, options);
  if (!run) {
    // Cancelled while queued, or jobstate unreachable: nothing to render.
    std::fprintf(stderr, "report %s not started: %s\n", job_id.c_str(),
                 run.problem().describe().c_str());
    return;
  }
  JobRun& job = **run;
  const json params = job.last_job().params;
  const int pages = params.value("pages", 10);
  const int fail_at = params.value("fail_at_page", 0);

  job.guard([&] {
    for (int page = 1; page <= pages; ++page) {
      if (job.sleep_unless_stopped(std::chrono::milliseconds(settings.page_ms))) {
        if (job.cancel_requested()) job.cancelled("stopped before page " + std::to_string(page));
        return;  // lost: the job already ended on the server
      }
      if (page == fail_at)
        throw std::runtime_error("page " + std::to_string(page) + " could not be rendered");
      job.set_progress(static_cast<double>(page) / pages,
                       "page " + std::to_string(page) + "/" + std::to_string(pages));
    }
    job.succeed({{"pages", pages}, {"url", "/files/report-" + job_id + ".pdf"}});
  });
}

// Job ids waiting for a worker thread.
class WorkQueue {
 public:
  void push(std::string id) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ids_.push_back(std::move(id));
    }
    cv_.notify_one();
  }
  // Empty string once closed.
  std::string pop() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return closed_ || !ids_.empty(); });
    if (ids_.empty()) return {};
    std::string id = std::move(ids_.front());
    ids_.pop_front();
    return id;
  }
  // Jobs still queued stay queued in jobstate for another instance.
  void close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      ids_.clear();
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> ids_;
  bool closed_ = false;
};

class Handler : public Http::Handler {
 public:
  HTTP_PROTOTYPE(Handler)
  Handler(const Settings* settings, Client* client, WorkQueue* queue)
      : settings_(settings), client_(client), queue_(queue) {}

  void onRequest(const Http::Request& req, Http::ResponseWriter response) override {
    try {
      route(req, response);
    } catch (const std::exception&) {
      reply(response, Http::Code::Internal_Server_Error, {{"error", "internal error"}});
    }
  }

 private:
  static void reply(Http::ResponseWriter& response, Http::Code code, const json& body) {
    response.send(code, body.dump(), MIME(Application, Json));
  }

  void route(const Http::Request& req, Http::ResponseWriter& response) {
    const std::string& path = req.resource();
    if (req.method() == Http::Method::Post && path == "/reports") return trigger(req, response);
    const std::string prefix = "/reports/";
    if (req.method() == Http::Method::Get && path.rfind(prefix, 0) == 0)
      return status(path.substr(prefix.size()), response);
    reply(response, Http::Code::Not_Found, {{"error", "no such resource"}});
  }

  // POST /reports: create the job, queue the work, answer at once.
  void trigger(const Http::Request& req, Http::ResponseWriter& response) {
    json body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object() ||
        !body.value("pages", json()).is_number_integer())
      return reply(response, Http::Code::Bad_Request, {{"error", "send {\"pages\": N}"}});
    jobstate::client::CreateJobRequest create;
    create.type = "report";
    create.params = body;
    create.heartbeat_timeout_s = 10;
    // A caller's Idempotency-Key makes a retried trigger return the same job.
    std::string key;
    if (auto raw = req.headers().tryGetRaw("Idempotency-Key")) key = raw->value();
    auto job = client_->create(create, key);
    if (!job) {
      const auto& p = job.problem();
      return reply(response,
                   p.status >= 400 && p.status < 500 ? Http::Code::Bad_Request
                                                     : Http::Code::Service_Unavailable,
                   {{"error", p.describe()}});
    }
    queue_->push(job->id);
    response.headers().add<Http::Header::Location>("/reports/" + job->id);
    reply(response, Http::Code::Accepted,
          {{"job_id", job->id},
           {"status_url", "/reports/" + job->id},
           {"jobstate_url", settings_->jobstate.base_url + "/v1/jobs/" + job->id}});
  }

  // GET /reports/<id>: the job's status, from jobstate.
  void status(const std::string& id, Http::ResponseWriter& response) {
    auto job = client_->get(id);
    if (!job) {
      const auto& p = job.problem();
      const auto code = p.status == 404 || p.status == 400 ? Http::Code::Not_Found
                                                           : Http::Code::Service_Unavailable;
      return reply(response, code, {{"error", p.describe()}});
    }
    reply(response, Http::Code::Ok,
          {{"job_id", job->id},
           {"state", job->state},
           {"progress", job->progress},
           {"result", job->result},
           {"error", job->error}});
  }

  const Settings* settings_;
  Client* client_;
  WorkQueue* queue_;
};

bool parse_args(int argc, char** argv, Settings& s) {
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) return false;
    std::string value = argv[++i];
    if (flag == "--jobstate") {
      s.jobstate.base_url = value;
    } else if (flag == "--listen") {
      auto colon = value.rfind(':');
      if (colon == std::string::npos) return false;
      s.host = value.substr(0, colon);
      s.port = static_cast<uint16_t>(std::atoi(value.c_str() + colon + 1));
    } else if (flag == "--workers") {
      s.workers = std::max(1, std::atoi(value.c_str()));
    } else if (flag == "--page-ms") {
      s.page_ms = std::max(0, std::atoi(value.c_str()));
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Settings settings;
  if (!parse_args(argc, argv, settings)) {
    std::fprintf(stderr,
                 "usage: report_service --jobstate URL [--listen HOST:PORT] [--workers N] "
                 "[--page-ms MS]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // every thread inherits this

  Client client(settings.jobstate);
  WorkQueue queue;
  std::vector<std::thread> workers;
  for (int i = 0; i < settings.workers; ++i) {
    workers.emplace_back([&] {
      for (std::string id = queue.pop(); !id.empty(); id = queue.pop()) {
        try {
          render_report(settings, id);
        } catch (const std::exception& e) {
          // The job is already failed (JobRun's destructor); just log it.
          std::fprintf(stderr, "report %s failed: %s\n", id.c_str(), e.what());
        }
      }
    });
  }

  // One reactor thread: routes are fixed before serving (see DESIGN.md on
  // Pistache), and handlers only make short calls to jobstate.
  Http::Endpoint endpoint(Address(settings.host, Port(settings.port)));
  endpoint.init(Http::Endpoint::options().threads(1).flags(Tcp::Options::ReuseAddr));
  endpoint.setHandler(Http::make_handler<Handler>(&settings, &client, &queue));
  try {
    endpoint.serveThreaded();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "report_service: cannot listen: %s\n", e.what());
    queue.close();
    for (auto& w : workers) w.join();
    return 1;
  }
  std::printf("report_service listening on http://%s:%u (jobstate: %s)\n", settings.host.c_str(),
              static_cast<unsigned>(endpoint.getPort()), settings.jobstate.base_url.c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  endpoint.shutdown();
  queue.close();
  for (auto& w : workers) w.join();  // reports in progress finish first
  return 0;
}
