"""Exact path-dependent TreeSHAP for LightGBM boosters, by per-leaf look-up tables.

Why our own kernel: LightGBM's `pred_contrib` (and shap.TreeExplainer) costs 50-60x a
prediction, and every scored lead carries reasons. In path-dependent TreeSHAP a leaf's share of
each distinct feature on its path depends only on which of those features' path conditions the
row satisfies (the FastTreeSHAP v2 observation). So each leaf gets a table indexed by that bit
pattern, built once per model, and explaining a row becomes: one decision per internal node,
one pattern per leaf, and table look-ups, tree by tree over blocks of rows.

Decisions follow LightGBM's tree.h: numeric thresholds with default_left and missing types
None / Zero / NaN, categorical bitsets (NaN and negatives go right, values truncated to int),
and |x| <= kZeroThreshold read as 0.0 as LightGBM's dense-row reader does. A tree whose tables
would exceed the memory cap is explained by LightGBM's own `pred_contrib` on a slice of the
booster, so the result stays exact whatever the model. numba is imported here only, never at
`import leadml`. One module of ~500 lines on purpose: the dump parser, the table builder and
the kernel share one flat array layout, and splitting them would spread that contract.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leadml.errors import ModelError

K_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold is the float literal 1e-35f
MAX_PATH_FEATURES = 12  # a leaf with more distinct features on its path: tree falls back
MAX_TABLE_BYTES = 256 << 20  # all tables of one model
BLOCK_ROWS = 1024  # rows per block: fewer passes over all tables; a block still fits in L2
CACHE_ATTR = "_treeshap"

MISSING = {"None": 0, "Zero": 1, "NaN": 2}


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _choose_numba_cache() -> None:
    """Keep numba's on-disk cache usable when leadml is installed read-only.

    numba caches next to this file when it can, else in the user cache; when neither is
    writable (read-only image, no home) it would refuse to compile, so point it at a
    per-user temporary folder instead. An explicit NUMBA_CACHE_DIR always wins.
    """
    from numba.core import config

    if config.CACHE_DIR or _writable(Path(__file__).parent / "__pycache__"):
        return
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "numba"
    if _writable(user):
        return
    config.CACHE_DIR = str(Path(tempfile.gettempdir()) / f"leadml-numba-{os.getuid()}")


_choose_numba_cache()

from numba import njit  # noqa: E402 - after the cache folder is settled

# ---------------------------------------------------------------- tables (built once per model)


@njit(cache=True, nogil=True)
def _unwound_sum(pz: np.ndarray, po: np.ndarray, pw: np.ndarray, depth: int, p: int) -> float:
    """LightGBM's UnwoundPathSum: the path weight with element `p` taken out."""
    one, zero = po[p], pz[p]
    nxt = pw[depth]
    total = 0.0
    if one != 0:
        for i in range(depth - 1, -1, -1):
            tmp = nxt / ((i + 1) * one)
            total += tmp
            nxt = pw[i] - tmp * zero * (depth - i)
    else:
        for i in range(depth - 1, -1, -1):
            total += pw[i] / (zero * (depth - i))
    return total * (depth + 1)


@njit(cache=True, nogil=True)
def _leaf_table(z: np.ndarray, value: float, out: np.ndarray) -> None:
    """out[k * 2**d + v]: the leaf's contribution to its k-th path feature when the row breaks
    exactly the path conditions of the features whose bits are set in v (LightGBM's
    ExtendPath / UnwoundPathSum on the unique path, with its leading dummy element)."""
    d = len(z)
    pz = np.empty(d + 1)
    po = np.empty(d + 1)
    pw = np.empty(d + 1)
    for v in range(1 << d):
        pz[0], po[0], pw[0] = 1.0, 1.0, 1.0
        for u in range(1, d + 1):
            zero = z[u - 1]
            one = 0.0 if (v >> (u - 1)) & 1 else 1.0
            pz[u], po[u], pw[u] = zero, one, 0.0
            for i in range(u - 1, -1, -1):
                pw[i + 1] += one * pw[i] * (i + 1) / (u + 1)
                pw[i] = zero * pw[i] * (u - i) / (u + 1)
        for k in range(d):
            w = _unwound_sum(pz, po, pw, d, k + 1)
            out[(k << d) + v] = w * (po[k + 1] - pz[k + 1]) * value


@njit(cache=True, nogil=True)
def _fill_tables(leaf_z, leaf_zoff, leaf_nfeat, leaf_toff, leaf_value, values) -> None:
    for j in range(len(leaf_nfeat)):
        d = leaf_nfeat[j]
        if d == 0:
            continue
        z = leaf_z[leaf_zoff[j] : leaf_zoff[j] + d]
        _leaf_table(z, leaf_value[j], values[leaf_toff[j] : leaf_toff[j] + (d << d)])


# ---------------------------------------------------------------- explaining rows


@njit(cache=True, nogil=True)
def _numeric_lefts(xs, nb, th, dl, missing, lefts) -> None:
    """LightGBM's NumericalDecision over a block of one feature's values (zeros already exact):
    NaN goes the default way unless the missing type is None (then it is read as 0.0); with
    missing type Zero, 0.0 goes the default way too."""
    nan_left = dl if missing != 0 else th >= 0.0
    if missing == 1:
        for r in range(nb):
            x = xs[r]
            lefts[r] = nan_left if x != x else (dl if x == 0.0 else x <= th)
    else:
        for r in range(nb):
            x = xs[r]
            lefts[r] = nan_left if x != x else x <= th


@njit(cache=True, nogil=True)
def _categorical_lefts(xs, nb, bits, lefts) -> None:
    """LightGBM's CategoricalDecision: in the bitset goes left; NaN, negatives (after truncation
    to int) and values past the bitset go right."""
    n_words = len(bits)
    for r in range(nb):
        x = xs[r]
        go = False
        if x == x and x < 2147483648.0:  # static_cast<int> of a larger value is INT_MIN
            c = np.int64(x)
            if c >= 0 and (c >> 5) < n_words:
                go = (bits[c >> 5] >> (c & 31)) & 1 != 0
        lefts[r] = go


@njit(cache=True, nogil=True)
def _explain_rows(
    X, out, r0, r1, block,
    node_start, feat, kind, thr, missing, dleft, left, right, pos, cat_start, cat_len, cat_bits,
    leaf_start, leaf_nfeat, leaf_foff, leaf_toff, leaf_feat, values,
):  # fmt: skip
    """Add every table tree's contributions for rows r0..r1 into `out`.

    Rows go in blocks, feature-major inside a block; per tree, each internal node (preorder)
    decides for the whole block at once and passes down, per row, the bit mask of path
    features whose condition the row breaks on the way; each leaf then adds its table entry
    at that mask. One tree's nodes and tables stay in cache while the block goes through it.
    """
    n_trees = len(node_start) - 1
    n_feat = X.shape[1]
    block = max(1, min(block, r1 - r0))
    max_nodes, max_leaves = 1, 1
    for t in range(n_trees):
        max_nodes = max(max_nodes, node_start[t + 1] - node_start[t])
        max_leaves = max(max_leaves, leaf_start[t + 1] - leaf_start[t])
    xt = np.empty((n_feat, block))
    acc = np.empty((n_feat, block))
    broken_node = np.zeros((max_nodes, block), np.int32)
    broken_leaf = np.zeros((max_leaves, block), np.int32)
    lefts = np.zeros(block, np.bool_)
    for b0 in range(r0, r1, block):
        nb = min(block, r1 - b0)
        for r in range(nb):
            for f in range(n_feat):
                x = X[b0 + r, f]
                xt[f, r] = 0.0 if abs(x) <= K_ZERO else x  # LightGBM's row reader drops these
        acc[:, :nb] = 0.0
        for t in range(n_trees):
            n0, n1 = node_start[t], node_start[t + 1]
            if n1 == n0:
                continue
            broken_node[0, :nb] = 0
            for n in range(n1 - n0):
                g = n0 + n
                xs = xt[feat[g]]
                if kind[g] == 0:
                    _numeric_lefts(xs, nb, thr[g], dleft[g] != 0, missing[g], lefts)
                else:
                    c0 = cat_start[g]
                    _categorical_lefts(xs, nb, cat_bits[c0 : c0 + cat_len[g]], lefts)
                here = broken_node[n]
                bit = np.int32(1) << np.int32(pos[g])
                c = left[g]
                to = broken_node[c] if c >= 0 else broken_leaf[~c]
                for r in range(nb):
                    to[r] = here[r] | (np.int32(0) if lefts[r] else bit)
                c = right[g]
                to = broken_node[c] if c >= 0 else broken_leaf[~c]
                for r in range(nb):
                    to[r] = here[r] | (bit if lefts[r] else np.int32(0))
            for j in range(leaf_start[t + 1] - leaf_start[t]):
                lg = leaf_start[t] + j
                d = leaf_nfeat[lg]
                broken = broken_leaf[j]
                for k in range(d):
                    row = acc[leaf_feat[leaf_foff[lg] + k]]
                    seg = values[leaf_toff[lg] + (k << d) : leaf_toff[lg] + ((k + 1) << d)]
                    for r in range(nb):
                        row[r] += seg[broken[r]]
        for r in range(nb):
            for f in range(n_feat):
                out[b0 + r, f] += acc[f, r]


# ---------------------------------------------------------------- model -> arrays


@dataclass
class _Builder:
    """Flat arrays of the table trees, grown tree by tree from dump_model()."""

    node: dict = field(default_factory=lambda: {k: [] for k in _NODE_FIELDS})
    node_start: list = field(default_factory=lambda: [0])
    cat_bits: list = field(default_factory=list)
    leaf: dict = field(default_factory=lambda: {k: [] for k in _LEAF_FIELDS})
    leaf_start: list = field(default_factory=lambda: [0])
    leaf_feat: list = field(default_factory=list)
    leaf_z: list = field(default_factory=list)
    table_size: int = 0
    siblings: list = field(default_factory=list)  # (left leaf, right leaf, split bit)


_NODE_FIELDS = ("feat", "kind", "thr", "missing", "dleft", "left", "right", "pos", "cat_start")
_NODE_FIELDS += ("cat_len",)
_LEAF_FIELDS = ("nfeat", "foff", "toff", "zoff", "value")


@dataclass
class _Tree:
    """One tree in preorder: internal nodes (with children as local codes, ~leaf for leaves)
    and leaves with their distinct path features (first-appearance order) and zero fractions."""

    nodes: list = field(default_factory=list)
    leaves: list = field(default_factory=list)  # (value, [feature], [zero fraction])
    expected: float = 0.0


def _count(node: dict) -> float:
    return float(node["internal_count"] if "split_index" in node else node.get("leaf_count", 0))


def _parse_tree(root: dict) -> _Tree:
    tree = _Tree()
    if "split_index" not in root:  # a single leaf: only the bias moves
        tree.expected = float(root["leaf_value"])
        return tree
    total = _count(root)
    expected: list[tuple[int, float]] = []

    def walk(node: dict, feats: list[int], zs: list[float]) -> int:
        if "split_index" not in node:
            if "leaf_coeff" in node:
                raise ModelError("TreeSHAP: linear trees (linear_tree=true) are not supported")
            value = float(node["leaf_value"])
            tree.leaves.append((value, list(feats), list(zs)))
            expected.append((node.get("leaf_index", 0), _count(node) / total * value))
            return ~(len(tree.leaves) - 1)
        f = int(node["split_feature"])
        k = feats.index(f) if f in feats else len(feats)
        here = len(tree.nodes)
        tree.nodes.append([node, k, 0, 0, k == len(feats)])
        for side, slot in (("left_child", 2), ("right_child", 3)):
            child = node[side]
            frac = _count(child) / _count(node)
            if k == len(feats):
                sub_f, sub_z = [*feats, f], [*zs, frac]
            else:
                sub_f, sub_z = feats, [*zs]
                sub_z[k] *= frac
            tree.nodes[here][slot] = walk(child, sub_f, sub_z)
        return here

    walk(root, [], [])
    tree.expected = sum(v for _, v in sorted(expected))  # LightGBM sums in leaf-index order
    return tree


def _bitset(threshold: str) -> list[int]:
    cats = [int(c) for c in str(threshold).split("||") if c != ""]
    words = [0] * (max(cats) // 32 + 1 if cats else 0)
    for c in cats:
        words[c >> 5] |= 1 << (c & 31)
    return words


def _add_tree(b: _Builder, tree: _Tree) -> None:
    first_leaf = len(b.leaf["nfeat"])
    for node, k, lcode, rcode, new_feature in tree.nodes:
        categorical = node["decision_type"] == "=="
        bits = _bitset(node["threshold"]) if categorical else []
        row = {
            "feat": int(node["split_feature"]),
            "kind": int(categorical),
            "thr": 0.0 if categorical else float(node["threshold"]),
            "missing": MISSING[node.get("missing_type", "None")],
            "dleft": int(bool(node.get("default_left", False))),
            "left": lcode,
            "right": rcode,
            "pos": k,
            "cat_start": len(b.cat_bits),
            "cat_len": len(bits),
        }
        for key, value in row.items():
            b.node[key].append(value)
        b.cat_bits.extend(bits)
        if lcode < 0 and rcode < 0 and new_feature:
            b.siblings.append((first_leaf + ~lcode, first_leaf + ~rcode, k))
    b.node_start.append(len(b.node["feat"]))
    for value, feats, zs in tree.leaves:
        d = len(feats)
        for key, item in zip(
            _LEAF_FIELDS, (d, len(b.leaf_feat), b.table_size, len(b.leaf_z), value), strict=True
        ):
            b.leaf[key].append(item)
        b.leaf_feat.extend(feats)
        b.leaf_z.extend(zs)
        b.table_size += d << d
    b.leaf_start.append(len(b.leaf["nfeat"]))


def _tree_table_bytes(tree: _Tree) -> tuple[int, int]:
    """(table bytes, widest leaf) of a tree."""
    widths = [len(feats) for _, feats, _ in tree.leaves] or [0]
    return sum(8 * (d << d) for d in widths), max(widths)


# ---------------------------------------------------------------- the explainer


@dataclass
class TreeShap:
    """A booster compiled to leaf tables, plus the iteration ranges LightGBM explains itself."""

    n_features: int
    n_iterations: int
    bias: float  # expected value of the table trees
    arrays: tuple
    fallback: list[tuple[int, int]]  # (start_iteration, num_iteration) ranges
    table_bytes: int

    @property
    def n_fallback_trees(self) -> int:
        return sum(n for _, n in self.fallback)

    def contributions(self, booster, X: np.ndarray, threads: int = 0) -> np.ndarray:
        """(n, n_features + 1): per-feature log-odds contributions, bias (expected value) last;
        equal to booster.predict(X, pred_contrib=True)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ModelError(
                f"TreeSHAP: the feature matrix has shape {X.shape}, the model takes "
                f"{self.n_features} features"
            )
        out = np.zeros((len(X), self.n_features + 1))
        out[:, -1] = self.bias
        self._explain(X, out, _threads(threads))
        for start, count in self.fallback:
            out += booster.predict(
                X,
                pred_contrib=True,
                start_iteration=start,
                num_iteration=count,
                num_threads=threads,
            )
        return out

    def _explain(self, X: np.ndarray, out: np.ndarray, threads: int) -> None:
        n = len(X)
        if n == 0 or len(self.arrays[0]) <= 1:
            return
        chunks = min(threads, max(1, n // 256))  # a thread is worth starting for 256 rows
        if chunks <= 1:
            _explain_rows(X, out, 0, n, BLOCK_ROWS, *self.arrays)
            return
        edges = np.linspace(0, n, chunks + 1).astype(np.int64)
        with ThreadPoolExecutor(chunks) as pool:
            jobs = [
                pool.submit(_explain_rows, X, out, int(a), int(b), BLOCK_ROWS, *self.arrays)
                for a, b in zip(edges[:-1], edges[1:], strict=True)
            ]
            for job in jobs:
                job.result()


def _threads(threads: int) -> int:
    if threads > 0:
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def used_iterations(booster) -> int:
    """The iterations `booster.predict` uses by default: the best one when early stopping set it."""
    best = int(getattr(booster, "best_iteration", 0) or 0)
    return best if best > 0 else int(booster.current_iteration())


def compile_booster(
    booster,
    *,
    max_path_features: int = MAX_PATH_FEATURES,
    max_table_bytes: int = MAX_TABLE_BYTES,
) -> TreeShap:
    """Leaf tables for every tree that fits the caps; the others are left to LightGBM."""
    n_iter = used_iterations(booster)
    dump = booster.dump_model(num_iteration=n_iter)
    if dump.get("num_tree_per_iteration", 1) != 1 or dump.get("num_class", 1) != 1:
        raise ModelError(
            f"TreeSHAP: the booster has {dump.get('num_class')} classes; leadml explains "
            "binary models only (one tree per iteration)"
        )
    if dump.get("average_output"):
        raise ModelError("TreeSHAP: random-forest boosters (average_output) are not supported")
    infos = dump["tree_info"]
    if len(infos) != n_iter:
        raise ModelError(f"TreeSHAP: dump_model gave {len(infos)} trees for {n_iter} iterations")
    builder, bias, used, fallback = _Builder(), 0.0, 0, []
    for i, info in enumerate(infos):
        tree = _parse_tree(info["tree_structure"])
        size, widest = _tree_table_bytes(tree)
        if widest > max_path_features or used + size > max_table_bytes:
            _extend_ranges(fallback, i)
            continue
        used += size
        bias += tree.expected
        _add_tree(builder, tree)
    return TreeShap(
        n_features=int(dump["max_feature_idx"]) + 1,
        n_iterations=n_iter,
        bias=bias,
        arrays=_finish(builder),
        fallback=fallback,
        table_bytes=used,
    )


def _extend_ranges(ranges: list[tuple[int, int]], i: int) -> None:
    if ranges and sum(ranges[-1]) == i:
        ranges[-1] = (ranges[-1][0], ranges[-1][1] + 1)
    else:
        ranges.append((i, 1))


def _merge_siblings(
    siblings: list, nfeat: np.ndarray, toff: np.ndarray, values: np.ndarray
) -> None:
    """Fold each pair of sibling leaves split on a feature new to their path into the left one.

    Both leaves have the same path features and their masks differ only in the split's bit
    (a row breaks exactly one of the two conditions), so the left table can hold both,
    left[v] + right[v ^ bit], and the right leaf is skipped: half the look-ups for those leaves.
    """
    for left, right, k in siblings:
        d = int(nfeat[left])
        size = d << d
        mine = values[toff[left] : toff[left] + size].reshape(d, 1 << d)
        other = values[toff[right] : toff[right] + size].reshape(d, 1 << d)
        mine += other[:, np.arange(1 << d) ^ (1 << k)]
        nfeat[right] = 0


def _finish(b: _Builder) -> tuple:
    """The kernel's argument arrays (typed), with every leaf table filled."""
    i8, i64, f64 = np.int8, np.int64, np.float64
    node = {k: np.asarray(v, dtype=f64 if k == "thr" else i64) for k, v in b.node.items()}
    leaf = {k: np.asarray(v, dtype=f64 if k == "value" else i64) for k, v in b.leaf.items()}
    values = np.zeros(b.table_size, dtype=f64)
    leaf_z = np.asarray(b.leaf_z, dtype=f64)
    _fill_tables(leaf_z, leaf["zoff"], leaf["nfeat"], leaf["toff"], leaf["value"], values)
    _merge_siblings(b.siblings, leaf["nfeat"], leaf["toff"], values)
    return (
        np.asarray(b.node_start, dtype=i64),
        node["feat"],
        node["kind"].astype(i8),
        node["thr"],
        node["missing"].astype(i8),
        node["dleft"].astype(i8),
        node["left"],
        node["right"],
        node["pos"],
        node["cat_start"],
        node["cat_len"],
        np.asarray(b.cat_bits, dtype=np.uint32),
        np.asarray(b.leaf_start, dtype=i64),
        leaf["nfeat"],
        leaf["foff"],
        leaf["toff"],
        np.asarray(b.leaf_feat, dtype=i64),
        values,
    )


# ---------------------------------------------------------------- the model wrapper's entry


def explainer_for(model) -> TreeShap:
    """The TreeShap of a train.TreeModel, built on first use and kept on the model object
    (dropped when the model is pickled, so model.joblib and its hash never depend on it)."""
    cached = model.__dict__.get(CACHE_ATTR)
    if cached is None or cached[0] is not model.booster:
        cached = (model.booster, compile_booster(model.booster))
        model.__dict__[CACHE_ATTR] = cached
    return cached[1]


def tree_contributions(model, X: np.ndarray) -> np.ndarray:
    """A TreeModel's contributions through the table kernel (its exact fallback included)."""
    return explainer_for(model).contributions(model.booster, X, model.threads)
