"""Interaction logs of blocks of users (steps 5-8 of the generative story in :mod:`tfpps.synthetic`).

:func:`generate_block` draws the users ``[block * users_per_block, ...)`` from
``SeedSequence([seed, 1, block])``: their tastes and favourites, sessions,
items (Markov successors, favourites, taste draws; baskets of complementary
items), timestamps, and which events are purchases after a search with their
queries (step 9, :func:`tfpps.synthetic.search.draw_queries`), as numpy columns (:class:`Block`).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfpps.synthetic.config import SyntheticConfig
from tfpps.synthetic.search import draw_queries
from tfpps.synthetic.world import World


@dataclasses.dataclass
class Block:
    """The events of one block of users, in user/time order (numpy columns)."""

    user: np.ndarray  # global user index
    item: np.ndarray
    timestamp: np.ndarray
    session: np.ndarray  # session number within the user
    basket: np.ndarray  # basket number within the session
    purchase: np.ndarray  # bool
    query_offsets: np.ndarray  # (n_purchases + 1,) into query_words
    query_words: np.ndarray  # word indices, purchases in event order

    def __len__(self) -> int:
        return len(self.user)


def _taste_draw(world: World, cum_theta: np.ndarray, u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    K = cum_theta.shape[1]
    cats = np.minimum((cum_theta < u1[:, None]).sum(axis=1), K - 1)
    return world.pop_sampler.sample(cats, u2)


def generate_block(cfg: SyntheticConfig, world: World, block: int) -> Block:
    """Events of users ``[block * users_per_block, ...)``; deterministic given (seed, block)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1, block]))
    u0 = block * cfg.users_per_block
    U = min(cfg.users_per_block, cfg.n_users - u0)
    K = cfg.n_categories

    alpha = np.maximum(cfg.taste_concentration * K * world.prior, 1e-3)
    theta = rng.dirichlet(alpha, size=U)
    cum_theta = np.cumsum(theta, axis=1)
    cum_theta[:, -1] = 1.0 + 1e-9
    F = cfg.n_favorites
    fav_users = np.repeat(np.arange(U), F)
    fav = _taste_draw(world, cum_theta[fav_users], rng.random(U * F), rng.random(U * F)).reshape(U, F)

    mean_sessions = max(cfg.events_per_user / cfg.mean_session_length, 1.0)
    n_sess = rng.geometric(1.0 / mean_sessions, size=U)
    S = int(n_sess.sum())
    sess_user = np.repeat(np.arange(U), n_sess)
    first_sess = np.cumsum(n_sess) - n_sess
    sess_num = np.arange(S) - first_sess[sess_user]
    extra = cfg.mean_session_length - 1.0
    L = np.minimum(1 + rng.geometric(1.0 / extra, size=S), cfg.max_session_length)
    Lmax = int(L.max())

    # the chain, one position at a time, vectorised over the sessions still running
    ordS = np.argsort(-L, kind="stable")
    Ls = L[ordS]
    usr = sess_user[ordS]
    n_active = np.searchsorted(-Ls, -np.arange(Lmax), side="left")  # sessions with L > t
    items = np.zeros((S, Lmax), dtype=np.int64)
    newb = np.zeros((S, Lmax), dtype=bool)
    cur = np.zeros(S, dtype=np.int64)
    bsize = np.zeros(S, dtype=np.int64)
    p_new = 1.0 / cfg.mean_basket_size
    pm, pf = cfg.p_markov, cfg.p_favorite
    for t in range(Lmax):
        n = int(n_active[t])
        r = rng.random((n, 5))
        c, uu, bs = cur[:n], usr[:n], bsize[:n]
        nxt = np.empty(n, dtype=np.int64)
        if t == 0:
            new = np.ones(n, dtype=bool)
            m_succ = np.zeros(n, dtype=bool)
            m_fav = r[:, 1] < pf
        else:
            new = (r[:, 0] < p_new) | (bs >= cfg.max_basket_size)
            m_succ = np.where(new, r[:, 1] < pm, r[:, 1] < cfg.p_complement)
            m_fav = new & ~m_succ & (r[:, 1] < pm + pf)
        m_taste = new & ~m_succ & ~m_fav
        m_same = ~new & ~m_succ
        if m_succ.any():
            k = np.searchsorted(world.successor_cum, r[m_succ, 2], side="right")
            nxt[m_succ] = world.successors[c[m_succ], np.minimum(k, cfg.n_successors - 1)]
        if m_fav.any():
            nxt[m_fav] = fav[uu[m_fav], np.minimum((r[m_fav, 2] * F).astype(np.int64), F - 1)]
        if m_taste.any():
            nxt[m_taste] = _taste_draw(world, cum_theta[uu[m_taste]], r[m_taste, 3], r[m_taste, 4])
        if m_same.any():
            nxt[m_same] = world.pop_sampler.sample(world.item_cat[c[m_same]], r[m_same, 4])
        bsize[:n] = np.where(new, 1, bs + 1)
        cur[:n] = nxt
        items[:n, t] = nxt
        newb[:n, t] = new
    inv = np.empty(S, dtype=np.int64)
    inv[ordS] = np.arange(S)
    items, newb = items[inv], newb[inv]

    # time: gaps between baskets inside sessions, gaps between sessions
    valid = np.arange(Lmax)[None, :] < L[:, None]
    lo, hi = math.log(cfg.min_event_gap), math.log(cfg.max_event_gap)
    gaps = np.rint(np.exp(lo + (hi - lo) * rng.random((S, Lmax)))).astype(np.int64)
    gaps[:, 0] = 0
    gaps[~newb | ~valid] = 0
    offs = np.cumsum(gaps, axis=1)
    duration = offs[np.arange(S), L - 1]
    sgap = np.rint(cfg.min_session_gap + rng.exponential(cfg.mean_session_gap - cfg.min_session_gap, S))
    inc = duration + sgap.astype(np.int64)  # from this session's start to the next one's
    cs = np.cumsum(inc)
    excl = cs - inc
    sess_start = excl - excl[first_sess][sess_user]
    user_start = cfg.start_time + np.rint(rng.random(U) * cfg.start_spread_days * 86400).astype(np.int64)
    sess_start = sess_start + user_start[sess_user]
    ts = sess_start[:, None] + offs

    basket = np.cumsum(newb, axis=1) - 1
    ev_user = np.broadcast_to(sess_user[:, None], (S, Lmax))[valid] + u0
    ev_item = items[valid]
    ev_ts = ts[valid]
    ev_sess = np.broadcast_to(sess_num[:, None], (S, Lmax))[valid]
    ev_basket = basket[valid]
    purchase, qoff, qwords = draw_queries(cfg, world, rng, ev_item)
    return Block(ev_user, ev_item, ev_ts, ev_sess, ev_basket, purchase, qoff, qwords)
