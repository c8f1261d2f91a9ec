#!/usr/bin/env python3
"""The router against nginx and haproxy in front of the same upstream, in one run.

Each proxy gets one worker thread pinned to core 0; wrk (one thread) and the upstream
(nginx, one worker, a fixed 2-byte answer) share core 1. Reports requests/s and p99
from wrk's latency distribution, then checks Mobius' weighted split over 100,000
requests. Usage: python3 bench/router_bench.py [--seconds 10] [--connections 50] [--runs 3]
Needs: nginx, haproxy, wrk, taskset (Debian packages) and a release build of mobius.
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {port}")


def nginx_conf(tmp, name, body):
    path = os.path.join(tmp, f"{name}.conf")
    with open(path, "w") as f:
        f.write(f"""daemon off;
worker_processes 1;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/{name}-body;
  proxy_temp_path {tmp}/{name}-proxy;
  fastcgi_temp_path {tmp}/{name}-fcgi;
  uwsgi_temp_path {tmp}/{name}-uwsgi;
  scgi_temp_path {tmp}/{name}-scgi;
  {body}
}}
""")
    return path


def wrk(port, seconds, connections):
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
         f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return rps, float(p99.group(1)) * scale, int(errors.group(1)) if errors else 0, socket_errors.group(1) if socket_errors else ""


def agent_call(info, method, path, body=None):
    request = urllib.request.Request(
        f"http://{info['addr']}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"authorization": f"Bearer {info['token']}", "content-type": "application/json"})
    with urllib.request.urlopen(request) as r:
        return json.loads(r.read() or b"null")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mobius", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "mobius"))
    args = parser.parse_args()
    for tool in ["nginx", "haproxy", "wrk", "taskset"]:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (apt-get install nginx haproxy wrk util-linux)")
    tmp = tempfile.mkdtemp(prefix="router-bench-")
    procs = []
    try:
        upstream = free_port()
        conf = nginx_conf(tmp, "upstream", f"server {{ listen 127.0.0.1:{upstream} backlog=4096; "
                                            "location / { return 200 'ok'; } }")
        procs.append(subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", conf, "-p", tmp]))
        wait_port(upstream)

        ports = {"nginx": free_port(), "haproxy": free_port(), "mobius": free_port()}
        conf = nginx_conf(tmp, "proxy", f"""upstream app {{ server 127.0.0.1:{upstream}; keepalive 128; }}
  server {{ listen 127.0.0.1:{ports['nginx']} backlog=4096;
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")
        procs.append(subprocess.Popen(["taskset", "-c", "0", "nginx", "-c", conf, "-p", tmp]))
        haproxy_cfg = os.path.join(tmp, "haproxy.cfg")
        with open(haproxy_cfg, "w") as f:
            f.write(f"""global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend web
  bind 127.0.0.1:{ports['haproxy']}
  default_backend app
backend app
  server s1 127.0.0.1:{upstream}
""")
        procs.append(subprocess.Popen(["taskset", "-c", "0", "haproxy", "-f", haproxy_cfg]))
        agent_dir = os.path.join(tmp, "agent")
        procs.append(subprocess.Popen(["taskset", "-c", "0", args.mobius, "agent", "--dir", agent_dir,
                                       "--threads", "1"], stderr=subprocess.DEVNULL))
        info_path = os.path.join(agent_dir, "agent.json")
        deadline = time.time() + 10
        while not os.path.exists(info_path):
            if time.time() > deadline:
                raise SystemExit("the mobius agent did not start")
            time.sleep(0.02)
        info = json.load(open(info_path))
        # The upstream is not an instance the agent supervises: register it as an external backend.
        register = [("stable", f"127.0.0.1:{upstream}")]
        for backend_id, addr in register:
            agent_call(info, "PUT", f"/v1/backends/{backend_id}", {"addr": addr})
        agent_call(info, "PUT", "/v1/listeners/bench", {
            "listen": f"127.0.0.1:{ports['mobius']}",
            "versions": [{"version": "v1", "weight": 100, "backends": ["stable"]}]})
        for p in ports.values():
            wait_port(p)

        results = {name: [] for name in ports}
        for run in range(args.runs):
            for name, port in ports.items():
                wrk(port, 2, args.connections)  # warm-up
                results[name].append(wrk(port, args.seconds, args.connections))
        print(f"| proxy (1 thread, core 0) | requests/s (median of {args.runs}) | p99 ms (median) | errors |")
        print("|---|---|---|---|")
        for name, runs in results.items():
            rps = statistics.median(r[0] for r in runs)
            p99 = statistics.median(r[1] for r in runs)
            errors = sum(r[2] for r in runs)
            sock = "; ".join(r[3] for r in runs if r[3])
            print(f"| {name} | {rps:,.0f} | {p99:.2f} | {errors}{' ' + sock if sock else ''} |")
        nginx_rps = statistics.median(r[0] for r in results["nginx"])
        nginx_p99 = statistics.median(r[1] for r in results["nginx"])
        mobius_rps = statistics.median(r[0] for r in results["mobius"])
        mobius_p99 = statistics.median(r[1] for r in results["mobius"])
        print(f"\nmobius/nginx requests/s: {mobius_rps / nginx_rps:.2f} (target >= 1.00); "
              f"p99: {mobius_p99 / nginx_p99:.2f} (target <= 1.20)")

        # The weighted split: 90/10 over two backend ids of the same upstream.
        agent_call(info, "PUT", "/v1/backends/canary", {"addr": f"127.0.0.1:{upstream}"})
        agent_call(info, "PUT", "/v1/listeners/split", {
            "listen": "127.0.0.1:0",
            "versions": [{"version": "stable", "weight": 90, "backends": ["stable"]},
                         {"version": "canary", "weight": 10, "backends": ["canary"]}]})
        split = agent_call(info, "GET", "/v1/listeners")["split"]["addr"]
        split_port = int(split.rsplit(":", 1)[1])
        total = 0
        while total < 100_000:
            wrk(split_port, 3, args.connections)
            counters = agent_call(info, "POST", "/v1/samples", {"listener": "split",
                                                               "since": {"stable": 2**63, "canary": 2**63}})
            by_version = {c["version"]: c["requests"] for c in counters}
            total = sum(by_version.values())
        share = by_version.get("canary", 0) / total
        print(f"\nweighted split 90/10 over {total:,} requests: canary {share * 100:.3f}% "
              f"(configured 10%, off by {abs(share - 0.10) * 100:.3f} points)")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
