r"""Seeded synthetic interaction logs with learnable structure.

This is tfpps's embedded default dataset (``make demo``, the tests) and a
volume generator for scaling benchmarks. Everything is vectorised numpy plus
pyarrow string kernels; users are generated in fixed blocks that are written
and freed one at a time, so memory stays bounded at any size.

Modules: :mod:`~tfpps.synthetic.config` (settings, file names),
:mod:`~tfpps.synthetic.world` (steps 1-4), :mod:`~tfpps.synthetic.logs`
(steps 5-8), :mod:`~tfpps.synthetic.search` (step 9 and product text),
:mod:`~tfpps.synthetic.output` (:func:`generate`), :mod:`~tfpps.synthetic.amazon`
(the purchases as Amazon review dumps), :mod:`~tfpps.synthetic.cli`
(``python -m tfpps.synthetic``).

Output (in ``out_dir``)
-----------------------
``events-SSSSS-of-NNNNN.{csv,jsonl,parquet}``
    the canonical raw log read by the Beam job's ``csv``/``jsonl``/``parquet``
    sources, columns ``user_id,item_id,timestamp,session_id,query,basket_id,
    event_type``. Ids are strings (``u17``, ``i45``, session ``u17-3``, basket
    ``u17-3-0``), ``timestamp`` is integer epoch seconds, ``query`` is empty
    unless ``event_type == "purchase"``. Users are split into contiguous
    ranges, one per shard, so a user's rows stay in one shard, in time order.
``items.jsonl``
    ``{"item_id": "i45", "title": "...", "categories": [["Electronics",
    "Audio", "Headphones"]]}`` per item.
``summary.json``
    counts, the config and the ground-truth taxonomy (category paths and
    word pools). It holds no wall-clock values, so it is byte-identical
    across runs with the same config, like the event and item files.

Text is meant to be tokenised by lower-casing and splitting on anything
that is not a letter or digit (``"Home & Kitchen"`` -> ``home``, ``kitchen``).

Generative story
----------------
Notation: :math:`K` leaf categories, :math:`I` items, :math:`U` users.

1. **Taxonomy.** Leaf :math:`c` has a path (top level, sub-category, leaf)
   and a word pool :math:`W_c` = the path's tokens plus a few synonyms. The
   first 20 leaves are hand written (5 top levels x 2 sub-categories x 2
   leaves); more are made of seeded pseudo-words.
2. **Category weights.** :math:`w_c \propto \pi_c^{-a}` with :math:`\pi` a
   random ranking of the categories and :math:`a` = ``category_zipf``;
   the category prior is :math:`m_c = (1-\lambda)/K + \lambda w_c`
   (:math:`\lambda` = ``category_skew``).
3. **Items.** Category sizes :math:`n_c = 1 + \mathrm{Mult}(I-K, m)`; item
   ids are assigned in random order. Within its category item :math:`i` has
   a random rank :math:`r_i \in \{1..n_c\}` and popularity
   :math:`q_i = r_i^{-s} / \sum_{j \in c} r_j^{-s}` (:math:`s` =
   ``zipf_exponent``, ~1.1): a power law within each category, and since
   categories differ in size and weight, across categories too.
4. **Transitions.** Each item :math:`i` gets :math:`k` = ``n_successors``
   distinct successors :math:`\sigma_{i1..ik}`: each in :math:`c(i)` with
   probability :math:`\rho` = ``successor_same_category`` (else in a category
   drawn from :math:`m`), drawn within the category with weight
   :math:`q^\beta` (:math:`\beta` = ``successor_popularity_power``, so
   successors are not just the popular items), never :math:`i` itself.
   Successor :math:`j` is taken with weight
   :math:`\omega_j \propto \delta^{j-1}` (:math:`\delta` =
   ``successor_decay``). This is a sparse item-to-item transition matrix.
5. **Users.** Taste :math:`\theta_u \sim \mathrm{Dir}(\alpha K m)` with a
   small :math:`\alpha` = ``taste_concentration``, so each user prefers a few
   categories; the user's background distribution is
   :math:`P_u(i) = \theta_{u,c(i)}\, q_i`. Each user also has
   :math:`F` = ``n_favorites`` favourite items :math:`f_{u1..uF} \sim P_u`.
6. **Sessions.** User :math:`u` has :math:`N_u \sim \mathrm{Geom}(1/S)`
   sessions, :math:`S = E/\bar L` (:math:`E` = ``events_per_user``,
   :math:`\bar L` = ``mean_session_length``); a session has
   :math:`L = \min(L_{max}, 1 + \mathrm{Geom}(1/(\bar L - 1)))` events
   (at least 2).
7. **Items in a session.** :math:`x_1 = f_{u,j}` (:math:`j` uniform) with
   probability :math:`\varphi` = ``p_favorite``, else :math:`x_1 \sim P_u`.
   For :math:`t > 1` a new basket starts with probability
   :math:`1/\bar B` (``mean_basket_size``), and always when the current one
   holds ``max_basket_size`` items. On a new basket

   .. math::
      P(x_t \mid x_{t-1}, u) = p_m \sum_j \omega_j [x_t = \sigma_{x_{t-1} j}]
          + \frac{\varphi}{F} \sum_j [x_t = f_{uj}]
          + (1 - p_m - \varphi)\, P_u(x_t)

   (:math:`p_m` = ``p_markov``). Inside a basket the item is complementary:
   a successor of :math:`x_{t-1}` with probability ``p_complement``, else
   drawn from :math:`q` within :math:`c(x_{t-1})`.
   So a first-order sequence model can reach a next-item hit rate of about
   :math:`p_m` while popularity gets only the head of the marginal, and a
   model that knows :math:`\theta_u` and :math:`f_u` beats a
   non-personalised one on the remaining :math:`1 - p_m` of the mass.
8. **Time.** User start :math:`T_u \sim U(T_0, T_0 + D)` (:math:`T_0` =
   2024-01-01). Between baskets of a session the gap is log-uniform on
   [``min_event_gap``, ``max_event_gap``] = [10 s, 10 min]; items of one
   basket share the timestamp. Between sessions the gap is
   :math:`g_{min} + \mathrm{Exp}(\bar g - g_{min})` with :math:`g_{min}` =
   1 h and :math:`\bar g` = 36 h, so a 30-minute inactivity rule recovers the
   sessions exactly.
9. **Search.** Each event is a purchase-after-search with probability
   ``purchase_rate`` (else a click with an empty query). Its query has
   :math:`\ell \in \{1,2,3,4\}` words with probabilities (.3, .35, .25, .1);
   each word is uniform from :math:`W_{c(x)}` with probability
   :math:`1 - \varepsilon` (``query_noise``), else a generic noise word. The
   query identifies the category; the user's history picks the item.

Randomness: the world (taxonomy, items, transitions) comes from
``SeedSequence([seed, 0])`` and user block :math:`b` (``users_per_block``
users) from ``SeedSequence([seed, 1, b])``, so the events do not depend on
the number of shards or the output format.

>>> import tempfile
>>> s = generate(SyntheticConfig(n_users=20, n_items=60, seed=1), tempfile.mkdtemp())
>>> s["n_users"], s["n_items"], s["n_events"] > 0
(20, 60, True)
"""
from __future__ import annotations

from tfpps.synthetic.amazon import write_amazon_format
from tfpps.synthetic.cli import format_summary, main
from tfpps.synthetic.config import CLICK, COLUMNS, FORMATS, ITEMS_FILE, PURCHASE, SUMMARY_FILE, SyntheticConfig, shard_name
from tfpps.synthetic.logs import Block, generate_block
from tfpps.synthetic.output import generate
from tfpps.synthetic.world import World, build_world, tokenize

__all__ = [
    "CLICK", "COLUMNS", "FORMATS", "ITEMS_FILE", "PURCHASE", "SUMMARY_FILE", "Block", "SyntheticConfig", "World",
    "build_world", "format_summary", "generate", "generate_block", "main", "shard_name", "tokenize",
    "write_amazon_format",
]
