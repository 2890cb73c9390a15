"""The crash loop of bench/crash-loop.sh: concurrent writers through a
`jobstate serve` that is SIGKILLed at random moments and restarted, with
nothing acknowledged lost. Standard library only; run with /usr/bin/python3.

  crash_loop.py --bin JOBSTATE --work DIR [--kills 100] [--writers 16]
                [--seed N] [--max-seconds 600]

Writers (threads, one keep-alive connection each) create a job, start it
(keeping its Job-Lease), heartbeat it three times and succeed it, over and
over; a 2xx is an acknowledged write: (job, version, op). A request without
an answer (the server was killed under it) is not counted, and its job is
left alone. The server listens on 127.0.0.1, a new port after each restart.

Each cycle: start `serve` on DIR/data, let the writers run for a random
0.05-1.5 s, SIGKILL it, start it again, then
  - `jobstate verify --data-dir` (alongside the serving process) must print ok;
  - every write acknowledged since the last check must be there:
    GET /v1/jobs/{id} has at least the acknowledged version, and a job whose
    succeed was acknowledged is `succeeded` at exactly that version.
At the end the server is stopped (SIGTERM), and `jobstate replay` of the
whole log must hold every acknowledged (job, version) with the event type of
its op (created, started, heartbeat, succeeded); `verify` once more.

Prints a summary: kills, acknowledged writes, losses, verify failures,
requests by status. Exit status 1 on any loss or verify failure, on an
unexpected status (anything but a 2xx, or a 503 while starting or stopping),
or when the loop could not finish its kills.
"""

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

HEARTBEATS_PER_JOB = 3
CLIENT_TIMEOUT_S = 10.0
JOB_HEARTBEAT_TIMEOUT_S = 3600  # the watchdog leaves the load's jobs alone
EVENT_OF = {"create": "created", "start": "started", "heartbeat": "heartbeat",
            "succeed": "succeeded"}


def out(line):
    print(line, flush=True)


class Server:
    """One `jobstate serve` at a time; `addr` is where it listens."""

    def __init__(self, binary, work):
        self.binary = binary
        self.data = os.path.join(work, "data")
        self.log_path = os.path.join(work, "serve.log")
        self.proc = None
        self.addr = None        # (host, port) while serving
        self.generation = 0     # +1 per start: writers reconnect

    def start(self, limit_s=30.0):
        with open(self.log_path, "a") as log:
            log.write("---- start %d\n" % (self.generation + 1))
            offset = log.tell()
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", self.data, "--listen", "127.0.0.1:0",
             "--log-level", "warn"], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        t0 = time.time()
        while time.time() - t0 < limit_s:
            with open(self.log_path) as f:
                f.seek(offset)
                for line in f:
                    if line.startswith("jobstate serving on http://"):
                        hostport = line.split("http://", 1)[1].split()[0]
                        host, port = hostport.rsplit(":", 1)
                        self.addr = (host, int(port))
                        self.generation += 1
                        return time.time() - t0
            if self.proc.poll() is not None:
                raise RuntimeError("serve exited with %d at start (see %s)" %
                                   (self.proc.returncode, self.log_path))
            time.sleep(0.01)
        raise RuntimeError("serve did not print its address in %.0f s" % limit_s)

    def kill(self):
        self.addr = None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.proc = None

    def stop(self):
        self.addr = None
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(30)
            self.proc = None
            return rc
        return 0


class Conn:
    """A keep-alive connection to the current server, remade after a restart."""

    def __init__(self, server):
        self.server = server
        self.conn = None
        self.gen = None

    def request(self, method, path, body=None, headers=None):
        """Returns (status, headers dict, parsed body) or (None, None, error text)."""
        addr, gen = self.server.addr, self.server.generation
        if addr is None:
            return None, None, "no server"
        if self.conn is None or self.gen != gen:
            self.close()
            self.conn = http.client.HTTPConnection(addr[0], addr[1], timeout=CLIENT_TIMEOUT_S)
            self.gen = gen
        h = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=data, headers=h)
            r = self.conn.getresponse()
            raw = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            if hdrs.get("connection", "").lower() == "close":
                self.close()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw.decode("utf-8", "replace")
            return r.status, hdrs, parsed
        except Exception as e:  # refused, reset, timeout: no answer
            self.close()
            return None, None, "%s: %s" % (type(e).__name__, e)

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.acks = []          # (job, version, op, state)
        self.by_status = {}
        self.unexpected = []    # (op, status, body) of answers that are neither 2xx nor an allowed 503

    def record(self, op, status, body, ack=None):
        with self.lock:
            self.by_status[status] = self.by_status.get(status, 0) + 1
            if ack is not None:
                self.acks.append(ack)
            elif status is not None and status != 503:
                self.unexpected.append((op, status, body))


class Writer(threading.Thread):
    def __init__(self, idx, server, stats, stop):
        super().__init__(daemon=True)
        self.idx = idx
        self.conn = Conn(server)
        self.stats = stats
        self.stop = stop
        self.rng = random.Random(idx)

    def run(self):
        job, lease, step = None, None, 0
        while not self.stop.is_set():
            headers = {}
            if job is None:
                op, path = "create", "/v1/jobs"
                body = {"type": "crash-loop", "heartbeat_timeout_s": JOB_HEARTBEAT_TIMEOUT_S,
                        "labels": {"writer": str(self.idx)}}
            elif step == 0:
                op, path, body = "start", "/v1/jobs/%s/start" % job, {"worker": "crash-w%d" % self.idx}
            elif step <= HEARTBEATS_PER_JOB:
                op, path = "heartbeat", "/v1/jobs/%s/heartbeat" % job
                body = {"progress": {"fraction": step / (HEARTBEATS_PER_JOB + 1), "message": "step %d" % step}}
                headers["Job-Lease"] = lease
            else:
                op, path, body = "succeed", "/v1/jobs/%s/succeed" % job, {"result": {"steps": step}}
                headers["Job-Lease"] = lease
            status, hdrs, b = self.conn.request("POST", path, body, headers)
            if status is not None and 200 <= status < 300 and isinstance(b, dict) and "version" in b:
                self.stats.record(op, status, None, (b["id"], b["version"], op, b.get("state")))
                if op == "create":
                    job, step = b["id"], 0
                elif op == "start":
                    lease, step = hdrs.get("job-lease"), 1
                elif op == "succeed":
                    job, lease = None, None
                else:
                    step += 1
            else:
                # No answer, a 503 (starting or stopping) or anything else:
                # the write's outcome is unknown; leave the job alone.
                self.stats.record(op, status, b)
                job, lease = None, None
                time.sleep(0.02)
        self.conn.close()


def run_verify(binary, data):
    try:
        p = subprocess.run([binary, "verify", "--data-dir", data], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        text = p.stdout.decode(errors="replace").strip()
        return p.returncode == 0 and text.startswith("ok:"), text
    except subprocess.TimeoutExpired:
        return False, "verify took over 120 s"


def check_acks(conn, acks):
    """acks: (job, version, op, state). Returns a list of losses (text)."""
    want = {}  # job -> (max acknowledged version, succeeded version or None)
    for job, version, op, _ in acks:
        v, done = want.get(job, (0, None))
        want[job] = (max(v, version), version if op == "succeed" else done)
    losses = []
    for job, (version, done) in want.items():
        for _ in range(50):  # the server may still be opening; bounded
            status, _, b = conn.request("GET", "/v1/jobs/%s" % job)
            if status is not None and status != 503:
                break
            time.sleep(0.1)
        if status != 200 or not isinstance(b, dict):
            losses.append("job %s acknowledged at version %d: GET answered %s %s" %
                          (job, version, status, str(b)[:200]))
        elif b.get("version", 0) < version:
            losses.append("job %s acknowledged at version %d: now at version %s (%s)" %
                          (job, version, b.get("version"), b.get("state")))
        elif done is not None and (b.get("state") != "succeeded" or b.get("version") != done):
            losses.append("job %s: succeed acknowledged at version %d, now %s at version %s" %
                          (job, done, b.get("state"), b.get("version")))
    return losses, len(want)


def check_replay(binary, data, acks):
    p = subprocess.run([binary, "replay", "--data-dir", data], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=300)
    if p.returncode != 0:
        return ["replay failed: %s" % p.stderr.decode(errors="replace").strip()], 0
    events = {}
    n = 0
    for line in p.stdout.splitlines():
        e = json.loads(line)
        events[(e["job_id"], e["version"])] = e["type"]
        n += 1
    losses = []
    for job, version, op, _ in acks:
        got = events.get((job, version))
        if got != EVENT_OF[op]:
            losses.append("%s of job %s acknowledged at version %d: the log has %s" %
                          (op, job, version, got or "no such event"))
    return losses, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--writers", type=int, default=16)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-seconds", type=float, default=600)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int(time.time())
    rng = random.Random(seed)
    out("crash loop: %d kills, %d writers, seed %d, work dir %s" % (a.kills, a.writers, seed, a.work))

    server = Server(a.bin, a.work)
    stats = Stats()
    stop = threading.Event()
    t_begin = time.time()
    kills = verify_runs = 0
    verify_failures = []
    losses = []
    checked = 0            # acks[:checked] were checked after a restart
    jobs_checked = 0
    start_times = []
    error = None

    try:
        start_times.append(server.start())
        writers = [Writer(i, server, stats, stop) for i in range(a.writers)]
        for w in writers:
            w.start()
        checker = Conn(server)
        while kills < a.kills:
            if time.time() - t_begin > a.max_seconds:
                error = "stopped after %.0f s (--max-seconds) with %d of %d kills" % (
                    time.time() - t_begin, kills, a.kills)
                break
            time.sleep(rng.uniform(0.05, 1.5))
            server.kill()
            kills += 1
            start_times.append(server.start())
            ok, text = run_verify(a.bin, server.data)
            verify_runs += 1
            if not ok:
                verify_failures.append("after kill %d: %s" % (kills, text))
            with stats.lock:
                batch = stats.acks[checked:]
            checked += len(batch)
            lost, nj = check_acks(checker, batch)
            jobs_checked += nj
            losses.extend("after kill %d: %s" % (kills, x) for x in lost)
            if kills % 10 == 0:
                out("kill %d: %.0f s, %d acknowledged writes, %d losses, %d verify failures; %s" %
                    (kills, time.time() - t_begin, len(stats.acks), len(losses),
                     len(verify_failures), text))
        checker.close()
    except Exception as e:
        error = "%s: %s" % (type(e).__name__, e)
    finally:
        stop.set()
        for w in threading.enumerate():
            if isinstance(w, Writer):
                w.join(CLIENT_TIMEOUT_S + 5)
        rc = server.stop()
        if rc not in (0, None) and error is None:
            error = "serve exited with %d on SIGTERM at the end" % rc

    # The whole log against every acknowledged write, then verify once more.
    with stats.lock:
        acks = list(stats.acks)
    replay_losses, n_events = check_replay(a.bin, server.data, acks)
    losses.extend("at the end: %s" % x for x in replay_losses)
    ok, text = run_verify(a.bin, server.data)
    verify_runs += 1
    if not ok:
        verify_failures.append("at the end: %s" % text)

    by_op = {}
    for _, _, op, _ in acks:
        by_op[op] = by_op.get(op, 0) + 1
    out("requests by status: %s" % ", ".join(
        "%s: %d" % (k if k is not None else "no answer", v)
        for k, v in sorted(stats.by_status.items(), key=lambda kv: str(kv[0]))))
    out("acknowledged by op: %s" % ", ".join("%s %d" % (k, by_op.get(k, 0)) for k in EVENT_OF))
    st = sorted(start_times)
    if st:
        out("serve start to listening: median %.0f ms, max %.0f ms" %
            (st[len(st) // 2] * 1000, st[-1] * 1000))
    for x in (verify_failures + losses)[:20]:
        out("    " + x)
    for op, status, body in stats.unexpected[:10]:
        out("    unexpected: %s answered %s %s" % (op, status, str(body)[:200]))
    out("kills: %d  acknowledged writes: %d  losses: %d  verify failures: %d (of %d runs)  "
        "unexpected answers: %d  events in the log: %d  time: %.0f s" %
        (kills, len(acks), len(losses), len(verify_failures), verify_runs,
         len(stats.unexpected), n_events, time.time() - t_begin))
    if error:
        out("error: " + error)
    failed = bool(losses or verify_failures or stats.unexpected or error or kills < a.kills)
    out("FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
