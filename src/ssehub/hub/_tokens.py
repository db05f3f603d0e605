"""JWT verification with the algorithm fixed by configuration, and the claims the hub reads.

The algorithm is never taken from the token: a verifier accepts exactly one of ``HS256``,
``RS256`` or ``ES256``, chosen when the hub starts, so the classic confusions (``alg: none``; an
``HS256`` token "signed" with the RSA public key, which every subscriber can know) fail
verification. Keys are checked when they are loaded: an HMAC secret must have at least 32 bytes
(RFC 7518 §3.2) and must not be a PEM key; an RS256 key must be an RSA public key of at least
2048 bits; an ES256 key a P-256 public key.

Claims (``exp`` is required; ``nbf``, and ``aud``/``iss`` when configured, are checked)::

    {"sub": "user-42", "exp": 1767225600,
     "ssehub": {"publish": ["orders/*"], "subscribe": ["orders/*", "users/42"]}}

``publish`` and ``subscribe`` are lists of topic patterns (see :mod:`._patterns`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .._exceptions import AuthenticationError, ConfigurationError, MissingDependency
from ._patterns import TopicPatterns

__all__ = [
    "ALGORITHMS",
    "CLAIM",
    "MAX_TOKEN_LENGTH",
    "MIN_HMAC_KEY_BYTES",
    "TokenClaims",
    "TokenVerifier",
]

ALGORITHMS: Final = ("HS256", "RS256", "ES256")
"""The algorithms a hub can be configured with (one at a time)."""

CLAIM: Final = "ssehub"
"""The private claim holding ``{"publish": [...], "subscribe": [...]}``."""

MIN_HMAC_KEY_BYTES: Final = 32
"""RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits)."""

MAX_TOKEN_LENGTH: Final = 8192
"""Characters. Real tokens are well under 2 KiB; the bound keeps a forged header cheap to refuse."""

_MIN_RSA_BITS: Final = 2048


def _import_jwt() -> Any:
    try:
        import jwt
    except ImportError as exc:  # pragma: no cover - pyjwt ships with the hub extra
        raise MissingDependency("pyjwt", "hub") from exc
    return jwt


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What the hub takes from a verified token.

    Attributes:
        subject: the ``sub`` claim, or ``None``.
        publish: the topics the token may publish to.
        subscribe: the topics the token may subscribe to (and read private events of).
        expires_at: the ``exp`` claim (Unix time, seconds).
    """

    subject: str | None
    publish: TopicPatterns
    subscribe: TopicPatterns
    expires_at: float


def _check_public_key(algorithm: str, key: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if algorithm == "RS256":
        if not isinstance(key, rsa.RSAPublicKey):
            raise ConfigurationError("RS256 needs an RSA public key")
        if key.key_size < _MIN_RSA_BITS:
            raise ConfigurationError(f"RS256 keys must have at least {_MIN_RSA_BITS} bits")
    elif not (isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"):
        raise ConfigurationError("ES256 needs a P-256 (secp256r1) public key")


def _load_key(algorithm: str, material: str | bytes) -> Any:
    raw = material.encode() if isinstance(material, str) else material
    looks_asymmetric = raw.lstrip().startswith((b"-----BEGIN", b"ssh-", b"{"))
    if algorithm == "HS256":
        if looks_asymmetric:
            # The algorithm-confusion attack in configuration form: a public key is public,
            # so using it as an HMAC secret lets anyone sign tokens.
            raise ConfigurationError("HS256 needs a shared secret, not a public key or a JWK")
        if len(raw) < MIN_HMAC_KEY_BYTES:
            raise ConfigurationError(
                f"the HS256 secret must have at least {MIN_HMAC_KEY_BYTES} bytes (RFC 7518 §3.2)"
            )
        return raw
    from cryptography.hazmat.primitives.serialization import (
        load_pem_public_key,
    )

    try:
        key = load_pem_public_key(raw)
    except ValueError:
        raise ConfigurationError(f"{algorithm} needs a PEM public key") from None
    _check_public_key(algorithm, key)
    return key


def _load_jwks(algorithm: str, document: Mapping[str, Any]) -> dict[str | None, Any]:
    jwt = _import_jwt()
    entries = document.get("keys")
    if not isinstance(entries, list) or not entries:
        raise ConfigurationError("the JWKS must be an object with a non-empty 'keys' list")
    keys: dict[str | None, Any] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ConfigurationError("every JWKS key must be an object")
        declared = entry.get("alg")
        if declared is not None and declared != algorithm:
            raise ConfigurationError(
                f"JWKS key {entry.get('kid')!r} is for {declared}, but the hub uses {algorithm}"
            )
        try:
            jwk = jwt.PyJWK(entry, algorithm=algorithm)
        except jwt.PyJWTError as exc:
            raise ConfigurationError(f"JWKS key {entry.get('kid')!r}: {exc}") from None
        if algorithm == "HS256":
            secret = jwk.key
            if len(secret) < MIN_HMAC_KEY_BYTES:
                raise ConfigurationError(
                    f"JWKS key {entry.get('kid')!r}: HS256 secrets need {MIN_HMAC_KEY_BYTES} bytes"
                )
        else:
            _check_public_key(algorithm, jwk.key)
        keys[entry.get("kid")] = jwk.key
    return keys


class TokenVerifier:
    """Verify JWTs signed with one configured algorithm and read the hub's claims.

    Args:
        algorithm: ``"HS256"``, ``"RS256"`` or ``"ES256"``.
        key: the HS256 secret, or the PEM public key for RS256/ES256.
        jwks: a JSON Web Key Set (a parsed ``{"keys": [...]}``) instead of ``key``; the key is
            chosen by the token's ``kid`` (a set of one key also serves tokens without ``kid``).
        audience: when set, tokens must carry this ``aud``.
        issuer: when set, tokens must carry this ``iss``.
        leeway: seconds of clock skew tolerated on ``exp`` and ``nbf``.

    Raises:
        ConfigurationError: the algorithm is not supported, no key or both kinds were given,
            or a key does not suit the algorithm.
        MissingDependency: pyjwt is not installed (``pip install 'ssehub[hub]'``).
    """

    def __init__(
        self,
        algorithm: str,
        *,
        key: str | bytes | None = None,
        jwks: Mapping[str, Any] | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ConfigurationError(f"the JWT algorithm must be one of {', '.join(ALGORITHMS)}")
        if (key is None) == (jwks is None):
            raise ConfigurationError("give exactly one of a JWT key or a JWKS")
        self._jwt = _import_jwt()
        self.algorithm = algorithm
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self._keys: dict[str | None, Any] = (
            {None: _load_key(algorithm, key)} if key is not None else _load_jwks(algorithm, jwks)  # type: ignore[arg-type]
        )

    @classmethod
    def from_files(
        cls,
        algorithm: str,
        *,
        key: str | None = None,
        key_file: str | None = None,
        jwks_file: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
    ) -> TokenVerifier:
        """Build a verifier from settings: a key given inline, a key file, or a JWKS file.

        Raises:
            ConfigurationError: not exactly one source was given, a file cannot be read, or
                the key does not suit the algorithm.
        """
        given = [name for name, value in (("key", key), ("key file", key_file),
                 ("JWKS file", jwks_file)) if value]  # fmt: skip
        if len(given) != 1:
            raise ConfigurationError(
                "--auth jwt (SSEHUB_AUTH=jwt) needs exactly one of --jwt-key, --jwt-key-file, "
                "--jwks-file (SSEHUB_JWT_KEY, SSEHUB_JWT_KEY_FILE, SSEHUB_JWKS_FILE)"
            )
        try:
            if key_file:
                # A trailing newline from `echo secret > file` is not part of the secret.
                material = Path(key_file).read_bytes().rstrip(b"\r\n")
                return cls(algorithm, key=material, audience=audience, issuer=issuer, leeway=leeway)
            if jwks_file:
                document = json.loads(Path(jwks_file).read_text(encoding="utf-8"))
                if not isinstance(document, dict):
                    raise ConfigurationError("the JWKS file must hold a JSON object")
                return cls(
                    algorithm, jwks=document, audience=audience, issuer=issuer, leeway=leeway
                )
        except OSError as exc:
            raise ConfigurationError(f"cannot read {exc.filename}: {exc.strerror}") from None
        except ValueError as exc:
            if isinstance(exc, ConfigurationError):
                raise
            raise ConfigurationError(f"the JWKS file is not valid JSON: {exc}") from None
        return cls(algorithm, key=key, audience=audience, issuer=issuer, leeway=leeway)

    def _key_for(self, token: str) -> Any:
        jwt = self._jwt
        if None in self._keys and len(self._keys) == 1:
            return self._keys[None]
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise AuthenticationError("the token is malformed") from None
        if kid in self._keys:
            return self._keys[kid]
        if len(self._keys) == 1 and kid is None:
            return next(iter(self._keys.values()))
        raise AuthenticationError("the token's key id is not in the JWKS")

    def verify(self, token: str) -> TokenClaims:
        """Verify ``token`` and return its claims.

        Args:
            token: the compact JWT.

        Returns:
            The subject, the publish and subscribe patterns, and the expiry.

        Raises:
            AuthenticationError: the token is malformed, badly signed, uses another algorithm,
                is expired or not yet valid, lacks ``exp``, has the wrong ``aud``/``iss``, or
                its ``ssehub`` claim is malformed.
        """
        jwt = self._jwt
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthenticationError("the token is too long")
        key = self._key_for(token)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("the token is from another issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"the token has no '{exc.claim}' claim") from None
        except jwt.InvalidAlgorithmError:
            raise AuthenticationError(f"the token must be signed with {self.algorithm}") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("the token's signature is invalid") from None
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
            # DecodeError and friends; ValueError/TypeError from exotic headers, OverflowError
            # from a time claim of Infinity: never a 5xx.
            raise AuthenticationError("the token is malformed") from None
        return _claims(payload)


def _patterns(grants: Mapping[str, Any], name: str) -> TopicPatterns:
    value = grants.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AuthenticationError(f"the '{CLAIM}.{name}' claim must be a list of strings")
    try:
        return TopicPatterns(value)
    except ValueError as exc:
        raise AuthenticationError(f"the '{CLAIM}.{name}' claim: {exc}") from None


def _claims(payload: Mapping[str, Any]) -> TokenClaims:
    grants = payload.get(CLAIM, {})
    if not isinstance(grants, dict):
        raise AuthenticationError(f"the '{CLAIM}' claim must be an object")
    subject = payload.get("sub")
    exp = payload["exp"]
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise AuthenticationError("the 'exp' claim must be a number")
    try:
        expires_at = float(exp)
    except OverflowError:  # an integer beyond any time (10**400)
        raise AuthenticationError("the 'exp' claim is out of range") from None
    return TokenClaims(
        subject=subject if isinstance(subject, str) else None,
        publish=_patterns(grants, "publish"),
        subscribe=_patterns(grants, "subscribe"),
        expires_at=expires_at,
    )
