"""`creatorflow keys new|add|rotate|revoke|list` and `creatorflow verify`: the signing keys.

Keys are registered and revoked with events on `operator.signing-keys`, which only operators
may write (`creatorflow kafka acls`); every service reads that topic whole
(shared/runtime/trust.py). A private key never leaves the file `keys new` writes (0600).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faststream.security import BaseSecurity

from shared.contract.events import (
    RECORD_HEADERS,
    EventDecodeError,
    SigningKeyRegistered,
    SigningKeyRevoked,
    Topic,
    decode,
    encode,
    event_key,
    make_event,
    spec_for_type,
)
from shared.contract.events.registry import UnknownEventType
from shared.contract.signing import (
    Party,
    key_id,
    private_key_from_text,
    private_key_text,
    public_key_from_text,
    public_key_text,
)
from shared.runtime.kafka import AUTHORIZATION_ERRORS, client_options
from shared.runtime.trust import KeyReader, KeyRegistry, Trust, Untrusted
from shared.tools.cli.console import console, fail, report
from shared.tools.cli.settings import kafka_client, kafka_refusals

SOURCE = "creatorflow/keys"

app = typer.Typer(help="Signing keys: who may sign which events.", no_args_is_help=True)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The private key in `path` (as `keys new` writes it); a clear error otherwise."""
    try:
        return private_key_from_text(path.read_text())
    except OSError as error:
        fail(f"cannot read the private key {path}: {error.strerror}")
    except ValueError as error:
        fail(f"{path}: {error}", hint="keys new writes one")


async def _publish(bootstrap: str, security: BaseSecurity | None, events: list[Any]) -> None:
    producer = AIOKafkaProducer(**client_options(bootstrap, security), acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                Topic.OPERATOR_SIGNING_KEYS,
                encode(event),
                key=event_key(event),
                headers=RECORD_HEADERS,
            )
    finally:
        await producer.stop()


def _register_event(
    party: Party, owner: str, public_key: str, brands: list[str] | None = None
) -> Any:
    data = SigningKeyRegistered(
        key_id=key_id(public_key),
        party=party,
        owner_id=owner,
        public_key=public_key,
        brands=brands or None,
    )
    return make_event(data, source=SOURCE)


def _shop_brands(party: Party, brands: list[str]) -> list[str] | None:
    """The brands a shop key sells for (--brand), checked; None for any brand."""
    if brands and party is not Party.SHOP:
        fail(f"--brand binds a shop key to its brands; a {party.value} key names none")
    if party is Party.SHOP and not brands:
        console.print(
            "[yellow]warning[/]: this shop key is bound to no brand, so its orders count for "
            "any brand's promo codes; name the brands it sells for with --brand "
            "(deploy/SECURITY.md)",
            highlight=False,
        )
    unique = sorted(set(brands))
    return unique or None


def _bound(brands: list[str] | None) -> str:
    return "" if not brands else f", selling for {', '.join(brands)}"


async def read_registry(bootstrap: str, security: BaseSecurity | None) -> KeyRegistry:
    """The signing-key registry as it is now, read whole."""
    registry = KeyRegistry()
    reader = KeyReader(bootstrap, security, registry)
    try:
        await reader.start()
    finally:
        await reader.stop()
    return registry


@contextmanager
def _key_file(path: Path, key: Ed25519PrivateKey) -> Iterator[None]:
    """Write the private key to `path` (0600, never over an existing file) before its public
    key is registered, so a path that cannot be written fails with nothing registered. If the
    cluster refuses the registration, nothing was written: the file goes. If it fails
    otherwise, the key may be registered: the file stays and the error says so."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fail(f"{path} exists; refusing to overwrite a private key", hint="choose another --out")
    except OSError as error:
        fail(f"cannot create {path}: {error.strerror}", hint="choose another --out")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(private_key_text(key) + "\n")
    except OSError as error:
        path.unlink(missing_ok=True)
        fail(f"cannot write {path}: {error.strerror}", hint="choose another --out")
    try:
        yield
    except AUTHORIZATION_ERRORS:
        path.unlink(missing_ok=True)
        raise
    except BaseException:
        report(
            f"registering the key may not have finished: {path} keeps its private key",
            hint="`creatorflow keys list` shows whether it is in force; if not, delete the file",
        )
        raise


PARTY_OPTION = typer.Option(..., help="Who signs with it: brand, shop, onboarding or service.")
BRAND_OPTION = typer.Option(
    [],
    "--brand",
    help="A shop key only: a brand the shop sells for (repeat for each). Its orders then "
    "count only for these brands' deals.",
)


@app.command("new")
def new_command(
    party: Party = PARTY_OPTION,
    owner: str = typer.Option(..., help="Its owner's id: the brand id, the shop id, ..."),
    out: Path = typer.Option(..., help="Where to write the private key (created 0600)."),
    brand: list[str] = BRAND_OPTION,
) -> None:
    """Create a key pair, register the public key and keep the private key in --out."""
    brands = _shop_brands(party, brand)
    client = kafka_client()  # an unreachable or refusing cluster stops here, before any file
    key = Ed25519PrivateKey.generate()
    event = _register_event(party, owner, public_key_text(key.public_key()), brands)
    with kafka_refusals(), _key_file(out, key):
        asyncio.run(_publish(*client, [event]))
    console.print(
        f"registered {event.data.key_id} for {party.value} {owner}{_bound(brands)}; "
        f"private key: {out}"
    )


@app.command("add")
def add_command(
    party: Party = PARTY_OPTION,
    owner: str = typer.Option(..., help="Its owner's id."),
    public_key: str = typer.Option(
        ...,
        help="The Ed25519 public key, base64url (32 bytes); `creatorflow keys public FILE` "
        "prints it from a private key file. Never the private key: it looks the same.",
    ),
    brand: list[str] = BRAND_OPTION,
) -> None:
    """Register a public key a party made itself (its private key never reaches us). The
    same key registered again for the same owner takes the new --brand list (none given: it
    keeps its brands)."""
    try:
        public_key_from_text(public_key)
    except ValueError as error:
        fail(f"--public-key: {error}")
    bootstrap, security = kafka_client()
    with kafka_refusals():
        known = asyncio.run(read_registry(bootstrap, security)).get(key_id(public_key))
    same_owner = known is not None and (known.party, known.owner_id) == (party, owner)
    if same_owner and known is not None and known.brands and not brand:
        # Registered again without --brand: a forgotten flag must not widen the key to every
        # brand. It keeps its brands.
        brand = sorted(known.brands)
        console.print(f"keeps its brands: {', '.join(brand)} (--brand to change them)")
    brands = _shop_brands(party, brand)
    event = _register_event(party, owner, public_key, brands)
    with kafka_refusals():
        if known is not None and known.revoked:
            fail(
                f"{known.key_id} was revoked; a revoked key stays revoked",
                hint="make a new key (keys new, or keys public of a new key file)",
            )
        if known is not None and (known.party, known.owner_id) != (party, owner):
            fail(
                f"{known.key_id} is registered for {known.party.value} {known.owner_id}; a key "
                "belongs to one owner",
                hint=f"make a new key for {party.value} {owner}",
            )
        asyncio.run(_publish(bootstrap, security, [event]))
    console.print(f"registered {event.data.key_id} for {party.value} {owner}{_bound(brands)}")


@app.command("public")
def public_command(
    key_file: Path = typer.Argument(help="A private key file (as `keys new` writes it)."),
) -> None:
    """Print the public key of a private key file, alone on its line, to register it
    elsewhere: keys add --party P --owner O --public-key "$(creatorflow keys public FILE)"."""
    print(public_key_text(load_private_key(key_file).public_key()))


@app.command("revoke")
def revoke_command(
    key: str = typer.Argument(help="The key id (ed25519:...)."),
    reason: str = typer.Option("", help="Why, for the audit trail."),
) -> None:
    """Refuse events signed by the key from now on (what was applied stays applied)."""
    bootstrap, security = kafka_client()
    with kafka_refusals():
        registry = asyncio.run(read_registry(bootstrap, security))
        known = registry.get(key)
        if known is None:
            fail(f"no registered key {key}", hint="creatorflow keys list")
        event = make_event(SigningKeyRevoked(key_id=key, reason=reason), source=SOURCE)
        asyncio.run(_publish(bootstrap, security, [event]))
    console.print(f"revoked {key} ({known.party.value} {known.owner_id})")


@app.command("rotate")
def rotate_command(
    key: str = typer.Argument(help="The key id to replace."),
    out: Path = typer.Option(..., help="Where to write the new private key (created 0600)."),
) -> None:
    """Register a new key for the same owner, then revoke the old one."""
    bootstrap, security = kafka_client()
    with kafka_refusals():
        registry = asyncio.run(read_registry(bootstrap, security))
        known = registry.get(key)
        if known is None or known.revoked:
            fail(f"no registered key {key} in force", hint="creatorflow keys list")
        new = Ed25519PrivateKey.generate()
        brands = None if known.brands is None else sorted(known.brands)
        added = _register_event(
            known.party, known.owner_id, public_key_text(new.public_key()), brands
        )
        revoked = make_event(SigningKeyRevoked(key_id=key, reason="rotated"), source=SOURCE)
        with _key_file(out, new):
            asyncio.run(_publish(bootstrap, security, [added, revoked]))
    console.print(f"registered {added.data.key_id}, revoked {key}; private key: {out}")


@app.command("list")
def list_command() -> None:
    """Every registered key: its owner, whether it is in force, and its public key."""
    with kafka_refusals():
        registry = asyncio.run(read_registry(*kafka_client()))
    keys = sorted(registry.keys(), key=lambda k: (k.party, k.owner_id, k.key_id))
    for key in keys:
        state = "[red]revoked[/]" if key.revoked else "[green]in force[/]"
        sells = "" if key.brands is None else f"\n  sells for {', '.join(sorted(key.brands))}"
        console.print(
            f"{key.key_id}  {key.party.value} [bold]{key.owner_id}[/]  {state}\n"
            f"  public key {public_key_text(key.public_key)}{sells}",
            soft_wrap=True,
        )
    console.print(f"{len(keys)} key(s) registered.")


async def _verify(bootstrap: str, security: BaseSecurity | None, raw: bytes, event: Any) -> str:
    registry = await read_registry(bootstrap, security)
    trust = Trust(registry, None, require_signatures=True)
    signer = await trust.check(event, raw)
    if signer is None:
        return f"{event.type} needs no signature from outside CreatorFlow"
    return f"valid: signed by {signer.party.value} {signer.owner_id} ({signer.key_id})"


def verify_command() -> None:
    """Check the signature of one event (a JSON document on stdin) against the registry."""
    raw = sys.stdin.buffer.read().strip()
    try:
        event_type = json.loads(raw).get("type", "")
        event = decode(spec_for_type(event_type).topic, raw)
    except (ValueError, AttributeError, UnknownEventType, EventDecodeError) as error:
        fail(f"not a v1 event: {getattr(error, 'reason', error)}")
    bootstrap, security = kafka_client()
    try:
        with kafka_refusals():
            verdict = asyncio.run(_verify(bootstrap, security, raw, event))
        console.print(verdict, highlight=False)
    except Untrusted as error:
        fail(error.reason)
