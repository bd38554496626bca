"""The chapters' references sections."""

import pytest

from layerwise.references import REFERENCES, references_markdown


def test_paper_first_then_keys_in_order_without_repeats():
    md = references_markdown("kornblith2019", "zhao2024", "kornblith2019", "hu2022").splitlines()
    assert len(md) == 3
    assert md[0].startswith("- Zheng Zhao") and "Kornblith" in md[1] and "LoRA" in md[2]


def test_unknown_key_names_it_and_the_valid_keys():
    with pytest.raises(KeyError, match=r"unknown key\(s\) \['kornblith'\]; valid: .*kornblith2019"):
        references_markdown("kornblith")


def test_every_entry_has_a_short_and_a_full_form():
    for key, (short, full) in REFERENCES.items():
        assert short and full and any(ch.isdigit() for ch in short), key
