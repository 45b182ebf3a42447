"""`creatorflow kafka acls [--apply]`: least-privilege ACLs of every party (tools.kafka_acls)."""

from __future__ import annotations

import asyncio

import typer

from shared.tools.cli.console import console, fail
from shared.tools.cli.settings import kafka_client
from shared.tools.kafka_acls import AclError, Principals, apply_acls, least_privilege_acls

app = typer.Typer(help="Kafka administration for operators.", no_args_is_help=True)


@app.command()
def acls(
    apply: bool = typer.Option(
        False,
        "--apply",
        help="Create them on the configured cluster; the configured principal must be allowed "
        "to alter ACLs (a super user). Existing ACLs are kept.",
    ),
    matching: str = typer.Option("matching", help="Principal (user name) of matching."),
    tracking: str = typer.Option("tracking", help="Principal (user name) of tracking."),
    payouts: str = typer.Option("payouts", help="Principal (user name) of payouts."),
    brand: str = typer.Option(
        "brand", help="Principal of a brand; its consumer groups must start with it."
    ),
    shop: str = typer.Option("shop", help="Principal of a shop."),
    operator: str = typer.Option(
        "operator", help="Principal of the operators who register signing keys."
    ),
    onboarding: str = typer.Option(
        "onboarding", help="Principal of the onboarding party (creators' payout accounts)."
    ),
    collector: str = typer.Option(
        "collector", help="Principal of the collector of creator profiles and post metrics."
    ),
    fx_feed: str = typer.Option("fx-feed", help="Principal of the FX rates feed."),
) -> None:
    """Print (or apply) the ACLs each service, brand, shop, onboarding party, collector, FX
    feed and operator needs, and nothing more."""
    principals = Principals(
        services={"matching": matching, "tracking": tracking, "payouts": payouts},
        brand=brand,
        shop=shop,
        operator=operator,
        onboarding=onboarding,
        collector=collector,
        fx_feed=fx_feed,
    )
    wanted = least_privilege_acls(principals)
    for acl in wanted:
        console.print(f"ALLOW {acl}", highlight=False, soft_wrap=True)
    if not apply:
        console.print(f"[dim]{len(wanted)} ACLs; --apply creates them on the cluster.[/]")
        return
    bootstrap, security = kafka_client()
    try:
        asyncio.run(apply_acls(bootstrap, security, wanted))
    except AclError as error:
        fail(str(error), hint="apply them as a super user of the cluster (super.users)")
    console.print(f"Applied {len(wanted)} ACLs on {bootstrap}.")
