"""Device and dtype logic of ``layerwise.models.compute_settings``, CUDA included, checked on CPU with mocks."""

import warnings
import pytest
import torch

from layerwise import models
from layerwise.models import ComputeSettings, compute_settings, cpu_bf16_supported


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_cuda_auto_is_bf16_with_sdpa_where_supported(fake_cuda):
    cs = compute_settings("auto", "auto", cuda_bf16=True)
    assert cs == ComputeSettings("cuda", "bfloat16", "sdpa")
    assert cs.torch_dtype is torch.bfloat16


def test_cuda_auto_falls_back_to_fp16_without_bf16(fake_cuda):
    cs = compute_settings("cuda:1", "auto", cuda_bf16=False)
    assert (cs.device, cs.dtype, cs.attn_implementation) == ("cuda:1", "float16", "sdpa")
    assert cs.key_parts() == {"device": "cuda", "dtype": "float16"}


def test_cuda_bf16_requested_without_support_is_an_error(fake_cuda):
    with pytest.raises(ValueError, match="does not support"):
        compute_settings("cuda", "bfloat16", cuda_bf16=False)


def test_cuda_float32_is_honoured(fake_cuda):
    assert compute_settings("cuda", "float32", cuda_bf16=True).dtype == "float32"


@pytest.mark.parametrize("native", [True, False])
def test_cpu_auto_is_float32_even_with_native_bf16(native):
    cs = compute_settings("cpu", "auto", cpu_bf16=native)  # bf16 moved CKA past the 1e-3 tolerance
    assert (cs.device, cs.dtype, cs.attn_implementation) == ("cpu", "float32", None)
    assert cs.key_parts() == {"device": "cpu", "dtype": "float32"}


def test_cpu_bfloat16_on_request_warns_without_native_support(monkeypatch):
    monkeypatch.setattr(models, "_cpu_flags", lambda: {"avx2", "avx512_bf16"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compute_settings("cpu", "bfloat16").dtype == "bfloat16"
    monkeypatch.setattr(models, "_cpu_flags", lambda: {"avx2", "fma"})
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    with pytest.warns(RuntimeWarning, match="emulated"):
        assert compute_settings("cpu", "bfloat16").dtype == "bfloat16"


def test_cpu_explicit_dtypes_are_honoured():
    assert compute_settings("cpu", "float32", cpu_bf16=True).dtype == "float32"
    assert compute_settings("cpu", "bfloat16", cpu_bf16=False).dtype == "bfloat16"


@pytest.mark.parametrize("flags, capability, want", [
    ({"avx512_bf16"}, "AVX512", True), ({"amx_bf16", "amx_tile"}, "AVX512", True),
    ({"avx2"}, "AVX2", False), (set(), "DEFAULT", False), (set(), "AMX", True),
])
def test_cpu_bf16_detection(flags, capability, want):
    assert cpu_bf16_supported(flags, capability) is want


def test_bad_dtype_names_the_choices():
    with pytest.raises(ValueError, match=r"dtype = 'fp8' is not valid; choose one of \['auto', 'float32', 'bfloat16'\]"):
        compute_settings("cpu", "fp8")
