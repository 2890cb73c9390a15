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
// Once an answer is wholly on the wire, its connection's next request (if one
// is waiting, see Link) is dispatched on the same thread.
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

// One client connection as the threads that answer see it, and the order of
// its requests. Everything here is under `mu`.
//
// Descriptor: `fd` is Pistache's descriptor while Pistache has the
// connection (`open`). When the client closes or half-closes it, Pistache
// closes that descriptor right after the handler's onDisconnection(); if an
// answer is still owed then (a request in hand, `busy`, and not a parked
// long-poll, which a leaving client gives up), onDisconnection first swaps
// in a dup() of it that the Link owns and closes when it dies,
// so a half-closed request is still answered, and an answer never reaches a
// descriptor that was closed and reused by another client.
//
// Order: requests are handled one at a time, in order. `busy` is held by
// whoever frames and dispatches the connection's requests (its reactor
// thread, or the thread that resumes it); bytes that arrive meanwhile wait in
// `pending`. When a request's answer comes later (a write, a long-poll), the
// dispatching thread leaves with `waiting` set, and the thread that puts that
// answer on the wire calls resume() to go on with `pending`.
struct Link {
  virtual ~Link();
  // Frames and dispatches `pending` (called outside `mu`, with `busy` held
  // for the caller).
  virtual void resume(const std::shared_ptr<Link>& self) { (void)self; }

  std::mutex mu;
  int fd = -1;
  bool owns_fd = false;     // fd is our dup, closed with the Link
  bool open = true;         // Pistache still has the connection
  bool closed = false;      // an answer shut the write side: nothing more is written or read
  bool busy = false;        // a thread handles the requests, or one awaits its answer
  bool unanswered = false;  // the request in hand has no complete answer on the wire yet
  bool waiting = false;     // busy only for that answer: whoever completes it resumes
  bool parked = false;      // that answer is a parked long-poll's (its client leaving frees it)
  std::string pending;      // bytes received after the request in hand
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
