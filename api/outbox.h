// Outbox: writes finished HTTP responses to their connections' sockets.
//
// Pistache 0.0.5 queues every response for its reactor thread: an eventfd
// write, a wake-up, two epoll_ctl calls and an epoll round trip per response,
// which was the largest part of a heartbeat's cost over HTTP. The outbox
// writes the bytes with send() instead:
// - on the calling thread (write_now), for answers given on a reactor thread
//   while it handles the request;
// - on the outbox's own thread (post), for answers from the writer and the
//   long-poll threads. A loopback send() costs the sender the receiver's TCP
//   work too (about 12 µs here); done on the writer's sequencer, 32 of them
//   per batch held up the next batch.
// What the socket does not take at once goes through Pistache's write queue.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace Pistache::Tcp {
class Peer;
}

namespace jobstate::api {

// One client connection as the threads that answer see it. Answers are
// sent under `mu`, and only while `open`: Pistache closes a connection's
// descriptor on its reactor thread right after the handler's
// onDisconnection() clears `open` under the same lock, so an answer can
// never reach a descriptor that was closed and reused by another client.
// (The rest of an answer the socket did not take is Pistache's to write,
// with Pistache's own check.)
struct Link {
  std::mutex mu;
  int fd = -1;
  bool open = true;
};

struct Answer {
  std::weak_ptr<Pistache::Tcp::Peer> peer;
  std::shared_ptr<Link> link;
  std::string wire;    // the whole response: status line, headers, body
  bool close = false;  // shut the connection's write side once it is written
  // Pistache's reaper answers 408 and closes a connection whose answer is
  // later than the request timeout, without telling the handler: an answer
  // past this instant is dropped.
  std::chrono::steady_clock::time_point deadline;
};

class Outbox {
 public:
  Outbox();
  ~Outbox();  // stops the thread; answers still queued are dropped

  // Writes the answer on this thread.
  void write_now(Answer a);
  // Hands the answer to the outbox's thread. Dropped after close().
  void post(Answer a);

  // Waits until every answer given so far is written (to the kernel, or by
  // Pistache's reactor), at most `limit`, then drops any later answer and
  // stops the thread. Call before the HTTP endpoint shuts down: from then on
  // Pistache closes descriptors without telling the handler.
  void close(std::chrono::milliseconds limit);

 private:
  void run();
  void write(Answer& a);
  void stop_thread();  // closes, and joins the thread

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Answer> queue_;
  std::atomic<bool> closed_{false};  // set under mu_
  // Answers posted or handed to Pistache and not yet written. Shared with
  // Pistache's write completions, which may run after the outbox is gone.
  std::shared_ptr<std::atomic<int64_t>> unwritten_ = std::make_shared<std::atomic<int64_t>>(0);
  std::thread thread_;
};

}  // namespace jobstate::api
