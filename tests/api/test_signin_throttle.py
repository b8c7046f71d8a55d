"""The brake on password guessing (`POST /v3/auth/tokens`, `identity.sign_in_with_password`) and
the password hashes: Argon2id PHC strings, old scrypt hashes rehashed at the next sign-in."""

from __future__ import annotations

import base64
import hashlib
import random
import re
import secrets
import threading
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from openfdi.errors import AuthenticationFailed, SignInThrottled
from openfdi.services import identity
from openfdi.services.runtime import Runtime
from openfdi.store.tables import SignInThrottleRow, UserRow

both_databases = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


def token_body(user: str, password: str) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "password": password}},
            }
        }
    }


def sign_in(client: httpx.Client, user: str, password: str) -> httpx.Response:
    return client.post("/v3/auth/tokens", json=token_body(user, password))


def codes(replies: list[httpx.Response]) -> list[int]:
    return [reply.status_code for reply in replies]


def stored_hash(runtime: Runtime, user: str) -> str:
    with runtime.db.read() as session:
        found = session.scalar(select(UserRow.password_hash).where(UserRow.name == user))
    assert found is not None
    return found


def test_forty_guesses_then_the_right_password(anon, runtime, creds, monkeypatch) -> None:
    """The issue's run: 40 wrong passwords, then the right one. Only 5 are checked; the rest and
    the right one get 429 APIG.0308 until the lock (5 minutes) ends."""
    replies = [sign_in(anon, creds.user, f"guess-{n}") for n in range(40)]
    assert codes(replies) == [401] * 5 + [429] * 35
    refused = replies[-1].json()
    assert refused["error_code"] == "APIG.0308"
    wait = re.search(r"try again in (\d+) seconds", refused["error_msg"])
    assert wait is not None
    assert 240 < int(wait[1]) <= 300  # the lock began at the 5th failure, moments ago
    right = sign_in(anon, creds.user, creds.password)
    assert (right.status_code, right.json()["error_code"]) == (429, "APIG.0308")
    assert "X-Subject-Token" not in right.headers

    real_clock = runtime.clock_ms
    monkeypatch.setattr(runtime, "clock_ms", lambda: real_clock() + 290_000)
    assert sign_in(anon, creds.user, creds.password).status_code == 429
    monkeypatch.setattr(runtime, "clock_ms", lambda: real_clock() + 301_000)
    assert sign_in(anon, creds.user, creds.password).status_code == 201


def test_a_success_clears_the_users_failures(anon, creds) -> None:
    for _ in range(3):
        assert codes([sign_in(anon, creds.user, "wrong") for _ in range(4)]) == [401] * 4
        assert sign_in(anon, creds.user, creds.password).status_code == 201


def test_an_unknown_user_name_is_throttled_like_a_known_one(anon, creds) -> None:
    """The brake must not tell which names exist: both lock after the same 5 failures."""
    for user in ("nobody", creds.user):
        assert codes([sign_in(anon, user, "wrong") for _ in range(6)]) == [401] * 5 + [429]
    # Another user is not locked by them (same address, within its budget of 20).
    assert sign_in(anon, "someone-else", "wrong").status_code == 401


@pytest.fixture
def small_address_budget(runtime) -> None:
    """Before the server fixture: at most 6 failures from one address."""
    runtime.settings.signin_address_max_failures = 6


def test_one_address_guessing_many_names_is_locked(
    small_address_budget, server, runtime, creds
) -> None:
    """Spreading guesses over user names does not escape the per-address budget; another
    address is not affected (loopback has many: 127.0.0.2 is a second client)."""
    identity.create_user(runtime, creds.project_id, "alice", "alice-password")
    transport = httpx.HTTPTransport(local_address="127.0.0.1")
    with httpx.Client(base_url=server.url, transport=transport) as first:
        replies = [sign_in(first, f"user-{n}", "wrong") for n in range(8)]
        assert codes(replies) == [401] * 6 + [429] * 2
        assert sign_in(first, creds.user, creds.password).status_code == 429
    with httpx.Client(
        base_url=server.url, transport=httpx.HTTPTransport(local_address="127.0.0.2")
    ) as second:
        assert sign_in(second, creds.user, creds.password).status_code == 201
        # Successes from an address do not refill its budget: 5 failures, a success, ...
        guesses = [sign_in(second, f"other-{n}", "wrong") for n in range(5)]
        assert codes(guesses) == [401] * 5
        assert sign_in(second, "alice", "alice-password").status_code == 201
        assert sign_in(second, "bob", "wrong").status_code == 401  # the 6th failure
        assert sign_in(second, "alice", "alice-password").status_code == 429


@both_databases
def test_the_lock_holds_across_processes_and_restarts(runtime, creds) -> None:
    """A second server on the same metadata database (another worker, or this one restarted)
    sees the failures and the lock the first one wrote."""
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            identity.sign_in_with_password(
                runtime, user_name=creds.user, password="wrong", client_address="10.0.0.1"
            )
    other = Runtime.open(runtime.settings.model_copy())  # its own engine and pool
    assert other.db is not runtime.db
    try:
        with pytest.raises(SignInThrottled):
            identity.sign_in_with_password(
                other, user_name=creds.user, password=creds.password, client_address=None
            )
    finally:
        other.close()


@both_databases
def test_parallel_guesses_check_at_most_five_passwords(runtime, creds) -> None:
    """Counted before the password is checked: 12 guesses at once cannot all get in before the
    first failure is written."""
    outcomes: Counter[str] = Counter()
    barrier = threading.Barrier(12)

    def guess() -> None:
        barrier.wait()
        try:
            identity.sign_in_with_password(
                runtime, user_name=creds.user, password="wrong", client_address="10.0.0.9"
            )
        except (AuthenticationFailed, SignInThrottled) as exc:
            outcomes[exc.code] += 1

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes == {"APIG.0301": 5, "APIG.0308": 7}


@both_databases
def test_parallel_successes_and_failures_never_fail_the_server(runtime, creds) -> None:
    """Sign-ins of a few users from two addresses at once, right and wrong: each answer is a
    token, 401 or 429. (A success deletes its user's row: a concurrent sign-in that had just
    found that row used to read it back as missing and fail with a 500.)"""
    identity.create_user(runtime, creds.project_id, "dave", "dave-password")
    passwords = {creds.user: creds.password, "dave": "dave-password", "nobody": "x"}
    unexpected: list[BaseException] = []
    outcomes: Counter[str] = Counter()
    barrier = threading.Barrier(16)

    def sign_ins(seed: int) -> None:
        pick = random.Random(seed)
        barrier.wait()
        for _ in range(5):
            user = pick.choice(sorted(passwords))
            password = passwords[user] if pick.random() < 0.5 else "wrong"
            address = pick.choice(["10.1.0.1", "10.1.0.2"])
            try:
                identity.sign_in_with_password(
                    runtime, user_name=user, password=password, client_address=address
                )
                outcomes["signed in"] += 1
            except (AuthenticationFailed, SignInThrottled) as exc:
                outcomes[exc.code] += 1
            except Exception as exc:
                unexpected.append(exc)

    threads = [threading.Thread(target=sign_ins, args=(seed,)) for seed in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert unexpected == []
    assert sum(outcomes.values()) == 80
    assert outcomes["signed in"] > 0


@both_databases
def test_expired_counters_are_pruned(runtime, creds, monkeypatch) -> None:
    """Guessed names leave no rows behind for good: rows past their lock and window go."""
    for n in range(3):
        with pytest.raises(AuthenticationFailed):
            identity.sign_in_with_password(
                runtime, user_name=f"ghost-{n}", password="x", client_address="10.0.0.2"
            )
    with runtime.db.read() as session:
        assert len(session.scalars(select(SignInThrottleRow)).all()) == 4
    real_clock = runtime.clock_ms
    monkeypatch.setattr(runtime, "clock_ms", lambda: real_clock() + 301_000)
    identity.sign_in_with_password(
        runtime, user_name=creds.user, password=creds.password, client_address="10.0.0.3"
    )
    with runtime.db.read() as session:
        assert session.scalars(select(SignInThrottleRow)).all() == []


# --- hashes


def test_passwords_are_argon2id_phc_strings(runtime, creds) -> None:
    identity.create_user(runtime, creds.project_id, "carol", "carol-password")
    for user in (creds.user, "carol"):  # bootstrap and admin-created
        assert stored_hash(runtime, user).startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def legacy_scrypt_hash(password: str) -> str:
    """How openfdi 0.1 stored passwords: scrypt N=2^14 r=8 p=1, parameters not stored."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def test_a_scrypt_hash_is_rehashed_at_the_next_sign_in(anon, runtime, creds) -> None:
    legacy = legacy_scrypt_hash(creds.password)
    with runtime.db.write() as session:
        session.execute(
            update(UserRow).where(UserRow.name == creds.user).values(password_hash=legacy)
        )

    assert sign_in(anon, creds.user, "wrong-password").status_code == 401
    assert stored_hash(runtime, creds.user) == legacy  # only a success rehashes
    assert sign_in(anon, creds.user, creds.password).status_code == 201
    rehashed = stored_hash(runtime, creds.user)
    assert rehashed.startswith("$argon2id$")
    assert sign_in(anon, creds.user, creds.password).status_code == 201
    assert stored_hash(runtime, creds.user) == rehashed  # up to date: left alone
    assert sign_in(anon, creds.user, "wrong-password").status_code == 401


def test_an_argon2_hash_with_old_parameters_is_rehashed(anon, runtime, creds) -> None:
    from argon2 import PasswordHasher

    weaker = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(creds.password)
    with runtime.db.write() as session:
        session.execute(
            update(UserRow).where(UserRow.name == creds.user).values(password_hash=weaker)
        )
    assert sign_in(anon, creds.user, creds.password).status_code == 201
    assert stored_hash(runtime, creds.user).startswith("$argon2id$v=19$m=19456,t=2,p=1$")
