"""Encryption of provider secrets at rest (Fernet, keyed by settings.SECRETS_ENCRYPTION_KEY)."""

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet() -> Fernet:
    return Fernet(settings.SECRETS_ENCRYPTION_KEY)


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("The stored provider secret cannot be decrypted: was SECRETS_ENCRYPTION_KEY changed?") from exc
