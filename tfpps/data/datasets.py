"""Named datasets: find a built dataset directory, or build it with the Beam job.

A dataset config ``configs/datasets/<name>.yaml`` holds ``data.dir`` (where the
built dataset lives) and a ``build`` section: the Beam job's flags and, for the
synthetic default, the generator's settings (and ``raw_format: amazon`` to
convert its logs to Amazon review dumps first). Placeholders in flag values:
``{shared}`` = the shared real-data folder (``$TFPPS_SHARED_DATA`` or
``../shared/data`` beside the repo), ``{raw}`` = where generated raw logs go.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from tfpps.config import REPO_ROOT, ConfigError, dataset_config_path, load_yaml
from tfpps.data import schema


def shared_data_dir() -> Path:
    return Path(os.environ.get("TFPPS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def resolve_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def job_argv(name: str, output: Path, raw_dir: Path | None = None, extra: list[str] | None = None) -> list[str]:
    """The Beam job's argv for dataset config ``name``."""
    cfg = load_yaml(dataset_config_path(name))
    flags = dict((cfg.get("build") or {}).get("flags") or {})
    if not flags:
        raise ConfigError(f"datasets/{name}.yaml has no build.flags; cannot build it")
    argv = []
    for key, value in flags.items():
        if isinstance(value, bool):
            if value:
                argv.append(f"--{key}")
            continue
        value = str(value).format(shared=shared_data_dir(), raw=raw_dir or "")
        argv.append(f"--{key}={value}")
    return argv + [f"--output={output}", "--overwrite"] + (extra or [])


def managed_dir(name: str, cfg: dict) -> Path:
    """The directory tfpps itself builds dataset ``name`` into (its config ``cfg``'s ``data.dir``)."""
    return resolve_path((cfg.get("data") or {}).get("dir") or f"data_out/{name}")


def ensure_dataset(name: str, data_dir: str = "", beam_args: list[str] | None = None, quiet: bool = False) -> Path:
    """Return the built dataset directory of ``name``, building it first when it is missing.

    A stale build (older ``job_version``) is rebuilt only in the dataset's own directory;
    a ``data_dir`` the caller chose is used as it is, with a note, and never overwritten.
    """
    cfg_path = dataset_config_path(name)
    if not cfg_path.exists():
        if data_dir and (resolve_path(data_dir) / schema.DATASET_FILE).exists():
            return resolve_path(data_dir)
        raise ConfigError(f"unknown dataset {name!r} and no built dataset at data.dir={data_dir!r}")
    cfg = load_yaml(cfg_path)
    out = resolve_path(data_dir) if data_dir else managed_dir(name, cfg)
    if (out / schema.DATASET_FILE).exists():
        built = json.loads((out / schema.DATASET_FILE).read_text()).get("job_version", 1)
        if built >= schema.JOB_VERSION:
            return out
        why = f"{out} was written by job version {built}, this tfpps writes version {schema.JOB_VERSION} " \
              f"(see tfpps/data/schema.py JOB_VERSION)"
        if out != managed_dir(name, cfg):  # a directory the user chose: never overwrite it behind their back
            print(f"note: {why}; using it as it is (rebuild it with the Beam job to get the current behaviour)",
                  flush=True)
            return out
        print(f"rebuilding dataset {name!r}: {why}", flush=True)
    build = cfg.get("build") or {}
    raw_dir = None
    if "generator" in build:
        from tfpps.data import synthetic

        raw_dir = out.parent / f"{out.name}_raw"
        if not any(raw_dir.glob("events-*")):
            gen_cfg = synthetic.SyntheticConfig(**(build.get("generator") or {}))
            synthetic.generate(gen_cfg, raw_dir)
        if build.get("raw_format") == "amazon":  # the generator's purchases as Amazon review/meta dumps
            from tfpps.data.amazon_format import write_amazon_format

            if not (raw_dir / "amazon").exists():
                write_amazon_format(raw_dir, raw_dir / "amazon")
        elif build.get("raw_format") not in (None, "csv"):
            raise ConfigError(f"datasets/{name}.yaml: build.raw_format={build['raw_format']!r}; expected csv or amazon")
    from beam_jobs import build_features

    argv = job_argv(name, out, raw_dir, beam_args)  # with --overwrite (replaces a stale build)
    if not quiet:
        print(f"building dataset {name!r}: python -m beam_jobs.build_features {' '.join(argv)}", flush=True)
    stats = build_features.run(argv)
    if not quiet:
        print(build_features.summary_table(stats), flush=True)
    return out
