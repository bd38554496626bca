"""Representational similarity measures: the CKA family and the measures reviewers ask for.

Every measure compares two representations of the *same* ``n`` examples, ``X`` with shape
``(n, d1)`` and ``Y`` with shape ``(n, d2)`` (rows = examples, columns = features, e.g. the
last-prompt-token hidden states of one layer), and returns a float similarity (higher = more
similar; 1 for identical representations).

Measures (registry :data:`MEASURES`, call any by name with :func:`similarity`):

=====================  ==========================================================  ===========
name                   definition                                                   Gram form
=====================  ==========================================================  ===========
``linear_cka``         Kornblith et al. 2019, Eq. (4) (biased HSIC, Gretton 2005)   yes
``debiased_cka``       linear CKA with unbiased HSIC (Song et al. 2007, Eq. 5)      yes
``rbf_cka``            RBF kernel, bandwidth = median distance (Kornblith 2019)     yes
``debiased_rbf_cka``   RBF CKA with unbiased HSIC                                   yes
``minibatch_cka``      Nguyen, Raghu & Kornblith 2021, Eq. (2)-(3)                  yes
``svcca``              Raghu et al. 2017: SVD to 99 % variance, then mean CCA rho   yes
``pwcca``              Morcos et al. 2018, Eq. (1): projection-weighted CCA         no
``procrustes``         1 - d^2/2, orthogonal Procrustes on unit-norm (Ding 2021)    yes
``mutual_knn``         mutual k-NN alignment (Huh et al. 2024, Eq. 11)              yes
``rsa``                Spearman rho of dissimilarity matrices (Kriegeskorte 2008)   yes
=====================  ==========================================================  ===========

Modules (one concern each; everything public is re-exported here):

==================  ===========================================================================
``arrays``          float64 copies, joint dropping of non-finite rows, column centring, checks
``grams``           centred linear Grams (float64 and the cache's float32 product), U-centring
``cka``             HSIC; linear, debiased, RBF and minibatch CKA
``cca``             SVCCA and PWCCA
``procrustes``      orthogonal Procrustes similarity and distance
``knn``             mutual k-nearest-neighbour alignment
``rdm``             RSA (dissimilarity matrices) and the Spearman rank correlation
``registry``        :class:`Measure` entries with their invariances, lookup by name
``layers``          every layer of a pair of models at once (curves and layer-by-layer matrices)
``gram_cache``      :class:`GramCache`, Grams per (model, task) computed once and kept on disk
``reference``       slow, literal linear CKA and HSIC that the fast paths are tested against
==================  ===========================================================================

Gram reuse
    "Gram form = yes" means the measure is computed from the two *centred linear Gram
    matrices* ``K = H X X^T H`` alone (``n x n``, independent of ``d``), so a model's Gram per
    (task, layer) is computed once (:func:`centered_gram`, :class:`GramCache`) and reused by
    every comparison and every such measure.

NaN / inf
    A row (example) that is not finite in *either* matrix is dropped from *both* (never
    separately, which misaligns the examples -- the bug in the authors' ``cka.py``); the count is
    reported with a :class:`NonFiniteRowsWarning` and, where asked, in a :class:`RowFilter`.
    :func:`centered_gram` marks such rows with NaN rows/columns (the Gram stays ``n x n`` so it
    aligns with other models' Grams), and every Gram-form measure drops rows jointly from that mark.

Precision
    float64 throughout, except the float32 Gram products and storage of :class:`GramCache`
    (bounds in :mod:`layerwise.similarity.grams`).

Errors
    ``ValueError`` for mismatched numbers of rows, fewer rows than a measure needs (debiased
    HSIC needs n >= 4), all-constant features (zero variance: CKA is 0/0), wrong array ranks and
    bad options; ``KeyError`` (listing the valid names) for an unknown measure name.
"""

from __future__ import annotations

from .arrays import NonFiniteRowsWarning, RowFilter, as_float64, drop_nonfinite_rows, finite_rows
from .cca import pwcca, svcca, svcca_from_grams
from .cka import (
    cka_from_grams,
    debiased_cka,
    hsic,
    linear_cka,
    minibatch_cka,
    minibatch_cka_from_grams,
    rbf_cka,
    rbf_cka_from_grams,
)
from .grams import center_gram, centered_gram, centered_grams, unbiased_center_gram

# A module's ``__all__`` is the one list of its names: ``__all__`` below is built from them, and
# the modules re-exported whole are star-imported.
from . import cca, cka, gram_cache, knn, layers, procrustes, rdm, registry
from .gram_cache import *  # noqa: F403
from .knn import *  # noqa: F403
from .layers import *  # noqa: F403
from .procrustes import *  # noqa: F403
from .rdm import *  # noqa: F403
from .registry import *  # noqa: F403

__all__ = [
    "NonFiniteRowsWarning",
    "RowFilter",
    "as_float64",
    "finite_rows",
    "drop_nonfinite_rows",
    "centered_gram",
    "centered_grams",
    "center_gram",
    "unbiased_center_gram",
    *(name for name in cka.__all__ if name != "minibatches"),  # the minibatch splitter stays internal
    *(name for name in cca.__all__ if name != "n_components"),  # so does SVCCA's component count
    *procrustes.__all__,
    *knn.__all__,
    *rdm.__all__,
    *registry.__all__,
    *layers.__all__,
    *gram_cache.__all__,
]
