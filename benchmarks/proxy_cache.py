"""What the proxy-model cache saves: the real CLI, one process per scan, as a CI job or pre-commit hook runs it.

    python -m benchmarks.proxy_cache [MODEL_NAME ...]

Per lab model (default: the bundled BadNets and clean CNNs and two twelfth-set backdoors), `bdscan scan` with the cache
off, then with a cache that starts empty and is kept from model to model (the first scan that needs proxies trains and
stores them, every later one on the same samples loads them). Prints wall seconds for both, whether the scan needed the
proxies, and whether the verdict, target, score and carries are the same with and without the cache.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.common import machine, run_cli, zoo_models

DEFAULT = ["badnets-cnn", "clean-cnn", "trojan-cnn-t7-s46", "inputaware-cnn-t3-s45"]


def scan(entry, sdir: Path, cache: str) -> tuple[int, float, dict]:
    os.environ["BDSCAN_CACHE_DIR"] = cache
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scan.json"
        rc, wall, _, stderr, _ = run_cli(["scan", str(entry.cli_path), "--samples", str(sdir), "--format", "json",
                                          "-o", str(out), "--seed", "0", "--quiet"])
        if rc not in (0, 1):
            raise SystemExit(f"{entry.name}: exit {rc}: {stderr.strip()}")
        return rc, wall, json.loads(out.read_text())["models"][0]


def same(a: dict, b: dict) -> bool:
    keys = ("suspected", "target_class", "score")
    return all(a.get(k) == b.get(k) for k in keys) and a["evidence"].get("carry") == b["evidence"].get("carry")


def main(argv: list[str]) -> int:
    names = argv or DEFAULT
    print(f"Machine: {machine()}; seed 0; one CLI process per scan", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        for e, _, sdir, _, _ in zoo_models(names):
            _, cold, off = scan(e, sdir, "off")
            _, warm, on = scan(e, sdir, cache)
            used = bool(off["evidence"].get("carry"))
            print(f"{e.name}: cache off {cold:.1f} s, cache kept {warm:.1f} s; proxies {'used' if used else 'not needed'}; "
                  f"suspected {off['suspected']}, target {off.get('target_class')}, score {off['score']}; "
                  f"same with the cache: {'yes' if same(off, on) else 'NO'}", flush=True)
        sizes = {p.name: p.stat().st_size for p in sorted(Path(cache).iterdir())}
        print(f"cache files: {', '.join(f'{n} ({b / 1e6:.2f} MB)' for n, b in sizes.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
