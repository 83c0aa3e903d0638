"""Volume scaling of the data path: synthetic logs at 1x, 4x, 16x a base volume -> the Beam job -> one epoch.

    nice -n 5 python -m benchmarks.scale.beam_volume                          # 150k-event base, 1x 4x 16x, NARM at 1x and 16x
    python -m benchmarks.scale.beam_volume --base-events=625000 --scales=16   # one 10M-event run
    python -m benchmarks.scale.beam_volume --scales=1,4 --train-scales= --work=/tmp/vol --keep

For each scale the seeded generator (:mod:`tfpps.synthetic`, ``events_per_user=80``, a fixed
catalogue of ``--items`` items, 4 shards per 1x) writes the raw CSV logs, then the Beam job builds the
dataset with the flags of the default dataset (``configs/datasets/synthetic.yaml``: 5-core, leave-one-out,
item metadata) on the DirectRunner in multi-process mode with ``--workers`` workers. Each step runs in
its own process tree; wall time is measured around it and memory is sampled every 0.25 s as the sum
over the whole tree (the job's driver and its SDK worker processes) of RSS and of PSS (shared pages
counted once; ``/proc/<pid>/smaps_rollup``).

Linearity: a least-squares line ``seconds = fixed + events / marginal_rate`` through the runs, and the
ratio of each run's time to the 1x time next to the volume ratio.

Bounded training memory: the model (``--train-model``, default NARM: its training examples stream from
the TFRecord shards through tf.data, with a ``--shuffle-buffer`` of records and of examples) trains one
epoch on the datasets of ``--train-scales`` (default the smallest and the largest) in its own process;
its peak RSS is set beside the dataset's size on disk.

Prints the tables and the machine, writes ``benchmarks/scale/results/beam_volume/beam_volume.{json,png}``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import REPO, machine, results_dir, table, write_results

RESULTS = results_dir(__file__)

EVENTS_PER_USER = 80
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- process-tree memory
def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds ``pid`` itself has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime stime
    except (OSError, IndexError, ValueError):
        return None


def tree_memory(root: int) -> tuple[float, float, int, float, dict[int, float]]:
    """(sum of RSS MB, sum of PSS MB, number of processes, RSS MB of ``root`` alone, CPU seconds per pid)
    of ``root`` and all its descendants."""
    kids = _children()
    todo, pids = [root], []
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(kids.get(pid, []))
    rss = pss = root_rss = 0
    cpu = {}
    for pid in pids:
        c = cpu_seconds(pid)
        if c is not None:
            cpu[pid] = c
        try:
            with open(f"/proc/{pid}/statm") as fh:
                one = int(fh.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
        rss += one
        root_rss = one if pid == root else root_rss
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return rss / 2**20, pss / 2**20, len(pids), root_rss / 2**20, cpu


def run_measured(cmd: list[str], log: Path, interval: float = 0.25) -> dict:
    """Run ``cmd`` (cwd = repo), sampling its process tree's memory; raises on failure."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    peak = {"rss": 0.0, "pss": 0.0, "procs": 0, "root": 0.0}
    cpu: dict[int, float] = {}  # last CPU seconds seen per process of the tree
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample():
            while not done.is_set():
                *mem, per_pid = tree_memory(proc.pid)
                for name, value in zip(("rss", "pss", "procs", "root"), mem):
                    peak[name] = max(peak[name], value)
                for pid, c in per_pid.items():
                    cpu[pid] = max(cpu.get(pid, 0.0), c)
                done.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    if code != 0:
        tail = log.read_text().splitlines()[-15:]
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({code}); log {log}:\n" + "\n".join(tail))
    # CPU of the whole tree: the rusage of the waited-for descendants (Beam's driver waits for its workers);
    # the per-process samples (each process up to its last sample) are a floor if some were not waited for
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    waited = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak["rss"], 1), "peak_pss_mb": round(peak["pss"], 1),
            "max_processes": peak["procs"], "peak_root_rss_mb": round(peak["root"], 1),
            "cpu_seconds": round(max(waited, sum(cpu.values())), 1)}


def du_mb(path: Path, pattern: str = "**/*") -> float:
    return round(sum(p.stat().st_size for p in path.glob(pattern) if p.is_file()) / 2**20, 1)


# ----------------------------------------------------------------------------- steps
def generate(raw: Path, users: int, shards: int, items: int, seed: int, logs: Path) -> dict:
    cmd = [sys.executable, "-m", "tfpps.synthetic", f"--out={raw}", f"--users={users}", f"--items={items}",
           f"--shards={shards}", f"--seed={seed}", f"--events-per-user={EVENTS_PER_USER}", "--quiet"]
    m = run_measured(cmd, logs / f"generate-{raw.name}.log")
    summary = json.loads((raw / "summary.json").read_text())
    return {**m, "events": summary["n_events"], "users": summary["n_users"], "raw_mb": du_mb(raw, "events-*")}


def beam_job(raw: Path, out: Path, workers: int, logs: Path, attempts: int = 3) -> dict:
    """The job, measured; a run that fails its internal data checks (the runner lost data, see
    beam_jobs/cleaning.py) is recorded and run again, up to ``attempts`` times."""
    from tfpps.data.datasets import job_argv

    argv = job_argv("synthetic", out, raw) + ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    failed = []
    for attempt in range(1, attempts + 1):
        try:
            m = run_measured([sys.executable, "-m", "beam_jobs.build_features", *argv],
                             logs / f"beam-{out.name}-{attempt}.log")
            break
        except RuntimeError as exc:
            line = next((l for l in str(exc).splitlines() if "internal check failed" in l), None)
            if line is None or attempt == attempts:
                raise
            failed.append(line.split("error: ", 1)[-1])
            print(f"  attempt {attempt} refused to publish: {failed[-1]}; running it again", flush=True)
    stats = json.loads((out / "stats.json").read_text())
    st = stats["stages"]
    return {
        **m,
        "events_read": st["events_parsed"],
        "interactions_kept": st["interactions"],
        "users_kept": st["users"],
        "train_records": stats["splits"]["train"]["records"],
        "output_mb": du_mb(out),
        "shards_mb": du_mb(out, "*/part-*.tfrecord.gz"),
        "argv": ["python", "-m", "beam_jobs.build_features", *argv],
        "attempts": len(failed) + 1,
        "failed_attempts": failed,
    }


def train_one_epoch(model: str, data: Path, run_dir: Path, shuffle_buffer: int, logs: Path) -> dict:
    result_file = logs / f"train-{model}-{data.name}.json"
    argv = [f"--model={model}", f"--set=data.dir={data}", f"--set=data.dataset={data.name}", "--epochs=1",
            f"--set=data.shuffle_buffer={shuffle_buffer}", f"--run_dir={run_dir}", "--verbose=2"]
    m = run_measured([sys.executable, "-m", "benchmarks.run_tfpps", "--out", str(result_file), "--", *argv],
                     logs / f"train-{model}-{data.name}.log")
    res = json.loads(result_file.read_text())
    metrics = res.get("metrics", {})
    return {**m, "process_peak_rss_mb": res.get("peak_rss_mb"), "train_seconds": res.get("train_seconds_total"),
            "recall@10": metrics.get("recall@10"), "ndcg@10": metrics.get("ndcg@10"),
            "argv": ["python", "-m", "tfpps.train", *argv]}


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x``; returns (a, b)."""
    n = len(xs)
    if n < 2:
        return 0.0, ys[0] / xs[0]
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def plot(rows: list[dict], train_rows: list[dict], fit: tuple[float, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = [r["events"] / 1e6 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.plot(ev, [r["beam_seconds"] for r in rows], "o", label="wall seconds")
    ax.plot(ev, [r["beam_cpu_seconds"] for r in rows], "^", label="CPU seconds (all processes)")
    xs = [0, max(ev) * 1.05]
    ax.plot(xs, [fit[0] + fit[1] * x * 1e6 for x in xs], "--", label=f"fit: {fit[0]:.0f} s + events / {1 / fit[1]:,.0f} per s")
    for r, x in zip(rows, ev):
        ax.annotate(f"{r['scale']}x", (x, r["beam_seconds"]), textcoords="offset points", xytext=(5, -10))
    ax.set_xlabel("raw events (millions)")
    ax.set_ylabel("Beam job seconds")
    ax.set_title("Beam job (DirectRunner multi-process)")
    ax.legend()
    ax = axes[1]
    ax.plot(ev, [r["beam_peak_rss_mb"] for r in rows], "o-", label="Beam job: sum of RSS")
    ax.plot(ev, [r["beam_peak_pss_mb"] for r in rows], "o-", label="Beam job: sum of PSS")
    ax.plot(ev, [r.get("beam_driver_peak_rss_mb") or 0 for r in rows], "o--", label="Beam job: driver process RSS")
    ax.plot(ev, [r["gen_peak_rss_mb"] for r in rows], "o-", label="generator RSS")
    if train_rows:
        ax.plot([t["events"] / 1e6 for t in train_rows], [t["peak_rss_mb"] for t in train_rows], "s-",
                label=f"{train_rows[0]['model']} one epoch: RSS")
    ax.set_xlabel("raw events (millions)")
    ax.set_ylabel("peak memory (MB)")
    ax.set_title("peak memory of each process tree")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-events", type=int, default=150_000, help="events at 1x (users = base / 80)")
    p.add_argument("--scales", default="1,4,16", help="volumes as multiples of the base, comma-separated")
    p.add_argument("--items", type=int, default=2000, help="catalogue size (the same at every scale)")
    p.add_argument("--shards-per-scale", type=int, default=4, help="raw CSV shards per 1x")
    p.add_argument("--workers", type=int, default=2, help="--direct_num_workers of the Beam job")
    p.add_argument("--attempts", type=int, default=3,
                   help="runs of the job per scale when one fails its data checks (the multi-process DirectRunner "
                        "has lost data now and then; the job then refuses to publish)")
    p.add_argument("--train-model", default="narm", help="model trained one epoch on --train-scales ('' = none)")
    p.add_argument("--train-scales", default=None, help="scales to train on (default: the smallest and largest)")
    p.add_argument("--shuffle-buffer", type=int, default=10_000, help="data.shuffle_buffer of the training run")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--work", default="", help="working directory (default: a temp dir, deleted unless --keep)")
    p.add_argument("--keep", action="store_true", help="keep the generated logs and datasets")
    p.add_argument("--name", default="beam_volume", help="results file name in benchmarks/scale/results/beam_volume/")
    p.add_argument("--reuse-beam", action="store_true",
                   help="take the generator/Beam rows of an earlier run from benchmarks/scale/results/beam_volume/<name>.json when "
                        "its datasets are still in --work and its settings match (to re-run only the training)")
    args = p.parse_args(argv)
    scales = sorted(set(parse_list(args.scales)))
    train_scales = parse_list(args.train_scales) if args.train_scales is not None else sorted({scales[0], scales[-1]})
    if not args.train_model:
        train_scales = []
    base_users = max(1, math.ceil(args.base_events / EVENTS_PER_USER))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tfpps-volume-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    info = machine()
    print(f"work dir {work}; machine {info}", flush=True)
    rows, train_rows = [], []
    same = ("base_events", "items", "shards_per_scale", "workers", "seed")
    earlier = {}
    if args.reuse_beam and (RESULTS / f"{args.name}.json").exists():
        old = json.loads((RESULTS / f"{args.name}.json").read_text())
        if all(old.get("settings", {}).get(k) == getattr(args, k) for k in same):
            earlier = {r["scale"]: r for r in old["rows"] if (work / f"dataset-{r['scale']}x" / "dataset.json").exists()}
    try:
        for s in scales:
            raw, out = work / f"raw-{s}x", work / f"dataset-{s}x"
            if s in earlier:
                rows.append({k: v for k, v in earlier[s].items()
                             if k not in ("volume_ratio", "time_ratio", "us_per_event", "cpu_ratio", "cpu_us_per_event")})
                print(f"{s}x: reusing the earlier generator and Beam measurements", flush=True)
                continue
            gen = generate(raw, base_users * s, args.shards_per_scale * s, args.items, args.seed, logs)
            print(f"{s}x: generated {gen['events']:,} events in {gen['seconds']} s (peak {gen['peak_rss_mb']} MB)", flush=True)
            job = beam_job(raw, out, args.workers, logs, args.attempts)
            print(f"{s}x: Beam job {job['seconds']} s, {gen['events'] / job['seconds']:,.0f} events/s, "
                  f"peak RSS {job['peak_rss_mb']:,} MB / PSS {job['peak_pss_mb']:,} MB over {job['max_processes']} processes",
                  flush=True)
            rows.append({
                "scale": s, "events": gen["events"], "users": gen["users"], "raw_shards": args.shards_per_scale * s,
                "raw_mb": gen["raw_mb"], "gen_seconds": gen["seconds"], "gen_peak_rss_mb": gen["peak_rss_mb"],
                "beam_seconds": job["seconds"], "events_per_s": round(gen["events"] / job["seconds"]),
                "beam_cpu_seconds": job["cpu_seconds"], "gen_cpu_seconds": gen["cpu_seconds"],
                "beam_peak_rss_mb": job["peak_rss_mb"], "beam_peak_pss_mb": job["peak_pss_mb"],
                "beam_processes": job["max_processes"], "beam_driver_peak_rss_mb": job["peak_root_rss_mb"],
                "beam_attempts": job["attempts"], "beam_failed_attempts": job["failed_attempts"],
                "interactions_kept": job["interactions_kept"],
                "train_records": job["train_records"], "output_mb": job["output_mb"], "shards_mb": job["shards_mb"],
                "beam_argv": job["argv"],
            })
            write_results(RESULTS, args.name, {"machine": info, "rows": rows, "partial": True,
                                      "settings": {k: v for k, v in vars(args).items()}})
        base = rows[0]
        for r in rows:
            r["volume_ratio"] = round(r["events"] / base["events"], 2)
            r["time_ratio"] = round(r["beam_seconds"] / base["beam_seconds"], 2)
            r["us_per_event"] = round(1e6 * r["beam_seconds"] / r["events"], 1)
            r["cpu_ratio"] = round(r["beam_cpu_seconds"] / base["beam_cpu_seconds"], 2)
            r["cpu_us_per_event"] = round(1e6 * r["beam_cpu_seconds"] / r["events"], 1)
        fit = fit_line([r["events"] for r in rows], [r["beam_seconds"] for r in rows])
        cpu_fit = fit_line([r["events"] for r in rows], [r["beam_cpu_seconds"] for r in rows])
        for s in train_scales:
            data = work / f"dataset-{s}x"
            if not data.exists():
                print(f"skipped training at {s}x: not among --scales", flush=True)
                continue
            t = train_one_epoch(args.train_model, data, work / f"run-{args.train_model}-{s}x", args.shuffle_buffer, logs)
            row = next(r for r in rows if r["scale"] == s)
            train_rows.append({
                "model": args.train_model, "scale": s, "events": row["events"], "train_records": row["train_records"],
                "shards_mb": row["shards_mb"], "raw_mb": row["raw_mb"], "seconds": t["seconds"],
                "train_seconds": t["train_seconds"], "cpu_seconds": t["cpu_seconds"],
                "peak_rss_mb": t["process_peak_rss_mb"] or t["peak_rss_mb"],
                "tree_peak_rss_mb": t["peak_rss_mb"], "recall@10": t["recall@10"], "ndcg@10": t["ndcg@10"],
                "shuffle_buffer": args.shuffle_buffer, "argv": t["argv"],
            })
            print(f"{s}x: {args.train_model} one epoch {t['seconds']} s, peak RSS {train_rows[-1]['peak_rss_mb']} MB "
                  f"(dataset shards {row['shards_mb']} MB)", flush=True)
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)

    command = "python -m benchmarks.scale.beam_volume " + " ".join(argv if argv is not None else sys.argv[1:])
    def f(x, digits=1):
        return None if x is None else f"{x:,.{digits}f}"

    text = table(
        [{**r, "wall s": f(r["beam_seconds"]), "events/s": r["events_per_s"], "CPU s": f(r["beam_cpu_seconds"]),
          "volume ratio": f(r["volume_ratio"], 2), "wall ratio": f(r["time_ratio"], 2), "CPU ratio": f(r["cpu_ratio"], 2),
          "peak RSS MB": f(r["beam_peak_rss_mb"], 0), "driver RSS MB": f(r.get("beam_driver_peak_rss_mb"), 0),
          "peak PSS MB": f(r["beam_peak_pss_mb"], 0), "gen s": f(r["gen_seconds"], 2), "gen peak MB": f(r["gen_peak_rss_mb"], 0),
          "raw MB": f(r["raw_mb"]), "shards MB": f(r["shards_mb"]), "runs": r.get("beam_attempts", 1)} for r in rows],
        ["scale", "events", "runs", "wall s", "events/s", "CPU s", "volume ratio", "wall ratio", "CPU ratio", "peak RSS MB",
         "driver RSS MB", "peak PSS MB", "raw MB", "shards MB", "gen s", "gen peak MB"],
        title=f"Beam job volume scaling (DirectRunner multi_processing x{args.workers})",
    )
    print()
    print(text)
    print(f"\nlinear fit, wall: seconds = {fit[0]:.1f} + events / {1 / fit[1]:,.0f}")
    print(f"linear fit, CPU:  seconds = {cpu_fit[0]:.1f} + events / {1 / cpu_fit[1]:,.0f}")
    if train_rows:
        print()
        print(table([{**t, "shards MB": f(t["shards_mb"]), "wall s": f(t["seconds"]), "CPU s": f(t["cpu_seconds"]),
                      "peak RSS MB": f(t["peak_rss_mb"], 0), "recall@10": f(t["recall@10"], 4)} for t in train_rows],
                    ["model", "scale", "events", "train_records", "shards MB", "wall s", "CPU s", "peak RSS MB",
                     "recall@10"], title="one training epoch on the job's output"))
    print(f"\nmachine: {info}\ncommand: {command}")
    payload = {"machine": info, "command": command, "rows": rows, "fit": {"fixed_seconds": round(fit[0], 2),
               "marginal_events_per_s": round(1 / fit[1]), "cpu_fixed_seconds": round(cpu_fit[0], 2),
               "cpu_marginal_events_per_s": round(1 / cpu_fit[1])}, "train": train_rows,
               "settings": {k: v for k, v in vars(args).items()}}
    write_results(RESULTS, args.name, payload)
    plot(rows, train_rows, fit, RESULTS / f"{args.name}.png")
    print(f"wrote {RESULTS / (args.name + '.json')} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
