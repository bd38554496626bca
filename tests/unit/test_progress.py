"""Token progress bars and the padding fraction (``layerwise.batching``)."""

import io
import sys

from layerwise.batching import batches, padding_fraction, token_progress


def test_non_tty_log_gets_lines_not_carriage_returns(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    bar = token_progress(1000, "train sft")
    for _ in range(10):
        bar.update(100)
    bar.close()
    text = buf.getvalue()
    assert "\r" not in text and text.endswith("\n")
    assert len(text.splitlines()) <= 3  # first line, (maybe one refresh), the final line
    assert "tok/s" in text and "1.00k/1.00k" in text


def test_padding_fraction():
    assert padding_fraction([[0, 1]], [3, 3]) == 0.0
    assert abs(padding_fraction([[0, 1]], [1, 3]) - 1 / 3) < 1e-12
    lengths = [5, 1, 4, 2]
    # grouping by length pads less than the input order
    assert padding_fraction(batches(4, 2, lengths), lengths) < padding_fraction(batches(4, 2), lengths)
