"""The job's pipeline: :func:`build_pipeline` and the transforms it composes (read, filters, k-core,
per-user records, vocabularies, encoding, writes); every stage adds its counts to the job's stats."""
from __future__ import annotations

import argparse
import json

import apache_beam as beam

from beam_jobs import cleaning, examples, timelines
from beam_jobs.encode import (
    EncodeFn, VocabCombineFn, encode_item_text, encode_item_words, given_item_occurrences, item_occurrences,
    user_weight, vocab_lines,
)
from beam_jobs.flags import JobError, example_options, timeline_options
from beam_jobs.reading import COUNTS, DEAD, ReadEventsFn
from beam_jobs.sources import hem_qrels
from beam_jobs.summary import STATS_TMP


def counted(pcoll, name: str):
    """A one-element PCollection ``(name, count)``."""
    return pcoll | f"Count_{name}" >> beam.combiners.Count.Globally() | f"Name_{name}" >> beam.Map(lambda n: (name, n))


def build_pipeline(p: beam.Pipeline, args: argparse.Namespace, files: list[str], meta_files: list[str], tmp_out: str):
    from tfpps.spec import schema

    opts, ex_opts = timeline_options(args), example_options(args)
    stats = []

    read = (
        p
        | "InputFiles" >> beam.Create(list(enumerate(files)))
        | "ReshuffleFiles" >> beam.Reshuffle()
        | "ReadEvents" >> beam.ParDo(ReadEventsFn(
            args.source, count_rows=True, file_splits=getattr(args, "file_splits", {}),
            require_split=args.split == "given" or (args.kind == "search" and args.search_split == "given"))).with_outputs(DEAD, COUNTS, main="events")
    )
    events, dead = read.events, read[DEAD]
    stats.append(read[COUNTS])  # rows_read == events_parsed + rows_dead_lettered + rows_blank + rows_header
    item_words = None  # (item, text words) of --source=hem_qrels: its training queries or training reviews
    item_words_from_queries = False
    if args.reviews:  # --source=hem_qrels: item text from the training reviews; their bad lines are dead letters
        reviews = hem_qrels.TrainingReviewText(args.reviews, hem_qrels.review_ids_file(args.input))
        item_words = p | "TrainingReviewText" >> reviews
        stats.append(reviews.counts | "ReviewCounts" >> beam.CombinePerKey(sum))
        dead = (dead, reviews.dead) | "WithReviewDead" >> beam.Flatten()
    if meta_files:
        meta = (
            p
            | "MetaFiles" >> beam.Create(meta_files)
            | "ReadMeta" >> beam.ParDo(ReadEventsFn(args.source, metadata=True, count_rows=True)).with_outputs(DEAD, COUNTS, main="meta")
        )
        stats.append(meta[COUNTS])  # metadata_rows_read, ...
        dead = (dead, meta[DEAD]) | "AllDead" >> beam.Flatten()
        stats.append(counted(meta.meta, "metadata_items"))
        (
            meta.meta
            | "MetaJson" >> beam.Map(json.dumps, sort_keys=True)
            | "WriteMeta" >> beam.io.WriteToText(f"{tmp_out}/{schema.VOCAB_DIR}/item_meta", file_name_suffix=".jsonl", num_shards=1, shard_name_template="")
        )
    stats.append(counted(events, "events_parsed"))
    stats.append(counted(dead, "rows_dead_lettered"))
    stats.append(
        dead
        | "DeadReason" >> beam.Map(lambda d: ("dead_letter_reason:" + d["reason"].split(":")[0], 1))
        | "DeadReasonCount" >> beam.CombinePerKey(sum)
    )
    dead | "DeadJson" >> beam.Map(json.dumps) | "WriteDead" >> beam.io.WriteToText(
        f"{tmp_out}/{schema.DEAD_LETTER_DIR}/part", file_name_suffix=".jsonl"
    )
    if args.source == hem_qrels.SOURCE_NAME:  # one qrels line per (user, query, item): one event per purchase
        (
            p
            | "QueryIds" >> beam.Create(hem_qrels.query_source_ids(args.input))
            | "WriteQueryIds" >> beam.io.WriteToText(f"{tmp_out}/{schema.VOCAB_DIR}/{schema.QUERY_SOURCE_IDS_FILE}",
                                                     num_shards=1, shard_name_template="")
        )
        events = events | "QrelsPurchases" >> hem_qrels.PurchasesFromQrels()
        stats.append(counted(events, "qrels_purchases"))
        item_words_from_queries = item_words is None  # built below, after the validation-query draw

    eval_events = None
    if args.split == "given" and args.filter_eval != "true":  # the filters below see the training part only
        parts = events | "GivenSplit" >> beam.Partition(lambda e, n: 0 if e.get("split", "train") == "train" else 1, 2)
        events, eval_events = parts[0], parts[1]
    if args.min_rating is not None:
        min_rating = args.min_rating
        events = events | "MinRating" >> beam.Filter(lambda e: e.get("rating") is None or e["rating"] >= min_rating)
        stats.append(counted(events, "after_rating_filter"))
    if args.event_types:
        keep_types = {t.strip() for t in args.event_types.split(",") if t.strip()}
        events = events | "EventTypes" >> beam.Filter(lambda e: e.get("event_type") in keep_types)
        stats.append(counted(events, "after_event_type_filter"))
    if args.dedup == "exact":
        dedup_checks = []
        events = events | "Dedup" >> cleaning.DropDuplicates(checks=dedup_checks)
        stats.extend(dedup_checks)
        stats.append(counted(events, "after_dedup"))
    if args.filter_order == "sessions_first" and args.min_session_length > 1:
        events = events | "SessionsFirst" >> SessionsFirst(opts, stats)
    if args.min_user_interactions > 1 or args.min_item_interactions > 1:
        checks = []  # kept events == sum of the kept keys' counts, per filter; verified in cli.run()
        events, rounds = events | "KCore" >> cleaning.KCore(
            args.min_user_interactions, args.min_item_interactions, args.kcore_iterations, checks=checks
        )
        stats.extend(checks)
        for i, r in enumerate(rounds):
            stats.append(counted(r, f"after_kcore_round_{i + 1}"))

    if eval_events is not None:
        events = (events, eval_events) | "WithEvalEvents" >> beam.Flatten()

    if args.kind == "search" and args.queries_from == "categories":
        if not meta_files:
            raise JobError("--queries_from=categories needs --metadata (the item category paths)")
        events = attach_category_queries(events, meta.meta)
        stats.append(counted(meta.meta | "WithCategoryQueries" >> beam.Filter(examples.category_queries), "items_with_category_queries"))
    if args.kind == "search":  # a search dataset needs queries: cli.run() names why there are none
        stats.append(counted(events | "WithQuery" >> beam.Filter(examples.event_queries), "events_with_query"))

    grouped = None
    max_ts = None
    if args.split == "days":  # the latest date of a session that passes every filter (SR-GNN's maxdate)
        grouped = events | "KeyByUser" >> beam.Map(lambda e: (e["user_id"], e)) | "GroupByUser" >> beam.GroupByKey()
        max_ts = beam.pvalue.AsSingleton(
            grouped
            | "KeptSessionDays" >> beam.FlatMap(lambda kv, o=opts: timelines.kept_session_days(kv[1], o))
            | "LastDay" >> beam.CombineGlobally(lambda days: max(days, default=0))
        )
    elif args.split == "time":
        max_ts = beam.pvalue.AsSingleton(
            events | "Times" >> beam.Map(lambda e: e["timestamp"]) | "MaxTime" >> beam.CombineGlobally(max)
        )
    elif args.split == "given" and opts.carve_valid_days > 0:  # the latest training event
        max_ts = beam.pvalue.AsSingleton(
            events
            | "TrainTimes" >> beam.FlatMap(lambda e: [e["timestamp"]] if e.get("split", "train") == "train" else [])
            | "MaxTrainTime" >> beam.CombineGlobally(lambda ts: max(ts, default=0))
        )
    test_queries = None
    if args.kind == "search" and args.search_split == "given":  # the given test queries; none is drawn
        given_test = events | "GivenTestQueries" >> GivenTestQueries()
        stats.append(given_test | "GivenTestQueryCounts" >> beam.CombinePerKey(sum))
    if args.kind == "search" and args.test_query_fraction > 0:
        held_out = events | "HeldOutQueries" >> HeldOutQueries(args.test_query_fraction, args.split_seed)
        stats.append(counted(held_out, "test_only_queries"))
        test_queries = beam.pvalue.AsSingleton(held_out | "QuerySet" >> beam.combiners.ToSet())
    valid_queries = None  # --valid_query_fraction: training queries held out for validation (given split)
    if args.kind == "search" and args.search_split == "given" and args.valid_query_fraction > 0:
        valid_held = (
            events
            | "GivenTrainingEvents" >> beam.Filter(lambda e: (e.get("split") or "train") == "train")
            | "ValidQueries" >> HeldOutQueries(args.valid_query_fraction, examples.valid_query_seed(args.split_seed))
        )
        stats.append(counted(valid_held, "valid_only_queries"))
        valid_queries = beam.pvalue.AsSingleton(valid_held | "ValidQuerySet" >> beam.combiners.ToSet())
    if item_words_from_queries:  # --source=hem_qrels: no test (nor validation-only) query names an item
        item_words = events | "TrainingQueryText" >> hem_qrels.TrainingQueryText(valid_queries)
    stats.append(counted(events, f"{cleaning.CHECK_PREFIX}group_by_user:expected"))  # == the events _PerUserFn gets
    if grouped is None:
        grouped = events | "KeyByUser" >> beam.Map(lambda e: (e["user_id"], e)) | "GroupByUser" >> beam.GroupByKey()
    timeline = grouped | "PerUser" >> beam.ParDo(
        _PerUserFn(args.kind, opts, ex_opts), max_timestamp=max_ts if max_ts is not None else 0, test_queries=test_queries,
        valid_queries=valid_queries,
    ).with_outputs("counts", main="records")
    records = timeline.records
    stats.append(timeline.counts | "TimelineCounts" >> beam.CombinePerKey(sum))

    # vocabularies, counted on training records (the support used for popularity sampling)
    drop_unseen = args.kind == "sequential" and args.split in timelines.SESSION_SPLITS
    # --split=given / days: the item vocabulary is the training INPUT / part (also the sessions carved off for
    # validation, with count 0), so carving never turns a test item into an "unseen" one; valid / test input items
    # are not counted
    given = args.kind == "sequential" and args.split in ("given", "days")
    keep_zero = not drop_unseen or given
    vocabs = {
        "items": records | "ItemOccurrences" >> beam.FlatMap(
            lambda sr, k=args.kind, g=given: given_item_occurrences(*sr) if g else item_occurrences(k, *sr)),
        "users": records
        | "UserOccurrences" >> beam.Map(lambda sr, k=args.kind: (sr[1]["user_id"], user_weight(k, *sr))),
    }
    given_search = args.kind == "search" and args.search_split == "given"
    if args.kind == "search":
        # --search_split=given: validation queries are training queries too (their words count); words only in
        # test queries get no id (OOV), so test queries say nothing the training data does not
        # --valid_query_fraction: validation-only query words get no id either, as test-only ones
        training_splits = ("train", "valid") if given_search and not args.valid_query_fraction > 0 else ("train",)
        word_sources = [records | "WordOccurrences" >> beam.FlatMap(
            lambda sr, t=training_splits: [(w, int(sr[0] in t)) for w in sr[1]["query_words"]])]
        if meta_files:
            word_sources.append(meta.meta | "ItemTextWords" >> beam.FlatMap(lambda m: [(w, 1) for w in examples.item_text_words(m)]))
        if item_words is not None:
            word_sources.append(item_words | "HemItemTextWords" >> beam.FlatMap(lambda iw: [(w, 1) for w in iw[1]]))
        vocabs["words"] = word_sources | "AllWords" >> beam.Flatten()
        vocabs["queries"] = records | "QueryOccurrences" >> beam.Map(lambda sr: (sr[1]["query"], int(sr[0] == "train")))
    index = {}
    for name, occurrences in vocabs.items():
        vocab = (
            occurrences
            | f"{name}Counts" >> beam.CombinePerKey(sum)
            | f"{name}Vocab" >> beam.CombineGlobally(VocabCombineFn(
                keep_zero=(keep_zero or name != "items") and not (given_search and name == "words")))
        )
        (
            vocab
            | f"{name}Lines" >> beam.FlatMap(vocab_lines)
            | f"Write{name}" >> beam.io.WriteToText(
                f"{tmp_out}/{schema.VOCAB_DIR}/{schema.VOCAB_FILES[name]}", num_shards=1, shard_name_template=""
            )
        )
        stats.append(vocab | f"{name}Size" >> beam.Map(lambda v, n=name: (f"vocab_{n}", len(v))))
        index[name] = beam.pvalue.AsSingleton(vocab | f"{name}Index" >> beam.Map(lambda v: {t: i for i, (t, _) in enumerate(v)}))
    empty = beam.pvalue.AsSingleton(p | "NoVocab" >> beam.Create([{}]))
    stats.append(counted(records, f"{cleaning.CHECK_PREFIX}encode:expected"))  # == the records EncodeFn gets
    encoded = records | "Encode" >> beam.ParDo(
        EncodeFn(args.kind, drop_unseen, min_train_items=1 if args.split == "fo" else 2),
        item_vocab=index["items"],
        user_vocab=index["users"],
        word_vocab=index.get("words", empty),
        query_vocab=index.get("queries", empty),
    ).with_outputs("counts", main="examples")
    stats.append(encoded.counts | "EncodeCounts" >> beam.CombinePerKey(sum))

    for split in schema.SPLITS:
        (
            encoded.examples
            | f"Only_{split}" >> beam.Filter(lambda se, s=split: se[0] == s)
            | f"Bytes_{split}" >> beam.Map(lambda se: se[1])
            | f"Write_{split}"
            >> beam.io.WriteToTFRecord(
                f"{tmp_out}/{schema.split_file_prefix(split)}",
                file_name_suffix=schema.TFRECORD_SUFFIX,
                num_shards=args.num_shards,
            )
        )
    if given_search:  # how many distinct test query words have no id (they occur in no training text)
        stats.append(
            records
            | "TestQueryWords" >> beam.FlatMap(lambda sr: sr[1]["query_words"] if sr[0] == "test" else [])
            | "DistinctTestQueryWords" >> beam.Distinct()
            | "TestQueryWordOov" >> beam.FlatMap(
                lambda w, words: [("test_query_words", 1), ("test_query_words_oov", int(w not in words))],
                words=index["words"])
            | "TestQueryWordCounts" >> beam.CombinePerKey(sum)
        )
    item_text = None
    if args.kind == "search" and item_words is not None:
        item_text = item_words | "EncodeItemText" >> beam.FlatMap(
            encode_item_words, item_vocab=index["items"], word_vocab=index["words"]
        )
    elif args.kind == "search" and meta_files:
        item_text = meta.meta | "EncodeItemText" >> beam.FlatMap(
            encode_item_text, item_vocab=index["items"], word_vocab=index["words"]
        )
    if item_text is not None:
        stats.append(counted(item_text, "item_text_records"))
        item_text | "WriteItemText" >> beam.io.WriteToTFRecord(
            f"{tmp_out}/{schema.ITEM_TEXT_DIR}/part", file_name_suffix=schema.TFRECORD_SUFFIX, num_shards=1
        )

    (
        stats
        | "AllStats" >> beam.Flatten()
        | "SumStats" >> beam.CombinePerKey(sum)
        | "StatsJson" >> beam.Map(lambda kv: json.dumps({"key": kv[0], "value": kv[1]}))
        | "WriteStats" >> beam.io.WriteToText(f"{tmp_out}/{STATS_TMP}", file_name_suffix=".jsonl", num_shards=1, shard_name_template="")
    )


class SessionsFirst(beam.PTransform):
    """``--filter_order=sessions_first``: drop the sessions shorter than ``--min_session_length`` before the
    k-core counts (per user: :func:`timelines.long_sessions`). ``stats`` gets the hand-over check (events
    sent == events the per-user grouping delivered), ``sessions_removed_before_kcore`` and ``after_sessions_first``."""

    def __init__(self, opts: timelines.TimelineOptions, stats: list):
        super().__init__()
        self.opts, self.stats = opts, stats

    def expand(self, events):
        opts = self.opts

        def keep(kv):
            evs = list(kv[1])
            yield beam.pvalue.TaggedOutput("counts", (f"{cleaning.CHECK_PREFIX}sessions_first:kept", len(evs)))
            kept, removed = timelines.long_sessions(evs, opts)
            if removed:
                yield beam.pvalue.TaggedOutput("counts", ("sessions_removed_before_kcore", removed))
            yield from kept

        self.stats.append(counted(events, f"{cleaning.CHECK_PREFIX}sessions_first:expected"))
        out = (
            events
            | "KeyByUser" >> beam.Map(lambda e: (e["user_id"], e))
            | "GroupByUser" >> beam.GroupByKey()
            | "LongSessions" >> beam.FlatMap(keep).with_outputs("counts", main="events")
        )
        self.stats.append(out.counts | "Counts" >> beam.CombinePerKey(sum))
        self.stats.append(counted(out.events, "after_sessions_first"))
        return out.events


def attach_category_queries(events, metas):
    """Give every event without a query the queries of its item's category paths (Ai et al.)."""
    queries = metas | "CategoryQueries" >> beam.Map(lambda m: (m["item_id"], examples.category_queries(m)))
    keyed = events | "KeyByItemForQueries" >> beam.Map(lambda e: (e["item_id"], e))

    def attach(kv):
        _, grouped = kv
        qs = next(iter(grouped["queries"]), [])
        for e in grouped["events"]:
            if not (e.get("query") or "").strip():
                e = {**e, "queries": qs}
            yield e

    return {"events": keyed, "queries": queries} | "JoinQueries" >> beam.CoGroupByKey() | "Attach" >> beam.FlatMap(attach)


class HeldOutQueries(beam.PTransform):
    """Events -> the distinct queries held out for evaluation (``--test_query_fraction``), as the HEM split does:
    a seeded share of all distinct queries, minus one query given back to every product whose queries were all drawn.
    Works on (item, query) pairs and per-item groups only; no step holds more than one item's queries."""

    def __init__(self, fraction: float, seed: int):
        super().__init__()
        self.fraction, self.seed = fraction, seed

    def expand(self, events):
        fraction, seed = self.fraction, self.seed
        pairs = (
            events
            | "ItemQueryPairs" >> beam.FlatMap(lambda e: [(e["item_id"], q) for q in examples.event_queries(e)])
            | "DistinctPairs" >> beam.Distinct()
        )
        released = (
            pairs
            | "QueriesPerItem" >> beam.GroupByKey()
            | "Release" >> beam.FlatMap(lambda kv: [q] if (q := examples.released_query(seed, kv[0], set(kv[1]), fraction)) else [])
            | "ReleasedKeyed" >> beam.Map(lambda q: (q, "released"))
        )
        drawn = (
            pairs
            | "Queries" >> beam.Values()
            | "DistinctQueries" >> beam.Distinct()
            | "Drawn" >> beam.Filter(lambda q: examples.query_uniform(seed, q) < fraction)
            | "DrawnKeyed" >> beam.Map(lambda q: (q, "drawn"))
        )
        return (
            (drawn, released)
            | "BothKinds" >> beam.Flatten()
            | "ByQuery" >> beam.GroupByKey()
            | "NotReleased" >> beam.FlatMap(lambda kv: [kv[0]] if "released" not in set(kv[1]) else [])
        )


class GivenTestQueries(beam.PTransform):
    """``--search_split=given``: events -> counts ``test_only_queries`` (the distinct queries of test events that
    no training event has: the held-out queries, exactly those of the given test part) and
    ``test_queries_seen_in_training`` (test queries that training events have too; 0 in the HEM benchmark)."""

    def expand(self, events):
        def kind(kv):
            splits = set(kv[1])
            if "test" in splits:
                yield ("test_queries_seen_in_training" if "train" in splits else "test_only_queries"), 1

        return (
            events
            | "QuerySplits" >> beam.FlatMap(lambda e: [(q, e.get("split") or "train") for q in examples.event_queries(e)])
            | "DistinctQuerySplits" >> beam.Distinct()
            | "SplitsByQuery" >> beam.GroupByKey()
            | "QueryKind" >> beam.FlatMap(kind)
        )


class _PerUserFn(beam.DoFn):
    """One user's events -> (split, record) pairs of the job's example kind, plus counters."""

    def __init__(self, kind: str, opts: timelines.TimelineOptions, ex_opts: examples.ExampleOptions):
        self.kind, self.opts, self.ex_opts = kind, opts, ex_opts

    def process(self, kv, max_timestamp=0, test_queries=None, valid_queries=None):
        user, evs = kv
        evs = list(evs)
        yield beam.pvalue.TaggedOutput("counts", (f"{cleaning.CHECK_PREFIX}group_by_user:kept", len(evs)))
        if self.kind == "sequential":
            out = timelines.build_user_records(user, evs, self.opts, max_timestamp or 0)
            by_split, counters = out.by_split(), out.counters
        elif self.kind == "basket":
            by_split, counters = examples.build_basket_records(user, evs, self.ex_opts)
        else:
            by_split, counters = examples.build_search_records(user, evs, self.ex_opts, test_queries, valid_queries)
        for split, recs in by_split.items():
            for rec in recs:
                yield split, rec
        for name, value in counters.items():
            if value:
                yield beam.pvalue.TaggedOutput("counts", (name, value))
