"""The optimal assignment of rows to columns of a cost matrix (the Hungarian
method, shortest augmenting paths with potentials: O(n^2 m)). SciPy's
``linear_sum_assignment`` gives the same total; this one needs nothing but
NumPy, which the small boxes vidpipe runs on always have, and for the matrices a
tracker makes (tens of tracks by tens of boxes) it takes well under a millisecond."""

from typing import Any, Dict, List, Tuple

import numpy as np

INF = float("inf")
SMALL = 10000  # a group of at most this many pairs is solved in plain Python: NumPy's
#                call overhead is most of the time up to about 120 x 120 (measured)


def assign(cost: "np.ndarray", limit: float) -> Tuple[List[Tuple[int, int]], List[int], List[int]]:
    """Pairs ``(row, col)`` of least total cost, each with cost <= ``limit``;
    and the rows and the columns left without a partner. Pairs over the limit
    are left apart, as ByteTrack does after its assignment."""
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return [], list(range(rows)), list(range(cols))
    pairs: List[Tuple[int, int]] = []
    # pairs over the limit are never made, so the rows and columns fall into
    # groups with no allowed pair between them; each is solved on its own
    # (exact, and a scene of objects apart is many 1 x 1 groups)
    allowed = cost <= limit
    # a row with one allowed column that has no other allowed row: a pair at once
    lone = allowed & (allowed.sum(1) == 1)[:, None] & (allowed.sum(0) == 1)[None, :]
    lone_rows, lone_cols = np.nonzero(lone)
    pairs.extend(zip(lone_rows.tolist(), lone_cols.tolist()))
    allowed &= ~lone
    for group_rows, group_cols in _groups(allowed) if allowed.any() else []:
        sub = cost[group_rows][:, group_cols]
        found = _solve_small(sub.tolist(), limit) if sub.size <= SMALL else _solve(sub, limit)[0]
        pairs.extend((group_rows[r], group_cols[c]) for r, c in found)
    used_rows = {p[0] for p in pairs}
    used_cols = {p[1] for p in pairs}
    return (sorted(pairs), [r for r in range(rows) if r not in used_rows],
            [c for c in range(cols) if c not in used_cols])


def _groups(allowed: "np.ndarray") -> List[Tuple[List[int], List[int]]]:
    """The connected groups of rows and columns joined by allowed pairs
    (rows and columns with none are left out: they stay unmatched)."""
    rows = allowed.shape[0]
    found_rows, found_cols = np.nonzero(allowed)
    edges = list(zip(found_rows.tolist(), (found_cols + rows).tolist()))
    parent: Dict[int, int] = {}

    def find(a: int) -> int:
        root = parent.setdefault(a, a)
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:  # flatten the path walked
            parent[a], a = root, parent[a]
        return root

    for r, c in edges:
        a, b = find(r), find(c)
        if a != b:
            parent[a] = b
    groups: Dict[int, Tuple[set, set]] = {}
    for r, c in edges:
        g = groups.setdefault(find(r), (set(), set()))
        g[0].add(r)
        g[1].add(c - rows)
    return [(sorted(g[0]), sorted(g[1])) for g in groups.values()]


def _solve(cost: "np.ndarray", limit: float) -> Tuple[List[Tuple[int, int]], List[int],
                                                      List[int]]:
    rows, cols = cost.shape
    transposed = rows > cols
    work = cost.T if transposed else cost
    # a pair over the limit is never wanted: priced so that leaving it out is
    # cheaper than any assignment that uses it
    big = float(np.abs(work[np.isfinite(work)]).sum()) + limit + 1.0 if np.isfinite(work).any() \
        else 1.0
    work = np.where(work <= limit, work, big)
    matched = _hungarian(work)
    pairs = []
    for r, c in enumerate(matched):
        if c >= 0 and work[r, c] <= limit:
            pairs.append((c, r) if transposed else (r, c))
    used_rows = {p[0] for p in pairs}
    used_cols = {p[1] for p in pairs}
    return (sorted(pairs), [r for r in range(rows) if r not in used_rows],
            [c for c in range(cols) if c not in used_cols])


def _hungarian(a: "np.ndarray") -> List[int]:
    """For an n x m matrix with n <= m: the column of each row."""
    n, m = a.shape
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=int)  # p[j]: the row (1-based) holding column j; 0 none
    way = np.zeros(m + 1, dtype=int)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, INF)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used[1:]
            cur = a[i0 - 1, :] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            masked = np.where(free, minv[1:], INF)
            j1 = int(np.argmin(masked)) + 1
            delta = masked[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        _augment(p, way, j0)
    return _columns(p, n, m)


def _solve_small(cost: List[List[float]], limit: float) -> List[Tuple[int, int]]:
    """:func:`_solve` on a small matrix as lists (the same arithmetic)."""
    rows, cols = len(cost), len(cost[0])
    transposed = rows > cols
    work = [list(col) for col in zip(*cost)] if transposed else cost
    finite = [abs(v) for row in work for v in row if -INF < v < INF]
    big = sum(finite) + limit + 1.0 if finite else 1.0
    work = [[v if v <= limit else big for v in row] for row in work]
    pairs = []
    for r, c in enumerate(_hungarian_small(work)):
        if c >= 0 and work[r][c] <= limit:
            pairs.append((c, r) if transposed else (r, c))
    return sorted(pairs)


def _hungarian_small(a: List[List[float]]) -> List[int]:
    """:func:`_hungarian` on lists, for an n x m matrix with n <= m."""
    n, m = len(a), len(a[0])
    u = [0.0] * (n + 1)
    v = [0.0] * (m + 1)
    p = [0] * (m + 1)
    way = [0] * (m + 1)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = [INF] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0 = p[j0]
            row, ui0 = a[i0 - 1], u[i0]
            delta, j1 = INF, 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = row[j - 1] - ui0 - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        _augment(p, way, j0)
    return _columns(p, n, m)


def _augment(p: Any, way: Any, j0: int) -> None:
    """Flip the alternating path that ends at the free column ``j0``."""
    while j0:
        j1 = way[j0]
        p[j0] = p[j1]
        j0 = j1


def _columns(p: Any, n: int, m: int) -> List[int]:
    """Each row's column, from ``p`` (column -> its row, 1-based; 0 none)."""
    result = [-1] * n
    for j in range(1, m + 1):
        if p[j]:
            result[int(p[j]) - 1] = j - 1
    return result
