"""Secrets given to an operation: a :class:`Secret` already resolved, or a reference to resolve."""

from __future__ import annotations

from psbridge.remote.errors import ValidationError
from psbridge.secrets import Secret, SecretError, SecretRef


def secret(value: Secret | SecretRef | str, field: str) -> Secret:
    if isinstance(value, Secret):
        return value
    try:
        ref = SecretRef.parse(value)
    except SecretError:
        # The text may be the secret itself: never repeat it.
        raise ValidationError(
            field,
            "give a secret reference (env:NAME, file:PATH, keyring:SERVICE/NAME, lab:NAME), not a value",
        ) from None
    try:
        return ref.resolve()
    except SecretError as e:
        raise ValidationError(field, str(e)) from None
