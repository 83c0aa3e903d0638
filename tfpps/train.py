"""Command line: ``python -m tfpps.train --model=gru4rec [--dataset=ml-100k] [--set key=value ...]``.

Any config field can be overridden: ``--set train.learning_rate=0.01``,
``--set lr=0.01`` or directly ``--lr=0.01`` / ``--loss=bpr-max`` (a field name
unique across sections). Bad keys or values stop with one clear line.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import tfpps  # noqa: F401
from tfpps import registry
from tfpps.config import ConfigError, RunConfig, build_run_config, load_yaml, parse_override_flags


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
    p = argparse.ArgumentParser(
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
    p.add_argument("--fresh", action="store_true", help="delete the run dir first instead of resuming")
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
    if args.strategy is not None:
        overrides["train.strategy"] = args.strategy
    if not args.model:
        model = load_yaml(args.config).get("model") if args.config else None
        if not model:
            raise ConfigError("--model is required (or a --config file that names its model:)")
        args.model = model
    if args.dataset is None:  # the embedded default data of the model's example kind
        from tfpps import registry

        args.dataset = "synthetic-search" if registry.get(args.model).example_kind == "search" else "synthetic"
    run = build_run_config(args.model, dataset=args.dataset, config_file=args.config, overrides=overrides)
    return run, args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        run, args = parse(argv)
        from tfpps.training.trainer import train

        train(run, fresh=args.fresh)
    except ConfigError as exc:
        print(f"tfpps.train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
