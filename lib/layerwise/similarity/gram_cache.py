"""The Gram cache: centred linear Grams per (model, task) for all layers, computed once, on disk.

Every Gram-form measure (see :data:`~layerwise.similarity.MEASURES`) needs only the ``n x n``
centred linear Grams, so each model's hidden states for a task are reduced once and every later
comparison, measure, bootstrap or spectrum reuses them. Storage format and precision are
described on :class:`GramCache`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote

import numpy as np
from numpy.typing import ArrayLike, NDArray
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from layerwise.cache import CorruptArtefact, atomic_path, discard_corrupt, safetensors_format

from .arrays import as_float64, constant_error, inner64
from .grams import centered_grams, gram_products_float32, recentre_float64
from .registry import Measure, get_measure

__all__ = ["GramCache"]

_Key = tuple[str, str]
_V = TypeVar("_V")


class _Centred(NamedTuple):
    """Float64 re-centred Grams of one entry, memoised with the stored stack they came from."""

    stored: NDArray[np.floating]  # (L, n, n) as stored (identity marks the memo as current)
    grams: NDArray[np.float64]  # (L, n, n) double-centred over the finite examples
    norms: NDArray[np.float64]  # (L,) squared Frobenius norms of ``grams``
    finite: bool  # every example finite in every layer


class _LinearStats(NamedTuple):
    """What linear CKA needs to centre the stored Grams of one entry implicitly."""

    stored: NDArray[np.floating]  # (L, n, n) as stored
    row_sums: NDArray[np.float64]  # (L, n) row sums ``a`` of each stored Gram, in float64
    totals: NDArray[np.float64]  # (L,) grand totals ``s = sum(a)``
    norms: NDArray[np.float64]  # (L,) ``|H A H|_F^2``
    finite: bool


def _put_lru(memo: dict[_Key, _V], key: _Key, value: _V, limit: int) -> None:
    """Store ``value`` as the most recently used entry; evict least recently used beyond ``limit``."""
    memo.pop(key, None)
    memo[key] = value
    while len(memo) > max(limit, 0):
        memo.pop(next(iter(memo)))


def _gram_stats64(K: NDArray[np.floating], block_rows: int = 64) -> tuple[NDArray[np.float64], float]:
    """Row sums ``(n,)`` and squared Frobenius norm of a float32/float64 ``(n, n)`` Gram, in float64.

    One pass over ``K``: ``block_rows`` rows at a time are widened to float64 in a reused
    buffer, then summed and squared there (what implicit centring needs, see
    :meth:`GramCache._linear_stats`).
    """
    n_rows, n_cols = K.shape
    rows = np.empty(n_rows)
    norm = 0.0
    buf = np.empty((max(min(block_rows, n_rows), 1), n_cols))
    for r in range(0, n_rows, buf.shape[0]):
        blk = buf[: min(buf.shape[0], n_rows - r)]
        np.copyto(blk, K[r : r + blk.shape[0]])
        rows[r : r + blk.shape[0]] = blk.sum(axis=1)
        norm += float(np.einsum("ij,ij->", blk, blk))
    return rows, norm


def _all_finite(G: NDArray[np.floating]) -> bool:
    """True if every example is finite in every layer (no NaN mark on a Gram diagonal)."""
    return bool(np.isfinite(np.diagonal(G, axis1=1, axis2=2)).all())


class GramCache:
    """Centred linear Gram matrices per (model, task), for all layers, computed once and reused.

    Every Gram-form measure (see :data:`~layerwise.similarity.MEASURES`) needs only these ``n x n`` matrices, so each
    model's hidden states for a task are reduced once (``O(L n^2 d)``) and each comparison then
    costs ``O(n^2)`` (CKA) or ``O(n^3)`` (SVCCA/Procrustes), independent of the width ``d``.

    On disk (if ``directory`` is given): ``<directory>/<model>/<task>.safetensors`` (names
    percent-encoded), tensors ``layer_000``, ``layer_001``, ... of shape ``(n, n)`` in
    ``storage_dtype``, and string metadata ``format``, ``n``, ``n_layers``, ``nonfinite_rows``
    (JSON list of example indices whose Gram rows are NaN) plus any caller metadata (e.g. the
    content key of the hidden states). Files are written atomically (temporary sibling, then
    rename), so a file either exists complete or not at all; one writer per file.

    Precision: with ``storage_dtype="float32"`` (default) the stored Gram is the float32
    ``ssyrk`` product of the states with their columns shifted by approximate means
    (entries within ~4e-7 of ``max|K|``, CKA within ~1e-9 of float64; see
    :mod:`layerwise.similarity.grams`, "Precision"), stored as computed and re-centred in
    float64 by every reader; CKA is checked to 1e-6 against float64 by the tests. ``"float64"``
    computes with :func:`~layerwise.similarity.centered_grams` (all float64) for bit-exact
    reuse. Values returned by :meth:`get` are float64 and double-centred. ``compare(measure="linear_cka")`` centres the
    stored Grams implicitly (row sums and inner products accumulated in float64 from the stored
    values), so it needs no float64 copy of them.

    Args:
        directory: where to persist (None = memory only).
        storage_dtype: ``"float32"`` or ``"float64"``.
        max_in_memory: number of (model, task) entries kept in memory, each as stored plus a
            float64 re-centred copy for fast comparisons (least recently used are evicted and
            re-read from disk when needed).
    """

    FORMAT = "layerwise-centred-gram-v1"

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        storage_dtype: str = "float32",
        max_in_memory: int = 4,
    ) -> None:
        if storage_dtype not in ("float32", "float64"):
            raise ValueError(f"storage_dtype must be 'float32' or 'float64', got {storage_dtype!r}")
        self.directory = Path(directory) if directory is not None else None
        self.storage_dtype = np.dtype(storage_dtype)
        self.max_in_memory = int(max_in_memory)
        self._mem: dict[tuple[str, str], NDArray[np.floating]] = {}
        self._f64: dict[tuple[str, str], _Centred] = {}
        self._lin: dict[tuple[str, str], _LinearStats] = {}
        self.n_computed = 0  # Gram stacks computed (not loaded) by this instance
        # (model, task) -> (hidden-states callable, metadata) given to ensure(): recomputes a corrupt file
        self._sources: dict[tuple[str, str], tuple[Callable[[], ArrayLike], Mapping[str, Any] | None]] = {}

    # ---- keys and paths ------------------------------------------------------------------
    def path(self, model: str, task: str) -> Path | None:
        """File of one (model, task) entry, or None for a memory-only cache."""
        if self.directory is None:
            return None
        return self.directory / quote(str(model), safe="-_.") / f"{quote(str(task), safe='-_.')}.safetensors"

    def __contains__(self, key: tuple[str, str]) -> bool:
        model, task = key
        p = self.path(model, task)
        return key in self._mem or (p is not None and p.exists())

    # ---- write ---------------------------------------------------------------------------
    def put(self, model: str, task: str, grams: ArrayLike, *, metadata: Mapping[str, Any] | None = None) -> None:
        """Store a ``(n_layers, n, n)`` stack of Grams (any float dtype; stored in ``storage_dtype``).

        The Grams may be raw (``X X^T``) or centred: readers re-centre them. The caller's array
        is copied, never kept.

        Raises:
            ValueError: not a 3-D stack of square matrices.
        """
        self._put(model, task, grams, metadata=metadata, owned=False)

    def _put(self, model: str, task: str, grams: ArrayLike, *, metadata: Mapping[str, Any] | None, owned: bool) -> None:
        if isinstance(grams, np.ndarray) and grams.dtype in (np.float32, np.float64) and grams.ndim == 3:
            G = grams  # read only below
        else:
            G = as_float64(grams, "grams", ndim=3)
            owned = True
        if G.shape[1] != G.shape[2]:
            raise ValueError(f"grams must have shape (n_layers, n, n), got {G.shape}")
        stored = G if (owned and G.dtype == self.storage_dtype) else G.astype(self.storage_dtype)
        p = self.path(model, task)
        if p is not None:
            bad = np.flatnonzero(~np.isfinite(np.diagonal(G, axis1=1, axis2=2)).all(axis=0)).tolist()
            meta = {
                "format": self.FORMAT,
                "n": str(G.shape[1]),
                "n_layers": str(G.shape[0]),
                "nonfinite_rows": json.dumps(bad),
            }
            meta.update({str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
            tensors = {f"layer_{i:03d}": np.ascontiguousarray(stored[i]) for i in range(G.shape[0])}
            with atomic_path(p) as tmp:
                save_file(tensors, str(tmp), metadata=meta)
        _put_lru(self._mem, (model, task), stored, self.max_in_memory)

    # ---- read ----------------------------------------------------------------------------
    def metadata(self, model: str, task: str) -> dict[str, str]:
        """The string metadata stored with an entry on disk (``KeyError`` if absent)."""
        p = self.path(model, task)
        if p is None or not p.exists():
            raise KeyError(f"no cached Grams on disk for model={model!r}, task={task!r}")
        with safe_open(str(p), framework="np") as f:
            return dict(f.metadata() or {})

    def check(self, model: str, task: str) -> dict[str, str]:
        """Check the file of an entry without reading its tensors: whole safetensors (header and
        length, :func:`layerwise.cache.safetensors_format`), format tag :attr:`FORMAT`, and
        ``n_layers`` tensors ``layer_000 ...`` of shape ``(n, n)`` as its metadata says.

        Returns:
            dict: the file's string metadata.

        Raises:
            FileNotFoundError: no file (or a memory-only cache).
            CorruptArtefact: a check fails (the reason names it).
        """
        p = self.path(model, task)
        if p is None:
            raise FileNotFoundError(f"memory-only Gram cache: no file for model={model!r}, task={task!r}")
        safetensors_format(p)
        try:
            with safe_open(str(p), framework="np") as f:
                meta = dict(f.metadata() or {})
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            if meta.get("format") != self.FORMAT:
                raise CorruptArtefact(p, f"format tag {meta.get('format')!r}, expected {self.FORMAT!r}")
            n, n_layers = int(meta["n"]), int(meta["n_layers"])
            json.loads(meta["nonfinite_rows"])
        except CorruptArtefact:
            raise
        except Exception as exc:
            raise CorruptArtefact(p, f"unreadable Gram metadata: {type(exc).__name__}: {exc}") from None
        want = {f"layer_{i:03d}": (n, n) for i in range(n_layers)}
        if shapes != want:
            raise CorruptArtefact(p, f"tensors {sorted(shapes.items())[:3]}... do not match n={n}, n_layers={n_layers}")
        return meta

    def _read(self, model: str, task: str) -> NDArray[np.floating]:
        """Read and verify an entry's file: :meth:`check`, then its non-finite diagonal entries must be
        exactly the recorded ``nonfinite_rows`` (a content check of the values)."""
        p = self.path(model, task)
        meta = self.check(model, task)
        try:
            tensors = load_file(str(p))
        except Exception as exc:
            raise CorruptArtefact(p, f"unreadable Grams: {type(exc).__name__}: {exc}") from None
        G = np.stack([tensors[k] for k in sorted(tensors)])
        bad = np.flatnonzero(~np.isfinite(np.diagonal(G, axis1=1, axis2=2)).all(axis=0)).tolist()
        if bad != json.loads(meta["nonfinite_rows"]):
            raise CorruptArtefact(p, f"non-finite rows {bad[:5]}, the file records {meta['nonfinite_rows'][:40]}")
        return G

    def _load(self, model: str, task: str) -> NDArray[np.floating]:
        key = (model, task)
        if key in self._mem:
            G = self._mem[key]
            _put_lru(self._mem, key, G, self.max_in_memory)  # mark as recently used
            return G
        p = self.path(model, task)
        if p is None or not p.exists():
            raise KeyError(f"no cached Grams for model={model!r}, task={task!r}")
        try:
            G = self._read(model, task)
        except CorruptArtefact as err:
            if key not in self._sources:
                raise
            discard_corrupt(err)  # reported with its path, removed, recomputed from the states
            hidden, metadata = self._sources[key]
            self.ensure(model, task, hidden, metadata=metadata)
            return self._mem[key]
        _put_lru(self._mem, key, G, self.max_in_memory)
        return G

    def _float64(self, model: str, task: str) -> _Centred:
        """Float64, re-centred Grams with their squared norms (memoised with the entry)."""
        key = (model, task)
        G = self._load(model, task)
        memo = self._f64.get(key)
        if memo is None or memo.stored is not G:
            F = recentre_float64(G)  # finite examples only; NaN rows stay NaN
            memo = _Centred(stored=G, grams=F, norms=np.einsum("lij,lij->l", F, F), finite=_all_finite(G))
            _put_lru(self._f64, key, memo, self.max_in_memory)
        return memo

    def _linear_stats(self, model: str, task: str) -> _LinearStats:
        """Stored Grams with what linear CKA needs to centre them implicitly (memoised).

        For a stored (float32- or float64-rounded) Gram ``A`` with row sums ``a`` and total
        ``s``, ``<H A H, H B H> = <A, B> - 2 a.b / n + s_A s_B / n^2`` exactly; so linear CKA
        needs only ``a``, ``s`` and one inner product per comparison, accumulated in float64
        straight from the stored values (products of two float32 numbers are exact in float64),
        with no float64 copy and no re-centring pass. Since the stored Grams are centred up
        to rounding, ``a`` is tiny and the correction terms cancel nothing of significance.

        Returns:
            :class:`_LinearStats` ``(stored, row_sums a (L, n), totals s (L,), |H A H|_F^2 (L,), finite)``.
        """
        key = (model, task)
        G = self._load(model, task)
        memo = self._lin.get(key)
        if memo is None or memo.stored is not G:
            L, n = G.shape[0], G.shape[1]
            stats = [_gram_stats64(G[i]) for i in range(L)]  # row sums and |A|_F^2, one pass
            a = np.stack([r for r, _ in stats]) if L else np.empty((0, n))  # (L, n)
            s = a.sum(axis=1)
            raw = np.array([q for _, q in stats])
            norms = raw - 2.0 * np.einsum("li,li->l", a, a) / n + s * s / (n * n)
            memo = _LinearStats(stored=G, row_sums=a, totals=s, norms=norms, finite=_all_finite(G))
            _put_lru(self._lin, key, memo, self.max_in_memory)
        return memo

    def get(self, model: str, task: str, layer: int | None = None) -> NDArray[np.float64]:
        """Cached Grams, float64 and double-centred: ``(n_layers, n, n)``, or ``(n, n)`` for one ``layer``.

        Each layer is centred over its finite examples (``H K H``, Kornblith et al. 2019, Eq. 3);
        a non-finite example keeps its NaN row and column. The result is a fresh array.

        Raises:
            KeyError: nothing cached for (model, task).
        """
        F = self._float64(model, task).grams
        return F.copy() if layer is None else F[layer].copy()

    def ensure(
        self,
        model: str,
        task: str,
        hidden: ArrayLike | Callable[[], ArrayLike],
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> bool:
        """Make sure the Grams of (model, task) are cached; compute them from ``hidden`` if missing.

        Nothing is returned, so a hit costs only a file-existence check and a miss no float64
        copy; :meth:`get` reads the Grams.

        Args:
            hidden: ``(n_layers, n, d)`` hidden states, or a zero-argument callable returning
                them (called only on a miss).

        A file on disk that fails :meth:`check` is reported with its path, removed and recomputed;
        when ``hidden`` is a callable it is remembered, so a file found corrupt later, when its
        values are read, is recomputed too.

        Returns:
            bool: True if the Grams were computed now, False if they were already cached.
        """
        if callable(hidden):
            self._sources[(model, task)] = (hidden, metadata)
        if (model, task) in self._mem:
            return False
        p = self.path(model, task)
        if p is not None and p.exists():
            try:
                self.check(model, task)
                return False
            except CorruptArtefact as err:
                discard_corrupt(err)
        H = hidden() if callable(hidden) else hidden
        # float32 storage: float32 products of column-shifted states (layerwise.similarity.grams, "Precision")
        G = gram_products_float32(H) if self.storage_dtype == np.float32 else centered_grams(H)
        self.n_computed += 1
        self._put(model, task, G, metadata=metadata, owned=True)
        return True

    def compare(
        self,
        model_a: str,
        model_b: str,
        task: str,
        *,
        measure: str | Measure = "linear_cka",
        layers: Iterable[int] | None = None,
        **options: Any,
    ) -> NDArray[np.float64]:
        """A Gram-form measure between two cached models for every layer of ``task``.

        Non-finite examples (NaN Gram rows) are dropped jointly per layer, with a warning.

        Returns:
            np.ndarray: ``(n_layers,)`` float64 (or one value per requested layer).

        Raises:
            KeyError: unknown measure, or a model not cached. ValueError: measure needs features,
                Grams of different sizes.
        """
        m = get_measure(measure)
        SA, SB = self._load(model_a, task), self._load(model_b, task)
        if SA.shape[1:] != SB.shape[1:]:
            raise ValueError(
                f"cached Grams of {model_a!r} and {model_b!r} for task {task!r} have different "
                f"numbers of examples: {SA.shape[1]} and {SB.shape[1]}"
            )
        idx = list(range(min(SA.shape[0], SB.shape[0])) if layers is None else layers)
        if m.name == "linear_cka" and not options:
            a, b = self._linear_stats(model_a, task), self._linear_stats(model_b, task)
            if a.finite and b.finite:
                # fast path: each comparison is one O(n^2) inner product of the stored Grams,
                # centred implicitly (see _linear_stats; Kornblith et al. 2019, Eq. 2-3)
                n = a.stored.shape[1]
                out = []
                for i in idx:
                    if a.norms[i] <= 0.0 or b.norms[i] <= 0.0:
                        raise constant_error(f"layer {i} of {model_a if a.norms[i] <= 0.0 else model_b!r}")
                    xy = inner64(a.stored[i], b.stored[i])
                    xy += -2.0 * float(a.row_sums[i] @ b.row_sums[i]) / n + float(a.totals[i] * b.totals[i]) / (n * n)
                    out.append(xy / math.sqrt(a.norms[i] * b.norms[i]))
                return np.array(out, dtype=np.float64)
        GA, GB = self._float64(model_a, task).grams, self._float64(model_b, task).grams
        return np.array([m.from_grams(GA[i], GB[i], **options) for i in idx], dtype=np.float64)
