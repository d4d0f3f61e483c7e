"""Fast inference path for fitted regressors.

``compile_regressor(estimator)`` returns an object with ``predict(X) -> y`` and a ``kind``
string that says which path was chosen:

* ``"compiled-hgb"`` -- a :class:`CompiledHGBRegressor`, for a fitted
  ``HistGradientBoostingRegressor`` with numeric features, one tree per iteration and an
  identity link (losses ``squared_error``, ``absolute_error``, ``quantile``);
* ``"sklearn"`` -- a :class:`SklearnRegressor` that simply calls ``estimator.predict``
  (the reference), for everything else; its ``reason`` says why.

How the compiled path works (a "QuickScorer"-style evaluation, vectorised with NumPy):

1. Every split of every tree is ``x[f] <= t`` (left) with ``t = num_threshold``.  For each
   feature ``f`` the distinct thresholds ``t_f`` are sorted; a value ``x`` falls in bin
   ``b = #{t in t_f : t < x}`` (``searchsorted(..., side="left")``), and a split on ``f``
   with threshold of rank ``r`` sends ``x`` right exactly when ``b > r``.  NaN has its own
   extra bin, in which a split sends ``x`` right unless ``missing_go_to_left``.
2. The leaves of each tree are numbered left to right (in-order) and a tree's set of
   still-reachable leaves is a bit mask (<= 64 leaves).  A split that sends ``x`` right
   removes the leaves of its left subtree.  The exit leaf is the lowest set bit of the AND
   of the masks of all the splits that send ``x`` right (Lucchese et al., QuickScorer, 2015).
3. Those ANDs are precomputed per (feature, bin, tree), so a prediction is: bin the ``n x 8``
   input, gather ``8`` rows of the table, AND them, isolate the lowest set bit, hash it to a
   leaf slot (de Bruijn multiply-shift), look up the leaf value, and add the leaf values up
   *in the same order as scikit-learn* (baseline, then tree by tree): bit-identical results.

About a dozen NumPy calls per prediction whatever the model size, so per-call overhead is
tens of microseconds instead of scikit-learn's ~0.5-1 ms.  Small batches bin their values in
pure Python (``bisect``); larger ones use ``searchsorted`` and are processed in chunks to
bound memory.  There is no global state: all tables live in the (immutable) instance.
The compiled path verifies itself against ``estimator.predict`` on probe rows built from
the model's own thresholds (each threshold, its neighbours, NaN, +-inf) before it is used;
if that check fails the estimator falls back to scikit-learn.

:meth:`CompiledHGBRegressor.save` writes the tables to one ``.npz`` file (plain arrays, no
pickles) and :meth:`CompiledHGBRegressor.load` reads them back, so a server can serve the
(training-time verified) compiled model without importing scikit-learn at all: this module
imports scikit-learn only inside the functions that inspect an estimator.
"""

from __future__ import annotations

import bisect
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from predictor.upstream.sklearn_hgb import hgb_trees

__all__ = [
    "FORMAT_VERSION",
    "KIND_COMPILED_HGB",
    "KIND_SKLEARN",
    "PARITY_TOLERANCE",
    "CompiledHGBRegressor",
    "Regressor",
    "SklearnRegressor",
    "compile_regressor",
]

FloatMatrix = npt.NDArray[np.float64]
FloatVector = npt.NDArray[np.float64]

KIND_COMPILED_HGB: Final = "compiled-hgb"
KIND_SKLEARN: Final = "sklearn"

#: Layout version of the ``.npz`` files written by :meth:`CompiledHGBRegressor.save`.
FORMAT_VERSION: Final = 1

#: Largest allowed max |fast - sklearn| on the self-check probe rows.
PARITY_TOLERANCE: Final = 1e-6

# De Bruijn multipliers: for a power of two p < 2**W, ``(p * C mod 2**W) >> (W - log2 W)``
# is distinct for every p, so it indexes the exit leaf without a log2 / count-zeros.
_DEBRUIJN: Final = {32: (0x077CB531, 27), 64: (0x03F79D71B4CB0A89, 58)}
_MAX_LEAVES: Final = 64
# Batches up to this size bin their values with ``bisect`` in Python (lower overhead).
_SMALL_BATCH: Final = 12
# Refuse to build lookup tables larger than this (bytes); such models fall back.
_MAX_TABLE_BYTES: Final = 256 * 1024 * 1024
# Rows per chunk for batch prediction: bounds the (rows x trees) temporaries.
_CHUNK_ROWS: Final = 2048


@runtime_checkable
class Regressor(Protocol):
    """What the server calls: ``predict`` on a float64 ``(n, n_features)`` matrix."""

    @property
    def kind(self) -> str:
        """``"compiled-hgb"`` or ``"sklearn"``: which path serves predictions."""
        ...

    def predict(self, X: FloatMatrix) -> FloatVector:
        """Return the ``(n,)`` float64 predictions for the ``(n, n_features)`` rows ``X``."""
        ...


class _SupportsPredict(Protocol):
    def predict(self, X: FloatMatrix) -> object: ...


class SklearnRegressor:
    """Fallback: delegates to the estimator's own ``predict`` (the reference)."""

    def __init__(self, estimator: _SupportsPredict, reason: str) -> None:
        self._estimator = estimator
        self._reason = reason

    @property
    def kind(self) -> str:
        return KIND_SKLEARN

    @property
    def reason(self) -> str:
        """Why the fast path was not used."""
        return self._reason

    @property
    def estimator(self) -> _SupportsPredict:
        return self._estimator

    def predict(self, X: FloatMatrix) -> FloatVector:
        return np.asarray(self._estimator.predict(X), dtype=np.float64).reshape(-1)

    def __repr__(self) -> str:
        return f"SklearnRegressor({type(self._estimator).__name__}, reason={self._reason!r})"


@dataclass(frozen=True, eq=False)
class _Tables:
    """Immutable lookup tables of a compiled model (see the module docstring)."""

    n_features: int
    # Per feature: the sorted distinct split thresholds (as Python floats for ``bisect``
    # and as an array for ``searchsorted``), and the first table row of that feature.
    thresholds: tuple[tuple[float, ...], ...]
    threshold_arrays: tuple[FloatVector, ...]
    row_offsets: tuple[int, ...]
    # Per feature: the table row used for NaN.
    nan_rows: tuple[int, ...]
    # (n_rows, n_trees + 1) uint32/uint64 leaf masks; column 0 is the baseline "tree".
    masks: npt.NDArray[np.unsignedinteger]
    # De Bruijn multiplier and shift, of the masks' dtype.
    debruijn: np.unsignedinteger
    shift: np.unsignedinteger
    # (n_trees + 1) * W leaf values, at tree * W + debruijn_hash(leaf bit).
    values: FloatVector
    # (n_trees + 1, 1): tree * W.
    value_offsets: npt.NDArray[np.intp]


class CompiledHGBRegressor:
    """Fast, bit-exact predictor for a fitted ``HistGradientBoostingRegressor``.

    Build it with :func:`compile_regressor` (or :meth:`from_estimator`, which raises
    ``ValueError`` for unsupported estimators), or read saved tables with :meth:`load`.
    Instances are immutable and thread-safe.
    """

    def __init__(self, tables: _Tables, n_trees: int, max_leaves: int) -> None:
        self._t = tables
        self._n_trees = n_trees
        self._max_leaves = max_leaves

    @classmethod
    def from_estimator(cls, estimator: object) -> CompiledHGBRegressor:
        """Compile ``estimator``; raise ``ValueError`` if it is not supported."""
        from sklearn.ensemble import HistGradientBoostingRegressor

        reason = _unsupported_reason(estimator)
        if reason is not None:
            raise ValueError(reason)
        assert isinstance(estimator, HistGradientBoostingRegressor)
        trees, baseline = hgb_trees(estimator)
        n_features = int(estimator.n_features_in_)
        tables, max_leaves = _build_tables(trees, baseline, n_features)
        return cls(tables, n_trees=len(trees), max_leaves=max_leaves)

    def save(self, path: Path) -> None:
        """Write the tables to ``path`` as one uncompressed ``.npz`` (plain arrays only).

        The per-feature thresholds are stored concatenated, with their counts; the Python
        tuples used by ``bisect`` are rebuilt from them by :meth:`load`.
        """
        t = self._t
        arrays: dict[str, npt.NDArray[Any]] = {
            "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
            "n_trees": np.array(self._n_trees, dtype=np.int64),
            "max_leaves": np.array(self._max_leaves, dtype=np.int64),
            "n_features": np.array(t.n_features, dtype=np.int64),
            "thresholds": np.concatenate(t.threshold_arrays),
            "threshold_counts": np.array([len(a) for a in t.threshold_arrays], dtype=np.int64),
            "row_offsets": np.array(t.row_offsets, dtype=np.int64),
            "nan_rows": np.array(t.nan_rows, dtype=np.int64),
            "masks": t.masks,
            "debruijn": np.array(t.debruijn),
            "shift": np.array(t.shift),
            "values": t.values,
            "value_offsets": t.value_offsets.astype(np.int64),
        }
        # A file object, not a name: ``np.savez`` would append ".npz" to a temporary name.
        with path.open("wb") as f:
            np.savez(f, allow_pickle=False, **arrays)

    @classmethod
    def load(cls, path: Path) -> CompiledHGBRegressor:
        """Read tables written by :meth:`save`, without pickles and without scikit-learn.

        Raises ``ValueError`` if the file is not such a file, has another format version,
        or its arrays are inconsistent (so that a bad file can never index out of bounds).
        """
        try:
            loaded = np.load(path, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with loaded:
                arrays = {name: loaded[name] for name in loaded.files}
        except (ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path} is not a compiled-model file: {e}") from e
        try:
            tables, n_trees, max_leaves = _tables_from_arrays(arrays)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
        return cls(tables, n_trees=n_trees, max_leaves=max_leaves)

    @property
    def kind(self) -> str:
        return KIND_COMPILED_HGB

    @property
    def n_features(self) -> int:
        return self._t.n_features

    @property
    def n_trees(self) -> int:
        return self._n_trees

    def __repr__(self) -> str:
        return (
            f"CompiledHGBRegressor(n_trees={self._n_trees}, max_leaves={self._max_leaves}, "
            f"n_features={self._t.n_features}, table_bytes={self._t.masks.nbytes})"
        )

    def predict(self, X: FloatMatrix) -> FloatVector:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self._t.n_features:
            raise ValueError(
                f"expected a 2-D array with {self._t.n_features} columns, got shape {X.shape}"
            )
        n = X.shape[0]
        if n == 0:
            return np.empty(0, dtype=np.float64)
        if n <= _SMALL_BATCH:
            return self._leaf_sums(self._masks_small(X))
        out = np.empty(n, dtype=np.float64)
        for start in range(0, n, _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, n)
            out[start:stop] = self._leaf_sums(self._masks_large(X[start:stop]))
        return out

    def _masks_small(self, X: FloatMatrix) -> npt.NDArray[np.unsignedinteger]:
        """Reachable-leaf masks ``(n, n_trees + 1)``: binning in Python, one gather."""
        t = self._t
        bins = [
            bisect.bisect_left(thr, v) + off if v == v else nan_row
            for row in X.tolist()
            for v, thr, off, nan_row in zip(
                row, t.thresholds, t.row_offsets, t.nan_rows, strict=True
            )
        ]
        gathered = t.masks[bins].reshape(X.shape[0], t.n_features, -1)
        mask: npt.NDArray[np.unsignedinteger] = np.bitwise_and.reduce(gathered, axis=1)
        return mask

    def _masks_large(self, X: FloatMatrix) -> npt.NDArray[np.unsignedinteger]:
        """Reachable-leaf masks ``(n, n_trees + 1)``: ``searchsorted``, one gather per feature."""
        t = self._t
        nan = np.isnan(X)
        any_nan = bool(nan.any())
        mask: npt.NDArray[np.unsignedinteger] | None = None
        for j in range(t.n_features):
            bins = np.searchsorted(t.threshold_arrays[j], X[:, j], side="left")
            bins += t.row_offsets[j]
            if any_nan:
                bins[nan[:, j]] = t.nan_rows[j]
            if mask is None:
                mask = t.masks[bins]
            else:
                mask &= t.masks[bins]
        assert mask is not None
        return mask

    def _leaf_sums(self, mask: npt.NDArray[np.unsignedinteger]) -> FloatVector:
        """Sum of the exit-leaf values (baseline first) for each row of ``mask``."""
        t = self._t
        # Trees along axis 0, so that the reduction below adds tree by tree.
        low = np.ascontiguousarray(mask.T)
        low &= ~low + 1  # keep the lowest set bit: the exit leaf (two's complement trick)
        low *= t.debruijn
        low >>= t.shift
        index = low.astype(np.intp)
        index += t.value_offsets
        leaf_values = t.values[index]
        # Add baseline, tree 1, tree 2, ... in that order: the same operations as
        # scikit-learn's ``raw_predictions[:, 0] += tree.predict(X)`` loop, hence
        # bit-identical results.  A reduction over axis 0 with a (non-reduced) contiguous
        # axis 1 adds row after row; a single column would be summed pairwise instead.
        if leaf_values.shape[1] == 1:
            # ``accumulate`` is sequential by definition; its last element is the sum.
            single: FloatVector = np.add.accumulate(leaf_values.ravel())[-1:]
            return single
        sums: FloatVector = np.add.reduce(leaf_values, axis=0)
        return sums


def compile_regressor(estimator: object, *, verify: bool = True) -> Regressor:
    """Fast predictor for a fitted estimator; falls back to the estimator itself (sklearn).

    With ``verify`` (the default) a compiled model is checked against ``estimator.predict``
    on probe rows derived from its split thresholds (plus NaN and +-inf) and is only used if
    they agree to within :data:`PARITY_TOLERANCE`.
    """
    if not callable(getattr(estimator, "predict", None)):
        raise TypeError(f"{type(estimator).__name__} has no predict method")
    sk_estimator: _SupportsPredict = estimator  # type: ignore[assignment]
    reason = _unsupported_reason(estimator)
    if reason is not None:
        return SklearnRegressor(sk_estimator, reason)
    try:
        compiled = CompiledHGBRegressor.from_estimator(estimator)
        diff = _self_check(compiled, sk_estimator) if verify else 0.0
    except ValueError as exc:
        return SklearnRegressor(sk_estimator, str(exc))
    except Exception as exc:  # never let the optional fast path break serving
        return SklearnRegressor(sk_estimator, f"compiling failed: {exc!r}")
    if not diff <= PARITY_TOLERANCE:  # also catches NaN
        return SklearnRegressor(
            sk_estimator, f"compiled model failed the parity self-check (max diff {diff:.3g})"
        )
    return compiled


def _self_check(compiled: CompiledHGBRegressor, estimator: _SupportsPredict) -> float:
    """Max |compiled - estimator| on :func:`probe_rows`, in one batch and row by row."""
    probe = probe_rows(compiled)
    expected = np.asarray(estimator.predict(probe), dtype=np.float64).reshape(-1)
    diffs = [float(np.max(np.abs(compiled.predict(probe) - expected)))]
    diffs += [
        abs(float(compiled.predict(probe[i : i + 1])[0]) - float(expected[i]))
        for i in range(min(len(probe), 64))
    ]
    return float("inf") if any(math.isnan(d) for d in diffs) else max(diffs)


def probe_rows(
    compiled: CompiledHGBRegressor, n_rows: int | None = None, seed: int = 0
) -> FloatMatrix:
    """Rows that exercise every split boundary of ``compiled`` (for parity checks).

    Column ``j`` cycles through the model's thresholds on feature ``j``, their float
    neighbours, NaN, +-inf and 0; columns are shuffled independently (deterministically).
    By default there are enough rows for every such value to appear at least once.
    """
    rng = np.random.default_rng(seed)
    per_feature = []
    for thr in compiled._t.threshold_arrays:
        finite = thr[np.isfinite(thr)]
        neighbours = [np.nextafter(finite, -np.inf), np.nextafter(finite, np.inf)]
        per_feature.append(np.concatenate([finite, *neighbours, [np.nan, np.inf, -np.inf, 0.0]]))
    if n_rows is None:
        n_rows = max(len(values) for values in per_feature)
    columns = [rng.permutation(np.resize(rng.permutation(v), n_rows)) for v in per_feature]
    return np.ascontiguousarray(np.column_stack(columns), dtype=np.float64)


def _unsupported_reason(estimator: object) -> str | None:
    """``None`` if the compiled path supports ``estimator``, else a human-readable reason."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    if type(estimator) is not HistGradientBoostingRegressor:
        return f"no fast path for {type(estimator).__name__}"
    predictors = getattr(estimator, "_predictors", None)
    if not predictors:
        return "estimator is not fitted"
    if getattr(estimator, "_preprocessor", None) is not None:
        return "categorical features (input preprocessor) are not supported"
    is_categorical = getattr(estimator, "is_categorical_", None)
    if is_categorical is not None and bool(np.any(is_categorical)):
        return "categorical features are not supported"
    if getattr(estimator, "n_trees_per_iteration_", None) != 1:
        return "more than one tree per iteration is not supported"
    link = getattr(getattr(estimator, "_loss", None), "link", None)
    if type(link).__name__ != "IdentityLink":
        return f"loss link {type(link).__name__} is not supported (identity only)"
    baseline = np.asarray(getattr(estimator, "_baseline_prediction", None), dtype=object)
    if baseline.size != 1:
        return "unexpected baseline prediction shape"
    n_features = getattr(estimator, "n_features_in_", None)
    if not isinstance(n_features, int) or n_features < 1:
        return "unknown number of features"
    for iteration in predictors:
        if len(iteration) != 1:
            return "more than one tree per iteration is not supported"
        nodes = getattr(iteration[0], "nodes", None)
        names = getattr(getattr(nodes, "dtype", None), "names", None) or ()
        required = {"value", "feature_idx", "num_threshold", "missing_go_to_left"}
        required |= {"left", "right", "is_leaf", "is_categorical"}
        if not required.issubset(names):
            return "unexpected tree node layout"
        assert nodes is not None
        if bool(np.any(nodes["is_categorical"][nodes["is_leaf"] == 0])):
            return "categorical splits are not supported"
        if int(np.count_nonzero(nodes["is_leaf"])) > _MAX_LEAVES:
            return f"trees with more than {_MAX_LEAVES} leaves are not supported"
    return None


def _build_tables(
    trees: Sequence[np.ndarray], baseline: float, n_features: int
) -> tuple[_Tables, int]:
    """Precompute the per-(feature, bin, tree) leaf masks and the leaf-value table."""
    split_features: list[npt.NDArray[np.intp]] = []
    split_thresholds: list[FloatVector] = []
    for nodes in trees:
        split = nodes["is_leaf"] == 0
        split_features.append(nodes["feature_idx"][split].astype(np.intp))
        split_thresholds.append(nodes["num_threshold"][split].astype(np.float64))
    all_features = np.concatenate(split_features) if trees else np.empty(0, np.intp)
    all_thresholds = np.concatenate(split_thresholds) if trees else np.empty(0)
    if bool(np.any(np.isnan(all_thresholds))):
        raise ValueError("NaN split threshold")
    if all_features.size and (all_features.min() < 0 or all_features.max() >= n_features):
        raise ValueError("split feature index out of range")

    thresholds = [np.unique(all_thresholds[all_features == j]) for j in range(n_features)]
    # Rows of feature j: bins 0..len(thresholds[j]) then one NaN row.
    sizes = [len(thr) + 2 for thr in thresholds]
    row_offsets = [0, *np.cumsum(sizes).tolist()]
    nan_rows = [row_offsets[j] + sizes[j] - 1 for j in range(n_features)]

    n_cols = len(trees) + 1  # column 0: the baseline as a one-leaf tree
    leaf_counts = [int(np.count_nonzero(nodes["is_leaf"])) for nodes in trees]
    max_leaves = max(leaf_counts, default=1)
    dtype = np.uint32 if max_leaves <= 32 else np.uint64
    n_bits = 32 if dtype is np.uint32 else 64
    if row_offsets[-1] * n_cols * (n_bits // 8) > _MAX_TABLE_BYTES:
        raise ValueError("model too large for the compiled lookup tables")
    all_ones = (1 << n_bits) - 1
    masks = np.full((row_offsets[-1], n_cols), all_ones, dtype=dtype)
    multiplier, shift = _DEBRUIJN[n_bits]

    def leaf_slot(leaf: int) -> int:
        return (((1 << leaf) * multiplier) & all_ones) >> shift

    values = np.zeros((n_cols, n_bits), dtype=np.float64)
    values[0, leaf_slot(0)] = baseline

    for col, nodes in enumerate(trees, start=1):
        is_leaf = nodes["is_leaf"].tolist()
        left = nodes["left"].tolist()
        right = nodes["right"].tolist()
        feature = nodes["feature_idx"].tolist()
        threshold = nodes["num_threshold"].tolist()
        nan_left = nodes["missing_go_to_left"].tolist()
        leaf_value = nodes["value"].tolist()
        first, count = _number_leaves(is_leaf, left, right)
        for i, leaf in enumerate(is_leaf):
            if leaf:
                values[col, leaf_slot(first[i])] = leaf_value[i]
                continue
            lo, width = first[left[i]], count[left[i]]
            mask = all_ones ^ (((1 << width) - 1) << lo)
            j = feature[i]
            rank = int(np.searchsorted(thresholds[j], threshold[i], side="left"))
            base = row_offsets[j]
            # Bins b > rank (x > threshold) go right: drop the left subtree's leaves.
            masks[base + rank + 1 : base + len(thresholds[j]) + 1, col] &= dtype(mask)
            if not nan_left[i]:
                masks[nan_rows[j], col] &= dtype(mask)

    for arr in (masks, values):
        arr.setflags(write=False)
    value_offsets = (np.arange(n_cols, dtype=np.intp) * n_bits).reshape(-1, 1)
    value_offsets.setflags(write=False)
    threshold_arrays = tuple(thresholds)
    for thr in threshold_arrays:
        thr.setflags(write=False)
    tables = _Tables(
        n_features=n_features,
        thresholds=tuple(tuple(thr.tolist()) for thr in thresholds),
        threshold_arrays=threshold_arrays,
        row_offsets=tuple(row_offsets[:-1]),
        nan_rows=tuple(nan_rows),
        masks=masks,
        debruijn=dtype(multiplier),
        shift=dtype(shift),
        values=values.reshape(-1),
        value_offsets=value_offsets,
    )
    return tables, max_leaves


def _tables_from_arrays(
    arrays: Mapping[str, npt.NDArray[Any]],
) -> tuple[_Tables, int, int]:
    """Rebuild (and check) the tables, ``n_trees`` and ``max_leaves`` saved by ``save``."""

    def array(name: str) -> npt.NDArray[Any]:
        if name not in arrays:
            raise ValueError(f"array {name!r} is missing")
        return arrays[name]

    def integer(name: str) -> int:
        value = array(name)
        if value.shape != () or value.dtype.kind not in "iu":
            raise ValueError(f"{name!r} must be an integer scalar")
        return int(value)

    version = integer("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"format version {version}, this code reads version {FORMAT_VERSION}")
    n_trees, max_leaves, n_features = (integer(k) for k in ("n_trees", "max_leaves", "n_features"))
    masks = array("masks")
    if masks.dtype not in (np.dtype(np.uint32), np.dtype(np.uint64)) or masks.ndim != 2:
        raise ValueError(f"masks must be a 2-D uint32/uint64 array, got {masks.dtype}")
    n_bits = masks.dtype.itemsize * 8
    n_cols = n_trees + 1
    if n_trees < 0 or n_features < 1 or not 1 <= max_leaves <= n_bits:
        raise ValueError(f"bad sizes: {n_trees} trees, {max_leaves} leaves, {n_features} features")
    counts = array("threshold_counts")
    thresholds = array("thresholds")
    if counts.dtype.kind not in "iu" or counts.shape != (n_features,) or bool(np.any(counts < 0)):
        raise ValueError("threshold_counts must hold one count per feature")
    if thresholds.dtype != np.float64 or thresholds.shape != (int(counts.sum()),):
        raise ValueError("thresholds must be a float64 array of sum(threshold_counts) values")
    threshold_arrays = tuple(np.split(thresholds, np.cumsum(counts)[:-1]))
    if any(bool(np.any(np.isnan(a))) or bool(np.any(np.diff(a) <= 0)) for a in threshold_arrays):
        raise ValueError("the thresholds of a feature must be distinct, sorted and not NaN")
    # Everything else is determined by the sizes above; stored values must agree with it.
    sizes = counts.astype(np.int64) + 2
    row_offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    multiplier, shift = _DEBRUIJN[n_bits]
    expected: dict[str, npt.NDArray[Any]] = {
        "row_offsets": row_offsets,
        "nan_rows": row_offsets + sizes - 1,
        "debruijn": np.array(multiplier, dtype=masks.dtype),
        "shift": np.array(shift, dtype=masks.dtype),
        "value_offsets": (np.arange(n_cols, dtype=np.int64) * n_bits).reshape(-1, 1),
    }
    for name, want in expected.items():
        got = array(name)
        if got.dtype.kind != want.dtype.kind or not np.array_equal(got, want):
            raise ValueError(f"{name!r} does not match the table layout")
    if masks.shape != (int(sizes.sum()), n_cols):
        raise ValueError(f"masks have shape {masks.shape}, expected {(int(sizes.sum()), n_cols)}")
    values = array("values")
    if values.dtype != np.float64 or values.shape != (n_cols * n_bits,):
        raise ValueError(f"values must be a float64 array of {n_cols * n_bits} leaf values")
    value_offsets = expected["value_offsets"].astype(np.intp)
    for arr in (masks, values, value_offsets, *threshold_arrays):
        arr.setflags(write=False)
    tables = _Tables(
        n_features=n_features,
        thresholds=tuple(tuple(a.tolist()) for a in threshold_arrays),
        threshold_arrays=threshold_arrays,
        row_offsets=tuple(row_offsets.tolist()),
        nan_rows=tuple(expected["nan_rows"].tolist()),
        masks=masks,
        debruijn=masks.dtype.type(multiplier),
        shift=masks.dtype.type(shift),
        values=values,
        value_offsets=value_offsets,
    )
    return tables, n_trees, max_leaves


def _number_leaves(
    is_leaf: Sequence[int], left: Sequence[int], right: Sequence[int]
) -> tuple[list[int], list[int]]:
    """In-order leaf numbering: for each node, its first leaf number and its leaf count."""
    n = len(is_leaf)
    first = [0] * n
    count = [0] * n
    next_leaf = 0
    # Iterative post-order walk from the root (node 0); children are visited left first.
    stack: list[tuple[int, bool]] = [(0, False)]
    while stack:
        node, children_done = stack.pop()
        if is_leaf[node]:
            first[node], count[node] = next_leaf, 1
            next_leaf += 1
        elif children_done:
            first[node] = first[left[node]]
            count[node] = count[left[node]] + count[right[node]]
        else:
            stack.append((node, True))
            stack.append((right[node], False))
            stack.append((left[node], False))
    if next_leaf != sum(1 for leaf in is_leaf if leaf):
        raise ValueError("tree has unreachable leaves")
    if next_leaf > _MAX_LEAVES:
        raise ValueError(f"trees with more than {_MAX_LEAVES} leaves are not supported")
    return first, count
