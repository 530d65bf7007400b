"""Who may act on a store or a certificate: the inventory's facts for the one rule of
``certyard.accounts.authorization``.

A store is held by whoever added it and by the groups it names. A certificate is held by
the groups of the stores it sits in, and by what the apps above add (enrollment: its
requester and its template's groups), registered with
:func:`certificate_holders_source_register` — the inventory cannot import them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from certyard.accounts.authorization import Holders, act_require, is_person, may_act
from certyard.inventory.models import Certificate, CertificateStore

MANAGE_ANY_STORE = "inventory.manage_any_store"
MANAGE_ANY_CERTIFICATE = "inventory.manage_any_certificate"

CertificateHoldersSource = Callable[[Certificate], Holders]
_certificate_sources: list[CertificateHoldersSource] = []


def certificate_holders_source_register(source: CertificateHoldersSource) -> None:
    """Add who else holds a certificate (called once per app, from its ``ready``)."""
    if source not in _certificate_sources:
        _certificate_sources.append(source)


def store_holders(store: CertificateStore) -> Holders:
    return Holders.of(
        owners=[store.created_by_id], groups=store.groups.values_list("pk", flat=True)
    )


def certificate_holders(certificate: Certificate) -> Holders:
    groups = CertificateStore.groups.through.objects.filter(
        certificatestore__locations__certificate=certificate
    ).values_list("group_id", flat=True)
    holders = Holders.of(groups=groups)
    for source in _certificate_sources:
        holders = holders | source(certificate)
    return holders


def store_act_require(actor: Any, store: CertificateStore) -> None:
    """403 unless ``actor`` may change ``store`` (no person: the platform itself)."""
    if is_person(actor):
        act_require(actor, store_holders(store), grant_all=MANAGE_ANY_STORE, what=f"store {store}")


def may_act_on_store(actor: Any, store: CertificateStore) -> bool:
    return may_act(actor, store_holders(store), grant_all=MANAGE_ANY_STORE)


def certificate_act_require(actor: Any, certificate: Certificate) -> None:
    """403 unless ``actor`` may act on ``certificate`` (no person: the platform itself)."""
    if is_person(actor):
        act_require(
            actor,
            certificate_holders(certificate),
            grant_all=MANAGE_ANY_CERTIFICATE,
            what=f"certificate {certificate}",
        )


def may_act_on_certificate(actor: Any, certificate: Certificate) -> bool:
    return may_act(actor, certificate_holders(certificate), grant_all=MANAGE_ANY_CERTIFICATE)
