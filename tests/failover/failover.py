"""The HTTP side of tests/failover/run: concurrent writers through a kill,
and the checks that need HTTP. Standard library only; run with /usr/bin/python3.

  failover.py round  --nodes URL1,URL2 --round N --work DIR -- KILL-CMD...
      writers on both nodes, KILL-CMD once they commit, then until writes
      succeed again on both nodes (at most 45 s after the kill) and 5 s more;
      prints checks (a) and (b); appends the acknowledged writes to
      DIR/acks.jsonl and every request to DIR/requests-rN.jsonl
  failover.py lost     --round N --work DIR --replay FILE        check (c)
  failover.py longpoll --nodes URL1,URL2 --round N               check (d)
  failover.py watchdog --nodes URL1,URL2 --round N               check (e)
  failover.py cluster  --dir CLUSTER_DIR
      one line "leader=M sync=M running=M,M,..." from Patroni's REST API;
      exit 0 when there is a running leader and a streaming sync standby

Every check prints one line starting with PASS or FAIL (what tests/failover/run
counts), then indented evidence lines for a FAIL.
"""

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.parse

CLIENT_TIMEOUT_S = 20.0     # per request: past this it is "no answer"
HANG_LIMIT_S = 15.0         # (a): no request may take longer
RECOVERY_LIMIT_S = 30.0     # (b): writes succeed again within this of the kill
WRITERS = 8
PACE_S = 0.01               # pause between a writer's requests
RETRY_PAUSE_S = 0.05        # pause after a request that did not succeed
HEARTBEATS_PER_JOB = 5
LOAD_JOB_TIMEOUT_S = 600    # the watchdog must not touch the load's jobs


def out(line):
    print(line, flush=True)


def node_addr(url):
    u = urllib.parse.urlsplit(url)
    return u.hostname, u.port


REPORTS = ("heartbeat", "succeed", "fail", "cancelled")


class Client:
    """One keep-alive connection per node, used by one thread. Like a
    worker, it keeps the Job-Lease of each start it made and sends it with
    that job's reports."""

    def __init__(self, urls, timeout=CLIENT_TIMEOUT_S):
        self.addrs = [node_addr(u) for u in urls]
        self.timeout = timeout
        self.conns = [None] * len(urls)
        self.leases = {}

    def request(self, node, method, path, body=None):
        """Returns a record: t0, t1, node, method, path, status (None: no
        answer), ctype, body (text), err."""
        rec = {"node": node + 1, "method": method, "path": path, "status": None,
               "ctype": None, "body": None, "err": None}
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        parts = path.split("?")[0].split("/")  # "", "v1", "jobs", id, action
        job = parts[3] if len(parts) == 5 and parts[2] == "jobs" else None
        if job and parts[4] in REPORTS and job in self.leases:
            headers["Job-Lease"] = self.leases[job]
        rec["t0"] = time.time()
        try:
            if self.conns[node] is None:
                host, port = self.addrs[node]
                self.conns[node] = http.client.HTTPConnection(host, port, timeout=self.timeout)
            c = self.conns[node]
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            text = r.read().decode("utf-8", "replace")
            rec["status"] = r.status
            rec["ctype"] = r.getheader("Content-Type")
            if job and parts[4] == "start" and r.getheader("Job-Lease"):
                self.leases[job] = r.getheader("Job-Lease")
            rec["body"] = text
            if (r.getheader("Connection") or "").lower() == "close":
                c.close()
                self.conns[node] = None
        except Exception as e:  # no answer: timeout, refused, reset
            rec["err"] = "%s: %s" % (type(e).__name__, e)
            if self.conns[node] is not None:
                self.conns[node].close()
            self.conns[node] = None
        rec["t1"] = time.time()
        rec["latency"] = rec["t1"] - rec["t0"]
        return rec

    def close(self):
        for c in self.conns:
            if c is not None:
                c.close()


def body_json(rec):
    try:
        return json.loads(rec["body"])
    except Exception:
        return None


def is_unavailable(rec):
    """A 503 with a problem+json body whose type is /problems/unavailable."""
    if rec["status"] != 503:
        return False
    if not (rec["ctype"] or "").startswith("application/problem+json"):
        return False
    b = body_json(rec)
    return isinstance(b, dict) and b.get("type") == "/problems/unavailable"


def show(rec, t_ref):
    body = (rec["body"] or "").replace("\n", " ")
    if len(body) > 300:
        body = body[:300] + "..."
    return ("node%d %s %s -> %s after %.3f s (sent at kill%+.3f s)%s%s" %
            (rec["node"], rec["method"], rec["path"], rec["status"], rec["latency"],
             rec["t0"] - t_ref, (" " + rec["err"]) if rec["err"] else "",
             (" body " + body) if body else ""))


# ---- round: writers through a kill -------------------------------------------

class Writer(threading.Thread):
    """Creates jobs, starts them, heartbeats them, succeeds them; alternates
    nodes request by request. Records every request; a 2xx is an
    acknowledged (job, version)."""

    def __init__(self, idx, urls, round_no, stop, records):
        super().__init__(daemon=True)
        self.idx = idx
        self.client = Client(urls)
        self.round_no = round_no
        self.stop = stop
        self.records = records
        self.rng = random.Random(idx * 1000 + round_no)

    def run(self):
        job = None        # the job id being driven
        step = 0          # 0: start next; 1..HEARTBEATS_PER_JOB: heartbeats; then succeed
        unknown = False   # a request about this job got no 2xx: its outcome may be either
        k = 0
        while not self.stop.is_set():
            node = (self.idx + k) % 2
            k += 1
            if job is None:
                op, path = "create", "/v1/jobs"
                body = {"type": "failover-load", "heartbeat_timeout_s": LOAD_JOB_TIMEOUT_S,
                        "labels": {"round": str(self.round_no), "writer": str(self.idx)}}
            elif step == 0:
                op, path, body = "start", "/v1/jobs/%s/start" % job, {"worker": "failover-w%d" % self.idx}
            elif step <= HEARTBEATS_PER_JOB:
                op, path = "heartbeat", "/v1/jobs/%s/heartbeat" % job
                body = {"progress": {"fraction": self.rng.random(), "message": "step %d" % step}}
            else:
                op, path, body = "succeed", "/v1/jobs/%s/succeed" % job, {"result": {"steps": step}}
            rec = self.client.request(node, "POST", path, body)
            rec["op"] = op
            rec["job"] = job
            rec["after_unknown"] = unknown
            st = rec["status"]
            if st is not None and 200 <= st < 300:
                b = body_json(rec) or {}
                rec["job"] = b.get("id", job)
                rec["version"] = b.get("version")
                if op == "create":
                    job, step, unknown = rec["job"], 0, False
                elif op == "succeed":
                    job = None
                else:
                    step += 1
            elif st == 503:
                # Not acknowledged: try the same step again (a create makes a
                # new job). The write may still have committed ("outcome
                # unknown"): a 409 that follows is then expected.
                unknown = unknown or op != "create"
                if op == "create":
                    job = None
                time.sleep(RETRY_PAUSE_S)
            else:
                # No answer, or another status: leave this job alone.
                job = None
                time.sleep(RETRY_PAUSE_S)
            self.records.append(rec)
            time.sleep(PACE_S)
        self.client.close()


def cmd_round(a):
    urls = a.nodes.split(",")
    records = []
    stop = threading.Event()
    writers = [Writer(i, urls, a.round, stop, records) for i in range(WRITERS)]
    t_begin = time.time()
    for w in writers:
        w.start()

    def oks_since(t, node=None):
        return [r for r in list(records)
                if r["status"] is not None and 200 <= r["status"] < 300 and r["t0"] >= t
                and (node is None or r["node"] == node)]

    # Warm-up: both nodes commit before the kill.
    while time.time() - t_begin < 20:
        if time.time() - t_begin >= 3 and all(len(oks_since(t_begin, n)) >= 20 for n in (1, 2)):
            break
        time.sleep(0.1)
    warm = {n: len(oks_since(t_begin, n)) for n in (1, 2)}
    out("round %d: warm-up %.1f s, acknowledged writes node1 %d node2 %d" %
        (a.round, time.time() - t_begin, warm[1], warm[2]))

    t_kill0 = time.time()
    kill = subprocess.run(a.kill, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    t_kill1 = time.time()
    out("round %d: %s -> exit %d (%.3f s): %s" %
        (a.round, " ".join([os.path.basename(a.kill[0])] + a.kill[1:]),
         kill.returncode, t_kill1 - t_kill0, kill.stdout.decode(errors="replace").strip()))

    # Until both nodes have acknowledged a write sent after the kill, at most
    # 45 s; then 5 s more of load.
    first_ok = {}
    while time.time() - t_kill1 < 45:
        for n in (1, 2):
            if n not in first_ok:
                oks = oks_since(t_kill1, n)
                if oks:
                    first_ok[n] = min(oks, key=lambda r: r["t1"])
        if len(first_ok) == 2:
            break
        time.sleep(0.05)
    t_settle = time.time()
    while time.time() - t_settle < 5:
        time.sleep(0.1)
    stop.set()
    for w in writers:
        w.join(CLIENT_TIMEOUT_S + 5)
    stuck = sum(1 for w in writers if w.is_alive())
    recs = sorted(list(records), key=lambda r: r["t0"])
    t_end = time.time()

    with open(os.path.join(a.work, "requests-r%d.jsonl" % a.round), "w") as f:
        for r in recs:
            f.write(json.dumps(dict(r, t0_rel_kill=r["t0"] - t_kill0)) + "\n")
    acks = [r for r in recs if r["status"] is not None and 200 <= r["status"] < 300]
    with open(os.path.join(a.work, "acks.jsonl"), "a") as f:
        for r in acks:
            f.write(json.dumps({"round": a.round, "job": r["job"], "version": r["version"],
                                "node": r["node"], "op": r["op"], "t1_rel_kill": r["t1"] - t_kill0}) + "\n")

    by_status = {}
    for r in recs:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    out("round %d: %d requests in %.1f s, by status %s; %d acknowledged (%d after the kill)" %
        (a.round, len(recs), t_end - t_begin,
         ", ".join("%s: %d" % (k if k is not None else "no answer", v)
                   for k, v in sorted(by_status.items(), key=lambda kv: str(kv[0]))),
         len(acks), len([r for r in acks if r["t0"] >= t_kill1])))

    lats = sorted(r["latency"] for r in recs)
    if lats:
        out("round %d: request latency p50 %.1f ms, p99 %.1f ms, max %.1f ms" %
            (a.round, lats[len(lats) // 2] * 1000, lats[min(len(lats) - 1, int(len(lats) * 0.99))] * 1000,
             lats[-1] * 1000))

    # (a) -----------------------------------------------------------------------
    # The window without a primary: from the kill to the first write that a
    # node acknowledged again (each node's own first, the later of the two).
    t_back = max((first_ok[n]["t1"] for n in first_ok), default=t_end)
    in_window = [r for r in recs if t_kill1 <= r["t1"] and r["t0"] <= t_back]
    unavailable = [r for r in in_window if is_unavailable(r)]
    five_hundreds = [r for r in recs if r["status"] is not None and r["status"] >= 500 and r["status"] != 503]
    bad_503 = [r for r in recs if r["status"] == 503 and not is_unavailable(r)]
    no_answer = [r for r in recs if r["status"] is None]
    slow = [r for r in recs if r["latency"] > HANG_LIMIT_S]
    # Any other non-2xx: a 409 after a 503/no-answer on the same job is the
    # expected result of a write whose outcome was unknown (it did commit).
    other = [r for r in recs if r["status"] is not None and not (200 <= r["status"] < 300)
             and r["status"] != 503 and r["status"] < 500
             and not (r["status"] == 409 and r["after_unknown"])]
    after_unknown_409 = [r for r in recs if r["status"] == 409 and r["after_unknown"]]
    max_lat = max((r["latency"] for r in recs), default=0.0)
    max_lat_window = max((r["latency"] for r in in_window), default=0.0)
    ok_a = (not five_hundreds and not bad_503 and not no_answer and not slow and not other
            and stuck == 0 and len(unavailable) >= 1)
    out("%s round %d (a) while no primary: %d writes answered 503 unavailable (problem+json) "
        "in the %.1f s window; 5xx other than 503: %d; 503 without the unavailable problem: %d; "
        "no answer: %d; other non-2xx: %d (+%d 409 after an unknown outcome); "
        "longest request %.3f s (in the window %.3f s; limit %.0f s); writers stuck: %d" %
        ("PASS" if ok_a else "FAIL", a.round, len(unavailable), t_back - t_kill1,
         len(five_hundreds), len(bad_503), len(no_answer), len(other), len(after_unknown_409),
         max_lat, max_lat_window, HANG_LIMIT_S, stuck))
    for r in after_unknown_409[:5]:
        tries = [x for x in recs if x["job"] == r["job"] and x["op"] == r["op"] and x["t0"] < r["t0"]
                 and x["status"] in (503, None)]
        first = min(tries, key=lambda x: x["t0"]) if tries else None
        out("    note: node%d %s of job %s answered 409 (%s): an earlier %s of it that got no 2xx "
            "had committed (the first of %d tries: sent at kill%+.3f s, answered %s after %.3f s; "
            "the kill command returned at kill%+.3f s)" %
            (r["node"], r["op"], r["job"], (body_json(r) or {}).get("type"), r["op"], len(tries),
             first["t0"] - t_kill0 if first else float("nan"), first["status"] if first else "-",
             first["latency"] if first else float("nan"), t_kill1 - t_kill0))
    if not ok_a:
        if not unavailable:
            out("    no 503 unavailable was seen after the kill")
        for name, rs in (("5xx", five_hundreds), ("503 without the unavailable problem", bad_503),
                         ("no answer", no_answer), ("slower than %.0f s" % HANG_LIMIT_S, slow),
                         ("other non-2xx", other)):
            for r in rs[:5]:
                out("    %s: %s" % (name, show(r, t_kill0)))
            if len(rs) > 5:
                out("    ... %d more %s" % (len(rs) - 5, name))

    # (b) -----------------------------------------------------------------------
    parts = []
    ok_b = True
    for n in (1, 2):
        if n in first_ok:
            dt = first_ok[n]["t1"] - t_kill0
            parts.append("node%d %.2f s" % (n, dt))
            ok_b = ok_b and dt <= RECOVERY_LIMIT_S
        else:
            parts.append("node%d never (in 45 s)" % n)
            ok_b = False
    first = min((first_ok[n]["t1"] - t_kill0 for n in first_ok), default=None)
    out("%s round %d (b) writes succeed again without restarting jobstate: first acknowledged "
        "write %s after the kill (%s; limit %.0f s)" %
        ("PASS" if ok_b else "FAIL", a.round,
         ("%.2f s" % first) if first is not None else "never", ", ".join(parts), RECOVERY_LIMIT_S))
    if not ok_b:
        last = [r for r in recs if r["t0"] >= t_kill1][-5:]
        for r in last:
            out("    last requests: %s" % show(r, t_kill0))
    with open(os.path.join(a.work, "recovery.txt"), "a") as f:
        f.write("round %d %s\n" % (a.round, ("%.2f" % first) if first is not None else "never"))
    return 0


# ---- (c) nothing acknowledged is lost ----------------------------------------

def cmd_lost(a):
    present = set()
    events = 0
    with open(a.replay) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            e = json.loads(line)
            present.add((e["job_id"], e["version"]))
            events += 1
    acks = []
    with open(os.path.join(a.work, "acks.jsonl")) as f:
        for line in f:
            acks.append(json.loads(line))
    this = [x for x in acks if x["round"] == a.round]
    earlier = [x for x in acks if x["round"] != a.round]
    missing = [x for x in acks if (x["job"], x["version"]) not in present]
    ok = not missing and len(this) > 0
    out("%s round %d (c) nothing acknowledged is lost: %d acknowledged writes of this round and "
        "%d of earlier rounds, %d missing from the %d events of replay --store" %
        ("PASS" if ok else "FAIL", a.round, len(this), len(earlier), len(missing), events))
    for x in missing[:10]:
        out("    missing: job %s version %s (round %d, %s via node%d, acknowledged at kill%+.3f s)" %
            (x["job"], x["version"], x["round"], x["op"], x["node"], x["t1_rel_kill"]))
    if len(missing) > 10:
        out("    ... %d more missing" % (len(missing) - 10))
    return 0


# ---- helpers for (d) and (e) ---------------------------------------------------

def write_retrying(client, node, path, body, limit_s=20.0):
    """A setup write: retried on 503 or no answer for up to limit_s."""
    t = time.time()
    while True:
        rec = client.request(node, "POST", path, body)
        if rec["status"] is not None and 200 <= rec["status"] < 300:
            return rec, body_json(rec)
        if (rec["status"] not in (None, 503)) or time.time() - t > limit_s:
            raise RuntimeError("setup write failed: " + show(rec, t))
        time.sleep(0.2)


def running_job(client, node, job_type, timeout_s, worker):
    """A setup job, created and started through `node`: (its id, the start's record)."""
    _, job = write_retrying(client, node, "/v1/jobs", {"type": job_type, "heartbeat_timeout_s": timeout_s})
    started, _ = write_retrying(client, node, "/v1/jobs/%s/start" % job["id"], {"worker": worker})
    return job["id"], started


def cmd_longpoll(a):
    urls = a.nodes.split(",")
    c1 = Client(urls)
    try:
        jid, _ = running_job(c1, 0, "failover-longpoll", 120, "failover-longpoll")
    except RuntimeError as e:
        out("FAIL round %d (d) long-poll after failover: %s" % (a.round, e))
        return 0
    result = {}

    def park():
        c2 = Client(urls, timeout=30)
        result["rec"] = c2.request(1, "GET", "/v1/jobs/%s/wait?timeout_s=20" % jid)
        c2.close()

    t = threading.Thread(target=park, daemon=True)
    t.start()
    time.sleep(1.0)
    if not t.is_alive():
        out("FAIL round %d (d) long-poll after failover: the wait on node2 answered before the job "
            "finished: %s" % (a.round, show(result["rec"], result["rec"]["t0"])))
        return 0
    t_succ0 = time.time()
    try:
        succ, _ = write_retrying(c1, 0, "/v1/jobs/%s/succeed" % jid, {"result": {"woken": True}}, limit_s=5)
    except RuntimeError as e:
        out("FAIL round %d (d) long-poll after failover: %s" % (a.round, e))
        return 0
    t.join(30)
    rec = result.get("rec")
    if rec is None:
        out("FAIL round %d (d) long-poll after failover: the wait on node2 had no answer after 30 s" % a.round)
        return 0
    b = body_json(rec) or {}
    wake = rec["t1"] - t_succ0
    ok = rec["status"] == 200 and b.get("state") == "succeeded" and wake <= 2.0
    out("%s round %d (d) long-poll after failover: GET /wait?timeout_s=20 parked on node2 answered "
        "%s state=%s %.0f ms after node1 was sent the succeed (which took %.0f ms; limit 2000 ms)" %
        ("PASS" if ok else "FAIL", a.round, rec["status"], b.get("state"), wake * 1000,
         succ["latency"] * 1000))
    if not ok:
        out("    wait: %s" % show(rec, t_succ0))
    c1.close()
    return 0


def parse_ts(s):
    # 2026-11-27T19:00:41.672Z
    import datetime
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def cmd_watchdog(a):
    urls = a.nodes.split(",")
    c = Client(urls)
    try:
        jid, started = running_job(c, 1, "failover-watchdog", 2, "failover-silent")
    except RuntimeError as e:
        out("FAIL round %d (e) watchdog after failover: %s" % (a.round, e))
        return 0
    t_started = started["t1"]
    last = None
    while time.time() - t_started < 20:
        rec = c.request(0, "GET", "/v1/jobs/%s" % jid)
        b = body_json(rec) if rec["status"] == 200 else None
        if b is not None:
            last = b
            if b.get("state") in ("succeeded", "failed", "cancelled"):
                break
        time.sleep(0.2)
    c.close()
    t_seen = time.time()
    b = last or {}
    code = (b.get("error") or {}).get("code")
    lag = None
    try:
        lag = parse_ts(b["finished_at"]) - parse_ts(b["deadline_at"] or (b["error"]["details"]["deadline_at"]))
    except Exception:
        pass
    ok = b.get("state") == "failed" and code == "heartbeat_timeout" and t_seen - t_started <= 15
    out("%s round %d (e) watchdog after failover: a job started with heartbeat_timeout_s=2 and left "
        "silent is %s (error %s) %.1f s after its start (limit 15 s)%s" %
        ("PASS" if ok else "FAIL", a.round, b.get("state"), code, t_seen - t_started,
         ("; failed %.0f ms after its deadline_at" % (lag * 1000)) if lag is not None else ""))
    if not ok:
        out("    job: %s" % json.dumps(b)[:500])
    return 0


# ---- cluster state ---------------------------------------------------------------

def cmd_cluster(a):
    try:
        with open(os.path.join(a.dir, "ports")) as f:
            base = int(f.readline().strip())
    except Exception as e:
        out("no ports file: %s" % e)
        return 2
    for i in range(3):
        try:
            c = http.client.HTTPConnection("127.0.0.1", base + 5 + i, timeout=2)
            c.request("GET", "/cluster")
            r = c.getresponse()
            view = json.loads(r.read())
            c.close()
        except Exception:
            continue
        leader = sync = None
        running = []
        for m in view.get("members", []):
            state = m.get("state")
            if state in ("running", "streaming"):
                running.append(m["name"])
            if m.get("role") == "leader" and state == "running":
                leader = m["name"]
            if m.get("role") == "sync_standby" and state in ("running", "streaming"):
                sync = m["name"]
        out("leader=%s sync=%s running=%s" % (leader or "-", sync or "-", ",".join(sorted(running)) or "-"))
        return 0 if leader and sync else 1
    out("leader=- sync=- running=- (no Patroni REST API answers)")
    return 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("round")
    r.add_argument("--nodes", required=True)
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--work", required=True)
    r.add_argument("kill", nargs="+")
    lo = sub.add_parser("lost")
    lo.add_argument("--round", type=int, required=True)
    lo.add_argument("--work", required=True)
    lo.add_argument("--replay", required=True)
    for name in ("longpoll", "watchdog"):
        s = sub.add_parser(name)
        s.add_argument("--nodes", required=True)
        s.add_argument("--round", type=int, required=True)
    cl = sub.add_parser("cluster")
    cl.add_argument("--dir", required=True)
    a = p.parse_args()
    return {"round": cmd_round, "lost": cmd_lost, "longpoll": cmd_longpoll,
            "watchdog": cmd_watchdog, "cluster": cmd_cluster}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
