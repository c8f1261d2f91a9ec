#!/usr/bin/env python3
"""The bare-engine floor beside the event log's benchmark (docs/benchmarks.md,
"Event log"): the same table, indexes and PRAGMAs as Mobius' SQLite store
(migrations/sqlite/0009_event_log.sql; WAL, synchronous=FULL), written and read
with Python's sqlite3 directly (each entry's `doc` read back with json.loads): batches of 100 per transaction, one row per
transaction, and pages of 500 after a random id (all, and one project's), with the
same counts as `event_log_bench`.

    python3 bench/event_log_floor.py [--events N] [--dir DIR]
"""
import argparse, json, os, random, re, sqlite3, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
MIGRATION = os.path.join(HERE, "..", "crates", "store", "migrations", "sqlite", "0009_event_log.sql")
PROJECTS = 20


def schema():
    text = open(MIGRATION).read()
    # The table, its indexes and triggers; not the rows moved from the old tables.
    table = re.search(r"CREATE TABLE events \(.*?\n\);", text, re.S).group(0)
    rest = [s for s in re.findall(r"CREATE (?:INDEX|TRIGGER) .*?;(?:\s*END;)?", text, re.S)]
    return [table] + rest


def row(i):
    at, project = int(time.time() * 1000), f"p{i % PROJECTS}"
    doc = json.dumps({"at": at, "kind": "run.completed", "project": project, "run": i, "actor": "bench",
                      "data": {"conclusion": "success", "number": i, "workflow": ".github/workflows/ci.yml"}})
    return (at, "run.completed", project, i, doc)


INSERT = "INSERT INTO events (at, kind, project, run_id, doc) VALUES (?, ?, ?, ?, ?)"


def pct(sorted_ms, p):
    return sorted_ms[round((len(sorted_ms) - 1) * p)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--dir")
    a = ap.parse_args()
    d = tempfile.mkdtemp(dir=a.dir)
    db = sqlite3.connect(os.path.join(d, "floor.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    for statement in schema():
        db.execute(statement)
    start = time.perf_counter()
    for i in range(0, a.events, 100):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(INSERT, [row(n) for n in range(i, min(i + 100, a.events))])
        db.execute("COMMIT")
    batched = a.events / (time.perf_counter() - start)
    start = time.perf_counter()
    db.execute("CREATE TABLE variables (name TEXT PRIMARY KEY, value TEXT)")
    for n in range(5000):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR REPLACE INTO variables VALUES (?, ?)", (f"V{n % 50}", str(n)))
        db.execute(INSERT, row(n))
        db.execute("COMMIT")
    single = 5000 / (time.perf_counter() - start)
    last = db.execute("SELECT MAX(id) FROM events").fetchone()[0]
    rnd = random.Random(42)
    cols = "id, doc"
    all_ms, project_ms = [], []
    for _ in range(2000):
        after = rnd.randrange(last - 10_000)
        t = time.perf_counter()
        rows = [(i, json.loads(d)) for i, d in db.execute(f"SELECT {cols} FROM events WHERE id > ? ORDER BY id LIMIT 500", (after,))]
        all_ms.append((time.perf_counter() - t) * 1000)
        assert len(rows) == 500
        after = rnd.randrange(last - 200_000)
        t = time.perf_counter()
        query = f"SELECT {cols} FROM events WHERE id > ? AND project = ? ORDER BY id LIMIT 500"
        rows = [(i, json.loads(d)) for i, d in db.execute(query, (after, f"p{rnd.randrange(PROJECTS)}"))]
        project_ms.append((time.perf_counter() - t) * 1000)
        assert len(rows) == 500
    all_ms.sort()
    project_ms.sort()
    print(
        f"| Python sqlite3, same schema and PRAGMAs (the floor) | {a.events} | {batched:.0f} | {single:.0f} | "
        f"{pct(all_ms, .5):.2f} / {pct(all_ms, .99):.2f} | {pct(project_ms, .5):.2f} / {pct(project_ms, .99):.2f} |"
    )


if __name__ == "__main__":
    main()
