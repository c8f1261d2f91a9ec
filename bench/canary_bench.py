#!/usr/bin/env python3
"""Healthy canaries under ordinary noise: 20 rollouts with 1 s steps through a real
`mobius serve`, under 100 requests/s, must all be promoted (no false rollback).
Then a canary failing 20% of its requests: time from its first request to weight 0.

Usage: python3 bench/canary_bench.py [--rollouts 20] [--mobius target/release/mobius]
"""
import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = open(os.path.join(ROOT, "crates/deploy/tests/upstream.py")).read()
WORKFLOW = """on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/upload-artifact@v4
        with: { name: web, path: app/ }
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def delivery(port, fail_ratio):
    return f"""services:
  web:
    run: python3 upstream.py {{port}}
    env: {{ JITTER_MS: '5', FAIL_RATIO: '{fail_ratio}' }}
    instances: 2
    health: {{ path: /healthz, interval: 200ms }}
    stop_grace: 2s
    drain_timeout: 1s
environments:
  prod:
    listen: 127.0.0.1:{port}
    strategy:
      canary:
        steps: [ {{ weight: 20, pause: 1s }}, {{ weight: 50, pause: 1s }} ]
"""


class Server:
    def __init__(self, mobius, data):
        self.proc = subprocess.Popen([mobius, "serve", "--data", data, "--listen", "127.0.0.1:0",
                                      "--poll-interval", "200ms"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self.proc.stdout:
            if line.startswith("mobius: listening on "):
                self.url = line.split("on ", 1)[1].strip()
                break
        self.token = open(os.path.join(data, "admin-token")).read().strip()
        self.mobius = mobius

    def api(self, method, path, body=None):
        request = urllib.request.Request(self.url + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"authorization": f"Bearer {self.token}",
                                                  "content-type": "application/json"})
        with urllib.request.urlopen(request) as r:
            return json.loads(r.read() or b"null")

    def cli(self, *args):
        env = dict(os.environ, MOBIUS_SERVER=self.url, MOBIUS_TOKEN=self.token)
        return subprocess.run([self.mobius, *args], env=env, capture_output=True, text=True)

    def wait_release(self, version):
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if any(r["version"] == version for r in self.api("GET", "/api/v1/releases?service=web")):
                    return
            except urllib.error.HTTPError as e:
                if e.code != 404:  # 404: no release of the service yet
                    raise
            time.sleep(0.1)
        raise SystemExit(f"release {version} never appeared")


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env=dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@x",
                            GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@x"))


def load(port, rate, stop, outcomes):
    """About `rate` requests/s from 10 threads; records (start, status, version)."""
    def worker():
        interval = 10 / rate
        next_at = time.time() + random.random() * interval
        while not stop.is_set():
            time.sleep(max(0, next_at - time.time()))
            next_at += interval
            started = time.time()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    outcomes.append((started, r.status, r.headers.get("x-mobius-version", "")))
            except urllib.error.HTTPError as e:
                outcomes.append((started, e.code, e.headers.get("x-mobius-version", "")))
            except OSError:
                outcomes.append((started, 0, ""))
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(10)]
    for t in threads:
        t.start()
    return threads


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollouts", type=int, default=20)
    parser.add_argument("--mobius", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "mobius"))
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="canary-bench-")
    server = None
    try:
        port = free_port()
        repo = os.path.join(tmp, "repo")
        os.makedirs(os.path.join(repo, ".github/workflows"))
        os.makedirs(os.path.join(repo, "app"))
        open(os.path.join(repo, ".github/workflows/build.yml"), "w").write(WORKFLOW)
        open(os.path.join(repo, "app/upstream.py"), "w").write(APP)
        open(os.path.join(repo, "mobius.yaml"), "w").write(delivery(port, 0.005))
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "v1")
        server = Server(args.mobius, os.path.join(tmp, "data"))
        server.api("POST", "/api/v1/projects", {"name": "bench", "repo": repo})
        server.wait_release("v1")
        open(os.path.join(repo, "app/VERSION"), "w").write("2")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "v2")
        server.wait_release("v2")
        out = server.cli("deploy", "web", "--env", "prod", "--release", "v1", "--wait")
        assert out.returncode == 0, out.stdout + out.stderr
        stop = threading.Event()
        outcomes = []
        threads = load(port, 100, stop, outcomes)
        time.sleep(1)
        phases, durations = [], []
        for i in range(args.rollouts):
            version = "v2" if i % 2 == 0 else "v1"
            started = time.time()
            out = server.cli("deploy", "web", "--env", "prod", "--release", version, "--wait")
            durations.append(time.time() - started)
            status = json.loads(server.cli("rollout", "status", "web", "--env", "prod", "--json").stdout)
            phases.append(status["phase"])
            if status["phase"] != "succeeded":
                print(f"rollout {i + 1} to {version}: {status['phase']}: {status['message']}")
        stop.set()
        for t in threads:
            t.join()
        failed = sum(1 for o in outcomes if o[1] != 200)
        injected = sum(1 for o in outcomes if o[1] == 500)
        print(f"healthy canaries (2 steps of 1 s, 2 instances, 5 ms jitter, 0.5% errors in every version, "
              f"~100 requests/s): {phases.count('succeeded')} of {len(phases)} promoted, "
              f"{phases.count('rolled_back')} rolled back; rollout time median {statistics.median(durations):.1f} s, "
              f"max {max(durations):.1f} s; {len(outcomes)} requests, {failed} not 200 "
              f"({injected} of them the injected 500s)")

        # A canary failing 20% of its requests, at 10% weight under ~100 requests/s.
        open(os.path.join(repo, "mobius.yaml"), "w").write(delivery(port, 0.2).replace(
            "steps: [ { weight: 20, pause: 1s }, { weight: 50, pause: 1s } ]",
            "steps: [ { weight: 10, pause: 60s } ]"))
        # A new build, so a new release: one with v2's artifact would be v2 again (one release per digest).
        open(os.path.join(repo, "app/VERSION"), "w").write("3")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "v3 breaks")
        server.wait_release("v3")
        stop.clear()
        outcomes.clear()
        threads = load(port, 100, stop, outcomes)
        time.sleep(1)
        out = server.cli("deploy", "web", "--env", "prod", "--release", "v3", "--wait")
        ended = time.time()
        stop.set()
        for t in threads:
            t.join()
        status = json.loads(server.cli("rollout", "status", "web", "--env", "prod", "--json").stdout)
        first = min((o[0] for o in outcomes if o[2] == "v3"), default=None)
        last = max((o[0] for o in outcomes if o[2] == "v3"), default=None)
        stable_errors = sum(1 for o in outcomes if o[2] != "v3" and o[1] != 200 and o[1] != 500)
        print(f"failing canary (20% 500s at 10% weight): {status['phase']} ({status['message']}); "
              f"last request served by v3 began {last - first:.2f} s after its first; "
              f"--wait returned {ended - first:.2f} s after the first (instances stopped, drained); "
              f"errors other than the stable version's injected 500s: {stable_errors}")
    finally:
        if server:
            server.proc.terminate()
            server.proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
