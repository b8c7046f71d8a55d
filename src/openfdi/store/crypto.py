"""Secrets at rest: a Fernet key kept outside the database, and Argon2id password hashes."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

MASK = "******"


class SecretBox:
    """Encrypts and decrypts secrets (SKs, data source passwords) with one Fernet key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_key_file(cls, path: Path) -> SecretBox:
        """Load the key file, creating it (mode 0600) on first use."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(path.read_bytes().strip())
        key = Fernet.generate_key()
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return cls(key)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted with this key") from exc


# Argon2id with OWASP's first recommended setting (19 MiB, 2 passes, 1 lane): about the cost of
# the scrypt it replaces (~35 ms here), so sign-in and bootstrap stay as fast. The parameters are
# written into each hash (PHC string), so raising them later rehashes every password at its
# owner's next sign-in (`password_needs_rehash`).
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# The format of openfdi <= 0.1: scrypt N=2^14, r=8, p=1 (not stored), "scrypt$salt$digest".
_LEGACY_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    """An Argon2id PHC string: `$argon2id$v=19$m=19456,t=2,p=1$salt$digest`."""
    return _HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored` (an Argon2 PHC string or a legacy scrypt hash)."""
    if stored.startswith("scrypt$"):
        return _verify_legacy_scrypt(password, stored)
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):  # a mismatch is a VerifyMismatchError
        return False


def password_needs_rehash(stored: str) -> bool:
    """A legacy scrypt hash, or an Argon2 hash made with other parameters than today's."""
    return stored.startswith("scrypt$") or _HASHER.check_needs_rehash(stored)


def _verify_legacy_scrypt(password: str, stored: str) -> bool:
    try:
        _, salt_b64, digest_b64 = stored.split("$")
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except ValueError:  # binascii.Error is a ValueError too
        return False
    digest = hashlib.scrypt(password.encode(), salt=salt, **_LEGACY_SCRYPT)
    return hmac.compare_digest(digest, expected)


@functools.cache
def dummy_password_hash() -> str:
    """Verifying against this when a user does not exist keeps the timing of a failed sign-in
    the same whether or not the name is registered (same parameters as a real hash)."""
    return hash_password(secrets.token_hex(8))


def token_digest(token: str) -> str:
    """Tokens are stored only as digests: a leaked database does not leak usable tokens."""
    return hashlib.sha256(token.encode()).hexdigest()
