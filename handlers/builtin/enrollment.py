"""Built-in handlers for the CA workflow: approve enrollments by rule, renew before expiry.

``certyard.enrollment_rules`` answers ``enrollment.pending``: a request that meets every
condition is approved (or denied) on the spot, recorded as decided by the registration;
the others wait for a person. ``certyard.auto_renew`` answers ``certificate.expiring``:
a certificate the platform issued with a key it holds (PFX enrollment) is renewed, once,
and the requester collects the new PKCS#12.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from handlers.base import EventContext, EventHandler, EventKind, HandlerResult
from handlers.builtin._common import setting
from handlers.helpers import subject_attributes, subject_rdns
from handlers.parameters import Parameter, ParameterError, ParameterType

_CONDITIONS = ("templates", "requesters", "allowed_domains", "max_names", "types")
_HOST_NAME = re.compile(r"(\*\.)?((?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)")


def _common_name(data: Mapping[str, Any]) -> str:
    """The request's CN: the event's ``common_name``, or read from its ``subject`` (events
    recorded before the platform sent it)."""
    if "common_name" in data:
        return str(data.get("common_name") or "")
    subject = str(data.get("subject") or "")
    if subject and not subject_rdns(subject):
        return "\x00unreadable"  # a subject we cannot read is within no domain
    # The platform's common_name: the name's first CN in the certificate's order, which
    # RFC 4514 text writes last.
    values = subject_attributes(subject, "CN")
    return values[-1] if values else ""


def _names(event: EventContext) -> list[str]:
    """Every name the certificate would carry: the SANs and the common name (a CN is
    still read as a host name by some relying parties, so it is judged too)."""
    names = [str(name) for name in event.data.get("sans") or []]
    common_name = _common_name(event.data)
    if common_name:
        as_san = f"DNS:{common_name}"
        lowered = {name.lower().rstrip(".") for name in names}
        if as_san.lower().rstrip(".") not in lowered and f"IP:{common_name}" not in names:
            names.insert(0, f"CN:{common_name}")
    return names


def _within(name: str, domains: list[str]) -> bool:
    kind, _, value = name.partition(":")
    if kind == "CN":
        kind = "DNS"  # a common name is within a domain only as a host name is
        if not _HOST_NAME.fullmatch(value.lower().rstrip(".")):
            return False
    if kind != "DNS":
        return False  # an IP address is within no domain
    value = value.lower().rstrip(".").removeprefix("*.")
    return any(value == d or value.endswith("." + d) for d in domains)


class EnrollmentRules(EventHandler):
    """Approves pending enrollment requests that meet every condition you set.

    Conditions (at least one): the template (names, globs allowed), who asked
    (usernames), the names asked for (every name, the common name and each DNS name,
    within one of the domains; IP addresses and a CN that is no host name never are),
    how many names, the request type (new, renew, reissue). A
    request that meets them all is approved (or denied, if you choose) and issued, with
    this registration recorded as the approver; the others stay pending for a person.
    Rules are checked in the registrations' order: a deny rule before an approve rule
    keeps what it matches away from it.
    """

    label = "Approve enrollments by rule"
    events = (EventKind.ENROLLMENT_PENDING,)
    parameters = (
        Parameter("templates", ParameterType.LIST, help="Template names (globs allowed)."),
        Parameter("requesters", ParameterType.LIST, help="Usernames of requesters."),
        Parameter(
            "allowed_domains",
            ParameterType.LIST,
            help="Every name asked for (the common name and each DNS name) must be one "
            "of these domains or under one.",
        ),
        Parameter("max_names", ParameterType.INTEGER, minimum=1, maximum=1000),
        Parameter(
            "types",
            ParameterType.LIST,
            help="Request types: new, renew, reissue (empty: any).",
        ),
        Parameter(
            "verdict",
            ParameterType.CHOICE,
            choices=("approve", "deny"),
            default="approve",
            help="What to do with a request that meets every condition.",
        ),
        Parameter("comment", help="Recorded with the decision.", default=""),
    )

    @classmethod
    def config_check(cls, config: Mapping[str, Any]) -> None:
        if not any(config.get(name) for name in _CONDITIONS):
            raise ParameterError(
                {"templates": "set at least one condition, or every request would match"}
            )
        unknown = [t for t in config.get("types") or [] if t not in ("new", "renew", "reissue")]
        if unknown:
            raise ParameterError({"types": f"unknown request types: {', '.join(unknown)}"})
        if config.get("verdict") == "deny" and not config.get("comment"):
            raise ParameterError({"comment": "a denial says why: give a comment"})

    def _unmet(self, event: EventContext) -> str | None:
        """The first condition the request does not meet, or None."""
        data = event.data
        templates = setting(self, "templates") or []
        if templates and not any(
            fnmatch.fnmatchcase(str(data.get("template", "")), pattern) for pattern in templates
        ):
            return f"template {data.get('template')!r} is not one of {templates}"
        requesters = setting(self, "requesters") or []
        if requesters and str(data.get("requested_by", "")) not in requesters:
            return f"requester {data.get('requested_by')!r} is not one of {requesters}"
        domains = [d.lower().strip(".") for d in setting(self, "allowed_domains") or []]
        outside = [n for n in _names(event) if not _within(n, domains)] if domains else []
        if outside:
            return f"{outside[0]} is outside {domains}"
        limit = setting(self, "max_names")
        if limit and len(_names(event)) > int(limit):
            return f"{len(_names(event))} names asked for, more than {limit}"
        types = setting(self, "types") or []
        if types and str(data.get("type", "")) not in types:
            return f"a {data.get('type')} request, not {types}"
        return None

    def handle(self, event: EventContext) -> HandlerResult:
        unmet = self._unmet(event)
        if unmet is not None:
            return HandlerResult(message=f"left for an approver: {unmet}")
        enrollment_id = str(event.data.get("enrollment_id") or event.subject_id)
        verdict = setting(self, "verdict")
        comment = str(setting(self, "comment") or "met every condition")
        if verdict == "deny":
            self.platform.deny_enrollment(enrollment_id=enrollment_id, comment=comment)
        else:
            self.platform.approve_enrollment(enrollment_id=enrollment_id, comment=comment)
        return HandlerResult(message=f"{verdict}d {event.subject_label or enrollment_id}")


class AutoRenew(EventHandler):
    """Renews certificates before they expire, when the platform holds their key.

    On each expiry warning asks for one renewal (several warnings, one per location, still
    make one), which replaces the certificate in every store it was found in: with a key
    made on the device where the store type re-enrolls, else a platform key. A certificate
    found in no store is renewed only when the platform issued it by PFX enrollment (with
    a new key, default, or the archived one), and the requester collects the new PKCS#12;
    one enrolled with a CSR is left alone (its key is not the platform's). The renewal
    follows its template (or ``template``, for one Certyard did not issue), approval
    included.
    Choose the thresholds in the registration's filters, or with ``days``.
    """

    label = "Renew before expiry"
    events = (EventKind.CERTIFICATE_EXPIRING,)
    parameters = (
        Parameter(
            "days",
            ParameterType.INTEGER,
            minimum=0,
            maximum=3650,
            default=30,
            help="Renew at warnings this many days before expiry or fewer.",
        ),
        Parameter(
            "new_key",
            ParameterType.BOOLEAN,
            default=True,
            help="A new key for each renewal; unticked, the archived key is reused (for a "
            "certificate found in no store).",
        ),
        Parameter(
            "template",
            help="Template for certificates Certyard did not issue (found by inventory); "
            "empty: only the ones it issued, under their own template.",
            default="",
        ),
    )

    def handle(self, event: EventContext) -> HandlerResult:
        days = int(event.data.get("days", 0) or 0)
        if days > int(setting(self, "days")):
            return HandlerResult(message=f"{days} days before expiry: not yet")
        sha256 = str(event.data.get("sha256") or "")
        if not sha256:
            return HandlerResult(message="the event names no certificate")
        # Renewed and replaced wherever it is installed: a renewal nobody delivers would
        # leave the expiring certificate serving.
        self.platform.renew_and_replace(
            certificate_sha256=sha256,
            template=str(setting(self, "template") or ""),
            new_key=bool(setting(self, "new_key")),
        )
        return HandlerResult(message=f"renewal asked for {event.subject_label or sha256}")
