"""Command line: ``python -m tfpps.train --model=gru4rec [--dataset=ml-100k] [--set key=value ...]``.

Any config field can be overridden: ``--set train.learning_rate=0.01``,
``--set lr=0.01`` or directly ``--lr=0.01`` / ``--loss=bpr-max`` (a field name
unique across sections). Bad keys or values stop with one clear line.

An existing run dir is resumed (same config) or, when complete, reported
rather than trained again; ``--fresh`` starts it over. tfpps never builds
over, writes into or deletes a directory that is not its own (a dataset
without ``dataset.json``, a run dir without the ``.tfpps`` marker): those
stop with one line, as do unwritable run dirs; Ctrl-C stops with one line
and exit status 130, and the same command resumes.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import tfpps
from tfpps.cli.parser import OneLineParser
from tfpps.errors import first_line
from tfpps import registry
from tfpps.config import ConfigError, RunConfig, build_run_config, load_yaml, parse_override_flags, parse_set_args, resolve_key

PROG = "tfpps.train"


def _describe_options() -> str:
    lines = ["models:"]
    for name in registry.names():
        entry = registry.get(name)
        lines.append(f"  {name:<10} {entry.summary}")
    lines.append("")
    lines.append("options (--set section.key=value, or --key=value when the key is unique):")
    probe = RunConfig(model="")
    for section in ("data", "train", "eval"):
        fields = ", ".join(f.name for f in dataclasses.fields(getattr(probe, section)))
        lines.append(f"  {section}: {fields}")
    for name in registry.names():
        fields = ", ".join(f.name for f in dataclasses.fields(registry.get(name).config_cls))
        lines.append(f"  model_params ({name}): {fields}")
    lines.append("aliases: lr, epochs, batch_size, seed, run_dir, data_dir, max_len")
    lines.append("")
    lines.append("distributed: --strategy=mirrored, or python -m tfpps.launch --workers=2 -- --model=narm ... (multiworker)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m tfpps.train",
        description="Train and evaluate a tfpps model.",
        epilog=_describe_options(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=None, help="model name (see below); may be left to the --config file's model:")
    p.add_argument("--dataset", default=None,
                   help="configs/datasets/<name>.yaml (built if missing); default: synthetic, or synthetic-search for search models")
    p.add_argument("--config", default=None, help="an extra YAML config merged over the model's")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--fresh", action="store_true",
                   help="empty the run dir first (only a tfpps run dir) instead of resuming it or reporting it complete")
    p.add_argument("--verbose", nargs="?", const=True, default=None, metavar="N",
                   help="show TensorFlow's own log lines (hidden by default); --verbose=N sets train.verbose "
                   "(0 silent, 1 progress bar, 2 one line per epoch)")
    p.add_argument(
        "--strategy",
        default=None,
        help="tf.distribute strategy (= train.strategy): default | mirrored (all local GPUs) | multiworker "
        "(needs TF_CONFIG; python -m tfpps.launch --workers=N -- ARGS sets it)",
    )
    return p


def parse(argv: list[str]) -> tuple[RunConfig, argparse.Namespace]:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides = parse_override_flags(args.set, extra)
    if isinstance(args.verbose, str):  # --verbose=N: Keras' progress output, as before
        overrides["train.verbose"] = args.verbose
    if args.strategy is not None:
        overrides["train.strategy"] = args.strategy
    if not args.model:
        model = load_yaml(args.config).get("model") if args.config else None
        if not model:
            raise ConfigError("--model is required (or a --config file that names its model:)")
        args.model = model
    given_dataset = args.dataset
    if args.dataset is None:  # the embedded default data of the model's example kind
        from tfpps import registry

        args.dataset = "synthetic-search" if registry.get(args.model).example_kind == "search" else "synthetic"
    run = build_run_config(args.model, dataset=args.dataset, config_file=args.config, overrides=overrides)
    args.flags = user_flags(run, args.set, extra)
    if given_dataset is None and "data.dir" in args.flags:
        # a directory of the user's, not the embedded default: label the run (and its default run dir) by it,
        # and never build the synthetic data into it (a missing directory is a one-line error)
        run.data.dataset = Path(run.data.dir).name or run.data.dataset
    return run, args


def user_flags(run: RunConfig, set_items: list[str], extra: list[str]) -> dict[str, str]:
    """How the user gave ``data.dir`` and ``train.run_dir`` (``--data_dir``, ``--set data.dir``, ...), for the
    one-line errors about those directories; the config key itself when a config file set it."""
    flags = {}
    spelled = [(key, f"--set {key}") for key in parse_set_args(set_items)]
    spelled += [(item[2:].partition("=")[0], item.partition("=")[0]) for item in extra if item.startswith("--")]
    for key, flag in spelled:  # in the order they apply: the last one wins
        try:
            obj, leaf = resolve_key(run, key.replace("-", "_"))
        except ConfigError:
            continue
        section = next((s for s in RunConfig.SECTIONS if getattr(run, s) is obj), "")
        if f"{section}.{leaf}" in ("data.dir", "train.run_dir"):
            flags[f"{section}.{leaf}"] = flag
    return flags


def os_error_line(exc: OSError, dirs: dict[str, tuple[Path, str]]) -> str:
    """One line for an OSError: the flag and directory it happened in (``dirs``: flag -> (directory, what
    tfpps does there)), the file, and the error."""
    name = exc.filename or ""
    why = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno is not None:
        import errno

        why = f"{why} ({errno.errorcode.get(exc.errno, exc.errno)})"
    for flag, (path, doing) in dirs.items():
        try:
            inside = bool(name) and (Path(name) == path or Path(name).is_relative_to(path))
        except (TypeError, ValueError):
            inside = False
        if inside:
            what = "" if Path(name) == path else f" ({Path(name).relative_to(path)})"
            return f"{flag}={path}: cannot {doing} there{what}: {why}"
    return f"{name}: {why}" if name else why


def _tf_error(exc: BaseException) -> str | None:
    """The first line of a TensorFlow runtime error (e.g. a full disk while saving a checkpoint), else None."""
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(exc, tf.errors.OpError):
        return None
    return (exc.message or type(exc).__name__).strip().splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    bare = any(a == "--verbose" and (i + 1 == len(argv) or argv[i + 1].startswith("-")) for i, a in enumerate(argv))
    tfpps.configure_logging(verbose=bare)  # a bare --verbose (not --verbose=N): before TensorFlow is imported
    run = args = None
    dirs: dict[str, tuple[Path, str]] = {}
    try:
        run, args = parse(argv)
        from tfpps.runs import trainer

        dirs = {args.flags.get("train.run_dir", "train.run_dir"): (trainer.run_dir_of(run), "write")}
        if run.data.dir:
            from tfpps.data.datasets import resolve_path

            dirs[args.flags.get("data.dir", "data.dir")] = (resolve_path(run.data.dir), "use the dataset")
        trainer.train(run, fresh=args.fresh, strict=True, flags=args.flags)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        from tfpps.spec.ownership import NotOurs

        if not isinstance(exc, NotOurs) and type(exc).__name__ not in ("JobError", "SourceError", "DatasetError"):
            raise
        print(f"{PROG}: error: {first_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: error: {os_error_line(exc, dirs)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        where = getattr(exc, "tfpps_where", None)
        again = "resume" if run is None or run.train.resume else "start it again (train.resume is off)"
        print(f"{PROG}: interrupted{' ' + where if where else ''}; re-run the same command to {again}", file=sys.stderr)
        return 130
    except Exception as exc:
        line = _tf_error(exc)
        if line is None:
            raise
        print(f"{PROG}: error: {line}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
