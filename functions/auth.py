"""Entra ID bearer tokens for the HTTP API: the app authenticates and authorizes every call
itself (the routes are AuthLevel.ANONYMOUS: no function keys, no shared secret).

Authentication: `Authorization: Bearer <access token>`, a JWT signed with RS256 by one of the
keys the tenant publishes (`QSCORE_FUNCTIONS_AUTH_JWKS_URL`, fetched and cached by PyJWT's
PyJWKClient, refetched for an unknown key id), with the configured issuer and audience and not
expired (`exp`, 60 s leeway for clock skew). Authorization: submitting needs the app role
`QSCORE_FUNCTIONS_AUTH_SUBMIT_ROLE` (default `Score.Submit`) in the token's `roles`; a caller
is its `oid` (Entra's object id of the user or service principal), else its `sub`, and reads
only the requests it submitted (functions/http_api.py keys each request by its submitter).

Unconfigured (no issuer, audience or key-set URL) the API refuses every call: it never falls
back to open.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass

import azure.functions as func
import jwt

from functions.problems import problem

DEFAULT_SUBMIT_ROLE = "Score.Submit"
ALGORITHMS = ["RS256"]
LEEWAY_S = 60


@dataclass(frozen=True)
class AuthSettings:
    issuer: str | None = None
    audience: str | None = None
    jwks_url: str | None = None
    submit_role: str = DEFAULT_SUBMIT_ROLE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthSettings:
        values = os.environ if env is None else env
        return cls(
            issuer=values.get("QSCORE_FUNCTIONS_AUTH_ISSUER") or None,
            audience=values.get("QSCORE_FUNCTIONS_AUTH_AUDIENCE") or None,
            jwks_url=values.get("QSCORE_FUNCTIONS_AUTH_JWKS_URL") or None,
            submit_role=values.get("QSCORE_FUNCTIONS_AUTH_SUBMIT_ROLE") or DEFAULT_SUBMIT_ROLE,
        )

    @property
    def configured(self) -> bool:
        return bool(self.issuer and self.audience and self.jwks_url)


@dataclass(frozen=True)
class Caller:
    """Who called: `subject` is the token's oid (else sub), `roles` its app roles."""

    subject: str
    roles: frozenset[str]


class Refused(Exception):
    """A call the API refuses; `response()` is its problem+json answer."""

    def __init__(self, status: int, title: str, detail: str, *, code: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.code = status, title, detail, code

    def response(self) -> func.HttpResponse:
        headers = {}
        if self.status == 401:
            error = "invalid_token" if self.code != "unauthenticated" else "invalid_request"
            headers["WWW-Authenticate"] = f'Bearer error="{error}"'
        return problem(self.status, self.title, self.detail, code=self.code, headers=headers)


_key_sets: dict[str, jwt.PyJWKClient] = {}


def _key_set(url: str) -> jwt.PyJWKClient:
    """One cached key-set client per URL (keys cached for PyJWT's default 5 min)."""
    client = _key_sets.get(url)
    if client is None:
        client = _key_sets[url] = jwt.PyJWKClient(url, cache_keys=True, timeout=10)
    return client


def _unauthorized(detail: str, code: str = "invalid_token") -> Refused:
    return Refused(401, "Unauthorized", detail, code=code)


def _bearer(req: func.HttpRequest) -> str:
    header = req.headers.get("authorization")
    if not header:
        raise _unauthorized("send an Entra ID access token: Authorization: Bearer <token>", "unauthenticated")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be `Bearer <token>`", "unauthenticated")
    return token.strip()


async def authenticate(req: func.HttpRequest, settings: AuthSettings | None = None) -> Caller:
    """The caller of `req`, or Refused (401 for any token problem, 503 when the key set cannot
    be fetched or the app has no auth settings)."""
    settings = settings or AuthSettings.from_env()
    if not settings.configured:
        raise Refused(
            503,
            "Authentication not configured",
            "the API has no token issuer/audience",
            code="auth_not_configured",
        )
    token = _bearer(req)
    assert settings.jwks_url is not None
    try:
        # PyJWKClient fetches with urllib (blocking): off the event loop.
        key = await asyncio.to_thread(_key_set(settings.jwks_url).get_signing_key_from_jwt, token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=ALGORITHMS,
            audience=settings.audience,
            issuer=settings.issuer,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.PyJWKClientConnectionError as exc:
        raise Refused(503, "Token keys unavailable", str(exc), code="auth_unavailable") from None
    except jwt.ExpiredSignatureError:
        raise _unauthorized("the token has expired", "token_expired") from None
    except jwt.InvalidAudienceError:
        raise _unauthorized("the token is not for this API (audience)") from None
    except jwt.InvalidIssuerError:
        raise _unauthorized("the token is not from this tenant (issuer)") from None
    except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
        raise _unauthorized(f"invalid token: {exc}") from None
    subject = claims.get("oid") or claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise _unauthorized("the token names no caller (oid or sub)")
    roles = claims.get("roles") or []
    return Caller(
        subject, frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else frozenset()
    )


def require_role(caller: Caller, role: str) -> None:
    if role not in caller.roles:
        raise Refused(403, "Forbidden", f"the app role {role!r} is required", code="forbidden")
