"""A missing real part skips a test on a developer's machine and fails it under CI=true."""

from __future__ import annotations

import pytest

from tests.fixtures.parts import missing_part, require_tool


def test_a_missing_part_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="promtool is missing: install it"):
        missing_part("promtool", "install it")


@pytest.mark.parametrize("value", ["true", "True", "1"])
def test_a_missing_part_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI=true: promtool is missing"):
        missing_part("promtool", "install it")


def test_require_tool_finds_what_is_on_path_and_fails_on_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert require_tool("sh", "Debian's dash").endswith("/sh")
    with pytest.raises(pytest.fail.Exception, match="no-such-qscore-tool is missing"):
        require_tool("no-such-qscore-tool", "nothing installs it")
