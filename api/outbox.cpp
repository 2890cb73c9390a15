#include "api/outbox.h"

#include <pistache/peer.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <unistd.h>

#include <cerrno>

namespace jobstate::api {

Outbox::Outbox() : thread_([this] { run(); }) {}

Outbox::~Outbox() {
  stop_thread();
}

void Outbox::stop_thread() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void Outbox::write_now(Answer a) {
  if (closed_.load()) return;
  write(a);
}

void Outbox::post(Answer a) {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    unwritten_->fetch_add(1);
    queue_.push_back(std::move(a));
    if (queue_.size() > 1) return;  // the thread was told about the first one
  }
  cv_.notify_one();
}

void Outbox::close(std::chrono::milliseconds limit) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (unwritten_->load() > 0 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop_thread();
}

void Outbox::run() {
  pthread_setname_np(pthread_self(), "js-outbox");  // for top -H and perf
  std::vector<Answer> taken;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return closed_ || !queue_.empty(); });
      if (closed_) return;
      taken.swap(queue_);
    }
    for (auto& a : taken) {
      if (!closed_.load()) write(a);
      unwritten_->fetch_sub(1);
    }
    taken.clear();
  }
}

Link::~Link() {
  if (owns_fd && fd >= 0) ::close(fd);
}

namespace {

// The answer in hand is wholly on the wire (or never will be): shuts the
// write side if it closes the connection, and says whether the caller must
// resume the connection's next requests. Under link.mu.
bool answered_locked(Link& link, bool close) {
  link.unanswered = false;
  link.parked = false;
  if (close && !link.closed) {
    link.closed = true;
    link.pending.clear();
    if (link.fd >= 0) ::shutdown(link.fd, SHUT_WR);
  }
  if (!link.waiting) return false;  // the dispatching thread goes on by itself
  link.waiting = false;
  if (link.closed || link.pending.empty()) {
    link.busy = false;
    return false;
  }
  return true;  // busy passes to the caller
}

void answered(const std::shared_ptr<Link>& link, bool close) {
  bool resume;
  {
    std::lock_guard lock(link->mu);
    resume = answered_locked(*link, close);
  }
  if (resume) link->resume(link);
}

}  // namespace

void Outbox::write(Answer& a) {
  if (!a.link) return;
  if (std::chrono::steady_clock::now() > a.deadline) {  // Pistache's reaper closed it
    std::lock_guard lock(a.link->mu);
    answered_locked(*a.link, true);
    return;
  }
  auto peer = a.peer.lock();
  // As Pistache's own send does: the keep-alive timeout runs from now.
  if (peer) peer->setIdle(true);
  size_t done = 0;
  bool resume = false;
  {
    std::lock_guard lock(a.link->mu);
    if (a.link->closed || a.link->fd < 0) return;  // the client is gone
    while (done < a.wire.size()) {
      const ssize_t n = ::send(a.link->fd, a.wire.data() + done, a.wire.size() - done,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        done += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      } else {
        // A broken connection: the reactor sees the hang-up and closes it.
        answered_locked(*a.link, true);
        return;
      }
    }
    if (done == a.wire.size()) {
      resume = answered_locked(*a.link, a.close);
    } else if (!peer || !a.link->open) {
      // The rest would need Pistache's write queue, and Pistache no longer
      // has the connection: give up on it.
      answered_locked(*a.link, true);
      return;
    }
  }
  if (done == a.wire.size()) {
    if (resume) a.link->resume(a.link);
    return;
  }
  // The socket's buffer is full: Pistache's reactor writes the rest once it
  // drains. Outside the link's lock: the completion takes it, and it runs on
  // this thread when the reactor was quicker than then(). The connection's
  // next answer waits for it (the link stays unanswered until then).
  unwritten_->fetch_add(1);
  auto written = [u = unwritten_, link = a.link, close = a.close](ssize_t) {
    u->fetch_sub(1);
    answered(link, close);
  };
  try {
    peer->send(Pistache::RawBuffer(a.wire.substr(done), a.wire.size() - done))
        .then(written, [u = unwritten_, link = a.link](std::exception_ptr) {
          u->fetch_sub(1);
          answered(link, true);
        });
  } catch (const std::exception& e) {
    unwritten_->fetch_sub(1);
    spdlog::debug("sending a response failed: {}", e.what());
  }
}

}  // namespace jobstate::api
