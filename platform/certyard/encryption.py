"""Encryption at rest for secrets (store passwords, CA private keys).

Values are Fernet tokens under a key derived from the deployment's secret
(``CERTYARD_ENCRYPTION_KEY``, else Django's ``SECRET_KEY``). The model field
decrypts only on attribute access; forms, the admin and the API never render it.
"""

import base64
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django import forms
from django.conf import settings
from django.db import models


@cache
def _fernet(secret: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"certyard", info=b"secrets-at-rest-v1"
    ).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _current() -> Fernet:
    return _fernet(getattr(settings, "CERTYARD_ENCRYPTION_KEY", None) or settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("secret cannot be decrypted with this deployment's key") from exc


class EncryptedTextField(models.TextField):
    """Stores ``encrypt(value)``; the Python value is the plaintext (or empty)."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str:
        return decrypt(value) if value else ""

    def get_prep_value(self, value: str | None) -> str:
        return encrypt(value) if value else ""

    def formfield(self, **kwargs: Any) -> forms.Field:
        # Never offer the stored secret back in a form, whatever widget the caller asks
        # for (the admin asks for its textarea). A form that edits a stored secret must
        # treat an empty answer as "unchanged" itself: the widget cannot show the value.
        kwargs["widget"] = forms.PasswordInput(render_value=False)
        if not self.choices:
            kwargs.setdefault("strip", False)  # a secret's spaces are part of it
        return super().formfield(**kwargs)
