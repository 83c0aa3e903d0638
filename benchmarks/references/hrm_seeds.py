"""HRM, tfpps vs RecBole over N seeds each (ml-100k, RecBole protocol): mean, sd and Welch tests per metric.

    python -m benchmarks.references.hrm_seeds                      # 5 seeds per side; trains what is missing
    python -m benchmarks.references.hrm_seeds --reuse --seeds 5    # reuse finished runs with the same settings

One seed of HRM on 939 test users moves Recall@10 by about +-0.01, more than the difference between
the frameworks, so the single-seed comparison of ``compare_recbole`` is repeated over ``--seeds N``
seeds per side (default 5):

* "tfpps" (headline): ``configs/models/hrm.yaml`` (untied output vectors) + batch 512, the
  compare_recbole setting, seeds 42 .. 42+N-1 (seed 42 is compare_recbole's run);
* "tfpps (RecBole settings)": the same with exactly RecBole's setup, tied output vectors
  (``model_params.tie_embeddings=true``) and batch 4096, same seeds;
* "RecBole": RecBole 1.2.1 with its benchmark settings (batch 4096, lr 1e-3, patience 10, tied),
  seeds 2020 .. 2020+N-1 (seed 2020 is compare_recbole's run), in its own venv.

For each tfpps variant vs RecBole and each metric: difference of means, Welch's t-test (two-sided
p-value) and the one-sided 95% lower confidence bound of (tfpps - RecBole): a deficit larger than
minus that bound is ruled out at the 5% level. The two tfpps variants are also compared.

Writes ``benchmarks/references/results/hrm_seeds/hrm_seeds.json`` and ``.png`` and prints the tables.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

from benchmarks.common import bar_plot, machine, results_dir, table, write_results
from benchmarks.references.compare_recbole import PROTOCOL, TFPPS_ARGS, run_recbole, run_tfpps

RESULTS = results_dir(__file__)

TFPPS_SEED0, RECBOLE_SEED0 = 42, 2020
METRICS = ("recall@10", "mrr@10", "ndcg@10", "recall@20")
SHIPPED, RB_SETTINGS, RECBOLE = "tfpps", "tfpps (RecBole settings)", "RecBole"
ALPHA = 0.05  # one-sided level of the lower confidence bound


def tfpps_run(seed: int, reuse: bool) -> dict:
    """The shipped setting: hrm.yaml (untied) + batch 512; run names as in the 3-seed version."""
    extra = ["--dataset=ml-100k", *PROTOCOL, "--epochs=20", *TFPPS_ARGS["hrm"]]
    if seed == 42:  # compare_recbole's run (train.seed default 42)
        return run_tfpps("hrm", extra, "ml100k-hrm", reuse)
    return run_tfpps("hrm", [*extra, f"--seed={seed}"], f"ml100k-hrm-seed{seed}", reuse)


def tfpps_recbole_settings_run(seed: int, reuse: bool) -> dict:
    """RecBole's setup: tied output vectors and batch 4096; everything else as the shipped variant."""
    args = [a if a != "--batch_size=512" else "--batch_size=4096" for a in TFPPS_ARGS["hrm"]]
    extra = ["--dataset=ml-100k", *PROTOCOL, "--epochs=20", *args, "--set", "model_params.tie_embeddings=true",
             f"--seed={seed}"]
    return run_tfpps("hrm", extra, f"ml100k-hrm-tied-b4096-seed{seed}", reuse)


def recbole_run(seed: int, reuse: bool, data_dir) -> dict:
    """RecBole's HRM with its benchmark settings (batch 4096, lr 1e-3, patience 10); seed 2020 is
    compare_recbole's run."""
    out = None if seed == 2020 else RESULTS / "recbole" / f"HRM-seed{seed}.json"
    return run_recbole("hrm", data_dir, 300, 1e-3, reuse, threads=1, seed=None if seed == 2020 else seed, out=out)


# --- statistics -------------------------------------------------------------------------------------

def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) (Numerical Recipes' continued fraction, Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return math.exp(lbeta) * f / a


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` (real) degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t (bisection on t_sf)."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if 1.0 - t_sf(mid, df) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def welch(a: list[float], b: list[float], alpha: float = ALPHA) -> dict:
    """Welch's t-test of mean(a) - mean(b): t, Welch-Satterthwaite df, two-sided p, one-sided (1-alpha)
    lower confidence bound of the difference. scipy when available, else the functions above."""
    na, nb = len(a), len(b)
    ma, mb = statistics.mean(a), statistics.mean(b)
    va, vb = statistics.variance(a), statistics.variance(b)
    se2 = va / na + vb / nb
    diff = ma - mb
    if se2 == 0:
        return {"diff": diff, "t": None, "df": None, "p": None, "lower": diff}
    se = math.sqrt(se2)
    df = se2 ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    t = diff / se
    try:
        from scipy import stats

        p, q = float(2 * stats.t.sf(abs(t), df)), float(stats.t.ppf(1 - alpha, df))
    except ImportError:
        p, q = 2 * t_sf(abs(t), df), t_ppf(1 - alpha, df)
    return {"diff": diff, "t": t, "df": df, "p": min(1.0, p), "lower": diff - q * se}


def _check_t() -> None:
    """The fallback against known values: t_{0.975, 10} = 2.228139, P(T_5 > 2.015048) = 0.05."""
    assert abs(t_ppf(0.975, 10) - 2.228139) < 1e-5
    assert abs(t_sf(2.015048, 5) - 0.05) < 1e-6
    assert abs(t_sf(-1.0, 3) - (1 - t_sf(1.0, 3))) < 1e-12


# --- report -----------------------------------------------------------------------------------------

def summary(label: str, values: list[dict], per_epoch: list[float], best_epochs: list[int]) -> dict:
    row = {"framework": label, "seeds": len(values)}
    for m in METRICS:
        vals = [v[m] for v in values]
        row[m] = round(statistics.mean(vals), 4)
        row[f"{m} sd"] = round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0
    row["s/epoch (mean)"] = round(statistics.mean(per_epoch), 2)
    row["best epoch (mean)"] = round(statistics.mean(best_epochs), 1)
    return row


def tests(per_seed: list[dict], a: str, b: str) -> list[dict]:
    out = []
    for m in METRICS:
        va = [r[m] for r in per_seed if r["framework"] == a]
        vb = [r[m] for r in per_seed if r["framework"] == b]
        w = welch(va, vb)
        out.append({
            "comparison": f"{a} - {b}", "metric": m,
            "mean A": round(statistics.mean(va), 4), "sd A": round(statistics.stdev(va), 4),
            "mean B": round(statistics.mean(vb), 4), "sd B": round(statistics.stdev(vb), 4),
            "diff": round(w["diff"], 4), "rel diff %": round(100 * w["diff"] / statistics.mean(vb), 1),
            "t": None if w["t"] is None else round(w["t"], 3), "df": None if w["df"] is None else round(w["df"], 1),
            "p (Welch, 2-sided)": None if w["p"] is None else round(w["p"], 4),
            "95% lower bound": round(w["lower"], 4),
            "lower bound % of B": round(100 * w["lower"] / statistics.mean(vb), 1),
        })
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--seeds", type=int, default=5, help="seeds per side (tfpps 42.., RecBole 2020..)")
    args = p.parse_args(argv)
    if args.seeds < 2:
        p.error("--seeds must be >= 2 (sd and tests need two runs per side)")
    _check_t()
    from tfpps.data.datasets import shared_data_dir

    data_dir = shared_data_dir() / "ml-100k"
    if not (data_dir / "ml-100k.inter").exists():
        print(f"skipped: {data_dir} not found (set TFPPS_SHARED_DATA)")
        return 0
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.time()
    tf_seeds = range(TFPPS_SEED0, TFPPS_SEED0 + args.seeds)
    rb_seeds = range(RECBOLE_SEED0, RECBOLE_SEED0 + args.seeds)
    runs = {
        SHIPPED: {s: tfpps_run(s, args.reuse) for s in tf_seeds},
        RB_SETTINGS: {s: tfpps_recbole_settings_run(s, args.reuse) for s in tf_seeds},
        RECBOLE: {s: recbole_run(s, args.reuse, data_dir) for s in rb_seeds},
    }

    def metrics(label, r):
        return r["test"] if label == RECBOLE else r["metrics"]

    def per_epoch(label, r):
        return r["timing"]["train_seconds_per_epoch_mean"] if label == RECBOLE else r["train_seconds_per_epoch"]

    per_seed = [{"framework": label, "seed": s, **{m: metrics(label, r)[m] for m in METRICS},
                 "best epoch": r["best_epoch"], "epochs run": r.get("epochs_run"), "s/epoch": per_epoch(label, r)}
                for label, by_seed in runs.items() for s, r in by_seed.items()]
    rows = [summary(label, [metrics(label, r) for r in by_seed.values()], [per_epoch(label, r) for r in by_seed.values()],
                    [r["best_epoch"] for r in by_seed.values()]) for label, by_seed in runs.items()]
    test_rows = tests(per_seed, SHIPPED, RECBOLE) + tests(per_seed, RB_SETTINGS, RECBOLE) + tests(per_seed, RB_SETTINGS, SHIPPED)
    info = machine()
    cols = ["framework", "seeds"] + [c for m in METRICS for c in (m, f"{m} sd")] + ["s/epoch (mean)", "best epoch (mean)"]
    test_cols = list(test_rows[0])
    # display copies: seeds without thousands separators, percentages and df with one decimal
    shown_seeds = [{**r, "seed": str(r["seed"])} for r in per_seed]
    shown_tests = [{**r, **{k: None if r[k] is None else f"{r[k]:.1f}" for k in ("rel diff %", "df", "lower bound % of B")}}
                   for r in test_rows]
    print("\n" + table(rows, cols, f"HRM on ml-100k, RecBole protocol: mean over {args.seeds} seeds")
          + "\n\n" + table(shown_seeds, ["framework", "seed", *METRICS, "best epoch", "epochs run", "s/epoch"], "per seed")
          + "\n\n" + table(shown_tests, test_cols, "A - B: Welch's t-test, one-sided 95% lower confidence bound of A - B")
          + f"\n\nmachine: {info}\nwall time: {time.time() - t0:.0f} s")
    write_results(RESULTS, "hrm_seeds", {
        "started": started, "machine": info, "seeds": args.seeds,
        "settings": {SHIPPED: "configs/models/hrm.yaml (tie_embeddings false) + batch 512, seeds 42..",
                     RB_SETTINGS: "same + tie_embeddings true + batch 4096, seeds 42..",
                     RECBOLE: "RecBole 1.2.1 HRM, batch 4096, lr 1e-3, patience 10, seeds 2020.."},
        "rows": rows, "per_seed": per_seed, "tests": test_rows,
        "tests_note": f"Welch's t-test (two-sided p); lower bound: one-sided {1 - ALPHA:.0%} confidence bound of mean A - mean B",
        "wall_seconds": round(time.time() - t0),
        "command": "python -m benchmarks.references.hrm_seeds " + " ".join(argv if argv is not None else sys.argv[1:])})
    # common.bar_plot draws no error bars; the sds are in the table and the JSON
    bar_plot(RESULTS, "hrm_seeds", [r["framework"].replace(" (", "\n(") for r in rows], {m: [r[m] for r in rows] for m in METRICS[:3]},
             f"mean over {args.seeds} seeds", "HRM on ml-100k: tfpps vs RecBole")
    return 0


if __name__ == "__main__":
    sys.exit(main())
