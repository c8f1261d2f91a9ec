#!/usr/bin/env python3
"""Mobius' memory per series as its head ages, scraping the same targets as monitor_bench.py.

First measures the resident memory of an idle `mobius serve` (no targets), then
starts ../shared/bench/prometheus/exporter.py (N targets of 1,000 series, every
second) and `mobius serve --prometheus-config`, and prints at each checkpoint the
resident memory per series, whole and above the idle server (the marginal cost, as
../shared/bench/prometheus reports Prometheus'), the compressed sample bytes per
series still in memory (`mobius_monitor_head_chunk_memory_bytes`: open chunks and
the unwritten tail of the chunk files) and the size of the head chunk files.

With `--prometheus`, Debian's Prometheus scrapes the same targets in the same run and
gets a row at each checkpoint too. The anonymous column leaves out the pages of the
binary itself (file-backed, shared and clean), which the kernel maps generously for a
binary in the page cache.

Usage: python3 bench/monitor_memory_growth.py --mobius target/release/mobius [--targets 50] [--at 30,90,180,300] [--prometheus]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import monitor_bench as mb  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mobius", required=True)
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--at", default="30,90,180,300")
    parser.add_argument("--prometheus", action="store_true", help="scrape the same targets with Prometheus too")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="memory-growth-")
    base = 23100 + (os.getpid() % 20) * 100
    procs = []
    try:
        idle = mb.idle_rss(tmp, args.mobius)
        print(f"idle servers: Mobius {idle['mobius'] / 2**20:.1f} MiB, Prometheus {idle['prometheus'] / 2**20:.1f} MiB")
        procs.append(subprocess.Popen([sys.executable, mb.EXPORTER, "--targets", str(args.targets),
                                       "--base-port", str(base)], stdout=subprocess.DEVNULL))
        mb.wait_http(f"http://127.0.0.1:{base + args.targets - 1}/metrics")
        targets = ", ".join(f"'127.0.0.1:{base + i}'" for i in range(args.targets))
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    f"scrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets: [{targets}]\n")
        port = mb.free_port()
        mobius = subprocess.Popen([args.mobius, "serve", "--data", f"{tmp}/mobius", "--listen",
                                   f"127.0.0.1:{port}", "--prometheus-config", config],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(mobius)
        url = f"http://127.0.0.1:{port}/metrics"
        mb.wait_http(url)
        prometheus, prom_url = None, None
        if args.prometheus:
            prom_port = mb.free_port()
            prometheus = subprocess.Popen(["prometheus", f"--config.file={config}",
                                           f"--storage.tsdb.path={tmp}/prometheus",
                                           f"--web.listen-address=127.0.0.1:{prom_port}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(prometheus)
            prom_url = f"http://127.0.0.1:{prom_port}/metrics"
            mb.wait_http(prom_url)
        t0 = time.time()
        print("| system | after | series | RSS | RSS per series | above the idle server, per series "
              "| anonymous, per series | sample bytes in memory per series | head chunk files |")
        print("|---|---|---|---|---|---|---|---|---|")
        for at in (int(x) for x in args.at.split(",")):
            time.sleep(max(0.0, t0 + at - time.time()))
            series = mb.metric(url, "mobius_monitor_head_series")
            in_memory = mb.metric(url, "mobius_monitor_head_chunk_memory_bytes")
            files = mb.metric(url, "mobius_monitor_head_chunk_file_bytes")
            rss = mb.rss_bytes(mobius.pid)
            print(f"| Mobius | {at} s | {series:,.0f} | {rss / 2**20:.1f} MiB | {rss / series / 1000:.2f} kB | "
                  f"{(rss - idle['mobius']) / series / 1000:.2f} kB | {mb.status_bytes(mobius.pid, 'RssAnon') / series / 1000:.2f} kB | "
                  f"{in_memory / series:.0f} B | {files / 2**20:.1f} MiB |", flush=True)
            if prometheus:
                series = mb.metric(prom_url, "prometheus_tsdb_head_series")
                rss = mb.rss_bytes(prometheus.pid)
                print(f"| Prometheus | {at} s | {series:,.0f} | {rss / 2**20:.1f} MiB | {rss / series / 1000:.2f} kB | "
                      f"{(rss - idle['prometheus']) / series / 1000:.2f} kB | "
                      f"{mb.status_bytes(prometheus.pid, 'RssAnon') / series / 1000:.2f} kB | | |", flush=True)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
