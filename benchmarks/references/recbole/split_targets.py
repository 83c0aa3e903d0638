#!/usr/bin/env python
"""Dump RecBole's leave-one-out valid/test targets (and the last 3 history items) per user, as JSON.

Run with the RecBole venv's interpreter; ``benchmarks/references/split_agreement.py`` calls it:

    benchmarks/references/recbole/.venv/bin/python benchmarks/references/recbole/split_targets.py \
        --data-dir /work/shared/data/ml-100k --out /tmp/recbole_targets.json

Same protocol config as ``run_recbole.py``; only the dataset is built, nothing is trained.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run_recbole  # noqa: E402  (protocol_config)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from recbole.config import Config
    from recbole.data import create_dataset

    data_root, dataset = os.path.split(os.path.abspath(args.data_dir))
    proto = argparse.Namespace(lr=1e-3, epochs=1, stopping_step=10, seed=2020, show_progress=False)
    cfg = run_recbole.protocol_config(proto)
    cfg["data_path"] = data_root
    config = Config(model="HRM", dataset=dataset, config_dict=cfg)
    config["data_path"] = os.path.join(data_root, dataset)  # RecBole 1.2.1 would use its bundled ml-100k
    ds = create_dataset(config)
    _, valid, test = ds.build()
    out = {}
    for name, part in (("valid", valid), ("test", test)):
        f = part.inter_feat
        rows = zip(f[part.uid_field].numpy(), f[part.iid_field].numpy(), f[part.item_id_list_field].numpy(),
                   f[part.item_list_length_field].numpy())
        for user, item, hist, length in rows:
            out.setdefault(ds.id2token(ds.uid_field, user), {})[name] = {
                "target": str(ds.id2token(ds.iid_field, item)),
                "last3": [str(ds.id2token(ds.iid_field, x)) for x in hist[:length]][-3:],
            }
    with open(args.out, "w") as fh:
        json.dump(out, fh)
    print(f"{len(out)} users -> {args.out}")


if __name__ == "__main__":
    main()
