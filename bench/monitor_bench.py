#!/usr/bin/env python3
"""Scraping and storing, Mobius beside Prometheus in one run.

Starts ../shared/bench/prometheus/exporter.py (N targets of 1,000 series), then
Debian's Prometheus and `mobius serve --prometheus-config` with the same
prometheus.yml (every target every second). After a warm-up, reads over a window:
CPU seconds from /proc/PID/stat, samples appended from each one's own /metrics
(prometheus_tsdb_head_samples_appended_total, mobius_monitor_samples_appended_total),
resident memory and series in memory, and write-ahead-log bytes per sample.

Usage: python3 bench/monitor_bench.py [--targets 50] [--warmup 30] [--window 60]
Needs: prometheus (Debian package), python3, a release build of mobius.
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORTER = os.path.join(ROOT, "..", "shared", "bench", "prometheus", "exporter.py")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} never answered")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_bytes(pid, field):
    """A memory figure of /proc/PID/status (`VmRSS`, `RssAnon`...) in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    return 0


def rss_bytes(pid):
    return status_bytes(pid, "VmRSS")


def metric(url, name):
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def idle_rss(tmp, mobius_bin):
    """Resident memory of each server running with nothing to scrape, after 15 s."""
    config = os.path.join(tmp, "idle.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n")
    prom_port, mobius_port = free_port(), free_port()
    prom = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp}/idle-prometheus",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mobius = subprocess.Popen([mobius_bin, "serve", "--data", f"{tmp}/idle-mobius", "--listen",
                               f"127.0.0.1:{mobius_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{prom_port}/metrics")
        wait_http(f"http://127.0.0.1:{mobius_port}/metrics")
        time.sleep(15)
        return {"prometheus": rss_bytes(prom.pid), "mobius": rss_bytes(mobius.pid)}
    finally:
        for p in (prom, mobius):
            p.terminate()
            p.wait(timeout=10)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--window", type=int, default=60)
    parser.add_argument("--mobius", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "mobius"))
    parser.add_argument("--baseline", help="a second Mobius binary (an earlier build) scraping the same "
                        "targets in the same run, to compare two builds under one load")
    args = parser.parse_args()
    if not shutil.which("prometheus"):
        raise SystemExit("prometheus is needed (apt-get install prometheus)")
    tmp = tempfile.mkdtemp(prefix="monitor-bench-")
    procs = []
    try:
        idle = idle_rss(tmp, args.mobius)
        base = 19100 + (os.getpid() % 50) * 100
        procs.append(subprocess.Popen([sys.executable, EXPORTER, "--targets", str(args.targets),
                                       "--base-port", str(base)], stdout=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{base + args.targets - 1}/metrics")
        targets = ", ".join(f"'127.0.0.1:{base + i}'" for i in range(args.targets))
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    f"scrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets: [{targets}]\n")
        prom_port, mobius_port = free_port(), free_port()
        prom = subprocess.Popen(["prometheus", f"--config.file={config}",
                                 f"--storage.tsdb.path={tmp}/prometheus",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(prom)
        mobius = subprocess.Popen([args.mobius, "serve", "--data", f"{tmp}/mobius",
                                   "--listen", f"127.0.0.1:{mobius_port}", "--prometheus-config", config],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(mobius)
        if args.baseline:
            baseline_port = free_port()
            baseline = subprocess.Popen([args.baseline, "serve", "--data", f"{tmp}/baseline",
                                         "--listen", f"127.0.0.1:{baseline_port}", "--prometheus-config", config],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(baseline)
            wait_http(f"http://127.0.0.1:{baseline_port}/metrics")
        prom_metrics = f"http://127.0.0.1:{prom_port}/metrics"
        mobius_metrics = f"http://127.0.0.1:{mobius_port}/metrics"
        wait_http(prom_metrics)
        wait_http(mobius_metrics)
        time.sleep(args.warmup)
        systems = {
            "prometheus": (prom.pid, prom_metrics, "prometheus_tsdb_head_samples_appended_total",
                           "prometheus_tsdb_head_series", f"{tmp}/prometheus/wal"),
            "mobius": (mobius.pid, mobius_metrics, "mobius_monitor_samples_appended_total",
                       "mobius_monitor_head_series", f"{tmp}/mobius/monitor/wal"),
        }
        if args.baseline:
            systems["baseline"] = (baseline.pid, f"http://127.0.0.1:{baseline_port}/metrics",
                                   "mobius_monitor_samples_appended_total", "mobius_monitor_head_series",
                                   f"{tmp}/baseline/monitor/wal")
            idle["baseline"] = idle["mobius"]
        start = {k: (cpu_seconds(v[0]), metric(v[1], v[2]), dir_bytes(v[4])) for k, v in systems.items()}
        time.sleep(args.window)
        results = {}
        for k, (pid, url, samples_name, series_name, wal) in systems.items():
            cpu0, samples0, wal0 = start[k]
            cpu = cpu_seconds(pid) - cpu0
            samples = metric(url, samples_name) - samples0
            series = metric(url, series_name)
            rss = rss_bytes(pid)
            results[k] = (cpu, samples, series, rss, dir_bytes(wal) - wal0)
        print("| system | samples/s | CPU-s per million samples | series | RSS (idle) | RSS per series "
              "| above idle, per series | WAL bytes/sample |")
        print("|---|---|---|---|---|---|---|---|")
        for k, (cpu, samples, series, rss, wal) in results.items():
            print(f"| {k} | {samples / args.window:,.0f} | {cpu / samples * 1e6:.2f} | {series:,.0f} | "
                  f"{rss / 2**20:.0f} MiB ({idle[k] / 2**20:.0f} MiB) | {rss / max(series, 1) / 1000:.2f} kB | "
                  f"{(rss - idle[k]) / max(series, 1) / 1000:.2f} kB | {wal / max(samples, 1):.1f} |")
        p, m = results["prometheus"], results["mobius"]
        ratio = (p[0] / p[1]) / (m[0] / m[1])
        print(f"\nPrometheus CPU per sample / Mobius CPU per sample: {ratio:.2f} (target >= 1.5)")
        if args.baseline:
            b = results["baseline"]
            print(f"Prometheus CPU per sample / baseline CPU per sample: {(p[0] / p[1]) / (b[0] / b[1]):.2f}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
