"""Write synthetic logs in the Amazon review-dump format, to run the real ``amazon`` adapter end to end.

The HEM/AEM/ZAM papers use the Amazon 5-core dumps (McAuley et al.):
``reviews_<Category>_5.json`` (one JSON object per line) and
``meta_<Category>.json`` (one Python dict literal per line, 2014 style). This
module turns the seeded synthetic generator's purchases
(:mod:`tfpps.synthetic`) into those two files, so that the Beam job's
``--source=amazon --queries_from=categories`` path (queries built from
category paths, as Ai et al. do) runs on data with known structure:

* every purchase becomes a review ``{"reviewerID", "asin", "overall",
  "unixReviewTime", "reviewTime", "reviewText", "summary"}``; the review text
  is the item's title (there are no real reviews);
* every item gets its leaf path and its parent path as category paths
  (``[["Books", "Cooking", "Baking"], ["Books", "Cooking"]]``), so an item
  has two queries and a query hold-out can keep one for training.

>>> import tempfile, json
>>> from tfpps import synthetic
>>> raw = tempfile.mkdtemp()
>>> _ = synthetic.generate(synthetic.SyntheticConfig(n_users=5, n_items=40, seed=1), raw)
>>> out = write_amazon_format(raw, raw + "/amazon", name="Toy")
>>> json.loads(open(out["reviews"]).readline())["asin"].startswith("i")
True
"""
from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

from tfpps.synthetic.config import ITEMS_FILE, PURCHASE


def _review_time(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%m %d, %Y")


def write_amazon_format(raw_dir: str | Path, out_dir: str | Path, name: str = "Synthetic") -> dict:
    """Convert ``raw_dir`` (synthetic CSV shards + ``items.jsonl``) into Amazon review/metadata files.

    Returns ``{"reviews": path, "meta": path, "num_reviews": int, "num_items": int}``.
    Raises ``FileNotFoundError`` when ``raw_dir`` holds no CSV shards (other formats are not converted).
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    shards = sorted(raw_dir.glob("events-*.csv"))
    if not shards:
        raise FileNotFoundError(f"{raw_dir}: no events-*.csv shards to convert (generate with format=csv)")
    out_dir.mkdir(parents=True, exist_ok=True)
    titles: dict[str, str] = {}
    meta_path = out_dir / f"meta_{name}.json"
    with open(raw_dir / ITEMS_FILE, encoding="utf-8") as fin, open(meta_path, "w", encoding="utf-8") as fout:
        for line in fin:
            item = json.loads(line)
            paths = [list(p) for p in item.get("categories") or []]
            paths += [p[:-1] for p in paths if len(p) > 2 and p[:-1] not in paths]
            titles[item["item_id"]] = item.get("title") or ""
            fout.write(repr({"asin": item["item_id"], "title": titles[item["item_id"]], "categories": paths}) + "\n")
    reviews_path = out_dir / f"reviews_{name}_5.json"
    n = 0
    seen: set[tuple[str, str, str]] = set()
    with open(reviews_path, "w", encoding="utf-8") as fout:
        for shard in shards:
            with open(shard, newline="", encoding="utf-8") as fin:
                for row in csv.DictReader(fin):
                    if row["event_type"] != PURCHASE:
                        continue
                    key = (row["user_id"], row["item_id"], row["timestamp"])
                    if key in seen:  # the same item twice in one basket is one review
                        continue
                    seen.add(key)
                    ts = int(row["timestamp"])
                    title = titles.get(row["item_id"], "")
                    fout.write(json.dumps({
                        "reviewerID": row["user_id"], "asin": row["item_id"], "overall": 5.0,
                        "unixReviewTime": ts, "reviewTime": _review_time(ts),
                        "reviewText": title, "summary": title,
                    }) + "\n")
                    n += 1
    return {"reviews": str(reviews_path), "meta": str(meta_path), "num_reviews": n, "num_items": len(titles)}
