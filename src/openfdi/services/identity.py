"""Projects, instances, users, AK/SK credentials and tokens: bootstrap, admin, authentication."""

from __future__ import annotations

import math
import secrets
import string
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openfdi.domain.ids import is_hex_id, is_instance_id, new_hex_id, new_instance_id
from openfdi.domain.scope import Principal, Scope
from openfdi.errors import (
    AuthenticationFailed,
    InstanceNotFound,
    InvalidParameters,
    ProjectMismatch,
    SignInThrottled,
    TokenMustBeUpdated,
)
from openfdi.services.runtime import Runtime
from openfdi.store import signin_throttle
from openfdi.store.crypto import (
    dummy_password_hash,
    hash_password,
    password_needs_rehash,
    token_digest,
    verify_password,
)
from openfdi.store.db import Database
from openfdi.store.signin_throttle import Brake, ThrottleKey
from openfdi.store.tables import (
    CredentialRow,
    InstanceRow,
    ProjectRow,
    TokenRow,
    UserRow,
)

_AK_ALPHABET = string.ascii_uppercase + string.digits
_SK_ALPHABET = string.ascii_letters + string.digits


def new_access_key() -> str:
    """20 upper-case alphanumerics, the shape of a Huawei Cloud AK."""
    return "".join(secrets.choice(_AK_ALPHABET) for _ in range(20))


def new_secret_key() -> str:
    return "".join(secrets.choice(_SK_ALPHABET) for _ in range(40))


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """What the first start created; the password and SK are shown exactly once."""

    project_id: str
    project_name: str
    instance_id: str
    user: str
    password: str
    ak: str
    sk: str


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    ak: str
    project_id: str
    created_at: int
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at_ms: int
    issued_at_ms: int
    project_id: str
    project_name: str
    user_id: str
    user_name: str


def bootstrap(rt: Runtime) -> Bootstrap | None:
    """On an empty database, create one project, instance, user and AK/SK; else do nothing.

    The OPENFDI_BOOTSTRAP_* settings fix those values instead of random ones.
    """
    s = rt.settings
    with rt.db.write() as session:
        if session.scalar(select(func.count()).select_from(ProjectRow)):
            return None
        project_id = s.bootstrap_project_id or new_hex_id()
        instance_id = s.bootstrap_instance_id or new_instance_id()
        if not is_hex_id(project_id):
            raise ValueError("OPENFDI_BOOTSTRAP_PROJECT_ID must be 32 lowercase hex characters")
        if not is_instance_id(instance_id):
            raise ValueError("OPENFDI_BOOTSTRAP_INSTANCE_ID must be a hyphenated lowercase UUID")
        user = s.bootstrap_user or "admin"
        password = s.bootstrap_password or secrets.token_urlsafe(12)
        ak = s.bootstrap_ak or new_access_key()
        sk = s.bootstrap_sk or new_secret_key()
        now = rt.clock_ms()
        session.add(ProjectRow(id=project_id, name=s.bootstrap_project_name, created_at=now))
        session.flush()
        session.add(
            InstanceRow(id=instance_id, project_id=project_id, name="default", created_at=now)
        )
        session.add(
            UserRow(
                id=new_hex_id(),
                project_id=project_id,
                name=user,
                password_hash=hash_password(password),
                created_at=now,
            )
        )
        session.add(
            CredentialRow(
                ak=ak, project_id=project_id, sk_encrypted=rt.box.encrypt(sk), created_at=now
            )
        )
    return Bootstrap(project_id, s.bootstrap_project_name, instance_id, user, password, ak, sk)


# --- admin operations (the `openfdi admin` commands)


def _require_project(session: Session, project_id: str) -> ProjectRow:
    row = session.get(ProjectRow, project_id)
    if row is None:
        raise InvalidParameters(detail=f"project {project_id} does not exist")
    return row


def create_project(rt: Runtime, name: str) -> str:
    project_id = new_hex_id()
    try:
        with rt.db.write() as session:
            session.add(ProjectRow(id=project_id, name=name, created_at=rt.clock_ms()))
    except IntegrityError as exc:
        raise InvalidParameters(detail=f"a project named {name!r} exists already") from exc
    return project_id


def create_instance(rt: Runtime, project_id: str, name: str = "default") -> str:
    instance_id = new_instance_id()
    with rt.db.write() as session:
        _require_project(session, project_id)
        session.add(
            InstanceRow(id=instance_id, project_id=project_id, name=name, created_at=rt.clock_ms())
        )
    return instance_id


def create_user(rt: Runtime, project_id: str, name: str, password: str) -> str:
    if len(password) < 8:
        raise InvalidParameters(detail="a password has at least 8 characters")
    user_id = new_hex_id()
    try:
        with rt.db.write() as session:
            _require_project(session, project_id)
            session.add(
                UserRow(
                    id=user_id,
                    project_id=project_id,
                    name=name,
                    password_hash=hash_password(password),
                    created_at=rt.clock_ms(),
                )
            )
    except IntegrityError as exc:
        raise InvalidParameters(detail=f"a user named {name!r} exists already") from exc
    return user_id


def create_credential(rt: Runtime, project_id: str) -> tuple[str, str]:
    ak, sk = new_access_key(), new_secret_key()
    with rt.db.write() as session:
        _require_project(session, project_id)
        session.add(
            CredentialRow(
                ak=ak,
                project_id=project_id,
                sk_encrypted=rt.box.encrypt(sk),
                created_at=rt.clock_ms(),
            )
        )
    return ak, sk


def list_credentials(rt: Runtime, project_id: str) -> list[CredentialInfo]:
    with rt.db.read() as session:
        rows = session.scalars(
            select(CredentialRow)
            .where(CredentialRow.project_id == project_id)
            .order_by(CredentialRow.created_at)
        )
        return [CredentialInfo(r.ak, r.project_id, r.created_at, r.revoked_at) for r in rows]


def revoke_credential(rt: Runtime, project_id: str, ak: str) -> bool:
    with rt.db.write() as session:
        row = session.get(CredentialRow, ak)
        if row is None or row.project_id != project_id:
            return False
        if row.revoked_at is None:
            row.revoked_at = rt.clock_ms()
        return True


# --- authentication


# Every signed request reads its credential afresh, so a revocation (by any process) takes effect
# at once; the statements of the hot paths are built once, in Core (no ORM identity map).
_CREDENTIAL = select(
    CredentialRow.project_id, CredentialRow.sk_encrypted, CredentialRow.revoked_at
).where(CredentialRow.ak == bindparam("ak"))
_INSTANCE_PROJECT = select(InstanceRow.project_id).where(InstanceRow.id == bindparam("id"))


def secret_key_for(rt: Runtime, ak: str) -> tuple[str, str] | None:
    """(project_id, SK) of an active access key, or None."""
    with rt.db.lookup() as conn:
        row = conn.execute(_CREDENTIAL, {"ak": ak}).first()
    if row is None or row.revoked_at is not None:
        return None
    return row.project_id, rt.box.decrypt(row.sk_encrypted)


@dataclass(frozen=True, slots=True)
class SignedInUser:
    """Who `sign_in_with_password` let in."""

    user_id: str
    user_name: str
    project_id: str
    project_name: str


_USER_BY_NAME = select(UserRow.id, UserRow.password_hash, UserRow.project_id).where(
    UserRow.name == bindparam("name")
)
_REHASH = (
    update(UserRow)
    .where(UserRow.id == bindparam("user_id"), UserRow.password_hash == bindparam("old"))
    .values(password_hash=bindparam("new"))
)


def _throttle_keys(rt: Runtime, user_name: str, client_address: str | None) -> list[ThrottleKey]:
    s = rt.settings
    lock_ms = s.signin_lock_seconds * 1000
    keys = [
        ThrottleKey(
            signin_throttle.USER,
            user_name,
            Brake(s.signin_max_failures, lock_ms, forgets_on_success=True),
        )
    ]
    if client_address:
        keys.append(
            ThrottleKey(
                signin_throttle.ADDRESS,
                client_address,
                Brake(s.signin_address_max_failures, lock_ms, forgets_on_success=False),
            )
        )
    return keys


def sign_in_with_password(
    rt: Runtime, *, user_name: str, password: str, client_address: str | None
) -> SignedInUser:
    """The one password check of openfdi (IAM tokens, the web console): the user, or an error.

    Throttled per user name and per client address (OPENFDI_SIGNIN_* settings): a locked key is
    refused with SignInThrottled (429 APIG.0308) *before* the password is looked at, so even
    the right password waits for the lock to end. A wrong password or unknown user is
    AuthenticationFailed (401 APIG.0301), in the same time either way: an unknown name is
    checked against a dummy hash of the same cost, and throttled like a known one. A hash in an
    older format (scrypt) or with older parameters is replaced on success.

    `client_address` is the caller's IP address (None: not known, only the user is throttled).
    """
    keys = _throttle_keys(rt, user_name, client_address)
    with rt.db.write_conn() as conn:
        wait_ms = signin_throttle.begin_attempt(conn, keys, rt.clock_ms())
    if wait_ms:
        raise SignInThrottled(seconds=math.ceil(wait_ms / 1000))
    with rt.db.lookup() as conn:
        user = conn.execute(_USER_BY_NAME, {"name": user_name}).first()
    # The dummy is made (once) whoever signs in first, so even that first unknown name costs no
    # more than a known one; both sides of the `or` are evaluated, whichever fails.
    dummy = dummy_password_hash()
    stored = user.password_hash if user is not None else dummy
    matches = verify_password(password, stored)
    if not matches or user is None:
        raise AuthenticationFailed(detail="the username or password is wrong")
    # Hashed before the write transaction: SQLite has one writer, not to be held for a hash.
    rehashed = hash_password(password) if password_needs_rehash(stored) else None
    with rt.db.write() as session:
        signin_throttle.attempt_succeeded(session.connection(), keys, rt.clock_ms())
        if rehashed is not None:  # unless the hash changed meanwhile (a new password)
            session.execute(_REHASH, {"user_id": user.id, "old": stored, "new": rehashed})
        project = session.get(ProjectRow, user.project_id)
        assert project is not None  # users.project_id is a foreign key
        return SignedInUser(user.id, user_name, project.id, project.name)


def issue_token(
    rt: Runtime,
    *,
    user_name: str,
    password: str,
    project_id: str | None,
    project_name: str | None,
    client_address: str | None = None,
) -> IssuedToken:
    user = sign_in_with_password(
        rt, user_name=user_name, password=password, client_address=client_address
    )
    if (project_id and project_id != user.project_id) or (
        project_name and project_name != user.project_name
    ):
        raise AuthenticationFailed(detail="the user has no access to the requested project")
    token = "fdi-" + secrets.token_urlsafe(48)
    now = rt.clock_ms()
    expires = now + rt.settings.token_ttl_seconds * 1000
    with rt.db.write() as session:
        session.add(
            TokenRow(
                digest=token_digest(token),
                user_id=user.user_id,
                project_id=user.project_id,
                created_at=now,
                expires_at=expires,
            )
        )
    return IssuedToken(
        token, expires, now, user.project_id, user.project_name, user.user_id, user.user_name
    )


def principal_for_token(rt: Runtime, token: str) -> Principal:
    with rt.db.read() as session:
        row = session.get(TokenRow, token_digest(token))
        if row is None:
            raise AuthenticationFailed(detail="decrypt token fail")
        if row.expires_at <= rt.clock_ms():
            raise TokenMustBeUpdated()
        return Principal(project_id=row.project_id, subject=row.user_id, via="token")


def project_of(rt: Runtime, project_id: str) -> tuple[str, str] | None:
    """(id, name) of a project, or None."""
    with rt.db.read() as session:
        row = session.get(ProjectRow, project_id)
        return (row.id, row.name) if row is not None else None


# Instances are never deleted nor moved, so "instance I is in project P", once read, stays true
# for good: remembered per database (tests run several in one process). A miss is never
# remembered: an instance created later by another process is found on the next request.
_known_scopes: weakref.WeakKeyDictionary[Database, set[Scope]] = weakref.WeakKeyDictionary()


def known_scope(
    rt: Runtime, principal: Principal, project_id: str, instance_id: str
) -> Scope | None:
    """`resolve_scope` without I/O, where the answer is known: the scope, or None if unknown.

    Raises ProjectMismatch like `resolve_scope` does.
    """
    if project_id != principal.project_id:
        raise ProjectMismatch()
    scope = Scope(project_id=project_id, instance_id=instance_id)
    return scope if scope in _known_scopes.get(rt.db, ()) else None


def resolve_scope(rt: Runtime, principal: Principal, project_id: str, instance_id: str) -> Scope:
    """Check that the path's project is the caller's and that the instance exists in it."""
    known = known_scope(rt, principal, project_id, instance_id)
    if known is not None:
        return known
    with rt.db.lookup() as conn:
        owner = conn.execute(_INSTANCE_PROJECT, {"id": instance_id}).scalar()
    if owner != project_id:
        raise InstanceNotFound(project_id=project_id, instance_id=instance_id)
    scope = Scope(project_id=project_id, instance_id=instance_id)
    _known_scopes.setdefault(rt.db, set()).add(scope)
    return scope


def iso_utc(ms: int) -> str:
    """`2026-11-23T07:38:25.123000Z`, the form IAM uses for token times."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
