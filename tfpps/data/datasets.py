"""Named datasets: find a built dataset directory, or build it with the Beam job.

A dataset config ``configs/datasets/<name>.yaml`` holds ``data.dir`` (where the
built dataset lives) and a ``build`` section: the Beam job's flags and, for the
synthetic default, the generator's settings (and ``raw_format: amazon`` to
convert its logs to Amazon review dumps first). Placeholders in flag values:
``{shared}`` = the shared real-data folder (``$TFPPS_SHARED_DATA`` or
``../shared/data`` beside the repo), ``{raw}`` = where generated raw logs go.

tfpps never builds over a directory it did not create (:mod:`tfpps.spec.ownership`): a missing dataset is
built only into an absent or empty directory, or replaced (``--overwrite``) when the directory is a
tfpps dataset; anything else stops with one line naming the flag the directory came from.
"""
from __future__ import annotations

import os
from pathlib import Path

from tfpps.spec import ownership
from tfpps.config import REPO_ROOT, ConfigError, dataset_config_path, load_yaml
from tfpps.data.dataset_dir import is_dataset, read_meta
from tfpps.spec import schema


def shared_data_dir() -> Path:
    return Path(os.environ.get("TFPPS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def resolve_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def job_argv(name: str, output: Path, raw_dir: Path | None = None, extra: list[str] | None = None,
             overwrite: bool = True) -> list[str]:
    """The Beam job's argv for dataset config ``name``; ``overwrite`` adds ``--overwrite`` (the job replaces
    only a tfpps dataset there; :func:`ensure_dataset` passes it only when ``output`` is one)."""
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
    return argv + [f"--output={output}"] + (["--overwrite"] if overwrite else []) + (extra or [])


def managed_dir(name: str, cfg: dict) -> Path:
    """The directory tfpps itself builds dataset ``name`` into (its config ``cfg``'s ``data.dir``)."""
    return resolve_path((cfg.get("data") or {}).get("dir") or f"data_out/{name}")


def target_dir(name: str, data_dir: str = "") -> Path:
    """Where dataset ``name`` is (or will be built): ``data_dir`` when given, else its config's ``data.dir``."""
    if data_dir:
        return resolve_path(data_dir)
    cfg_path = dataset_config_path(name)
    return managed_dir(name, load_yaml(cfg_path) if cfg_path.exists() else {})


def ensure_dataset(name: str, data_dir: str = "", beam_args: list[str] | None = None, quiet: bool = False,
                   flag: str = "data.dir", rebuild: bool = False) -> Path:
    """Return the built dataset directory of ``name``, building it first when it is missing.

    A stale build (older ``job_version``) is rebuilt only in the dataset's own directory;
    a ``data_dir`` the caller chose is used as it is, with a note, and never overwritten.
    ``rebuild``: build again even when a current build is there (``tfpps.data.build --rebuild``).
    A directory that exists, is not empty and is not a tfpps dataset is never built over:
    :class:`tfpps.spec.ownership.NotOurs` (one line; ``flag`` names where the directory came from).
    """
    cfg_path = dataset_config_path(name)
    if not cfg_path.exists():
        if data_dir and is_dataset(resolve_path(data_dir)):
            return resolve_path(data_dir)
        if data_dir:
            raise ConfigError(f"{flag}={data_dir}: no tfpps dataset there (no {schema.DATASET_FILE}); build one with "
                              f"python -m beam_jobs.build_features --output={data_dir} ..., or name a --dataset")
        raise ConfigError(f"unknown dataset {name!r} and no data.dir")
    cfg = load_yaml(cfg_path)
    out = resolve_path(data_dir) if data_dir else managed_dir(name, cfg)
    if is_dataset(out) and not rebuild:
        built = read_meta(out).get("job_version", 1)
        if built >= schema.JOB_VERSION:
            return out
        why = f"{out} was written by job version {built}, this tfpps writes version {schema.JOB_VERSION} " \
              f"(see tfpps/spec/schema.py JOB_VERSION)"
        if out != managed_dir(name, cfg):  # a directory the user chose: never overwrite it behind their back
            print(f"note: {why}; using it as it is (rebuild it with the Beam job to get the current behaviour)",
                  flush=True)
            return out
        print(f"rebuilding dataset {name!r}: {why}", flush=True)
    ownership.check_replaceable(out, ownership.DATASET, flag)  # before anything is generated or built
    build = cfg.get("build") or {}
    raw_dir = None
    if "generator" in build:
        from tfpps import synthetic

        raw_dir = out.parent / f"{out.name}_raw"
        if not any(raw_dir.glob("events-*")):
            if raw_dir.exists() and not ownership.is_empty_dir(raw_dir):  # the generator would write into it
                raise ownership.NotOurs(
                    f"{flag}={out}: the raw logs would be generated into {raw_dir}, which exists and holds other "
                    f"files; choose another directory")
            gen_cfg = synthetic.SyntheticConfig(**(build.get("generator") or {}))
            synthetic.generate(gen_cfg, raw_dir)
        if build.get("raw_format") == "amazon":  # the generator's purchases as Amazon review/meta dumps
            from tfpps.synthetic.amazon import write_amazon_format

            if not (raw_dir / "amazon").exists():
                write_amazon_format(raw_dir, raw_dir / "amazon")
        elif build.get("raw_format") not in (None, "csv"):
            raise ConfigError(f"datasets/{name}.yaml: build.raw_format={build['raw_format']!r}; expected csv or amazon")
    from beam_jobs import cli, summary

    # replace only a tfpps dataset; an empty directory is removed (nothing is lost) so the job can publish there
    overwrite = os.path.lexists(out) and ownership.is_owned(out, ownership.DATASET)
    if not overwrite and ownership.is_empty_dir(out):
        os.rmdir(out)
    import tfpps

    if tfpps.VERBOSE and "--verbose" not in (beam_args or []):  # the command's --verbose reaches the Beam job
        beam_args = [*(beam_args or []), "--verbose"]
    argv = job_argv(name, out, raw_dir, beam_args, overwrite=overwrite)
    if not quiet:
        print(f"building dataset {name!r}: python -m beam_jobs.build_features {' '.join(argv)}", flush=True)
    stats = cli.run(argv)
    if not quiet:
        print(summary.summary_table(stats), flush=True)
    return out
