"""The Beam job's output is all or nothing: a run killed mid-way leaves no dataset (and no damage to an
existing one), and the re-run writes a complete dataset without duplicated records.

Locally the job writes into a hidden ``.<output>.tmp-<host>-<pid>-<hex>`` sibling and renames it; on
object stores (no directories, no atomic rename) files are moved one by one with ``dataset.json`` last,
which the fake object store below checks without a cloud account.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apache_beam.io.filesystem import BeamIOError, FileMetadata, FileSystem
from apache_beam.io.filesystems import FileSystems

from beam_jobs import cli, publish
import tensorflow as tf

from tfpps import synthetic
from tfpps.data.dataset_dir import DatasetDir, DatasetError
from tfpps.spec import schema

REPO = Path(__file__).resolve().parents[1]
IN_MEMORY = ["--direct_running_mode=in_memory"]


def job_argv(raw: Path, out: Path) -> list[str]:
    return [
        "--source=csv",
        f"--input={raw}/events-*.csv",
        f"--metadata={raw}/items.jsonl",
        f"--output={out}",
        "--min_user_interactions=3",
        "--min_item_interactions=2",
        "--kcore_iterations=2",
        "--num_shards=2",
        *IN_MEMORY,
    ]


def scratch_dirs(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.tmp-*")) + sorted(out.parent.glob(f".{out.name}.old-*"))


def snapshot(out: Path) -> dict:
    """Everything a reader sees: the file list with contents (gzip shards decoded to sorted records)."""
    ds = DatasetDir(out)
    records = {s: sorted(r.numpy() for f in ds.files(s) for r in tf.data.TFRecordDataset(f, "GZIP"))
               for s in schema.SPLITS}
    vocab = {name: (out / schema.VOCAB_DIR / schema.VOCAB_FILES[name]).read_text() for name in ("items", "users")}
    meta = {k: v for k, v in ds.meta.items() if k != "flags"}
    return {"meta": meta, "records": records, "vocab": vocab}


def finished_files(tmp: Path) -> list[str]:
    """Output files Beam has already finalized in the temp dir (not its own ``beam-temp-*`` scratch).

    The job is running while this walks, so its scratch folders may vanish mid-walk: ``os.walk``
    skips a folder that is gone instead of raising, as ``Path.rglob`` does."""
    found = []
    for folder, subdirs, files in os.walk(tmp):
        subdirs[:] = [d for d in subdirs if not d.startswith("beam-temp-")]
        found += [str((Path(folder) / f).relative_to(tmp)) for f in files if "beam-temp-" not in f]
    return sorted(found)


def kill_mid_way(argv: list[str], out: Path, timeout: float = 90.0) -> Path:
    """Start the job in a subprocess (its own process group), wait until the first output files are
    finalized in its temp dir (a partial dataset), SIGKILL the whole group, reap it; returns the temp dir."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "beam_jobs.build_features", *argv], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline, tmp = time.monotonic() + timeout, []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            tmp = list(out.parent.glob(f".{out.name}.tmp-*-{proc.pid}-*"))
            if tmp and finished_files(tmp[0]):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the job ended before it could be killed; make the input larger"
        assert time.monotonic() < deadline, "the job never started writing into its temp dir"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return tmp[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Raw logs and an uninterrupted run of the job on them."""
    tmp = tmp_path_factory.mktemp("atomic")
    raw = tmp / "raw"
    synthetic.generate(synthetic.SyntheticConfig(n_users=80, n_items=120, seed=11, events_per_user=15, shards=2), raw)
    ref = tmp / "reference"
    stats = cli.run(job_argv(raw, ref))
    return tmp, raw, ref, stats, snapshot(ref)


def test_killed_run_leaves_nothing_and_rerun_is_complete(reference):
    tmp, raw, ref, ref_stats, ref_snap = reference
    out = tmp / "dataset"
    tmp_dir = kill_mid_way(job_argv(raw, out), out)
    partial = finished_files(tmp_dir)
    assert partial and schema.DATASET_FILE not in partial  # killed with part of the dataset written...
    assert not out.exists()  # ...none of which is where readers look
    with pytest.raises(DatasetError):
        DatasetDir(out)
    assert scratch_dirs(out) == [tmp_dir]  # the killed run's temp dir, hidden

    stats = cli.run(job_argv(raw, out))  # re-run, no --overwrite needed
    assert scratch_dirs(out) == []  # the dead run's temp dir is cleaned up
    snap = snapshot(out)
    assert snap == ref_snap  # same vocabularies, metadata and records as the uninterrupted run
    for split in schema.SPLITS:
        recs = snap["records"][split]
        assert len(recs) == stats["splits"][split]["records"] == ref_stats["splits"][split]["records"] > 0
        assert len(set(recs)) == len(recs)  # no duplicated record
        assert len(list((out / split).glob("part-*"))) == 2  # --num_shards, no stray shard
    assert not list(out.rglob("beam-temp-*")) and not list(out.rglob("_stats*"))


def test_killed_overwrite_keeps_the_old_dataset(reference):
    tmp, raw, ref, _, ref_snap = reference
    before = sorted(str(p.relative_to(ref)) for p in ref.rglob("*"))
    dataset_json = (ref / schema.DATASET_FILE).read_bytes()
    assert finished_files(kill_mid_way(job_argv(raw, ref) + ["--overwrite"], ref))
    assert sorted(str(p.relative_to(ref)) for p in ref.rglob("*")) == before
    assert (ref / schema.DATASET_FILE).read_bytes() == dataset_json
    assert snapshot(ref) == ref_snap
    publish.remove_stale_scratch(str(ref))
    assert scratch_dirs(ref) == []


def test_stale_scratch_of_live_processes_is_kept(tmp_path):
    out = tmp_path / "ds"
    mine = Path(publish.scratch_path(str(out), "tmp"))  # this (live) process
    other_host = tmp_path / ".ds.tmp-some-other-host-1-abcdef12"
    for d in (mine, other_host):
        d.mkdir()
    assert publish.remove_stale_scratch(str(out)) == []
    assert mine.exists() and other_host.exists()


# ---------------------------------------------------------------------------------------------- object store
class FakeObjectStore(FileSystem):
    """An in-memory object store with GCS's semantics: no directories, rename = copy + delete per object,
    ``exists`` is true for objects only. ``fail_after`` makes the n-th rename raise (a kill mid-publish)."""

    objects: dict[str, bytes] = {}
    log: list[tuple[str, str]] = []
    fail_after: int | None = None

    @classmethod
    def scheme(cls):
        return "tfppsfake"

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *paths])

    def split(self, path):
        head, _, tail = path.rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, prefix):
        for path, data in sorted(self.objects.items()):
            if path.startswith(prefix):
                yield FileMetadata(path, len(data))

    def create(self, path, mime_type="application/octet-stream", compression_type=None):
        store = self.objects

        class _Writer(io.BytesIO):
            def close(self):
                store[path] = self.getvalue()
                super().close()

        return _Writer()

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
        return io.BytesIO(self.objects[path])

    def copy(self, sources, destinations):
        for s, d in zip(sources, destinations):
            self.objects[d] = self.objects[s]

    def rename(self, sources, destinations):
        for s, d in zip(sources, destinations):
            if FakeObjectStore.fail_after is not None:
                if FakeObjectStore.fail_after == 0:
                    raise BeamIOError("killed", {s: RuntimeError("killed")})
                FakeObjectStore.fail_after -= 1
            self.objects[d] = self.objects.pop(s)
            self.log.append(("rename", d))

    def exists(self, path):
        return path in self.objects

    def size(self, path):
        return len(self.objects[path])

    def last_updated(self, path):
        return 0.0

    def checksum(self, path):
        return str(hash(self.objects[path]))

    def metadata(self, path):
        return FileMetadata(path, len(self.objects[path]))

    def delete(self, paths):
        for p in paths:  # like GCS: a "directory" path deletes nothing
            if p in self.objects:
                del self.objects[p]
                self.log.append(("delete", p))


def _stage(tmp: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        with FileSystems.create(f"{tmp}/{rel}") as fh:
            fh.write(text.encode())


def _under(prefix: str) -> dict[str, bytes]:
    return {p[len(prefix) + 1:]: d for p, d in FakeObjectStore.objects.items() if p.startswith(prefix + "/")}


@pytest.fixture
def store():
    FakeObjectStore.objects, FakeObjectStore.log, FakeObjectStore.fail_after = {}, [], None
    yield FakeObjectStore
    FakeObjectStore.objects, FakeObjectStore.log, FakeObjectStore.fail_after = {}, [], None


NEW = {"train/part-00000-of-00002.tfrecord.gz": "t0", "train/part-00001-of-00002.tfrecord.gz": "t1",
       "vocab/items.tsv": "0\t<PAD>\t0\n", schema.DATASET_FILE: json.dumps({"run": "new"})}


def test_object_store_publish_moves_dataset_json_last(store):
    out = "tfppsfake://bucket/datasets/ds"
    tmp = publish.scratch_path(out, "tmp")
    assert tmp.startswith("tfppsfake://bucket/datasets/.ds.tmp-")
    _stage(tmp, NEW)
    assert not publish.output_exists(out)
    publish.publish(tmp, out)
    assert _under(out) == {k: v.encode() for k, v in NEW.items()}
    assert _under(tmp) == {}
    renames = [p for op, p in store.log if op == "rename"]
    assert renames[-1] == f"{out}/{schema.DATASET_FILE}" and len(renames) == len(NEW)
    assert publish.output_exists(out) and not publish.is_dead_publish(out)


def test_object_store_overwrite_leaves_no_stale_files(store):
    out = "tfppsfake://bucket/ds"
    _stage(out, {"dead_letter/part-00000-of-00003.jsonl": "old", "train/part-00000-of-00004.tfrecord.gz": "old",
                 schema.DATASET_FILE: json.dumps({"run": "old"})})
    tmp = publish.scratch_path(out, "tmp")
    _stage(tmp, NEW)
    publish.publish(tmp, out)
    assert _under(out) == {k: v.encode() for k, v in NEW.items()}  # nothing of the old run mixed in
    deletes = [p for op, p in store.log if op == "delete"]
    assert deletes[0] == f"{out}/{schema.DATASET_FILE}"  # readers stop seeing the old dataset first


def test_object_store_killed_publish_is_detected_and_replaced(store):
    out = "tfppsfake://bucket/ds"
    tmp = publish.scratch_path(out, "tmp")
    _stage(tmp, NEW)
    store.fail_after = 2  # two files moved, then the process "dies"
    with pytest.raises(BeamIOError):
        publish.publish(tmp, out)
    left = _under(out)
    assert schema.DATASET_FILE not in left and publish.PUBLISHING_MARKER in left
    assert publish.output_exists(out) and publish.is_dead_publish(out)

    store.fail_after = None  # the re-run's publish replaces the half-published output
    tmp2 = publish.scratch_path(out, "tmp")
    _stage(tmp2, NEW)
    publish.publish(tmp2, out)
    assert _under(out) == {k: v.encode() for k, v in NEW.items()}
