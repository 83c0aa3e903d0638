"""Minimal repro: events lost by the job's k-core item filter on the multi-process DirectRunner.

    python -m benchmarks.scale.beam_multiprocess_repro                          # both modes, 3 attempts, 300k events
    python -m benchmarks.scale.beam_multiprocess_repro --modes=multi_processing --attempts=5 --events=600000 --probe
    python -m benchmarks.scale.beam_multiprocess_repro --job --source=csv --input=... --direct_running_mode=multi_processing

The pipeline has the shape of the job's first k-core item filter (``cleaning.FilterByKeyCount`` with
``broadcast=True``) and nothing else:

    events  = shards | FlatMap(generate) | CombinePerKey(first)          (like the job's dedup: a shuffle,
                                                                          so the events are split over workers)
    counts  = events | Map((item, 1)) | CombinePerKey(sum)
    kept    = counts | Filter(count >= min_count)
    out     = events | Filter(item in keys, keys=AsDict(kept))           (the filter under test)

Per attempt it prints the events generated, the events the filter received, the events it kept, the sum
of the counts of the kept keys (what it should have kept: ``lost`` is the difference), and the sizes of
the side-input dict seen by batches of 5,000 events (a truncated side input would show as a smaller size).

``--probe`` also patches the FnApiRunner in this process (:func:`install_probe`) to account for every
element at the runner/SDK-worker boundary; ``--job ARGS`` runs ``beam_jobs.build_features`` under it.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions


def generate(shard: int, per_shard: int, items: int, seed: int):
    rng = random.Random(seed * 1000003 + shard)
    for i in range(per_shard):
        # Skewed popularity over the whole catalogue, like the synthetic logs: popular items, a long tail.
        item = int(items * rng.random() ** 2)
        yield {"user_id": f"u{shard}_{i // 80}", "item_id": f"i{item}", "timestamp": i}


# ----------------------------------------------------------------------------- runner-side probe
PROBE_LOG: list[dict] = []
PROBE_STATS = {"bundles": 0, "checked": 0}


def install_probe() -> None:
    """Patch the FnApiRunner (this process only) to account for every element of every bundle.

    For each bundle sent to an SDK worker it records: the elements the runner sent per input, the elements
    the SDK worker says it read (its ``element_count`` monitoring info), the elements the SDK worker says it
    produced per output and the elements the runner received for it on the data plane, and any residual
    roots in the response. For each multi-worker stage it also checks that the partitions handed to the
    workers hold every element of the stage's input buffer. Mismatches are appended to ``PROBE_LOG``."""
    import threading

    from apache_beam.metrics import monitoring_infos as mi
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.worker import data_plane

    local = threading.local()
    orig_input_elements = data_plane._GrpcDataChannel.input_elements

    def input_elements(self, instruction_id, expected_inputs, abort_callback=None):
        got = getattr(local, "got", None)
        for el in orig_input_elements(self, instruction_id, expected_inputs, abort_callback):
            if got is not None and hasattr(el, "data"):
                got.setdefault(el.transform_id, []).append(el.data)
            yield el

    data_plane._GrpcDataChannel.input_elements = input_elements

    def count(bcm, tid, chunks) -> int:
        impl = bcm.get_input_coder_impl(tid)
        return sum(1 for _ in impl.decode_all(b"".join(chunks)))

    def sdk_counts(result) -> dict:
        out = {}
        for info in result.process_bundle.monitoring_infos:
            if info.urn == mi.ELEMENT_COUNT_URN:
                out[info.labels[mi.PCOLLECTION_LABEL]] = mi.extract_counter_value(info)
        return out

    orig_bundle = fn_runner.BundleManager.process_bundle

    # An exception inside the runner's stage loop leaves Beam waiting for its workers forever: print it first.
    def process_bundle(self, *a, **kw):
        try:
            return _process_bundle(self, *a, **kw)
        except Exception:
            import traceback

            traceback.print_exc()
            raise

    def _process_bundle(self, inputs, expected_outputs, fired_timers, expected_output_timers, dry_run=False):
        local.got = {}
        sent = {tid: count(self.bundle_context_manager, tid, list(chunks)) for tid, chunks in inputs.items()}
        result, splits = orig_bundle(self, inputs, expected_outputs, fired_timers, expected_output_timers, dry_run)
        got, local.got = local.got, None
        bcm = self.bundle_context_manager
        transforms = bcm.process_bundle_descriptor.transforms
        sdk = sdk_counts(result)
        stage = bcm.stage.name
        PROBE_STATS["bundles"] += 1
        PROBE_STATS["checked"] += sum(transforms[t].outputs["out"] in sdk for t in sent)
        for tid, n in sent.items():
            pc = transforms[tid].outputs["out"]
            if pc in sdk and sdk[pc] != n:  # (some stages report no count for their input: skipped)
                PROBE_LOG.append({"where": "runner->sdk", "stage": stage, "transform": tid, "sent": n, "sdk_read": sdk.get(pc, 0)})
        grpc = isinstance(self._worker_handler.data_conn, data_plane._GrpcDataChannel)
        for tid in expected_outputs if grpc else ():  # (the in_memory mode has no gRPC data plane to watch)
            if tid not in transforms or transforms[tid].spec.urn != "beam:runner:sink:v1":
                continue
            pc = transforms[tid].inputs["in"]
            n = count(bcm, tid, got.get(tid, []))
            if pc in sdk and sdk[pc] != n:
                PROBE_LOG.append({"where": "sdk->runner", "stage": stage, "transform": tid, "sdk_wrote": sdk.get(pc, 0), "received": n})
        if result.process_bundle.residual_roots:
            PROBE_LOG.append({"where": "residual_roots", "stage": stage, "n": len(result.process_bundle.residual_roots)})
        return result, splits

    fn_runner.BundleManager.process_bundle = process_bundle

    orig_parallel = fn_runner.ParallelBundleManager.process_bundle

    def parallel(self, *a, **kw):
        try:
            return _parallel(self, *a, **kw)
        except Exception:
            import traceback

            traceback.print_exc()
            raise

    def _parallel(self, inputs, expected_outputs, fired_timers, expected_output_timers, dry_run=False):
        bcm = self.bundle_context_manager
        for name, buf in inputs.items():
            parts = buf.partition(self._num_workers)  # cached by the buffer: the runner gets the same parts
            in_parts = sum(count(bcm, name, p) for p in parts)
            whole = count(bcm, name, list(buf._inputs)) if hasattr(buf, "_inputs") and not buf._grouped_output else None
            if whole is not None and whole != in_parts:
                PROBE_LOG.append({"where": "partition", "stage": bcm.stage.name, "transform": name, "buffer": whole, "parts": in_parts})
        return orig_parallel(self, inputs, expected_outputs, fired_timers, expected_output_timers, dry_run)

    fn_runner.ParallelBundleManager.process_bundle = parallel


def build(p, args, result_path: str):
    per_shard = args.events // args.shards
    events = (
        p
        | "Shards" >> beam.Create(list(range(args.shards)))
        | "Generate" >> beam.FlatMap(generate, per_shard, args.items, args.seed)
        # Like the job's dedup (CombinePerKey): the events come out of a shuffle, spread over the workers.
        | "Key" >> beam.Map(lambda e: ((e["user_id"], e["timestamp"]), e))
        | "Dedup" >> beam.CombinePerKey(lambda es: next(iter(es)))
        | "Values" >> beam.Values()
    )
    counts = events | "Ones" >> beam.Map(lambda e: (e["item_id"], 1)) | "Count" >> beam.CombinePerKey(sum)
    kept = counts | "Kept" >> beam.Filter(lambda kc: kc[1] >= args.min_count)

    def keep(e, keys):
        return e["item_id"] in keys

    received = events | "Received" >> beam.Map(lambda e: e)  # fused into the filter's stage: counts its input
    out = received | "Keep" >> beam.Filter(keep, keys=beam.pvalue.AsDict(kept))

    # What each batch of 5,000 events saw: (pid, events in, events kept, len(side-input dict)).
    def per_bundle(batch, keys):
        n_in = len(batch)
        n_out = sum(1 for e in batch if e["item_id"] in keys)
        return (os.getpid(), n_in, n_out, len(keys))

    probe = (
        events
        | "Batch" >> beam.BatchElements(min_batch_size=5000, max_batch_size=5000)
        | "Probe" >> beam.Map(per_bundle, keys=beam.pvalue.AsDict(kept))
    )

    stats = [
        events | "CountEvents" >> beam.combiners.Count.Globally() | "N1" >> beam.Map(lambda n: ("events", n)),
        received | "CountReceived" >> beam.combiners.Count.Globally() | "N2" >> beam.Map(lambda n: ("filter_in", n)),
        out | "CountOut" >> beam.combiners.Count.Globally() | "N3" >> beam.Map(lambda n: ("filter_kept", n)),
        kept | "KeptSum" >> beam.Map(lambda kc: kc[1]) | "Sum" >> beam.CombineGlobally(sum) | "N4" >> beam.Map(lambda n: ("expected", n)),
        kept | "KeptKeys" >> beam.combiners.Count.Globally() | "N5" >> beam.Map(lambda n: ("kept_keys", n)),
        probe | "ProbeList" >> beam.combiners.ToList() | "N6" >> beam.Map(lambda rows: ("probe", rows)),
    ]

    def write(rows):
        with open(result_path, "w") as fh:
            json.dump(dict(rows), fh)

    _ = stats | beam.Flatten() | beam.combiners.ToList() | "Write" >> beam.Map(write)


def run_once(args, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "result.json")
        opts = ["--runner=DirectRunner", f"--direct_running_mode={mode}", "--default_sdk_harness_log_level=WARNING"]
        if mode != "in_memory":
            opts.append(f"--direct_num_workers={args.workers}")
        t0 = time.time()
        with beam.Pipeline(options=PipelineOptions(opts)) as p:
            build(p, args, path)
        seconds = time.time() - t0
        with open(path) as fh:
            r = json.load(fh)
    probe = r.pop("probe")
    r["seconds"] = round(seconds, 1)
    r["lost"] = r["expected"] - r["filter_kept"]
    sizes = sorted({row[3] for row in probe})
    r["probe_dict_sizes"] = sizes
    r["probe_batches"] = len(probe)
    r["probe_lost"] = sum(row[1] - row[2] for row in probe if row[3] < r["kept_keys"])
    r["runner_probe"] = PROBE_LOG[:]
    r["probe_bundles"] = dict(PROBE_STATS)
    PROBE_STATS.update(bundles=0, checked=0)
    PROBE_LOG.clear()
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--items", type=int, default=2_000)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--min_count", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--attempts", type=int, default=3)
    ap.add_argument("--modes", default="multi_processing,in_memory")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--probe", action="store_true", help="account for every element at the runner/SDK boundary")
    ap.add_argument("--job", nargs=argparse.REMAINDER,
                    help="instead of the minimal pipeline, run beam_jobs.build_features with these arguments under the probe")
    args = ap.parse_args(argv)
    if args.probe or args.job:
        install_probe()
    if args.job:
        from beam_jobs import build_features

        code = build_features.main(args.job)
        print("runner probe:", json.dumps(PROBE_LOG), flush=True)
        return code
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    bad = 0
    for mode in args.modes.split(","):
        for attempt in range(1, args.attempts + 1):
            r = run_once(args, mode)
            ok = r["lost"] == 0 and r["filter_in"] == r["events"]
            bad += not ok
            print(f"{mode:16s} attempt {attempt}: " + ("OK  " if ok else "LOST") + " " + json.dumps(r), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
