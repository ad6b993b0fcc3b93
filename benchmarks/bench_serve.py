"""Prediction API latency and throughput: ``drugrepo serve`` as a real process on loopback (golden checkpoint).

Cases (CPU, 1 torch thread, in-process LRU target cache):
- single pair, warm target: the protein's terms are cached, each request a different molecule;
- single pair, cold target: every request a protein the server has not seen (CNN + Gram terms computed);
- throughput: C concurrent clients (one keep-alive connection each) sending single warm pairs.
Latency is measured by the client (HTTP, JSON and scoring included). Prints a table and writes JSON.

    python benchmarks/bench_serve.py [--requests 300] [--json benchmarks/results/serve.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from drugrepo_assets.data.sources import bundled_root

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden" / "model_state.pt"
KEY = "bench-key"


def _inputs() -> tuple[list[str], list[str]]:
    rows = pd.concat([pd.read_csv(p) for p in sorted(bundled_root().glob("human/random/*.csv"))])
    smiles = [s for s in dict.fromkeys(rows["SMILES"]) if len(s) < 120]
    proteins = [p for p in dict.fromkeys(rows["Protein"]) if len(p) <= 1200]
    return smiles, proteins


def _start(folder: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRUGREPO_")}
    env |= {
        "DRUGREPO_API_KEYS": KEY,
        "DRUGREPO_RATE_LIMIT_PER_MINUTE": "1000000",
        "DRUGREPO_REQUEST_LOG_DIR": str(folder / "requests"),
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "drugrepo"),
            "serve",
            "--checkpoint",
            str(GOLDEN),
            "--port",
            str(port),
            "--threads",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("drugrepo serve did not start")


def _one(client: httpx.Client, url: str, smiles: str, protein: str) -> float:
    start = time.perf_counter()
    response = client.post(url, json={"pairs": [{"smiles": smiles, "protein": protein}]}, headers={"X-API-Key": KEY})
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed


def _stats(case: str, seconds: list[float], protein_len: float) -> dict[str, object]:
    ms = np.array(seconds) * 1000
    return {
        "case": case,
        "requests": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_protein_length": protein_len,
    }


def _throughput(url: str, clients: int, smiles: list[str], protein: str, seconds: float) -> dict[str, object]:
    counts = [0] * clients
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        with httpx.Client(timeout=60) as client:
            k = i
            while time.perf_counter() < stop:
                latencies[i].append(_one(client, url, smiles[k % len(smiles)], protein))
                counts[i] += 1
                k += clients

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.concatenate([np.array(x) for x in latencies]) * 1000
    return {
        "case": f"throughput, {clients} concurrent clients, warm target",
        "clients": clients,
        "requests": int(sum(counts)),
        "requests_per_s": sum(counts) / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each throughput case")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/serve.json"))
    args = parser.parse_args()
    smiles, proteins = _inputs()
    url = f"http://127.0.0.1:{args.port}/v1/predict"
    warm_protein = proteins[0]
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        process = _start(Path(tmp), args.port)
        try:
            with httpx.Client(timeout=60) as client:
                for s in smiles[:20]:
                    _one(client, url, s, warm_protein)  # warm-up: the target's terms, the code paths
                warm = [_one(client, url, smiles[i % len(smiles)], warm_protein) for i in range(args.requests)]
                results.append(_stats("single pair, warm (cached) target", warm, len(warm_protein)))
                cold_proteins = proteins[1 : 1 + min(args.requests // 3, len(proteins) - 1)]
                cold = [_one(client, url, smiles[i], p) for i, p in enumerate(cold_proteins)]
                results.append(
                    _stats("single pair, cold target", cold, float(np.mean([len(p) for p in cold_proteins])))
                )
            for clients in (1, 4, 8):
                results.append(_throughput(url, clients, smiles, warm_protein, args.seconds))
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"{'case':<48} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for r in results:
        print(
            f"{r['case']:<48} {r['requests']:>6} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} "
            f"{r.get('p99_ms', float('nan')):>8.2f} {r.get('requests_per_s', float('nan')):>8.1f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(), "torch_threads": 1}
    args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
