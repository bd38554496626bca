"""Generate the ``math_dataset`` task's problems with DeepMind's generator.

FLAN's ``math_dataset`` task (Wei et al. 2022, ICLR) uses the ``algebra__linear_1d`` module of the
Mathematics Dataset (Saxton et al. 2019, ICLR; package ``mathematics-dataset`` 1.0.1). This script
draws 6,000 distinct problems from seed 0 (train-difficulty range), with the length limits of
``mathematics_dataset.generate``, and writes them as JSON lines ``{"question", "answer"}`` to
``<out>/algebra__linear_1d.jsonl``.

Run as ``python math_dataset.py <out folder>`` with ``PYTHONHASHSEED=0`` (the generator's choice of
variable letters depends on it), in an environment with ``mathematics-dataset==1.0.1`` and
``sympy==1.5.1``; :func:`layerwise.sources.fetch_source` does this.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: problems to draw, and the file they go to (the source's one member).
N_PROBLEMS = 6000
OUT_FILE = "algebra__linear_1d.jsonl"


def main(out: str) -> None:
    """Write :data:`N_PROBLEMS` distinct ``linear_1d`` problems to ``out / OUT_FILE``."""
    import random

    import numpy as np
    from mathematics_dataset import generate_settings
    from mathematics_dataset.modules import algebra

    random.seed(0)
    np.random.seed(0)
    module = algebra.train(lambda entropy: entropy)["linear_1d"]
    seen, rows = set(), []
    while len(rows) < N_PROBLEMS:
        problem = module()
        q, a = str(problem.question), str(problem.answer)
        if len(q) > generate_settings.MAX_QUESTION_LENGTH or len(a) > generate_settings.MAX_ANSWER_LENGTH or q in seen:
            continue
        seen.add(q)
        rows.append({"question": q, "answer": a})
    with open(Path(out) / OUT_FILE, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
