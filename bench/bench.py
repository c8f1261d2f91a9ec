#!/usr/bin/env python3
"""Benchmarks `mobius run` against act on generated workflows, side by side.

Usage: python3 bench/bench.py [--runs N] [--only a,b,...] [--mobius PATH] [--act PATH] [--out docs/benchmarks.md]

Each scenario is a fresh git repository with one workflow. Both tools run it on
the host (act with `-P ubuntu-latest=-self-hosted --no-cache-server`), output
to /dev/null; we record the median wall time and the median peak RSS (the
largest resident set of any process of the tool, from wait4) over N runs.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SECRET = "s3cr3t-benchmark-token"
GNU_TIME = "/usr/bin/time"  # Debian package `time`

def echo_job(name, needs=None):
    needs_line = f"    needs: {needs}\n" if needs else ""
    return f"  {name}:\n    runs-on: ubuntu-latest\n{needs_line}    steps:\n      - run: echo hello from {name}\n"

def scenarios():
    yield "a", "one job with one echo", "on: push\njobs:\n" + echo_job("one")
    yield "b", "20 independent jobs", "on: push\njobs:\n" + "".join(echo_job(f"j{i}") for i in range(20))
    chain = "".join(echo_job(f"j{i}", f"j{i-1}" if i else None) for i in range(10))
    yield "c", "a chain of 10 jobs", "on: push\njobs:\n" + chain
    log = (
        "on: push\njobs:\n  log:\n    runs-on: ubuntu-latest\n    steps:\n      - env:\n          TOKEN: ${{ secrets.TOKEN }}\n"
        "        run: |\n"
        "          awk -v s=\"$TOKEN\" 'BEGIN { for (i = 0; i < 2200000; i++) { if (i % 1000 == 0) print \"line \" i \" token \" s; "
        "else printf \"line %d lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor\\n\", i } }'\n"
    )
    yield "d", "200 MB of log lines, one secret masked", log
    yield "e", "100 independent jobs", "on: push\njobs:\n" + "".join(echo_job(f"j{i}") for i in range(100))

def make_repo(root, workflow):
    repo = os.path.join(root, "repo")
    os.makedirs(os.path.join(repo, ".github", "workflows"))
    with open(os.path.join(repo, ".github", "workflows", "bench.yml"), "w") as f:
        f.write(workflow)
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    return repo

def measure(cmd, cwd, env):
    # GNU time reports the peak RSS of the tool's process tree without counting
    # the memory of this Python process, which a fork from here would inherit.
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        proc = subprocess.run([GNU_TIME, "-f", "%M", "-o", report.name, *cmd], cwd=cwd, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        lines = [l for l in report.read().splitlines() if l.strip()]
    peak_kb = float(lines[-1]) if lines else float("nan")
    return wall, peak_kb / 1024.0, proc.returncode

def run_tool(name, cmd, repo, runs, env):
    walls, rss, codes = [], [], []
    for _ in range(runs):
        wall, peak, code = measure(cmd, repo, env)
        walls.append(wall)
        rss.append(peak)
        codes.append(code)
    if any(c != 0 for c in codes):
        print(f"  {name}: exit codes {codes}", file=sys.stderr)
    return statistics.median(walls), statistics.median(rss), codes

def fmt_time(seconds):
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--log-runs", type=int, default=3, help="runs of the 200 MB scenario")
    parser.add_argument("--only", default="a,b,c,d,e")
    parser.add_argument("--mobius", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "mobius"))
    parser.add_argument("--act", default=shutil.which("act") or "act")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    args = parser.parse_args()
    mobius = os.path.abspath(args.mobius)
    have_act = shutil.which(args.act) is not None or os.path.exists(args.act)
    rows = []
    for key, title, workflow in scenarios():
        if key not in args.only.split(","):
            continue
        runs = args.log_runs if key == "d" else args.runs
        with tempfile.TemporaryDirectory() as root:
            repo = make_repo(root, workflow)
            env = dict(os.environ, XDG_STATE_HOME=os.path.join(root, "state"), NO_COLOR="1")
            m = run_tool("mobius", [mobius, "run", "push", "-s", f"TOKEN={SECRET}"], repo, runs, env)
            print(f"({key}) {title}: mobius {fmt_time(m[0])}, {m[1]:.1f} MB", flush=True)
            a = None
            if have_act:
                act_cmd = [args.act, "push", "-P", "ubuntu-latest=-self-hosted", "--no-cache-server", "-s", f"TOKEN={SECRET}"]
                a = run_tool("act", act_cmd, repo, runs, env)
                print(f"({key}) {title}: act {fmt_time(a[0])}, {a[1]:.1f} MB", flush=True)
            rows.append((key, title, runs, m, a))
    lines = [
        "| scenario | runs | Mobius wall | Mobius peak RSS | act wall | act peak RSS | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, title, runs, m, a in rows:
        act_wall = fmt_time(a[0]) if a else "n/a"
        act_rss = f"{a[1]:.1f} MB" if a else "n/a"
        speedup = f"{a[0] / m[0]:.1f}x" if a else "n/a"
        lines.append(f"| ({key}) {title} | {runs} | {fmt_time(m[0])} | {m[1]:.1f} MB | {act_wall} | {act_rss} | {speedup} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")

if __name__ == "__main__":
    main()
