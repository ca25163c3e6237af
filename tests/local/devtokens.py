"""Dev JWTs for the local HTTP API (they stand in for Cognito/OIDC tokens behind the JWT authorizer).

The RSA key is persisted under .local/ so `make serve` (which verifies) and `make token` (which mints)
agree across processes.

    python -m tests.local.devtokens --sub user_123 --groups support,admin --email x@y
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

REPO = Path(__file__).resolve().parents[2]
ISSUER = "https://auth.local.layers.test/"
AUDIENCE = "layers-billing"
KEY_PATH = REPO / ".local" / "dev-jwt-key.pem"
KID = "local-dev"
GROUPS_CLAIM = "cognito:groups"  # what a Cognito user pool puts in its tokens; shared.auth reads it


def generate_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def load_or_create_key(path: Path = KEY_PATH) -> RSAPrivateKey:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = generate_key().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(pem)
        tmp.chmod(0o600)
        # os.link fails if the file exists: when two processes race, both end up with the first key.
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, RSAPrivateKey), f"{path} is not an RSA key"
    return key


def public_key() -> RSAPublicKey:
    return load_or_create_key().public_key()


def mint(
    sub: str,
    *,
    groups: Sequence[str] = (),
    email: str | None = None,
    ttl_seconds: int = 3600,
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
    key: RSAPrivateKey | None = None,
    now: int | None = None,
) -> str:
    """An RS256 token shaped like an OIDC id/access token (groups as a JSON list, as Cognito does)."""
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": sub,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "token_use": "id",
    }
    if groups:
        claims[GROUPS_CLAIM] = list(groups)
    if email is not None:
        claims["email"] = email
    return jwt.encode(claims, key or load_or_create_key(), algorithm="RS256", headers={"kid": KID})


def service_token(service: str) -> str:
    """Locally, internal (IAM SigV4) routes accept this instead of a signed AWS request."""
    return mint(f"service:{service}", groups=["service"])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print a dev JWT accepted by `make serve`.")
    parser.add_argument("--sub", default="user_dev", help="user id (the token's sub)")
    parser.add_argument("--groups", default="", help="comma-separated groups, e.g. support,admin")
    parser.add_argument("--email", default=None)
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    args = parser.parse_args(argv)
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    print(mint(args.sub, groups=groups, email=args.email, ttl_seconds=args.ttl))


if __name__ == "__main__":
    main()
