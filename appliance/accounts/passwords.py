"""Password hashing (Argon2id through argon2-cffi) and the length rule."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from appliance.errors import InvalidRequest


class PasswordPolicy:
    def __init__(self, min_length: int = 10):
        self.min_length = min_length
        self.hasher = PasswordHasher()
        # Verified against when the user does not exist, so both cases take as long.
        self._dummy = self.hasher.hash("not-a-password-of-anyone")

    def check(self, password: str) -> None:
        if len(password or "") < self.min_length:
            raise InvalidRequest(f"Passwords need at least {self.min_length} characters "
                                 "(auth.min_password_length).", param="password")
        if len(password) > 1024:
            raise InvalidRequest("Passwords may have at most 1024 characters.", param="password")

    def hash(self, password: str) -> str:
        self.check(password)
        return self.hasher.hash(password)

    def verify(self, hashed: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(hashed or self._dummy, password or "") and hashed is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, hashed: str) -> bool:
        return self.hasher.check_needs_rehash(hashed)
