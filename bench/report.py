#!/usr/bin/env python3
"""Turns run.sh's TSV (setup, endpoint, req/s, p99, non-2xx, socket errors)
into the Markdown report. Usage: report.py RESULTS.tsv "SETUP SETUP ..."."""

import os
import sys
from datetime import datetime, timezone

ENDPOINTS = ["read", "write", "plain"]
CEILING = "axum-baseline"
EXPRESS = "express-session"
# The peer each cloakroom setup is judged against (PERFORMANCE.md).
PEER = {
    "cloakroom-memory": "tower-sessions-memory",
    "cloakroom-cookie": "actix-cookie",
    "cloakroom-redis": "actix-redis",
}
DESCRIBE = {
    "axum-baseline": "axum 0.8, no session layer (the ceiling)",
    "cloakroom-memory": "cloakroom MemoryStore",
    "cloakroom-sqlite": "cloakroom SqliteStore (temp file)",
    "cloakroom-cookie": "cloakroom client-side sealed cookie",
    "tower-sessions-memory": "tower-sessions 0.14 MemoryStore",
    "cloakroom-redis": "cloakroom RedisStore (private redis-server)",
    "cloakroom-postgres": "cloakroom PostgresStore (default pool)",
    "tower-sessions-redis": "tower-sessions RedisStore (fred)",
    "redis-benchmark": "redis-benchmark GET (/read) and SET (/write), 200-byte values, as many clients as wrk connections",
    "actix-cookie": "actix-session CookieSessionStore",
    "actix-redis": "actix-session RedisSessionStore",
    "express-session": "express 4 + express-session MemoryStore",
    "cookie-session": "express 4 + cookie-session",
    "demo-server-memory": "cloakroom demo app, --store memory:",
    "demo-cookie": "cloakroom demo app, --mode cookie",
}


def load(path):
    res = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 6:
                continue
            setup, ep, rps, p99, non2xx, errors = parts[:6]
            other = parts[6] if len(parts) > 6 else ""
            # Several rounds: keep the best (least disturbed) one.
            prev = res.get((setup, ep))
            if prev and prev["rps"] >= float(rps or 0):
                continue
            res[(setup, ep)] = {
                "rps": float(rps or 0),
                "p99": p99,
                "non2xx": int(non2xx or 0),
                "errors": errors,
                "other": other,
            }
    return res


def rps(res, setup, ep):
    r = res.get((setup, ep))
    return r["rps"] if r and r["rps"] > 0 else None


def fmt_rps(res, setup, ep, notes):
    r = res.get((setup, ep))
    if not r:
        return "–", "–"
    mark = ""
    if r["non2xx"] or r["errors"]:
        notes.append(
            f"{setup} /{ep}: {r['non2xx']} non-2xx responses"
            + (f", socket errors {r['errors']}" if r["errors"] else "")
        )
        mark = " ⚠"
    return f"{r['rps']:,.0f}{mark}", r["p99"]


def ratio(a, b):
    if a is None or b is None:
        return None
    return a / b


def fmt_ratio(x):
    return "–" if x is None else f"{x:.2f}×"


def main():
    res = load(sys.argv[1])
    setups = sys.argv[2].split()
    notes = []
    env = os.environ
    out = []
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out.append(f"# cloakroom load benchmark — {now}\n")
    out.append(
        f"wrk -t{env.get('THREADS', '2')} -c{env.get('CONNS', '64')} -d{env.get('DURATION', '10s')} "
        f"after a {env.get('WARMUP', '3s')} warm-up per endpoint, "
        f"{env.get('SESSIONS', '1')} session(s), best of {env.get('ROUNDS', '1')} round(s) "
        f"(alternating setup order), 127.0.0.1; "
        f"load average {env.get('LOAD_START', '?')} at start, {env.get('LOAD_END', '?')} at end; "
        f"repository {env.get('REV', '?')}.\n"
    )
    if env.get("VERSIONS"):
        out.append(f"Resolved versions: {env['VERSIONS']}.\n")
    out.append(
        "Requests per second (p99 latency). Ratios compare setups of this run only; "
        "runs vary by up to ±17%. The last column is the share of the machine's CPU "
        "that processes other than wrk, the server and its store used during each "
        "measured run (other engineers' builds); above ~10% the row is suspect.\n"
    )

    head = (
        "| setup | /read req/s | p99 | /write req/s | p99 | /plain req/s | p99 "
        "| /read ÷ ceiling | /plain ÷ ceiling | ÷ peer (read / write / plain) "
        "| ÷ express-session (read / write / plain) | other processes' CPU % (r / w / p) |"
    )
    out.append(head)
    out.append("|" + "---|" * 12)
    for s in setups:
        cells = [s]
        for ep in ENDPOINTS:
            cells.extend(fmt_rps(res, s, ep, notes))
        if s != CEILING:
            cells.append(fmt_ratio(ratio(rps(res, s, "read"), rps(res, CEILING, "read"))))
            cells.append(fmt_ratio(ratio(rps(res, s, "plain"), rps(res, CEILING, "plain"))))
        else:
            cells += ["1.00×", "1.00×"]
        peer = PEER.get(s)
        if peer:
            cells.append(
                " / ".join(fmt_ratio(ratio(rps(res, s, ep), rps(res, peer, ep))) for ep in ENDPOINTS)
                + f" (vs {peer})"
            )
        else:
            cells.append("")
        if "cloakroom" in s or s.startswith("demo-"):
            cells.append(
                " / ".join(fmt_ratio(ratio(rps(res, s, ep), rps(res, EXPRESS, ep))) for ep in ENDPOINTS)
            )
        else:
            cells.append("")
        cells.append(" / ".join((res.get((s, ep)) or {}).get("other") or "–" for ep in ENDPOINTS))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")

    # Targets from PERFORMANCE.md that this run can judge.
    targets = []

    def check(name, value, goal, op=">="):
        if value is None:
            targets.append(f"| {name} | – | {op} {goal:g} | not measured |")
            return
        ok = value >= goal if op == ">=" else value < goal
        targets.append(f"| {name} | {value:.3f} | {op} {goal:g} | {'met' if ok else '**missed**'} |")

    cm = "cloakroom-memory"
    check("MemoryStore /read ÷ ceiling", ratio(rps(res, cm, "read"), rps(res, CEILING, "read")), 0.90)
    check(
        "MemoryStore /write ÷ tower-sessions MemoryStore",
        ratio(rps(res, cm, "write"), rps(res, "tower-sessions-memory", "write")),
        1.3,
    )
    for ep in ENDPOINTS:
        check(
            f"client-side cookie /{ep} ÷ actix-session cookie",
            ratio(rps(res, "cloakroom-cookie", ep), rps(res, "actix-cookie", ep)),
            1.2,
        )
    for s in ["cloakroom-memory", "cloakroom-sqlite", "cloakroom-cookie"]:
        check(
            f"{s} /plain ÷ ceiling (\"equal\"; ±noise)",
            ratio(rps(res, s, "plain"), rps(res, CEILING, "plain")),
            0.95,
        )
    for s in [x for x in setups if x.startswith("cloakroom-")]:
        for ep in ENDPOINTS:
            check(f"{s} /{ep} ÷ express-session", ratio(rps(res, s, ep), rps(res, EXPRESS, ep)), 10)
    sq = res.get(("cloakroom-sqlite", "write"))
    if sq:
        p = sq["p99"]
        ms = None
        for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
            if p.endswith(unit):
                try:
                    ms = float(p[: -len(unit)]) * f
                except ValueError:
                    pass
                break
        check("SQLite /write p99 (ms)", ms, 20, "<")
    if "cloakroom-redis" in setups:
        cr = "cloakroom-redis"
        check("Redis /read ÷ redis-benchmark GET", ratio(rps(res, cr, "read"), rps(res, "redis-benchmark", "read")), 0.9)
        check("Redis /read ÷ actix-session Redis", ratio(rps(res, cr, "read"), rps(res, "actix-redis", "read")), 1.0)
        check("Redis /write ÷ actix-session Redis", ratio(rps(res, cr, "write"), rps(res, "actix-redis", "write")), 1.15)
    if "cloakroom-postgres" in setups:
        # tower-sessions' sqlx store cannot be built into the bench binary
        # (sqlx next to rusqlite): compare with PERFORMANCE.md's figure,
        # across runs, so only as a rough check.
        ref = 6922 if os.environ.get("SESSIONS", "1") == "64" else 3643
        check(
            f"PostgreSQL /write ÷ PERFORMANCE.md's tower-sessions Postgres ({ref} req/s; across runs)",
            ratio(rps(res, "cloakroom-postgres", "write"), ref),
            3,
        )
    targets.append("| SQLite /write ÷ tower-sessions sqlx SQLite | – | ≥ 10 | not measured: sqlx's and rusqlite's bundled SQLite cannot link into one binary |")
    out.append("## Targets (PERFORMANCE.md) this run can judge\n")
    out.append("| target | measured | goal | |")
    out.append("|---|---|---|---|")
    out.extend(targets)
    out.append("")

    out.append("## Setups\n")
    for s in setups:
        out.append(f"* `{s}`: {DESCRIBE.get(s, s)}")
    out.append("")
    if notes:
        out.append("## Warnings\n")
        for n in notes:
            out.append(f"* {n}")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
