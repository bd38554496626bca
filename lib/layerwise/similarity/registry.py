"""The measure registry: every similarity measure by name, with its invariances as data.

Each :class:`Measure` names the feature-form function, the Gram-form function (or None), the
default options, and the transforms it is invariant to, as declared facts that the property
tests check (one test per flag and measure). Transforms apply to one representation, ``X -> T(X)``:

=====================  =========================================================================
flag                   transform
=====================  =========================================================================
``orthogonal``         ``X Q`` for an orthogonal ``Q`` (rotations and reflections of the features)
``isotropic_scale``    ``c X`` for a scalar ``c > 0``
``translation``        ``X + 1 b^T`` (a constant offset per feature)
``permutation``        ``X P`` for a permutation matrix ``P`` (reordering the features)
``invertible_linear``  ``X A`` for any invertible ``A`` (Kornblith et al. 2019, Sec. 2.1)
=====================  =========================================================================

The flags describe the measure with its registered default options. Every measure is also
unchanged when the rows (examples) of ``X`` and ``Y`` are permuted *together* (minibatch CKA,
which shuffles rows into batches, exactly so only with one batch of all rows, otherwise in
distribution); that is part of what a measure is here, not a flag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from numpy.typing import ArrayLike

from . import cca, cka, knn, procrustes, rdm

__all__ = [
    "INVARIANCES",
    "Measure",
    "MEASURES",
    "measure_names",
    "get_measure",
    "similarity",
    "similarity_from_grams",
]

#: Names of the invariance flags of :class:`Measure`, in table order.
INVARIANCES: tuple[str, ...] = ("orthogonal", "isotropic_scale", "translation", "permutation", "invertible_linear")


@dataclass(frozen=True)
class Measure:
    """A registered similarity measure.

    Attributes:
        name: registry name.
        features: ``f(X, Y, **options) -> float`` on ``(n, d1)``, ``(n, d2)`` feature matrices.
        grams: ``f(Kx, Ky, **options) -> float`` on centred linear Grams ``(n, n)`` (``None`` if
            the measure needs the features, e.g. PWCCA).
        symmetric: ``m(X, Y) == m(Y, X)``.
        min_rows: fewer rows (after dropping non-finite ones) raise ``ValueError``.
        reference: the publication and equation the implementation follows.
        options: default keyword options passed to ``features``/``grams``, overridable per call
            (e.g. ``debiased=True`` for ``debiased_cka``).
        orthogonal, isotropic_scale, translation, permutation, invertible_linear: invariance to
            that transform of either input (see the module docstring); declared, and tested.
    """

    name: str
    features: Callable[..., float]
    grams: Callable[..., float] | None
    symmetric: bool = True
    min_rows: int = 2
    reference: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    orthogonal: bool = True
    isotropic_scale: bool = True
    translation: bool = True
    permutation: bool = True
    invertible_linear: bool = False

    @property
    def uses_grams(self) -> bool:
        """True if the measure can be computed from cached centred linear Grams."""
        return self.grams is not None

    @property
    def invariances(self) -> frozenset[str]:
        """The flags of :data:`INVARIANCES` that are set for this measure."""
        return frozenset(f for f in INVARIANCES if getattr(self, f))

    def __call__(self, X: ArrayLike, Y: ArrayLike, **options: Any) -> float:
        return self.features(X, Y, **{**self.options, **options})

    def from_grams(self, Kx: ArrayLike, Ky: ArrayLike, **options: Any) -> float:
        """Compute from centred linear Grams; ``ValueError`` if the measure needs features."""
        if self.grams is None:
            raise ValueError(f"measure {self.name!r} needs the feature matrices, not Grams")
        return self.grams(Kx, Ky, **{**self.options, **options})


MEASURES: dict[str, Measure] = {}


def _register(m: Measure) -> Measure:
    MEASURES[m.name] = m
    return m


def measure_names() -> list[str]:
    """Sorted names of the registered measures."""
    return sorted(MEASURES)


def get_measure(name: str | Measure) -> Measure:
    """The registered :class:`Measure` called ``name``; a :class:`Measure` is returned as is.

    Raises:
        KeyError: unknown name (the message names the value and lists the valid names).
    """
    if isinstance(name, Measure):
        return name
    try:
        return MEASURES[name]
    except KeyError:
        raise KeyError(
            f"unknown similarity measure {name!r}; valid names: {', '.join(measure_names())}"
        ) from None


def similarity(name: str | Measure, X: ArrayLike, Y: ArrayLike, **options: Any) -> float:
    """Similarity of ``X (n, d1)`` and ``Y (n, d2)`` under the registered measure ``name``.

    Raises:
        KeyError: unknown measure name (valid names listed). ValueError: see the measure.
    """
    return get_measure(name)(X, Y, **options)


def similarity_from_grams(name: str | Measure, Kx: ArrayLike, Ky: ArrayLike, **options: Any) -> float:
    """Similarity from two centred linear Grams ``(n, n)`` (see :func:`~layerwise.similarity.centered_gram`).

    Raises:
        KeyError: unknown name. ValueError: the measure needs features (PWCCA), or bad input.
    """
    return get_measure(name).from_grams(Kx, Ky, **options)


_register(Measure(
    "linear_cka", cka.linear_cka, cka.cka_from_grams,
    reference="Kornblith et al. 2019, Eq. (4) / Eq. (2)-(3) with linear kernel; biased HSIC",
))
_register(Measure(
    "debiased_cka", cka.linear_cka, cka.cka_from_grams, min_rows=4, options={"debiased": True},
    reference="Kornblith et al. 2019 with the unbiased HSIC_1 of Song et al. 2007, Eq. (5)",
))
_register(Measure(
    "rbf_cka", cka.rbf_cka, cka.rbf_cka_from_grams, options={"sigma": 1.0},
    reference="Kornblith et al. 2019, Sec. 3 / Eq. (2), RBF kernel, median-distance bandwidth",
))
_register(Measure(
    "debiased_rbf_cka", cka.rbf_cka, cka.rbf_cka_from_grams, min_rows=4, options={"sigma": 1.0, "debiased": True},
    reference="RBF CKA with the unbiased HSIC_1 of Song et al. 2007, Eq. (5)",
))
_register(Measure(
    "minibatch_cka", cka.minibatch_cka, cka.minibatch_cka_from_grams, min_rows=4,
    options={"batch_size": 256, "seed": 0},
    reference="Nguyen, Raghu & Kornblith 2021, Eq. (2)-(3)",
))
_register(Measure(
    "svcca", cca.svcca, cca.svcca_from_grams, options={"variance": 0.99},
    reference="Raghu et al. 2017, Sec. 2 (99% variance SVD, mean CCA correlation)",
))
# PWCCA weights the correlations by the neurons of one side: rotating that side changes them
_register(Measure(
    "pwcca", cca.pwcca, None, symmetric=False, options={"variance": 0.99}, orthogonal=False,
    reference="Morcos, Raghu & Bengio 2018, Eq. (1)-(2), after 99% variance SVD",
))
_register(Measure(
    "procrustes", procrustes.procrustes_similarity, procrustes.procrustes_similarity_from_grams,
    reference="1 - d^2/2, orthogonal Procrustes distance on unit-norm centred data "
    "(Schoenemann 1966; Ding et al. 2021; Williams et al. 2021)",
))
_register(Measure(
    "mutual_knn", knn.mutual_knn, knn.mutual_knn_from_grams, options={"k": 10},
    reference="Huh et al. 2024, Eq. (11), cosine on centred features",
))
_register(Measure(
    "rsa", rdm.rsa, rdm.rsa_from_grams, min_rows=3,
    reference="Kriegeskorte et al. 2008: Spearman rho of Euclidean RDMs",
))
