#!/usr/bin/env python3
"""Storage and queries, Mobius beside Prometheus on the same backfilled data.

Writes an OpenMetrics file of SERIES counters (100 instances x SERIES/100 paths)
with a sample every STEP seconds over HOURS hours, loads it into Prometheus with
`promtool tsdb create-blocks-from openmetrics` and into Mobius with
`mobius backfill`, then reports:

- bytes per sample on disk in blocks (Prometheus: the created blocks; Mobius: its
  compacted blocks, from their meta),
- the latency of `sum(rate(bench_requests_total[5m]))` over the last hour (a range
  query, step 60 s) and at the last instant, median of RUNS each, both servers up,
- Mobius' peak resident memory while replaying its write-ahead log at start
  (VmHWM) next to its resident memory once serving (VmRSS), with HEAD_MINUTES
  minutes of samples left in the log.

Usage: python3 bench/monitor_storage_bench.py --mobius target/release/mobius
       [--series 10000] [--hours 6] [--step 30] [--runs 10]
Needs: prometheus and promtool (Debian package), a release build of mobius.
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
import time
import urllib.parse
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, headers=None, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2):
                return
        except Exception:
            time.sleep(0.2)
    sys.exit(f"{url} did not answer")


def write_openmetrics(path, series, hours, step, end):
    """Counters that grow by a random 0..20 each step (compressible like real ones)."""
    rng = random.Random(7)
    points = hours * 3600 // step
    start = end - points * step
    paths = max(1, series // 100)
    with open(path, "w") as out:
        out.write("# TYPE bench_requests counter\n")
        for i in range(100):
            for p in range(paths):
                labels = f'instance="i{i:03d}",path="/p{p:03d}"'
                value = 0
                lines = []
                for k in range(points):
                    value += rng.randint(0, 20)
                    lines.append(f"bench_requests_total{{{labels}}} {value} {start + k * step}\n")
                out.write("".join(lines))
        out.write("# EOF\n")
    return points * 100 * paths, start


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def prometheus_blocks(path):
    samples, size = 0, 0
    for name in os.listdir(path):
        meta = os.path.join(path, name, "meta.json")
        if os.path.exists(meta):
            with open(meta) as f:
                samples += json.load(f)["stats"]["numSamples"]
            size += dir_bytes(os.path.join(path, name))
    return samples, size


def timed_query(base, path, params, headers, runs):
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    times = []
    answer = None
    for _ in range(runs + 1):
        started = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=120) as r:
            answer = json.loads(r.read())
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:]) * 1000, answer


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mobius", required=True)
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--hours", type=int, default=6)
    ap.add_argument("--step", type=int, default=30)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="mobius-storage-bench-")
    procs = []
    try:
        end = int(time.time()) // 3600 * 3600
        om = os.path.join(work, "data.om")
        t = time.time()
        samples, start = write_openmetrics(om, args.series, args.hours, args.step, end)
        print(f"{samples:,} samples of {args.series:,} series over {args.hours} h written in {time.time() - t:.0f} s", flush=True)

        prom_data = os.path.join(work, "prom")
        t = time.time()
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", om, prom_data], check=True, stdout=subprocess.DEVNULL)
        prom_load = time.time() - t
        prom_samples, prom_bytes = prometheus_blocks(prom_data)

        mob_data = os.path.join(work, "mobius")
        t = time.time()
        out = subprocess.run([args.mobius, "backfill", om, "--data", mob_data], check=True, capture_output=True, text=True).stdout
        mob_load = time.time() - t
        print(out.strip(), flush=True)
        mob_samples, mob_bytes = 0, 0
        blocks = os.path.join(mob_data, "monitor", "blocks")
        for name in os.listdir(blocks):
            with open(os.path.join(blocks, name, "meta.json")) as f:
                mob_samples += json.load(f)["numSamples"]
            mob_bytes += os.path.getsize(os.path.join(blocks, name, "index")) + os.path.getsize(os.path.join(blocks, name, "chunks"))

        prom_port, mob_port = free_port(), free_port()
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1h\n")
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={prom_data}",
             "--storage.tsdb.retention.time=10y", f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        mob = subprocess.Popen(
            [args.mobius, "serve", "--data", mob_data, "--listen", f"127.0.0.1:{mob_port}", "--monitor-retention", "3650d"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(mob)
        prom = f"http://127.0.0.1:{prom_port}"
        base = f"http://127.0.0.1:{mob_port}"
        wait_http(f"{prom}/-/ready")
        token = open(os.path.join(mob_data, "admin-token")).read().strip() if os.path.exists(os.path.join(mob_data, "admin-token")) else None
        while token is None:
            time.sleep(0.1)
            p = os.path.join(mob_data, "admin-token")
            token = open(p).read().strip() if os.path.exists(p) else None
        auth = {"Authorization": f"Bearer {token}"}
        wait_http(f"{base}/healthz")
        replay_peak = status_kb(mob.pid, "VmHWM")
        time.sleep(3)
        serving = status_kb(mob.pid, "VmRSS")

        query = "sum(rate(bench_requests_total[5m]))"
        range_params = {"query": query, "start": end - 3600, "end": end, "step": 60}
        instant_params = {"query": query, "time": end}
        pr_ms, pr_answer = timed_query(prom, "/api/v1/query_range", range_params, {}, args.runs)
        mr_ms, mr_answer = timed_query(base, "/api/v1/query_range", range_params, auth, args.runs)
        pi_ms, pi_answer = timed_query(prom, "/api/v1/query", instant_params, {}, args.runs)
        mi_ms, mi_answer = timed_query(base, "/api/v1/query", instant_params, auth, args.runs)
        same = pi_answer["data"]["result"][0]["value"][1] == mi_answer["data"]["result"][0]["value"][1]

        print()
        print(f"| measure | Prometheus 2.42 | Mobius | Mobius / Prometheus |")
        print(f"|---|---|---|---|")
        print(f"| load ({samples:,} samples) | {prom_load:.1f} s (promtool) | {mob_load:.1f} s (mobius backfill) | {mob_load / prom_load:.2f} |")
        print(f"| bytes per sample in blocks | {prom_bytes / prom_samples:.3f} ({prom_samples:,} samples) | {mob_bytes / mob_samples:.3f} ({mob_samples:,} samples) | {(mob_bytes / mob_samples) / (prom_bytes / prom_samples):.2f} |")
        print(f"| `{query}` over 1 h, step 60 s (median of {args.runs}) | {pr_ms:.1f} ms | {mr_ms:.1f} ms | {mr_ms / pr_ms:.2f} |")
        print(f"| `{query}` at one instant (median of {args.runs}) | {pi_ms:.1f} ms | {mi_ms:.1f} ms | {mi_ms / pi_ms:.2f} |")
        print(f"| Mobius peak RSS while replaying vs serving | | {replay_peak / 1024:.0f} MB vs {serving / 1024:.0f} MB | |")
        print(f"\ninstant answers equal: {same} ({pi_answer['data']['result'][0]['value'][1]} vs {mi_answer['data']['result'][0]['value'][1]})")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
