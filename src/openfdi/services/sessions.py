"""Web console sessions: sign-in with the one password check of openfdi, look-up, sign-out.

The browser holds a random token in an HttpOnly cookie; the database holds only its SHA-256
(a leaked database holds no usable session). The CSRF token of a session is derived from the
session token by HMAC, so it needs no storage and changes with every sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select

from openfdi.services import identity
from openfdi.services.runtime import Runtime
from openfdi.store.crypto import token_digest
from openfdi.store.tables import ConsoleSessionRow, InstanceRow, ProjectRow

_CSRF_CONTEXT = b"openfdi-console-csrf"


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    user_id: str
    user_name: str
    project_id: str
    project_name: str
    expires_at_ms: int


def sign_in(
    rt: Runtime, *, user_name: str, password: str, client_address: str | None
) -> tuple[str, ConsoleSession]:
    """(token for the cookie, session), or the errors of `identity.sign_in_with_password`
    (AuthenticationFailed, SignInThrottled): the same check and throttle as the API's."""
    user = identity.sign_in_with_password(
        rt, user_name=user_name, password=password, client_address=client_address
    )
    token = secrets.token_urlsafe(32)
    now = rt.clock_ms()
    expires = now + rt.settings.token_ttl_seconds * 1000
    with rt.db.write() as session:
        # Expired sessions go with each sign-in: the table stays as small as the live ones.
        session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.expires_at <= now))
        session.add(
            ConsoleSessionRow(
                digest=token_digest(token),
                user_id=user.user_id,
                project_id=user.project_id,
                user_name=user.user_name,
                created_at=now,
                expires_at=expires,
            )
        )
    return token, ConsoleSession(
        user.user_id, user.user_name, user.project_id, user.project_name, expires
    )


_LOOKUP = select(
    ConsoleSessionRow.user_id,
    ConsoleSessionRow.user_name,
    ConsoleSessionRow.project_id,
    ProjectRow.name,
    ConsoleSessionRow.expires_at,
).join(ProjectRow, ProjectRow.id == ConsoleSessionRow.project_id)


def session_for(rt: Runtime, token: str | None) -> ConsoleSession | None:
    """The live session of a cookie's token, or None (unknown, signed out or expired)."""
    if not token or len(token) > 128:
        return None
    with rt.db.lookup() as conn:
        row = conn.execute(_LOOKUP.where(ConsoleSessionRow.digest == token_digest(token))).first()
    if row is None or row.expires_at <= rt.clock_ms():
        return None
    return ConsoleSession(row.user_id, row.user_name, row.project_id, row.name, row.expires_at)


def sign_out(rt: Runtime, token: str | None) -> None:
    if not token:
        return
    with rt.db.write() as session:
        session.execute(
            delete(ConsoleSessionRow).where(ConsoleSessionRow.digest == token_digest(token))
        )


def csrf_token(session_token: str) -> str:
    """The CSRF token that every form of this session carries (HMAC of the session token)."""
    return hmac.new(session_token.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def csrf_ok(session_token: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(csrf_token(session_token), sent or "")


def instances_of(rt: Runtime, project_id: str) -> list[tuple[str, str]]:
    """(id, name) of the project's instances, oldest first: the console's instance picker."""
    with rt.db.read() as session:
        rows = session.execute(
            select(InstanceRow.id, InstanceRow.name)
            .where(InstanceRow.project_id == project_id)
            .order_by(InstanceRow.created_at, InstanceRow.id)
        ).all()
    return [(r.id, r.name) for r in rows]
