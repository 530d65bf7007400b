"""Who may act on what: the one object-level rule, for every app.

Reading (list, retrieve) is governed by the model's view permission alone. Acting on one
object (changing it, an action on it, the key material it holds) also needs the right to
that object: a person may act on it when they

- own it (enrolled it, created it: the app says who that is),
- are in one of the groups it names (a template's, a store's), or
- hold the permission that grants all objects of its kind (``inventory.manage_any_store``…).

Superusers hold every permission, so they pass. Each app supplies the facts for its own
objects as :class:`Holders`; the services call :func:`act_require` before they write, so the
console, the API and handlers share the rule. An actor that is no person (``None``, or a
name the platform's own code gives, like a handler's) is the platform itself — a handler's
action is carried out on the original requester's behalf — and is not checked: views
always pass the signed-in user (an anonymous one is refused).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from certyard.errors import ServiceError


@dataclass(frozen=True, slots=True)
class Holders:
    """Who may act on one object besides the holders of its grant-all permission."""

    owner_ids: frozenset[int] = frozenset()
    group_ids: frozenset[int] = frozenset()

    @classmethod
    def of(cls, *, owners: Iterable[Any] = (), groups: Iterable[Any] = ()) -> Holders:
        """From user and group ids (``None`` entries, e.g. an owner deleted, are left out)."""
        return cls(
            owner_ids=frozenset(int(o) for o in owners if o is not None),
            group_ids=frozenset(int(g) for g in groups if g is not None),
        )

    def __or__(self, other: Holders) -> Holders:
        return Holders(self.owner_ids | other.owner_ids, self.group_ids | other.group_ids)


def is_person(actor: Any) -> bool:
    """A user (signed in or anonymous), as opposed to the platform acting itself."""
    return hasattr(actor, "has_perm")


def may_act(user: Any, holders: Holders, *, grant_all: str) -> bool:
    """Whether ``user`` may act on an object held by ``holders``."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if not getattr(user, "is_active", True):
        return False
    if user.has_perm(grant_all):  # superusers hold every permission
        return True
    if user.pk in holders.owner_ids:
        return True
    if holders.group_ids:
        return user.groups.filter(pk__in=holders.group_ids).exists()
    return False


def act_require(user: Any, holders: Holders, *, grant_all: str, what: str) -> None:
    """Raise a 403 ``not_yours`` unless ``user`` may act on the object (``what`` names it).

    Nothing is checked when ``user`` is no person (the platform itself, see above).
    """
    if is_person(user) and not may_act(user, holders, grant_all=grant_all):
        raise ServiceError(
            f"you may not act on {what}: it is not yours, you are in none of its groups, "
            f"and you lack the permission {grant_all}",
            code="not_yours",
            http_status=403,
        )


def permission_require(user: Any, permission: str, *, message: str) -> None:
    """Raise a 403 ``permission_denied`` unless ``user`` holds the model permission
    (nothing checked when ``user`` is no person)."""
    if is_person(user) and not user.has_perm(permission):
        raise ServiceError(message, code="permission_denied", http_status=403)
