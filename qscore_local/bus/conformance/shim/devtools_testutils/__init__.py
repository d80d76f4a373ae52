"""Stand-in for azure-sdk-tools' `devtools_testutils`, enough for the Service Bus queue and session tests.

The SDK's live tests import recorded-test base classes, a credential factory and ARM preparers from
here. Against the local endpoint there is nothing to record and no ARM: the base classes are
plain, `get_credential()` returns a token credential the endpoint's `$cbs` accepts, and the
preparers live in the shim's `servicebus_preparer`. Copied next to the downloaded tests at run
time by `qscore_local.bus.conformance`; never imported by qscore itself.
"""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken


class AzureRecordedTestCase:
    """The recorded-test base class: nothing to record against a local endpoint."""

    is_live = True

    @staticmethod
    def await_prepared_test(fn: Any) -> Any:
        # Recorded tests run coroutines on their own loop; here pytest-asyncio runs them.
        return fn


class AzureMgmtRecordedTestCase(AzureRecordedTestCase):
    pass


class _LocalTokenCredential:
    """A TokenCredential; the endpoint authorises by entity, not by the token's contents."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("qscore-local-token", int(time.time()) + 3600)

    def close(self) -> None:
        return None


class _LocalAsyncTokenCredential:
    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("qscore-local-token", int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> _LocalAsyncTokenCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


def get_credential(is_async: bool = False, **kwargs: Any) -> Any:
    return _LocalAsyncTokenCredential() if is_async else _LocalTokenCredential()


class AzureMgmtPreparer:
    """Base of ARM preparers; the shim's preparers override `__call__`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


class RandomNameResourceGroupPreparer(AzureMgmtPreparer):
    def __call__(self, fn: Any) -> Any:
        return fn


class PowerShellPreparer(RandomNameResourceGroupPreparer):
    pass


def set_custom_default_matcher(**kwargs: Any) -> None:
    return None
