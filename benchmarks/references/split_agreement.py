"""Do tfpps and RecBole hold out the same events? Leave-one-out targets on ml-100k, user by user.

    python -m benchmarks.references.split_agreement [--dataset ml-100k]

The side-by-side tables compare metrics on "the same split"; this checks it. RecBole's targets come from
``benchmarks/references/recbole/split_targets.py`` (RecBole's own data pipeline, run in its venv), tfpps's from the
Beam job's output. Prints per split how many users have the same target and lists the ones that differ;
writes ``benchmarks/references/results/split_agreement/split_agreement.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, machine, results_dir, table, write_results
from benchmarks.references.compare_recbole import RECBOLE_DIR, RECBOLE_PY

RESULTS = results_dir(__file__)


def tfpps_targets(dataset: str) -> dict:
    import tfpps  # noqa: F401
    from tfpps.data.dataset_dir import DatasetDir
    from tfpps.data.datasets import ensure_dataset

    ds = DatasetDir(ensure_dataset(dataset))
    items, users = ds.vocab("items"), ds.vocab("users")
    out: dict = {}
    for split in ("valid", "test"):
        for rec in ds.records(split):
            out.setdefault(users[int(rec["user_id"])], {})[split] = {
                "target": items[int(rec["target_item"])],
                "last3": [items[int(i)] for i in rec["item_ids"].numpy()][-3:],
                "last3_times": [int(t) for t in rec["timestamps"].numpy()][-3:],
            }
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k")
    args = p.parse_args(argv)
    from tfpps.data.datasets import shared_data_dir

    data_dir = shared_data_dir() / args.dataset
    if not (data_dir / f"{args.dataset}.inter").exists():
        print(f"skipped: {data_dir} not found (set TFPPS_SHARED_DATA)")
        return 0
    if not RECBOLE_PY.exists():
        subprocess.run(["bash", str(RECBOLE_DIR / "setup_env.sh")], check=True, cwd=REPO)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "recbole.json"
        subprocess.run([str(RECBOLE_PY), str(RECBOLE_DIR / "split_targets.py"), "--data-dir", str(data_dir),
                        "--out", str(out)], check=True, cwd=REPO, capture_output=True)
        theirs = json.loads(out.read_text())
    ours = tfpps_targets(args.dataset)
    rows, differ = [], {}
    for split in ("valid", "test"):
        users = sorted(set(ours) | set(theirs))
        bad = [u for u in users if ours.get(u, {}).get(split, {}).get("target") != theirs.get(u, {}).get(split, {}).get("target")]
        rows.append({"split": split, "users (tfpps)": sum(split in v for v in ours.values()),
                     "users (RecBole)": sum(split in v for v in theirs.values()),
                     "same target": len(users) - len(bad), "different target": len(bad)})
        differ[split] = [{"user": u, "tfpps": ours.get(u, {}).get(split), "recbole": theirs.get(u, {}).get(split)} for u in bad]
    print("\n" + table(rows, list(rows[0]), f"Leave-one-out targets on {args.dataset}: tfpps vs RecBole"))
    for split, items in differ.items():
        for d in items[:10]:
            print(f"  {split} user {d['user']}: tfpps {d['tfpps']}  RecBole {d['recbole']}")
    write_results(RESULTS, "split_agreement", {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
                                      "dataset": args.dataset, "rows": rows, "different": differ,
                                      "command": "python -m benchmarks.references.split_agreement " + " ".join(argv or sys.argv[1:])})
    return 0


if __name__ == "__main__":
    sys.exit(main())
