"""Numba kernels of the validator (:mod:`plume_capture.readback.validate` drives them): the step
sequence walk (episode order, step numbering, per-episode sums) and episode-id parsing."""
from __future__ import annotations

from plume_capture.kernels._jit import njit

EV_EP_GAP, EV_ORDER, EV_FIRST, EV_DUP, EV_GAP, EV_BACK, EV_AFTER_END = range(1, 8)


@njit
def step_sequence(ep, step, reward, term, trunc, x, y, dist, st, sf,
                   o_idx, o_cnt, o_sum, o_x, o_y, o_dist, o_term, o_trunc, ev):
    """Walk the steps in file order with the state carried in ``st``/``sf``.

    st = [episode, max episode, previous step, count, ended, valid, x, y, term, trunc],
    sf = [reward sum (sequential, in step order), distance]. Writes one summary per finished
    in-order episode segment to ``o_*`` and events ``(code, row, a, b)`` to ``ev``.
    Returns (summaries, events stored, events total).
    """
    cur, mx, prev, cnt, ended, valid = st[0], st[1], st[2], st[3], st[4], st[5]
    lx, ly, lterm, ltrunc = st[6], st[7], st[8], st[9]
    rsum, ldist = sf[0], sf[1]
    no = 0
    ne = 0
    ntot = 0
    cap = ev.shape[0]
    for i in range(ep.shape[0]):
        e = ep[i]
        if e < 0:
            continue
        s = step[i]
        code = 0
        a = 0
        b = 0
        if e != cur:
            if cur >= 0 and valid == 1 and cnt > 0:
                o_idx[no] = cur
                o_cnt[no] = cnt
                o_sum[no] = rsum
                o_x[no] = lx
                o_y[no] = ly
                o_dist[no] = ldist
                o_term[no] = lterm
                o_trunc[no] = ltrunc
                no += 1
            if e > mx:
                if e > mx + 1:
                    code, a, b = EV_EP_GAP, mx + 1, e - 1
                mx = e
                valid = 1
            else:
                code, a, b = EV_ORDER, e, mx
                valid = 0
            if code != 0:
                if ne < cap:
                    ev[ne, 0], ev[ne, 1], ev[ne, 2], ev[ne, 3] = code, i, a, b
                    ne += 1
                ntot += 1
                code = 0
            cur = e
            cnt = 0
            rsum = 0.0
            ended = 0
            if valid == 1 and s != 1:
                code, a = EV_FIRST, s
        elif valid == 1:
            if s == prev:
                code, a = EV_DUP, s
            elif ended == 1:
                code, a, b = EV_AFTER_END, prev, s
            elif s > prev + 1:
                code, a, b = EV_GAP, prev, s
            elif s < prev:
                code, a, b = EV_BACK, prev, s
        if code != 0:
            if ne < cap:
                ev[ne, 0], ev[ne, 1], ev[ne, 2], ev[ne, 3] = code, i, a, b
                ne += 1
            ntot += 1
            if code == EV_DUP:
                continue  # a repeated record does not count twice
        cnt += 1
        rsum += reward[i]
        prev = s
        ended = 1 if (term[i] or trunc[i]) else 0
        lx = x[i]
        ly = y[i]
        ldist = dist[i]
        lterm = 1 if term[i] else 0
        ltrunc = 1 if trunc[i] else 0
    st[0], st[1], st[2], st[3], st[4], st[5] = cur, mx, prev, cnt, ended, valid
    st[6], st[7], st[8], st[9] = lx, ly, lterm, ltrunc
    sf[0], sf[1] = rsum, ldist
    return no, ne, ntot


@njit
def epid_parse(off, data, out):
    for r in range(out.shape[0]):
        a, b = off[r], off[r + 1]
        nd = b - a - 3
        v = -1
        if (6 <= nd <= 18 and data[a] == 101 and data[a + 1] == 112 and data[a + 2] == 45
                and (nd == 6 or data[a + 3] != 48)):
            v = 0
            for i in range(a + 3, b):
                c = int(data[i])  # int(): also right without the JIT (uint8 math)
                if c < 48 or c > 57:
                    v = 0
                    break
                v = v * 10 + (c - 48)
        out[r] = v - 1 if v >= 1 else -1
