"""The README's limits table and error-code list are what the code says (generated, not hand-kept)."""

from __future__ import annotations

from tests.readme_reference import README, error_table, limits_table, render


def test_the_readme_sections_are_generated_from_the_code() -> None:
    text = README.read_text()
    assert render(text) == text, "README.md is stale: run `python -m tests.readme_reference`"


def test_every_limit_and_code_is_in_the_readme() -> None:
    text = README.read_text()
    assert limits_table() in text and error_table() in text
    assert "`validation_error` | 422" in text and "`unsupported_media_type` | 415" in text
