"""layerwise.stats.shuffled_row_null: the per-layer shuffled-row null of the similarity table."""

from __future__ import annotations

import numpy as np
import pytest

from layerwise.similarity import centered_grams, linear_cka, similarity_by_layer_from_grams
from layerwise.stats import shuffled_row_null


@pytest.fixture(scope="module")
def stacks():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(3, 30, 12))  # (layers, n, d)
    B = A[:, :, :8] @ rng.normal(size=(8, 10)) + 0.5 * rng.normal(size=(3, 30, 10))
    return A, B, centered_grams(A), centered_grams(B)


def test_equals_the_mean_of_the_measure_on_row_shuffled_features(stacks):
    A, B, GA, GB = stacks
    rng = np.random.default_rng(0)
    perms = [rng.permutation(30) for _ in range(5)]
    null = shuffled_row_null("linear_cka", GA, GB, perms)
    assert null.shape == (3,) and null.dtype == np.float64
    direct = [np.mean([linear_cka(A[layer][p], B[layer]) for p in perms]) for layer in range(3)]
    np.testing.assert_allclose(null, direct, rtol=1e-10)
    observed = similarity_by_layer_from_grams(GA, GB, measure="linear_cka")
    assert np.all(null < observed)  # paired examples are more similar than shuffled ones


def test_identity_permutation_gives_the_observed_value(stacks):
    _, _, GA, GB = stacks
    ident = [np.arange(30)]
    for measure in ("linear_cka", "debiased_cka"):
        np.testing.assert_allclose(shuffled_row_null(measure, GA, GB, ident),
                                   similarity_by_layer_from_grams(GA, GB, measure=measure), rtol=1e-12)


def test_deterministic_given_the_permutations_and_errors(stacks):
    _, _, GA, GB = stacks
    p1 = [np.random.default_rng(7).permutation(30) for _ in range(3)]
    p2 = [np.random.default_rng(7).permutation(30) for _ in range(3)]
    assert np.array_equal(shuffled_row_null("debiased_cka", GA, GB, p1), shuffled_row_null("debiased_cka", GA, GB, p2))
    with pytest.raises(ValueError, match="perms is empty"):
        shuffled_row_null("linear_cka", GA, GB, [])
    with pytest.raises(ValueError, match=r"must both be \(n_layers, n, n\)"):
        shuffled_row_null("linear_cka", GA, GB[:2], p1)
    with pytest.raises(ValueError, match="needs the feature matrices"):
        shuffled_row_null("pwcca", GA, GB, p1)
    with pytest.raises(KeyError, match="valid names"):
        shuffled_row_null("no_such_measure", GA, GB, p1)
