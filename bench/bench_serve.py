"""Benchmark of the online scorer: the real server (uvicorn, one worker) on loopback.

Measures, for one-lead `POST /v1/score` requests with reasons:
- latency p50/p90/p99/max over N sequential requests (one keep-alive connection);
- throughput and latency with C concurrent clients (threads, one connection each);
- beside them, in-process: `predict.score_one` and `predict.score_leads` for one lead;
- the server's CPU time per request (from /proc; Linux), which load on the machine does not inflate.
Every HTTP answer is checked against `score_one` for the same lead.

    .venv/bin/python bench/bench_serve.py                      # models/latest + data/leads.db
    .venv/bin/python bench/bench_serve.py --model DIR --db URL --requests 2000 --clients 16

Without a model and database it builds a small synthetic database and a quick model in a
temporary folder first (and says so).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def main() -> None:
    args = _parse()
    model_dir, db_url = _model_and_db(args)
    from leadml.predict import load_model

    model = load_model(model_dir)
    model.set_threads(1)
    bodies, leads, events, as_of = _requests(model, db_url, args.leads)
    report = {"machine": _machine(), "model": _model_info(model, model_dir), "leads": len(bodies)}
    report["in_process"] = _in_process(model, bodies, leads, events, as_of, args.requests)
    with _server(model_dir, db_url) as (base, pid):
        expected = {b["lead"]["lead_id"]: _expected(model, b) for b in bodies}
        report["sequential"] = _sequential(base, pid, bodies, expected, args.requests)
        report["concurrent"] = _concurrent(
            base, bodies, args.clients, args.seconds, args.max_requests
        )
    report["machine"]["load_after"] = os.getloadavg()
    _print(report, args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/latest", help="bundle folder (default models/latest)")
    p.add_argument("--db", default="sqlite:///data/leads.db", help="lead database URL")
    p.add_argument("--requests", type=int, default=2000, help="sequential requests")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients")
    p.add_argument("--seconds", type=float, default=10.0, help="concurrent phase time limit")
    p.add_argument("--max-requests", type=int, default=8000, help="concurrent phase request cap")
    p.add_argument("--leads", type=int, default=200, help="distinct leads to cycle through")
    p.add_argument("--json", help="also write the figures to this JSON file")
    return p.parse_args()


def _model_and_db(args: argparse.Namespace) -> tuple[str, str]:
    """The given model and database, or a small synthetic pair built in a temporary folder."""
    db_file = args.db.removeprefix("sqlite:///") if args.db.startswith("sqlite:///") else None
    if Path(args.model).exists() and (db_file is None or Path(db_file).exists()):
        return str(Path(args.model).resolve()), args.db
    from leadml.config import Config
    from leadml.data.synth import generate_database
    from leadml.workflow import run_training

    tmp = Path(tempfile.mkdtemp(prefix="leadml-bench-serve-"))
    atexit.register(shutil.rmtree, tmp, True)  # the small model and database go at exit
    url = f"sqlite:///{tmp / 'leads.db'}"
    print(
        f"no model/database at {args.model} / {args.db}: building a small one in {tmp}", flush=True
    )
    generate_database(url, 3000, 11)
    cfg = Config.model_validate({"data": {"source": url}, "model": {"threads": 1}})
    result = run_training(cfg, output=tmp / "models", log=lambda _: None, track=False)
    return str(result.bundle_dir), url


def _requests(model, db_url: str, n: int):
    """Request bodies for n open leads (attribute columns of the spec, their events before as_of)."""
    from leadml.config import Config
    from leadml.data.io import read_dataset

    leads, events = read_dataset(Config().data, url=db_url)
    as_of = events["occurred_at"].max() if events is not None else leads["created_at"].max()
    sample = leads[leads["status"] == "open"].head(n)
    sample = sample if len(sample) else leads.head(n)
    if events is not None:
        events = events[
            events["lead_id"].isin(sample["lead_id"]) & (events["occurred_at"] <= as_of)
        ]
    by_lead = {} if events is None else dict(tuple(events.groupby("lead_id")))
    bodies = [
        _body(model, lead, by_lead.get(lead["lead_id"]), as_of)
        for lead in sample.to_dict("records")
    ]
    return bodies, sample, events, as_of


def _body(model, lead: dict, events, as_of) -> dict:
    keep = {"lead_id": _plain(lead["lead_id"])}
    if model.spec.has_time:
        keep["created_at"] = lead["created_at"].isoformat()
    keep.update({c: _plain(lead.get(c)) for c in model.spec.attribute_columns})
    evs = (
        []
        if events is None
        else [
            {
                "occurred_at": e["occurred_at"].isoformat(),
                "event_type": e["event_type"],
                "value": _plain(e.get("value")),
            }
            for e in events.to_dict("records")
        ]
    )
    return {"lead": keep, "events": evs, "as_of": as_of.isoformat()}


def _plain(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _expected(model, body: dict) -> tuple[int, float]:
    from leadml.predict import score_one

    out = score_one(model, body["lead"], body["events"], body["as_of"])
    return out["score"], out["probability"]


def _in_process(model, bodies, leads, events, as_of, n: int) -> dict:
    """Bare latencies without HTTP: score_one (dict in) and score_leads (a one-row frame in)."""
    from leadml.predict import score_leads, score_one

    times = _timed(
        n,
        lambda i: score_one(
            model, bodies[i % len(bodies)]["lead"], bodies[i % len(bodies)]["events"], as_of
        ),
    )
    rows = [leads.iloc[[i]] for i in range(len(leads))]
    ev = (
        {lid: events[events["lead_id"] == lid] for lid in leads["lead_id"]}
        if events is not None
        else {}
    )
    m = min(n, 500)
    frame_times = _timed(
        m,
        lambda i: score_leads(
            model, rows[i % len(rows)], ev.get(rows[i % len(rows)]["lead_id"].iloc[0]), as_of
        ),
    )
    return {"score_one": _stats(times), "score_leads_one_row": _stats(frame_times)}


def _timed(n: int, call) -> np.ndarray:
    for i in range(min(50, n)):
        call(i)
    out = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        call(i)
        out[i] = time.perf_counter() - t
    return out


def _stats(seconds: np.ndarray) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {
        "n": int(len(ms)),
        "p50_ms": _r(np.percentile(ms, 50)),
        "p90_ms": _r(np.percentile(ms, 90)),
        "p99_ms": _r(np.percentile(ms, 99)),
        "max_ms": _r(ms.max()),
        "mean_ms": _r(ms.mean()),
    }


def _r(x: float) -> float:
    return round(float(x), 3)


class _server:
    """`leadml serve` in a subprocess on a free loopback port; stopped on exit."""

    def __init__(self, model_dir: str, db_url: str) -> None:
        self.model_dir, self.db_url = model_dir, db_url

    def __enter__(self) -> tuple[str, int]:
        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "LEADML_API_KEY"}
        cmd = [
            sys.executable,
            "-m",
            "leadml",
            "serve",
            "--model",
            self.model_dir,
            "--db",
            self.db_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"server exited: {self.log.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    return base, self.proc.pid
            except httpx.HTTPError:
                time.sleep(0.2)
        raise SystemExit("server did not become ready in 120 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sequential(base: str, pid: int, bodies: list, expected: dict, n: int) -> dict:
    """n requests one after another on one connection; every answer checked."""
    import httpx

    with httpx.Client(base_url=base, timeout=30) as client:
        for body in bodies[:100]:
            client.post("/v1/score", json=body).raise_for_status()
        cpu0 = _cpu_seconds(pid)
        times, mismatches = np.empty(n), 0
        start = time.perf_counter()
        for i in range(n):
            body = bodies[i % len(bodies)]
            t = time.perf_counter()
            r = client.post("/v1/score", json=body)
            times[i] = time.perf_counter() - t
            got = r.json()
            want = expected[body["lead"]["lead_id"]]
            mismatches += r.status_code != 200 or (got["score"], got["probability"]) != want
        wall = time.perf_counter() - start
        cpu1 = _cpu_seconds(pid)
    out = _stats(times) | {"mismatches": int(mismatches), "requests_per_s": round(n / wall, 1)}
    if cpu0 is not None and cpu1 is not None:
        out["server_cpu_ms_per_request"] = _r((cpu1 - cpu0) / n * 1e3)
    return out


def _concurrent(base: str, bodies: list, clients: int, seconds: float, cap: int) -> dict:
    """`clients` threads, one connection each, until the time limit or the request cap."""
    import httpx

    lock, counter = threading.Lock(), [0]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0]
    stop_at = time.perf_counter() + seconds

    def worker(k: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while time.perf_counter() < stop_at:
                with lock:
                    if counter[0] >= cap:
                        return
                    i = counter[0]
                    counter[0] += 1
                t = time.perf_counter()
                r = client.post("/v1/score", json=bodies[i % len(bodies)])
                latencies[k].append(time.perf_counter() - t)
                errors[0] += r.status_code != 200

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    flat = np.array([x for lat in latencies for x in lat])
    return _stats(flat) | {
        "clients": clients,
        "seconds": _r(wall),
        "errors": int(errors[0]),
        "requests_per_s": round(len(flat) / wall, 1),
    }


def _machine() -> dict:
    import platform

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
    }


def _model_info(model, model_dir: str) -> dict:
    size = getattr(model.model, "size", {})
    return {
        "dir": model_dir,
        "version": model.version,
        "kind": model.kind,
        "size": ", ".join(f"{k} {v}" for k, v in size.items()),
        "features": len(model.spec.names),
        "event_types": len(model.spec.event_types),
    }


def _print(report: dict, args: argparse.Namespace) -> None:
    m, mach = report["model"], report["machine"]
    print(
        f"\nleadml serve benchmark  (python {mach['python']}, {mach['cpus']} CPUs, "
        f"load average before {mach['load_before'][0]:.1f}, after {mach['load_after'][0]:.1f})"
    )
    print(
        f"model {m['version']} ({m['kind']}: {m['size']}; {m['features']} features); "
        f"{report['leads']} distinct open leads with their events"
    )
    rows = [
        ("in-process score_one (dict -> score + reasons)", report["in_process"]["score_one"]),
        ("in-process score_leads, one-row frame", report["in_process"]["score_leads_one_row"]),
        (f"HTTP POST /v1/score, {args.requests} sequential", report["sequential"]),
        (f"HTTP POST /v1/score, {args.clients} concurrent clients", report["concurrent"]),
    ]
    print(f"{'':52s} {'n':>6s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for name, s in rows:
        print(
            f"{name:52s} {s['n']:6d} {s['p50_ms']:8.2f} {s['p90_ms']:8.2f} {s['p99_ms']:8.2f} {s['max_ms']:8.2f}"
        )
    seq, conc = report["sequential"], report["concurrent"]
    print(
        f"sequential: {seq['requests_per_s']} req/s, server CPU {seq.get('server_cpu_ms_per_request', '?')} ms "
        f"per request, {seq['mismatches']} answers differing from score_one"
    )
    print(
        f"concurrent: {conc['requests_per_s']} req/s over {conc['seconds']} s, {conc['errors']} errors"
    )


if __name__ == "__main__":
    main()
