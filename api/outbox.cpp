#include "api/outbox.h"

#include <pistache/peer.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

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

void Outbox::write(Answer& a) {
  auto peer = a.peer.lock();
  if (!peer || !a.link) return;  // the client is gone
  if (std::chrono::steady_clock::now() > a.deadline) return;
  // As Pistache's own send does: the keep-alive timeout runs from now.
  peer->setIdle(true);
  size_t done = 0;
  {
    std::lock_guard lock(a.link->mu);
    if (!a.link->open) return;
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
        return;  // a broken connection: the reactor sees the hang-up and closes it
      }
    }
    if (done == a.wire.size()) {
      if (a.close) ::shutdown(a.link->fd, SHUT_WR);
      return;
    }
  }
  // The socket's buffer is full: Pistache's reactor writes the rest once it
  // drains. Outside the link's lock: the completion takes it, and it runs on
  // this thread when the reactor was quicker than then().
  unwritten_->fetch_add(1);
  auto written = [u = unwritten_, link = a.link, close = a.close](ssize_t) {
    if (close) {
      std::lock_guard lock(link->mu);
      if (link->open) ::shutdown(link->fd, SHUT_WR);
    }
    u->fetch_sub(1);
  };
  try {
    peer->send(Pistache::RawBuffer(a.wire.substr(done), a.wire.size() - done))
        .then(written, [u = unwritten_](std::exception_ptr) { u->fetch_sub(1); });
  } catch (const std::exception& e) {
    unwritten_->fetch_sub(1);
    spdlog::debug("sending a response failed: {}", e.what());
  }
}

}  // namespace jobstate::api
