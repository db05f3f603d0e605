"""JWT verification: the configured algorithm only, standard claims, the ssehub claim, keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from ssehub._exceptions import AuthenticationError, ConfigurationError
from ssehub.hub._tokens import TokenVerifier

from .support import SECRET, ec_key, public_pem, rsa_key, token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge_hs256(payload: dict[str, object], secret: bytes) -> str:
    """An HS256 token made by hand (pyjwt refuses to sign with a PEM key, attackers do not)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def test_valid_token_gives_subject_patterns_and_expiry() -> None:
    verifier = TokenVerifier("HS256", key=SECRET)
    claims = verifier.verify(token(["orders/*"], ["orders/*", "users/42"]))
    assert claims.subject == "tester"
    assert claims.publish.matches("orders/1")
    assert not claims.publish.matches("users/42")
    assert claims.subscribe.matches("users/42")
    assert claims.expires_at > time.time()


def test_alg_none_is_rejected() -> None:
    verifier = TokenVerifier("HS256", key=SECRET)
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"exp": time.time() + 60, "ssehub": {"publish": ["*"]}}).encode())
    with pytest.raises(AuthenticationError, match="HS256"):
        verifier.verify(f"{header}.{body}.")


def test_hs256_signed_with_the_rsa_public_key_is_rejected() -> None:
    pem = public_pem(rsa_key())
    verifier = TokenVerifier("RS256", key=pem)
    forged = _forge_hs256({"exp": time.time() + 60, "ssehub": {"publish": ["*"]}}, pem.encode())
    with pytest.raises(AuthenticationError, match="RS256"):
        verifier.verify(forged)


def test_rs256_and_es256_tokens_verify_with_their_public_keys() -> None:
    rs = TokenVerifier("RS256", key=public_pem(rsa_key()))
    assert rs.verify(token(["a"], key=rsa_key(), algorithm="RS256")).publish.matches("a")
    es = TokenVerifier("ES256", key=public_pem(ec_key()))
    assert es.verify(token(["a"], key=ec_key(), algorithm="ES256")).publish.matches("a")
    # An ES256 token is refused by the RS256 hub even though it is validly signed.
    with pytest.raises(AuthenticationError):
        rs.verify(token(["a"], key=ec_key(), algorithm="ES256"))


@pytest.mark.parametrize(
    ("kwargs", "claims", "message"),
    [
        ({}, {"lifetime": -10}, "expired"),
        ({}, {"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"audience": "hub"}, {"aud": "other"}, "audience"),
        ({"audience": "hub"}, {}, "'aud'"),
        ({"issuer": "auth"}, {"iss": "evil"}, "issuer"),
        ({}, {"ssehub": ["*"]}, "must be an object"),
        ({}, {"ssehub": {"publish": "*"}}, "list of strings"),
        ({}, {"ssehub": {"publish": ["bad topic"]}}, "topic characters"),
    ],
)
def test_claims_are_checked(
    kwargs: dict[str, str], claims: dict[str, object], message: str
) -> None:
    verifier = TokenVerifier("HS256", key=SECRET, **kwargs)
    with pytest.raises(AuthenticationError, match=message):
        verifier.verify(token(["*"], **claims))  # type: ignore[arg-type]


def test_audience_and_issuer_accepted_when_they_match() -> None:
    verifier = TokenVerifier("HS256", key=SECRET, audience="hub", issuer="auth")
    assert verifier.verify(token(["t"], aud="hub", iss="auth")).publish.matches("t")


def test_expired_within_leeway_is_accepted() -> None:
    verifier = TokenVerifier("HS256", key=SECRET, leeway=60)
    verifier.verify(token(["t"], lifetime=-5))


def test_token_without_exp_is_rejected() -> None:
    import jwt

    raw = jwt.encode({"ssehub": {"publish": ["*"]}}, SECRET, algorithm="HS256")
    with pytest.raises(AuthenticationError, match="'exp'"):
        TokenVerifier("HS256", key=SECRET).verify(raw)


@pytest.mark.parametrize(
    "raw", ["", "abc", "a.b.c", "a" * 9000, "eyJhbGciOiJIUzI1NiJ9.e30.\u00e9", "....."]
)
def test_garbage_is_rejected_not_crashed(raw: str) -> None:
    with pytest.raises(AuthenticationError):
        TokenVerifier("HS256", key=SECRET).verify(raw)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(AuthenticationError, match="signature"):
        TokenVerifier("HS256", key=SECRET).verify(token(["*"], key="x" * 40))


@pytest.mark.parametrize(
    ("algorithm", "key", "message"),
    [
        ("HS256", "short", "at least 32 bytes"),
        ("HS256", "PEM", "not a public key"),
        ("RS256", "s" * 40, "PEM public key"),
        ("ES256", "RSA", "P-256"),
        ("RS256", "EC", "RSA public key"),
        ("PS256", "s" * 40, "one of"),
        ("none", "s" * 40, "one of"),
    ],
)
def test_keys_must_suit_the_algorithm(algorithm: str, key: str, message: str) -> None:
    material = {"PEM": public_pem(rsa_key()), "RSA": public_pem(rsa_key()),
                "EC": public_pem(ec_key())}.get(key, key)  # fmt: skip
    with pytest.raises(ConfigurationError, match=message):
        TokenVerifier(algorithm, key=material)


def _jwk(kid: str) -> dict[str, str]:
    from jwt.algorithms import RSAAlgorithm

    jwk: dict[str, str] = json.loads(RSAAlgorithm.to_jwk(rsa_key().public_key()))
    return {**jwk, "kid": kid, "alg": "RS256"}


def test_jwks_file_picks_the_key_by_kid(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk("one"), _jwk("two")]}))
    verifier = TokenVerifier.from_files("RS256", jwks_file=str(path))
    signed = token(["a"], key=rsa_key(), algorithm="RS256", headers={"kid": "two"})
    assert verifier.verify(signed).publish.matches("a")
    unknown = token(["a"], key=rsa_key(), algorithm="RS256", headers={"kid": "three"})
    with pytest.raises(AuthenticationError, match="key id"):
        verifier.verify(unknown)


def test_jwks_key_for_another_algorithm_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="is for RS256"):
        TokenVerifier("ES256", jwks={"keys": [_jwk("one")]})


def test_key_file_and_sources(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    verifier = TokenVerifier.from_files("HS256", key_file=str(path))
    assert verifier.verify(token(["t"])).publish.matches("t")
    with pytest.raises(ConfigurationError, match="exactly one"):
        TokenVerifier.from_files("HS256")
    with pytest.raises(ConfigurationError, match="exactly one"):
        TokenVerifier.from_files("HS256", key=SECRET, key_file=str(path))
    with pytest.raises(ConfigurationError, match="cannot read"):
        TokenVerifier.from_files("HS256", key_file=str(tmp_path / "missing"))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        TokenVerifier.from_files("RS256", jwks_file=str(bad))


def test_auth_jwt_without_a_key_names_the_flags_and_the_variables() -> None:
    from ssehub import ConfigurationError
    from ssehub.hub import HubSettings, create_app

    with pytest.raises(ConfigurationError) as info:
        create_app(HubSettings(auth="jwt"))
    message = str(info.value)
    for name in ("--jwt-key-file", "SSEHUB_AUTH=jwt", "SSEHUB_JWT_KEY", "SSEHUB_JWKS_FILE"):
        assert name in message
