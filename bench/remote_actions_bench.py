#!/usr/bin/env python3
"""Remote actions: a workflow using 3 remote actions, served by git's smart-HTTP
backend on loopback (Python's CGI server in front of git-http-backend), run by
`mobius run --actions-url`:

  first    an empty action cache: every repository fetched and its commit written
  cached   the cache filled: each ref fetched again (nothing new) and resolved
  offline  --offline: the cache only

The actions: two small composite actions, and the copy of actions/setup-python@v5 in
../shared/actions (7 MB: action.yml and two bundled scripts), fetched and checked before the run
like the others but with its step skipped (`if: false`), so the figures are the
fetches, not Python's setup.

act cannot take part: it fetches actions from https://github.com, or from the
https:// instance named by --github-instance, and this server speaks plain HTTP on
loopback (there is no certificate act would trust); its --action-offline-mode needs
a cache act itself filled from GitHub.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
MOBIUS = os.path.join(TARGET, "release", "mobius")
SETUP_PYTHON = os.path.join(ROOT, "..", "shared", "actions", "actions", "setup-python@v5")
CGI_SERVER = """import http.server, sys
class Handler(http.server.CGIHTTPRequestHandler):
    have_fork = False
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()
"""
GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b")


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, env=GIT_ENV, stdout=subprocess.DEVNULL)


def publish(srv, name, files=None, tree=None, tag="v1"):
    work = tempfile.mkdtemp(prefix="mobius-rbench-work-")
    if tree:
        shutil.copytree(tree, work, dirs_exist_ok=True)
    for path, text in (files or {}).items():
        os.makedirs(os.path.dirname(os.path.join(work, path)) or work, exist_ok=True)
        with open(os.path.join(work, path), "w") as f:
            f.write(text)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "release")
    git(work, "tag", tag)
    bare = os.path.join(srv, name)
    os.makedirs(os.path.dirname(bare), exist_ok=True)
    git(srv, "clone", "-q", "--bare", work, bare)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    srv = tempfile.mkdtemp(prefix="mobius-rbench-srv-")
    composite = "name: {0}\nruns:\n  using: composite\n  steps:\n    - run: echo {0}\n      shell: sh\n"
    publish(srv, "acme/one", {"action.yml": composite.format("one")})
    publish(srv, "acme/two", {"action.yml": composite.format("two")})
    publish(srv, "actions/setup-python", tree=SETUP_PYTHON, tag="v5")
    site = tempfile.mkdtemp(prefix="mobius-rbench-site-")
    os.makedirs(os.path.join(site, "cgi-bin"))
    script = os.path.join(site, "cgi-bin", "git")
    with open(script, "w") as f:
        f.write(f"#!/bin/sh\nexport GIT_PROJECT_ROOT='{srv}' GIT_HTTP_EXPORT_ALL=1\nexec /usr/lib/git-core/git-http-backend\n")
    os.chmod(script, 0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["python3", "-W", "ignore", "-c", CGI_SERVER, str(port)], cwd=site)
    time.sleep(0.5)
    url = f"http://127.0.0.1:{port}/cgi-bin/git"
    repo = tempfile.mkdtemp(prefix="mobius-rbench-repo-")
    os.makedirs(os.path.join(repo, ".github", "workflows"))
    # setup-python is fetched and checked (its metadata, its node version) but its step
    # is skipped, so the figure is the fetch, not Python's setup.
    with open(os.path.join(repo, ".github", "workflows", "w.yml"), "w") as f:
        f.write(
            "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n"
            "      - uses: acme/one@v1\n      - uses: acme/two@v1\n"
            "      - uses: actions/setup-python@v5\n        if: false\n"
        )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "w")
    state = tempfile.mkdtemp(prefix="mobius-rbench-state-")
    times = {"first": [], "cached": [], "offline": []}
    try:
        for _ in range(args.runs):
            cache = tempfile.mkdtemp(prefix="mobius-rbench-cache-")
            env = dict(os.environ, XDG_STATE_HOME=state, XDG_CACHE_HOME=cache, NO_COLOR="1")
            for kind, extra in (("first", []), ("cached", []), ("offline", ["--offline"])):
                start = time.perf_counter()
                r = subprocess.run(
                    [MOBIUS, "run", "-C", repo, "--actions-url", url, *extra],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                times[kind].append(time.perf_counter() - start)
                if r.returncode != 0:
                    raise SystemExit(f"mobius failed ({kind}): {r.stderr.decode()[-2000:]}")
            shutil.rmtree(cache, ignore_errors=True)
    finally:
        server.kill()
    print("| run of a workflow with 3 remote actions | median wall |\n|---|---|")
    for kind, values in times.items():
        print(f"| {kind} | {statistics.median(values) * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
