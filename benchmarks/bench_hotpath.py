"""Benchmark: the hot path (hidden-state extraction and LoRA training) against bare PyTorch loops.

All measurements run in one process, on the same model and on identical batches of real task
prompts of the default spec (a few training and test examples of each of its tasks), so only
ratios measured here mean something (the machine may be shared):

* (a) extraction: ``layerwise.extraction.prompt_hidden_states`` (body only, both poolings) against
  a bare ``model(**batch, output_hidden_states=True)`` loop over the same left-padded batches;
* (b) LoRA training: the library's ``Trainer`` (forward, backward, optimizer step, its loss on
  response tokens with logits at those positions only) against a bare loop
  (``model(**batch, labels=labels).loss``, backward, gradient clipping, AdamW step) with the same
  LoRA configuration, on the same batches in the same order; the first step of each is a warm-up
  and not timed;
* (c) effective GFLOP/s of each route from the model config (matmuls 2 x parameters per token,
  attention 4 x heads x head_dim x attended positions, the LM head only where it is computed;
  training = forward + backward of the activations, 2 x forward, base weights frozen), against
  ``torch.matmul`` GFLOP/s on the model's layer shapes, in float32 and bfloat16.

It also measures how far linear CKA moves when the states are computed in bfloat16 instead of
float32 (``layerwise.extraction.dtype_cka_shift``, PT against the random-init baseline).

Prints a table and writes ``benchmarks/results/bench_hotpath.json``. Not a test: no timing is
asserted. Usage::

    python benchmarks/bench_hotpath.py             # Gemma 3 270M, default-spec tasks
    python benchmarks/bench_hotpath.py --quick     # tiny random Gemma 3, seconds (for tests)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from layerwise.batching import batches, collate, encode, padding_fraction
from layerwise.extraction import dtype_cka_shift, prompt_hidden_states
from layerwise.models import compute_settings, cpu_bf16_supported, load_model, load_random_init, load_tokenizer
from layerwise.spec import load_spec
from layerwise.tasks import load_task
from layerwise.training import _trainer_class, training_config

RESULTS = Path(__file__).resolve().parent / "results" / "bench_hotpath.json"


# ------------------------------------------------------------------ FLOPs from the config
def _attended(n: int, window: int | None) -> int:
    """Sum over the positions t of a causal sequence of length n of the keys attended (t+1, capped)."""
    if window is None or window >= n:
        return n * (n + 1) // 2
    return window * (window + 1) // 2 + (n - window) * window


def forward_flops(config: Any, lengths: list[int], head_positions: int) -> float:
    """FLOPs of one forward pass over sequences of real lengths ``lengths`` (padding not counted).

    Matmuls: 2 x (q, k, v, o, gate, up, down parameters) per token and layer; attention:
    4 x heads x head_dim per attended key (QK^T and AV); LM head: 2 x hidden x vocab at
    ``head_positions`` positions.
    """
    d, ff = config.hidden_size, config.intermediate_size
    nh, nkv = config.num_attention_heads, config.num_key_value_heads
    hd = getattr(config, "head_dim", None) or d // nh
    per_token = 2 * (d * nh * hd + 2 * d * nkv * hd + nh * hd * d + 3 * d * ff)
    types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    window = getattr(config, "sliding_window", None)
    total = 0.0
    for n in lengths:
        for kind in types:
            w = window if kind == "sliding_attention" else None
            total += per_token * n + 4 * nh * hd * _attended(n, w)
    return total + 2.0 * d * config.vocab_size * head_positions


def gemm_gflops(config: Any, dtype: torch.dtype, m: int = 1024, seconds: float = 1.0) -> dict[str, float]:
    """torch.matmul GFLOP/s on the layer shapes of ``config`` (m rows of activations)."""
    d, ff = config.hidden_size, config.intermediate_size
    hd = getattr(config, "head_dim", None) or d // config.num_attention_heads
    shapes = {"qo": (m, d, config.num_attention_heads * hd), "mlp_up": (m, d, ff), "mlp_down": (m, ff, d)}
    out = {}
    for name, (a, k, b) in shapes.items():
        x, w = torch.randn(a, k, dtype=dtype), torch.randn(k, b, dtype=dtype)
        x @ w  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 2:
            x @ w
            n += 1
        out[name] = 2.0 * a * k * b * n / (time.perf_counter() - t0) / 1e9
    return out


# ------------------------------------------------------------------ data
def real_examples(spec_path: str, per_task: int, n_tasks: int | None) -> tuple[list[tuple[str, str]], list[str]]:
    """(train prompt/target pairs, test prompts): the first ``per_task`` of each default-spec task."""
    spec = load_spec(spec_path)
    d = spec.data
    train, test = [], []
    for task in list(spec.tasks)[:n_tasks]:
        dd = load_task(task, n_train=d.n_train, n_test=d.n_test, seed=d.seed, max_input_chars=d.max_input_chars,
                       templates=d.templates, chat_template=d.chat_template, allow_downsize=d.allow_downsize)
        tr, te = dd["train"], dd["test"]
        train += list(zip(tr["prompt"][:per_task], tr["target"][:per_task]))
        test += list(te["prompt"][:per_task])
    return train, test


# ------------------------------------------------------------------ (a) extraction
def bench_extraction(model: Any, tok: Any, prompts: list[str], batch_size: int) -> dict[str, Any]:
    items = [encode(tok, p) for p in prompts]
    lengths = [len(it.input_ids) for it in items]
    groups = batches(len(items), batch_size, lengths)  # the library's own grouping: identical batches
    device = next(model.parameters()).device
    tokens = sum(lengths)
    warm = [prompts[i] for i in groups[0]]
    prompt_hidden_states(model, tok, warm, batch_size=batch_size)  # warm-up (allocator, kernels)
    t0 = time.perf_counter()
    prompt_hidden_states(model, tok, prompts, batch_size=batch_size)
    lib_s = time.perf_counter() - t0
    padded = [collate([items[i] for i in g], tok.pad_token_id, with_labels=False) for g in groups]
    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in padded:
            model(**{k: v.to(device) for k, v in batch.items()}, output_hidden_states=True)
    bare_s = time.perf_counter() - t0
    cfg = model.config
    head_positions = sum(b["input_ids"].numel() for b in padded)  # the bare loop's head runs on every slot
    return {
        "tokens": tokens,
        "padding_fraction": padding_fraction(groups, lengths),
        "library_s": lib_s,
        "bare_s": bare_s,
        "library_tok_s": tokens / lib_s,
        "bare_tok_s": tokens / bare_s,
        "ratio": bare_s / lib_s,
        "library_gflop_s": forward_flops(cfg, lengths, 0) / lib_s / 1e9,
        "bare_gflop_s": forward_flops(cfg, lengths, head_positions) / bare_s / 1e9,
    }


# ------------------------------------------------------------------ (b) training
def bench_training(model_name: str, settings: Any, examples: list[tuple[str, str]], spec_path: str,
                   n_steps: int, cap_length: bool = True) -> dict[str, Any]:
    """Library Trainer vs bare loop: ``n_steps + 1`` optimizer steps each (first one untimed)."""
    from peft import get_peft_model
    from transformers import TrainerCallback

    tspec = load_spec(spec_path).training
    tok = load_tokenizer(model_name)
    bs = tspec.batch_size
    cap = tspec.max_length if cap_length else None  # byte-level tiny models have longer token counts
    items = [encode(tok, p, t, max_length=cap) for p, t in examples][: bs * (n_steps + 1)]
    groups = [list(range(i, min(i + bs, len(items)))) for i in range(0, len(items), bs)]
    lengths = [len(it.input_ids) for it in items]
    timed = [i for g in groups[1:] for i in g]
    timed_tokens = sum(lengths[i] for i in timed)
    response_positions = sum(lengths[i] - it.n_prompt for i, it in ((i, items[i]) for i in timed))

    # library: its Trainer subclass, fed the batches in order (sequential sampler)
    class Sequential(_trainer_class()):
        def _get_train_sampler(self, train_dataset=None):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

    torch.manual_seed(tspec.seed)
    model = load_model(model_name, device=settings.device, dtype=settings.dtype)
    model.train()
    with tempfile.TemporaryDirectory() as tmp:
        lora, args = training_config(tspec, model, output_dir=Path(tmp), device=settings.device, progress=False)
        args.max_steps = len(groups)
        args.save_strategy = "no"
        peft_model = get_peft_model(model, lora)
        trainer = Sequential(model=peft_model, args=args, train_dataset=list(items),
                             data_collator=lambda b: collate(b, tok.pad_token_id), callbacks=[Clock()])
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        trainer.train()
    lib_s = marks[-1] - marks[0]
    lib_losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    del trainer, peft_model, model

    # bare: same LoRA config and seed, AdamW, the HF model's own loss (logits at every position)
    torch.manual_seed(tspec.seed)
    model = load_model(model_name, device=settings.device, dtype=settings.dtype)
    model.train()
    peft_model = get_peft_model(model, lora)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tspec.learning_rate, weight_decay=0.0)
    batches_ = [collate([items[i] for i in g], tok.pad_token_id) for g in groups]
    bare_marks, bare_losses = [], []
    for batch in batches_:
        batch = {k: v.to(settings.device) for k, v in batch.items()}
        loss = peft_model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        bare_losses.append(float(loss.detach()))
        bare_marks.append(time.perf_counter())
    bare_s = bare_marks[-1] - bare_marks[0]
    cfg = model.config
    bare_head = sum(batches_[j]["input_ids"].numel() for j in range(1, len(batches_)))
    lib_flops = 2 * forward_flops(cfg, [lengths[i] for i in timed], response_positions)
    bare_flops = 2 * forward_flops(cfg, [lengths[i] for i in timed], bare_head)
    return {
        "steps_timed": len(groups) - 1,
        "batch_size": bs,
        "tokens": timed_tokens,
        "padding_fraction": padding_fraction(groups[1:], lengths),
        "library_s": lib_s,
        "bare_s": bare_s,
        "library_tok_s": timed_tokens / lib_s,
        "bare_tok_s": timed_tokens / bare_s,
        "ratio": bare_s / lib_s,
        "library_gflop_s": lib_flops / lib_s / 1e9,
        "bare_gflop_s": bare_flops / bare_s / 1e9,
        "library_losses": lib_losses,
        "bare_losses": bare_losses,
    }


# ------------------------------------------------------------------ bf16 vs fp32 CKA
def bench_cka_shift(model_name: str, tok: Any, prompts: list[str], batch_size: int) -> dict[str, Any]:
    """Linear CKA of PT vs the random-init baseline from fp32 states and from bf16 states."""
    ref, low, seconds = {}, {}, {}
    for dtype, store in (("float32", ref), ("bfloat16", low)):
        t0 = time.perf_counter()
        for role, loader in (("PT", lambda: load_model(model_name, device="cpu", dtype=dtype)),
                             ("random-init", lambda: load_random_init(model_name, device="cpu", dtype=dtype))):
            store[role] = prompt_hidden_states(loader(), tok, prompts, batch_size=batch_size)["last"]
        seconds[dtype] = time.perf_counter() - t0
    shift = dtype_cka_shift(ref, low)
    return {"n_prompts": len(prompts), "max_linear_cka_shift": shift["max_shift"],
            "shift_per_layer": shift["shift"][0].tolist(),
            "min_self_cka": {m: float(v.min()) for m, v in shift["self_cka"].items()},
            "min_cka_fp32_vs_bf16": shift["min_self_cka"], "within_1e-3": shift["max_shift"] <= 1e-3,
            "extraction_seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny random Gemma 3, a few prompts (seconds)")
    parser.add_argument("--model", default=None, help="model string (default gemma-3-270m; tiny-random-gemma3 with --quick)")
    parser.add_argument("--spec", default="specs/default.yaml", help="spec whose tasks give the prompts")
    parser.add_argument("--per-task", type=int, default=None, help="examples per task (default 5; 4 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default 6; 1 with --quick)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="compute dtype of the extraction/training routes (auto: bf16 only on CPUs with native bf16)")
    parser.add_argument("--cka-prompts", type=int, default=None, help="prompts for the bf16 CKA shift (default 12; 0 = skip)")
    parser.add_argument("--out", default=str(RESULTS), help="JSON output file")
    args = parser.parse_args(argv)
    model_name = args.model or ("tiny-random-gemma3" if args.quick else "gemma-3-270m")
    per_task = args.per_task or (4 if args.quick else 5)
    steps = args.steps or (1 if args.quick else 6)
    n_cka = args.cka_prompts if args.cka_prompts is not None else (6 if args.quick else 12)
    spec = load_spec(args.spec)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    settings = compute_settings(spec.extraction.device, args.dtype)
    train, test = real_examples(args.spec, per_task, 4 if args.quick else None)
    tok = load_tokenizer(model_name)
    model = load_model(model_name, device=settings.device, dtype=settings.dtype)
    cfg = model.config

    print(f"hot path of {model_name}: {settings.dtype} on {settings.device}, {torch.get_num_threads()} threads, "
          f"cpu bf16 native: {cpu_bf16_supported()} ({torch.backends.cpu.get_cpu_capability()})")
    gemm = {"float32": gemm_gflops(cfg, torch.float32, seconds=0.3 if args.quick else 1.0),
            "bfloat16": gemm_gflops(cfg, torch.bfloat16, seconds=0.3 if args.quick else 1.0)}
    extraction = bench_extraction(model, tok, test, spec.extraction.batch_size)
    print(f"extraction: library {extraction['library_tok_s']:.1f} tok/s, bare {extraction['bare_tok_s']:.1f} tok/s", flush=True)
    del model
    training = bench_training(model_name, settings, train, args.spec, steps, cap_length=not args.quick)
    print(f"training: library {training['library_tok_s']:.1f} tok/s, bare {training['bare_tok_s']:.1f} tok/s", flush=True)
    short = sorted(test, key=len)[:n_cka]
    cka = bench_cka_shift(model_name, tok, short, spec.extraction.batch_size) if n_cka >= 4 else None

    best = {k: max(v.values()) for k, v in gemm.items()}
    print(f"{'route':<22}{'tok/s':>9}{'GFLOP/s':>9}{'of fp32 GEMM':>14}{'padding':>9}")
    for label, r in (("extraction", extraction), ("training", training)):
        for who in ("library", "bare"):
            g = r[f"{who}_gflop_s"]
            print(f"{label + ' ' + who:<22}{r[f'{who}_tok_s']:>9.1f}{g:>9.1f}{g / best['float32']:>13.0%}"
                  f"{r['padding_fraction']:>9.1%}")
        print(f"{label + ' ratio lib/bare':<22}{r['ratio']:>8.2f}x")
    for dt, shapes in gemm.items():
        print(f"GEMM {dt:<9} " + "  ".join(f"{k} {v:.1f}" for k, v in shapes.items()) + " GFLOP/s")
    print(f"bf16/fp32 GEMM ratio: {best['bfloat16'] / best['float32']:.2f}")
    if cka:
        print(f"bf16 vs fp32 linear CKA (PT vs random-init, {cka['n_prompts']} prompts): max shift "
              f"{cka['max_linear_cka_shift']:.1e} ({'within' if cka['within_1e-3'] else 'ABOVE'} 1e-3), "
              f"min CKA(fp32, bf16 states) {cka['min_cka_fp32_vs_bf16']:.5f}")
    print("Library losses", [round(x, 4) for x in training["library_losses"]],
          "| bare losses (mean over all label tokens, same batches)", [round(x, 4) for x in training["bare_losses"]])

    out = {
        "model": model_name, "dtype": settings.dtype, "device": settings.device, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_native": cpu_bf16_supported(), "machine": platform.machine(), "quick": args.quick,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "extraction": extraction, "training": training, "gemm_gflop_s": gemm,
        "gemm_bf16_over_fp32": best["bfloat16"] / best["float32"], "cka_bf16_shift": cka,
        # read by `layerwise plan` (layerwise.plan.throughput) to estimate a run's time on this machine
        "train_tokens_per_s": training["library_tok_s"], "forward_tokens_per_s": extraction["library_tok_s"],
        "gemm_tflops": best[settings.dtype] / 1000,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o)))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
