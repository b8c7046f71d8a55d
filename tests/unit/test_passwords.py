"""Password hashes (store.crypto): Argon2id PHC strings, the legacy scrypt form, odd inputs."""

from __future__ import annotations

import pytest

from openfdi.store.crypto import hash_password, password_needs_rehash, verify_password
from tests.api.test_signin_throttle import legacy_scrypt_hash


def test_a_hash_carries_its_parameters_and_a_fresh_salt() -> None:
    first, second = hash_password("pw-12345678"), hash_password("pw-12345678")
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert first != second  # salted
    assert verify_password("pw-12345678", first)
    assert not verify_password("pw-12345679", first)
    assert not password_needs_rehash(first)


def test_the_legacy_scrypt_form_verifies_and_asks_for_a_rehash() -> None:
    legacy = legacy_scrypt_hash("old-password")
    assert verify_password("old-password", legacy)
    assert not verify_password("old-passwore", legacy)
    assert password_needs_rehash(legacy)


@pytest.mark.parametrize(
    "stored",
    ["", "scrypt$", "scrypt$!!$!!", "scrypt$a$b$c", "$argon2id$v=19$m=1$x$y", "plain", "$2b$12$x"],
)
def test_a_malformed_stored_hash_never_matches_and_never_raises(stored: str) -> None:
    assert not verify_password("anything", stored)
