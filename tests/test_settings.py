"""The one settings mechanism: typed parsing, one-line errors naming the variable, shared names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from qscore.settings import DEFAULT_REQUEST_QUEUE, SettingsError, settings_from_env


@dataclass(frozen=True, kw_only=True)
class Example:
    request_queue: str = DEFAULT_REQUEST_QUEUE
    servicebus_connection: str | None = None
    retries: int = 3
    enabled: bool = False
    path: Path | None = None
    queues: tuple[str, ...] = ()
    ratio: float = 0.5

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be >= 0")


def test_fields_read_prefixed_and_shared_variables() -> None:
    env = {
        "QSCORE_REQUEST_QUEUE": "q",
        "QSCORE_SERVICEBUS_CONNECTION": "Endpoint=sb://x",
        "QSCORE_X_RETRIES": "5",
        "QSCORE_X_ENABLED": "yes",
        "QSCORE_X_PATH": "/tmp/a",
        "QSCORE_X_QUEUES": "a, b,,c",
        "QSCORE_X_RATIO": "0.25",
    }
    settings = settings_from_env(Example, env, prefix="QSCORE_X_")
    assert settings == Example(
        request_queue="q",
        servicebus_connection="Endpoint=sb://x",
        retries=5,
        enabled=True,
        path=Path("/tmp/a"),
        queues=("a", "b", "c"),
        ratio=0.25,
    )


def test_defaults_empty_values_off_and_overrides() -> None:
    assert settings_from_env(Example, {"QSCORE_RETRIES": ""}) == Example()
    assert settings_from_env(Example, {"QSCORE_PATH": "off"}).path is None
    chosen = settings_from_env(Example, {"QSCORE_RETRIES": "5"}, overrides={"retries": 7, "ratio": None})
    assert (chosen.retries, chosen.ratio) == (7, 0.5)


def test_variables_map_fields_to_names_tried_in_order() -> None:
    variables = {"servicebus_connection": ("QSCORE_SERVICEBUS_CONNECTION", "ServiceBusConnection")}
    settings = settings_from_env(Example, {"ServiceBusConnection": "c"}, variables=variables)
    assert settings.servicebus_connection == "c"


@pytest.mark.parametrize(
    ("variable", "raw"),
    [("QSCORE_ENABLED", "ture"), ("QSCORE_RETRIES", "three"), ("QSCORE_RATIO", "1,5")],
)
def test_a_mistyped_value_is_one_line_naming_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from_env(Example, {variable: raw})
    message = str(caught.value)
    assert variable in message and repr(raw) in message and "\n" not in message


def test_a_rule_of_the_class_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="retries must be >= 0"):
        settings_from_env(Example, {"QSCORE_RETRIES": "-1"})
