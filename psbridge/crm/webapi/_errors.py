"""The Web API client's errors, each saying what happened in the server's words.

They are defined in :mod:`psbridge.errors` (under ``WebApiError``, beside the bridge's and the
cloud's) and re-exported here for the client's modules. No message repeats a secret:
credentials are never part of one.
"""

from __future__ import annotations

from psbridge.errors import (
    ClientCertificateRequired,
    MetadataMismatch,
    ODataError,
    SignInFailed,
    SignInUnsupported,
    TokenRefused,
    WebApiError,
    WebApiUnreachable,
)

__all__ = ["ClientCertificateRequired", "MetadataMismatch", "ODataError", "SignInFailed", "SignInUnsupported",
           "TokenRefused", "WebApiError", "WebApiUnreachable"]
