"""Azurite (the Azure Storage emulator, from npm) on loopback: the real Blob part locally."""

from qscore_local.azurite.launcher import (
    AzuriteEndpoint,
    AzuriteNotInstalled,
    AzuriteStartError,
    LocalAzurite,
    connection_string,
    find_azurite_blob,
)

__all__ = [
    "AzuriteEndpoint",
    "AzuriteNotInstalled",
    "AzuriteStartError",
    "LocalAzurite",
    "connection_string",
    "find_azurite_blob",
]
