#!/usr/bin/env python3
"""Benchmarks `mobius serve` against the server issue's targets.

Usage: python3 bench/server_bench.py [--mobius PATH] [--runs N] [--seed 10000] [--rate 200] [--seconds 10]
                                     [--postgres URL] [--out docs/benchmarks.md]

Measured, each on a fresh data directory:
  start   time from spawning the process to the first 200 of /healthz (first start, and a
          restart with --seed runs stored), median of N
  webhook time from sending a signed push webhook to the run's first step starting
          (the step's started_at, same clock), median and max of N pushes
  lists   latency of list endpoints at a constant --rate requests/s for --seconds each with
          --seed runs stored, measured from each request's scheduled send time (no
          coordinated omission): p50 and p99
  rss     resident memory (VmRSS) of the idle server after all of the above, and its peak (VmHWM)

With --postgres (an admin URL), everything is repeated on a fresh PostgreSQL database.

With --buildbot DIR (the bin folder of a virtualenv with `pip install buildbot buildbot-www
buildbot-worker`), Buildbot, a CI server that runs here, is measured beside it: first start
(create-master and start, to the first 200 of /api/v2/builds), restart, a signed GitHub push
webhook to its first step started (polled every 20 ms: Buildbot stores whole seconds), the
builds list at the same rate (holding only the builds it ran), and the master's RSS.
"""
import argparse
import hashlib
import hmac
import http.client
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

WF = """name: CI
on: [push, workflow_dispatch]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo building
  test:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo testing
"""

GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com")


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, text=True).stdout.strip()


class Server:
    def __init__(self, mobius, data, database=None):
        self.mobius, self.data, self.database = mobius, data, database
        self.proc, self.port = None, None

    def start(self):
        args = [self.mobius, "serve", "--data", self.data, "--listen", "127.0.0.1:0", "--poll-interval", "1h"]
        if self.database:
            args += ["--database", self.database]
        began = time.perf_counter()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self.proc.stdout:
            if line.startswith("mobius: listening on http://"):
                self.port = int(line.rsplit(":", 1)[1])
                break
        # Ready is what a load balancer sees: the first 200 from /healthz.
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.002)
        ready = time.perf_counter() - began
        self.token = open(os.path.join(self.data, "admin-token")).read().strip()
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        return ready

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None

    def call(self, method, path, body=None, headers=None, raw=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Authorization": f"Bearer {self.token}"}
        h.update(headers or {})
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if payload is not None and "Content-Type" not in h:
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=h)
        r = conn.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data.decode(errors="replace")

    def rss_kb(self):
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

    def rss_parts_kb(self):
        """The resident set split as the kernel counts it: anonymous memory, and
        file-backed pages (the binary's and libraries' text, the mapped database)."""
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        return {k: int(fields[k].split()[0]) for k in ("RssAnon", "RssFile", "RssShmem") if k in fields}


def seed_sqlite(db, project_id, count):
    """Inserts `count` completed runs with two jobs of two steps each, as the server writes them."""
    conn = sqlite3.connect(db)
    now = int(time.time() * 1000)
    cur = conn.cursor()
    start = cur.execute("SELECT COALESCE(MAX(number), 0) FROM runs").fetchone()[0]
    for i in range(count):
        t = now - (count - i) * 60_000
        cur.execute(
            "INSERT INTO runs (project_id, number, attempt, workflow, workflow_name, event, ref_name, head_sha, actor, author, message,"
            " payload, inputs, status, conclusion, reason, concurrency_group, cancel_in_progress, cancel_requested, rerun_of,"
            " created_at, started_at, completed_at) VALUES (?, ?, 1, '.github/workflows/ci.yml', 'CI', 'push', 'refs/heads/main', ?, 'bench',"
            " 'Bench', 'seeded run', '{}', '{}', 'completed', ?, NULL, NULL, 0, 0, NULL, ?, ?, ?)",
            (project_id, start + i + 1, "%040x" % random.getrandbits(160), random.choice(["success", "failure"]), t, t + 100, t + 5000),
        )
        run_id = cur.lastrowid
        for job in ("build", "test"):
            cur.execute("INSERT INTO jobs (run_id, name, status, conclusion, started_at, completed_at) VALUES (?, ?, 'completed', 'success', ?, ?)",
                        (run_id, job, t + 100, t + 2000))
            job_id = cur.lastrowid
            for n in (1, 2):
                cur.execute("INSERT INTO steps (job_id, number, name, status, conclusion, started_at, completed_at, spool, log_blob, log_size)"
                            " VALUES (?, ?, 'Run echo', 'completed', 'success', ?, ?, '', NULL, 0)", (job_id, n, t + 100, t + 1000))
    conn.commit()
    conn.close()


def seed_postgres(url, project_id, count):
    sql = f"""
WITH r AS (
  INSERT INTO runs (project_id, number, attempt, workflow, workflow_name, event, ref_name, head_sha, actor, author, message,
    payload, inputs, status, conclusion, cancel_in_progress, cancel_requested, created_at, started_at, completed_at)
  SELECT {project_id}, 1000 + g, 1, '.github/workflows/ci.yml', 'CI', 'push', 'refs/heads/main', md5(g::text) || '00000000', 'bench', 'Bench',
    'seeded run', '{{}}', '{{}}', 'completed', CASE WHEN g % 2 = 0 THEN 'success' ELSE 'failure' END, 0, 0,
    (extract(epoch from now()) * 1000)::bigint - g * 60000, (extract(epoch from now()) * 1000)::bigint - g * 60000 + 100,
    (extract(epoch from now()) * 1000)::bigint - g * 60000 + 5000
  FROM generate_series(1, {count}) g RETURNING id, started_at),
j AS (
  INSERT INTO jobs (run_id, name, status, conclusion, started_at, completed_at)
  SELECT r.id, n, 'completed', 'success', r.started_at, r.started_at + 1900 FROM r, unnest(ARRAY['build', 'test']) n RETURNING id, started_at)
INSERT INTO steps (job_id, number, name, status, conclusion, started_at, completed_at, spool, log_size)
SELECT j.id, n, 'Run echo', 'completed', 'success', j.started_at, j.started_at + 900, '', 0 FROM j, generate_series(1, 2) n;
"""
    subprocess.run(["psql", "-q", url, "-c", sql], check=True, capture_output=True)


def fresh_postgres(admin):
    name = "mobius_bench_%06x" % random.getrandbits(24)
    subprocess.run(["psql", "-q", admin, "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return admin.rsplit("/", 1)[0] + "/" + name


def percentile(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def constant_rate(server, path, rate, seconds):
    """Requests at a fixed schedule; latency from the scheduled time to the full response."""
    total = int(rate * seconds)
    t0 = time.perf_counter() + 0.2
    latencies, errors = [], [0]
    lock = threading.Lock()
    next_index = [0]

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        headers = {"Authorization": f"Bearer {server.token}"}
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= total:
                return
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                conn.request("GET", path, headers=headers)
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except OSError:
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                ok = False
            done = time.perf_counter()
            with lock:
                latencies.append((done - due) * 1000)
                if not ok:
                    errors[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return percentile(latencies, 50), percentile(latencies, 99), errors[0], len(latencies)


def sign(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def bench_backend(args, label, database_admin):
    root = tempfile.mkdtemp(prefix="mobius-bench-")
    results = {"backend": label}
    try:
        starts = []
        for i in range(args.runs):
            data = os.path.join(root, f"start{i}")
            db = fresh_postgres(database_admin) if database_admin else None
            s = Server(args.mobius, data, db)
            starts.append(s.start())
            s.stop()
        results["first_start_ms"] = statistics.median(starts) * 1000

        repo = os.path.join(root, "repo")
        os.makedirs(os.path.join(repo, ".github", "workflows"))
        open(os.path.join(repo, ".github", "workflows", "ci.yml"), "w").write(WF)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "initial")
        database = fresh_postgres(database_admin) if database_admin else None
        data = os.path.join(root, "main")
        server = Server(args.mobius, data, database)
        server.start()
        secret = "benchmark-webhook-secret-0123456789"
        status, added = server.call("POST", "/api/v1/projects", {"name": "bench", "repo": repo, "webhook_secret": secret})
        assert status == 201, added
        project_id = added["project"]["id"]

        # Webhook push to first step.
        delays = []
        for i in range(args.runs):
            before = git(repo, "rev-parse", "HEAD")
            open(os.path.join(repo, f"file{i}.txt"), "w").write(str(i))
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", f"change {i}")
            after = git(repo, "rev-parse", "HEAD")
            body = json.dumps({"ref": "refs/heads/main", "before": before, "after": after, "sender": {"login": "bench"}}).encode()
            sent_ms = time.time() * 1000
            status, answer = server.call("POST", "/api/v1/hooks/github/bench", raw=body,
                                         headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(secret, body), "Content-Type": "application/json"})
            assert status == 202, answer
            run_id = answer["runs"][0]["id"]
            deadline = time.time() + 30
            while time.time() < deadline:
                _, run = server.call("GET", f"/api/v1/runs/{run_id}")
                if run["status"] == "completed":
                    break
                time.sleep(0.05)
            first = run["jobs"][0]["steps"][0]["started_at"]
            started_ms = time.mktime(time.strptime(first[:19], "%Y-%m-%dT%H:%M:%S")) * 1000 - time.timezone * 1000 + int(first[20:23])
            delays.append(started_ms - sent_ms)
        results["webhook_to_step_ms"] = statistics.median(delays)
        results["webhook_to_step_max_ms"] = max(delays)

        # 10,000 runs stored, then a restart and the list endpoints under load.
        server.stop()
        if database:
            seed_postgres(database, project_id, args.seed)
        else:
            seed_sqlite(os.path.join(data, "mobius.db"), project_id, args.seed)
        restarts = []
        for _ in range(3):
            restarts.append(server.start())
            server.stop()
        results["restart_ms"] = statistics.median(restarts)
        server.start()
        _, runs = server.call("GET", "/api/v1/runs?limit=1")
        some_run = runs[0]["id"]
        lists = {}
        for path in ["/api/v1/runs", "/api/v1/runs?project=bench&status=completed", "/api/v1/projects", f"/api/v1/runs/{some_run}", "/api/v1/runs?limit=100"]:
            lists[path] = constant_rate(server, path, args.rate, args.seconds)
        results["lists"] = lists
        time.sleep(2)
        rss, hwm = server.rss_kb()
        results["idle_rss_mb"] = rss / 1024
        results["peak_rss_mb"] = hwm / 1024
        results["rss_parts_mb"] = {k: v / 1024 for k, v in server.rss_parts_kb().items()}
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


BUILDBOT_CFG = """
from buildbot.plugins import *
c = BuildmasterConfig = {}
c['workers'] = [worker.Worker("w1", "pass")]
c['protocols'] = {'pb': {'port': "tcp:%(pb)d:interface=127.0.0.1"}}
c['change_source'] = []
c['schedulers'] = [schedulers.SingleBranchScheduler(name="main", change_filter=util.ChangeFilter(branch='main'),
                   treeStableTimer=None, builderNames=["ci"])]
f = util.BuildFactory()
f.addStep(steps.ShellCommand(command=["echo", "building"]))
f.addStep(steps.ShellCommand(command=["echo", "testing"]))
c['builders'] = [util.BuilderConfig(name="ci", workernames=["w1"], factory=f)]
c['buildbotURL'] = "http://127.0.0.1:%(www)d/"
c['www'] = dict(port="tcp:%(www)d:interface=127.0.0.1", plugins={},
                change_hook_dialects={'github': {'secret': '%(secret)s', 'strict': True}})
c['db'] = {'db_url': "sqlite:///state.sqlite"}
c['buildbotNetUsageData'] = None
"""


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    r = conn.getresponse()
    return r.status, r.read()


def bench_buildbot(args):
    """Buildbot measured as the peer: a master with the www plugin, one local worker."""
    bindir = args.buildbot
    root = tempfile.mkdtemp(prefix="buildbot-bench-")
    results = {"backend": "Buildbot 4 (SQLite)"}
    secret = "benchmark-webhook-secret-0123456789"
    procs = []

    def start(master, port):
        began = time.perf_counter()
        proc = subprocess.Popen([os.path.join(bindir, "buildbot"), "start", "--nodaemon", master],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            try:
                if http_get(port, "/api/v2/builds")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.005)
        return proc, time.perf_counter() - began

    try:
        starts = []
        for i in range(args.runs):
            master = os.path.join(root, f"m{i}")
            www, pb = free_port(), free_port()
            began = time.perf_counter()
            subprocess.run([os.path.join(bindir, "buildbot"), "create-master", "-q", master], check=True, capture_output=True)
            open(os.path.join(master, "master.cfg"), "w").write(BUILDBOT_CFG % {"www": www, "pb": pb, "secret": secret})
            subprocess.run([os.path.join(bindir, "buildbot"), "upgrade-master", master], check=True, capture_output=True)
            created = time.perf_counter() - began
            proc, ready = start(master, www)
            proc.terminate(); proc.wait()
            starts.append(created + ready)
        results["first_start_ms"] = statistics.median(starts) * 1000
        restarts = []
        for _ in range(3):
            proc, ready = start(master, www)
            restarts.append(ready)
            proc.terminate(); proc.wait()
        results["restart_ms"] = statistics.median(restarts)
        proc, _ = start(master, www)
        procs.append(proc)
        workdir = os.path.join(root, "worker")
        subprocess.run([os.path.join(bindir, "buildbot-worker"), "create-worker", "-q", workdir, f"127.0.0.1:{pb}", "w1", "pass"], check=True)
        procs.append(subprocess.Popen([os.path.join(bindir, "buildbot-worker"), "start", "--nodaemon", workdir],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        while b'"connected_to": []' in http_get(www, "/api/v2/workers")[1] or b'"workers": []' in http_get(www, "/api/v2/workers")[1]:
            time.sleep(0.1)
        delays = []
        for i in range(args.runs):
            sha = "%040x" % random.getrandbits(160)
            commit = {"id": sha, "message": f"change {i}", "timestamp": "2026-01-01T00:00:00+00:00", "url": "u",
                      "author": {"name": "b", "email": "b@example.com"}, "committer": {"name": "b", "email": "b@example.com"},
                      "added": [], "removed": [], "modified": ["f"], "distinct": True}
            body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": sha, "commits": [commit], "head_commit": commit,
                               "repository": {"html_url": "https://example.com/bench", "name": "bench", "full_name": "b/bench",
                                              "owner": {"login": "b", "name": "b"}, "clone_url": "https://example.com/bench.git"},
                               "pusher": {"name": "b"}, "sender": {"login": "b"}}).encode()
            sent = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", www, timeout=30)
            conn.request("POST", "/change_hook/github", body=body, headers={"Content-Type": "application/json", "X-GitHub-Event": "push",
                         "X-Hub-Signature-256": sign(secret, body),
                         # Buildbot checks GitHub's older SHA-1 signature header.
                         "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()})
            assert conn.getresponse().status == 200
            while True:
                builds = json.loads(http_get(www, "/api/v2/builds?order=-buildid&limit=1")[1])["builds"]
                if builds and builds[0]["buildid"] == i + 1:
                    steps = json.loads(http_get(www, f"/api/v2/builds/{builds[0]['buildid']}/steps")[1])["steps"]
                    if steps and steps[0]["started_at"]:
                        break
                time.sleep(0.02)
            delays.append((time.perf_counter() - sent) * 1000)
            while not json.loads(http_get(www, f"/api/v2/builds/{i + 1}")[1])["builds"][0]["complete"]:
                time.sleep(0.05)
        results["webhook_to_step_ms"] = statistics.median(delays)
        results["webhook_to_step_max_ms"] = max(delays)
        fake = type("S", (), {"port": www, "token": ""})()
        results["lists"] = {"builds": constant_rate(fake, "/api/v2/builds?order=-buildid&limit=30", args.rate, args.seconds)}
        time.sleep(2)
        fields = dict(line.split(":", 1) for line in open(f"/proc/{procs[0].pid}/status"))
        results["idle_rss_mb"] = int(fields["VmRSS"].split()[0]) / 1024
        results["peak_rss_mb"] = int(fields["VmHWM"].split()[0]) / 1024
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(root, ignore_errors=True)
    return results


def report(all_results, args):
    lines = ["## Server (`mobius serve`)", "",
             f"`python3 bench/server_bench.py --runs {args.runs} --seed {args.seed} --rate {args.rate} --seconds {args.seconds}`"
             + (" --postgres URL" if args.postgres else "") + ", release build, this machine (2 cores).", ""]
    lines += ["| measure | target | " + " | ".join(r["backend"] for r in all_results) + " |",
              "|---|---|" + "---|" * len(all_results)]
    def row(name, target, fmt):
        lines.append(f"| {name} | {target} | " + " | ".join(fmt(r) for r in all_results) + " |")
    row("ready after start, first start (median; Mobius: `/healthz`, Buildbot: `/api/v2/builds`)", "≤ 300 ms", lambda r: f"{r['first_start_ms']:.0f} ms")
    row(f"ready after restart, {args.seed} runs stored (median)", "≤ 300 ms",
        lambda r: f"{r['restart_ms'] * 1000:.0f} ms" + (f" ({args.runs} builds stored)" if "builds" in r["lists"] else ""))
    row("signed push webhook → first step started (median / max)", "≤ 1 s", lambda r: f"{r['webhook_to_step_ms']:.0f} / {r['webhook_to_step_max_ms']:.0f} ms")
    def latency(r, p):
        if p not in r["lists"]:
            if "builds" in r["lists"] and p == "/api/v1/runs":
                b = r["lists"]["builds"]
                return "{:.1f} / {:.1f} ms (`/api/v2/builds?limit=30`, {} builds stored)".format(b[0], b[1], args.runs)
            return "-"
        v = r["lists"][p]
        return "{:.1f} / {:.1f} ms{}".format(v[0], v[1], f" ({v[2]} errors)" if v[2] else "")
    for path in all_results[0]["lists"]:
        row(f"`GET {path}` at {args.rate}/s, p50 / p99", "p99 < 20 ms", lambda r, p=path: latency(r, p))
    row("RSS idle after serving runs and load (peak)", "≤ 40 MB", lambda r: f"{r['idle_rss_mb']:.1f} MB ({r['peak_rss_mb']:.1f} MB)")
    row("of which anonymous / file-backed (binary, libraries, mapped database)", "", lambda r: " / ".join(f"{r['rss_parts_mb'][k]:.1f}" for k in ("RssAnon", "RssFile")) + " MB" if r.get("rss_parts_mb") else "-")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mobius", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "mobius"))
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--seed", type=int, default=10000)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--postgres", default=os.environ.get("MOBIUS_TEST_POSTGRES"))
    ap.add_argument("--buildbot", help="bin folder of a virtualenv with buildbot, buildbot-www and buildbot-worker")
    ap.add_argument("--out")
    args = ap.parse_args()
    results = [bench_backend(args, "SQLite", None)]
    if args.postgres:
        results.append(bench_backend(args, "PostgreSQL", args.postgres))
    if args.buildbot:
        results.append(bench_buildbot(args))
    text = report(results, args)
    print(text)
    print(json.dumps(results, indent=1), file=sys.stderr)
    if args.out:
        doc = open(args.out).read()
        marker = "## Server (`mobius serve`)"
        if marker in doc:
            head, _, rest = doc.partition(marker)
            tail = rest.split("\n## ", 1)
            doc = head + text + ("\n## " + tail[1] if len(tail) > 1 else "")
        else:
            doc = doc.rstrip("\n") + "\n\n" + text
        open(args.out, "w").write(doc)


if __name__ == "__main__":
    main()
