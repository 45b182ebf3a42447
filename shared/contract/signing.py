"""Signed events: who said it, checked by anyone holding the signer's public key.

An event that moves money, or changes who gets it, carries two CloudEvents extension
attributes: `sigkeyid`, the id of the signing key, and `signature`, an Ed25519 signature
(base64url, no padding) over the event's canonical form: the whole JSON document as sent,
without `signature`, canonicalised by RFC 8785 (JSON Canonicalization Scheme:
`shared/contract/canonical_json.py`). `sigkeyid` is inside what is signed, so a signature
cannot be moved to another key.

A key's id is derived from its public key (`key_id`), so a registry entry cannot claim another
key's id. Which party may sign which event type is part of the contract (`EventSpec.signed_by`
in the registry); who owns which key is the key registry's business (operator events on
`operator.signing-keys`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from shared.contract.canonical_json import CanonicalizationError, canonical_json

KEY_ID_ATTRIBUTE: Final = "sigkeyid"
SIGNATURE_ATTRIBUTE: Final = "signature"


class Party(StrEnum):
    """Who may own a signing key."""

    BRAND = "brand"
    SHOP = "shop"
    ONBOARDING = "onboarding"
    SERVICE = "service"


class RejectReason(StrEnum):
    """Why a signed (or unsigned) event was refused; the first word of its dead-letter reason."""

    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    REVOKED_KEY = "revoked_key"
    WRONG_PARTY = "wrong_party"
    NOT_THE_OWNER = "not_the_owner"
    NOT_THE_DEAL_OWNER = "not_the_deal_owner"


@dataclass(frozen=True)
class Signer:
    """Who signed an event whose signature was checked against a registered key."""

    party: Party
    owner_id: str
    key_id: str
    # A shop key's brands (its registration's), None: any brand.
    brands: frozenset[str] | None = None

    def brand(self) -> str | None:
        """The brand that signed, None if the signer is not a brand."""
        return self.owner_id if self.party is Party.BRAND else None

    def shop_brand(self) -> str | None:
        """The one brand a shop key sells for, None if the signer is not such a shop."""
        if self.party is not Party.SHOP or self.brands is None or len(self.brands) != 1:
            return None
        [only] = self.brands
        return only


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_text(key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key, base64url: how keys travel in registry events."""
    return _b64(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """Raises ValueError for anything that is not a base64url Ed25519 public key."""
    try:
        return Ed25519PublicKey.from_public_bytes(_unb64(text))
    except (ValueError, TypeError) as error:
        raise ValueError("not a base64url Ed25519 public key (32 bytes)") from error


def key_id(key: Ed25519PublicKey | str) -> str:
    """`ed25519:` and the first 16 bytes of the SHA-256 of the raw public key, in hex."""
    text = key if isinstance(key, str) else public_key_text(key)
    return "ed25519:" + hashlib.sha256(_unb64(text)).hexdigest()[:32]


def private_key_text(key: Ed25519PrivateKey) -> str:
    """The raw 32-byte private key, base64url (keep it secret: it signs as its owner)."""
    return _b64(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def private_key_from_text(text: str) -> Ed25519PrivateKey:
    try:
        return Ed25519PrivateKey.from_private_bytes(_unb64(text.strip()))
    except (ValueError, TypeError) as error:
        raise ValueError("not a base64url Ed25519 private key (32 bytes)") from error


def canonical_form(document: Mapping[str, Any]) -> bytes:
    """What is signed: the event's JSON document without `signature`, as RFC 8785 JSON."""
    return canonical_json({k: v for k, v in document.items() if k != SIGNATURE_ATTRIBUTE})


def sign_document(document: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """`document` with `sigkeyid` and `signature` set for `key`."""
    signed = {k: v for k, v in document.items() if k != SIGNATURE_ATTRIBUTE}
    signed[KEY_ID_ATTRIBUTE] = key_id(key.public_key())
    signed[SIGNATURE_ATTRIBUTE] = _b64(key.sign(canonical_form(signed)))
    return signed


def sign_json(raw: bytes, key: Ed25519PrivateKey) -> bytes:
    """A JSON event document (UTF-8 bytes) signed by `key`.

    The two attributes are appended to the document as written, which costs less than
    writing a 26 KB answer again; a document that already has either (or no member at all)
    is written again whole, compact."""
    text = raw.decode()
    document = json.loads(text)
    signed = sign_document(document, key)
    if not document or KEY_ID_ATTRIBUTE in document or SIGNATURE_ATTRIBUTE in document:
        return json.dumps(signed, separators=(",", ":"), ensure_ascii=False).encode()
    attributes = {name: signed[name] for name in (KEY_ID_ATTRIBUTE, SIGNATURE_ATTRIBUTE)}
    # A JSON object's text ends with its closing brace and, at most, JSON white space.
    return f"{text.rstrip()[:-1]},{json.dumps(attributes, separators=(',', ':'))[1:]}".encode()


def signature_valid(document: Mapping[str, Any], key: Ed25519PublicKey) -> bool:
    """True when `document`'s `signature` is `key`'s over its canonical form."""
    signature = document.get(SIGNATURE_ATTRIBUTE)
    if not isinstance(signature, str):
        return False
    try:
        key.verify(_unb64(signature), canonical_form(document))
    except (InvalidSignature, ValueError, TypeError, CanonicalizationError):
        return False
    return True
