"""The platform's extension contracts: one small class per extension point.

Everything here is plain Python (no Django): a handler receives frozen dataclasses and
returns dataclasses, so it can be written and unit-tested without the platform.

Writing a handler
-----------------
Subclass one contract, declare the parameters an administrator fills in when registering
it, and implement its one method::

    from handlers.base import EventContext, EventHandler, HandlerResult
    from handlers.parameters import Parameter, ParameterType

    class TicketOnExpiry(EventHandler):
        \"\"\"Opens a ticket in our tracker when a certificate is about to expire.\"\"\"

        label = "Open a ticket"
        events = ("certificate.expiring",)
        parameters = (
            Parameter("queue", help="The tracker queue.", required=True),
            Parameter("api_key", ParameterType.SECRET, required=True),
        )

        def handle(self, event: EventContext) -> HandlerResult:
            ticket = open_ticket(self.config["queue"], self.config["api_key"], event)
            return HandlerResult(message=f"opened {ticket}", output={"ticket": ticket})

then expose it through the entry-point group ``certyard.handlers`` (:data:`ENTRY_POINT_GROUP`)
in your package's ``pyproject.toml``::

    [project.entry-points."certyard.handlers"]
    ticket_on_expiry = "my_company.certyard:TicketOnExpiry"

Install the package next to the platform, and register the class in Django admin
(*Handler registrations*): the admin form shows the class's docstring and one field per
declared parameter.

Rules every handler follows
---------------------------
- The platform creates a fresh instance for every invocation, with the registration's
  checked parameters (secrets decrypted) in ``self.config``. Keep no state on the class.
- Raise :class:`HandlerError` with a sentence an administrator can act on; set
  ``permanent=True`` when trying again cannot help (bad configuration), so the platform
  does not retry. Any other exception is recorded with its traceback and retried.
- Never log or return a secret parameter.
- A handler runs in a background worker with the registration's timeout. It never blocks
  the flow that emitted the event, and its failure never breaks that flow; registration
  handlers are the one exception (they decide the registration, within a bounded time).
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from handlers.parameters import Parameter

ENTRY_POINT_GROUP = "certyard.handlers"


class HandlerError(Exception):
    """A handler failed for a reason an administrator can act on.

    ``permanent`` says retrying cannot help (a wrong parameter, a refused credential):
    the platform then records the failure without trying again. ``output`` is kept on the
    failed run, like a result's output (a script's captured output, a server's answer).
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        output: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.output: dict[str, Any] = dict(output or {})


class HandlerKind(StrEnum):
    """The extension points a handler class can implement."""

    REGISTRATION = "registration", "Registration handler"
    EVENT = "event", "Event handler"
    METADATA = "metadata", "Metadata generator"
    JOB_COMPLETE = "job_complete", "Job complete handler"
    GATEWAY = "gateway", "CA gateway"

    def __new__(cls, value: str, label: str) -> HandlerKind:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label  # type: ignore[attr-defined]
        return member


class EventKind(StrEnum):
    """Every event the platform emits; a registration subscribes to some of them."""

    ORCHESTRATOR_REGISTERED = "orchestrator.registered"
    ORCHESTRATOR_APPROVED = "orchestrator.approved"
    ORCHESTRATOR_DISAPPROVED = "orchestrator.disapproved"
    JOB_COMPLETED = "job.completed"
    CERTIFICATES_ADDED = "certificates.added"
    CERTIFICATE_EXPIRING = "certificate.expiring"
    METADATA_GENERATED = "metadata.generated"
    ENROLLMENT_PENDING = "enrollment.pending"
    ENROLLMENT_APPROVED = "enrollment.approved"
    ENROLLMENT_DENIED = "enrollment.denied"
    CERTIFICATE_ISSUED = "certificate.issued"
    CERTIFICATE_RENEWED = "certificate.renewed"
    CERTIFICATE_REVOKED = "certificate.revoked"
    # Someone other than its enrollee reused an archived private key (key recovery); the
    # event names who, whose key and which certificate, never the key.
    ARCHIVED_KEY_REUSED = "key.archived_reused"
    SSH_KEY_ROTATED = "ssh_key.rotated"


class Handler(abc.ABC):
    """What every handler class has; subclass one of the contracts below, not this.

    Class attributes:
        kind: The extension point (set by the contract).
        label: A short human name shown in admin; defaults to the class name.
        parameters: What an administrator fills in when registering the class.
    """

    kind: ClassVar[HandlerKind]
    label: ClassVar[str] = ""
    parameters: ClassVar[tuple[Parameter, ...]] = ()

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        #: The registration's parameter values, checked against ``parameters``, defaults
        #: filled in and secrets decrypted.
        self.config: dict[str, Any] = dict(config or {})

    @classmethod
    def config_check(cls, config: Mapping[str, Any]) -> None:
        """Check what one parameter alone cannot (a file exists, two values agree).

        Called with the values already checked against ``parameters``, when a registration
        is saved. Raise :class:`handlers.parameters.ParameterError` naming the parameters
        at fault; the admin form shows each message beside its field.
        """
        return None


# --- Event handlers -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventContext:
    """One event, as a handler sees it.

    Attributes:
        event_id: The platform's identifier of the event (stable across retries).
        kind: What happened (an :class:`EventKind` value).
        occurred_at: When, as an ISO 8601 UTC timestamp.
        subject_type: What it happened to: ``orchestrator``, ``certificate``, ``job``,
            ``store``, ``enrollment``.
        subject_id: The subject's identifier on the platform.
        subject_label: The subject as a person reads it (a name, a common name).
        data: The event's details, JSON-compatible (see ``docs/extending.md`` per kind).
            A ``subject`` there is an RFC 4514 string and ``sans`` a list of ``TYPE:value``
            strings, in the forms of :class:`CertificateInfo` (an enrollment's names are
            ``DNS:`` and ``IP:`` only); read them with :mod:`handlers.helpers`.
        attempt: 1 for the first invocation of this handler for this event.
        context: What the handlers that ran before this one for the same event asked for
            (their ``HandlerResult.context_updates``, merged in order), e.g.
            ``{"suppress_email": True}``.
    """

    event_id: int
    kind: str
    occurred_at: str
    subject_type: str
    subject_id: str
    subject_label: str
    data: Mapping[str, Any]
    attempt: int = 1
    context: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "kind": self.kind,
            "occurred_at": self.occurred_at,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "subject_label": self.subject_label,
            "data": dict(self.data),
            "attempt": self.attempt,
            "context": dict(self.context),
        }


@dataclass(frozen=True, slots=True)
class HandlerResult:
    """What a handler reports back; all optional.

    Attributes:
        message: One line for the run list ("sent to 2 recipients").
        output: Details kept on the run (JSON-compatible, bounded in size by the platform).
        context_updates: Changes a handler asks the platform to make to the rest of the
            event's processing, e.g. ``{"suppress_email": True}`` keeps the built-in email
            handlers of the same event quiet when they run after this one (by order).
    """

    message: str = ""
    output: Mapping[str, Any] = field(default_factory=dict)
    context_updates: Mapping[str, Any] = field(default_factory=dict)


class EventHandler(Handler):
    """Reacts to platform events: expiration thresholds, registrations, jobs, CA workflow.

    ``events`` lists the event kinds the class understands (empty: any); a registration
    picks among them. ``handle`` runs in a background worker, once per matching event, and
    again (with ``event.attempt`` increased) after a failure while the registration's
    retries last.
    """

    kind = HandlerKind.EVENT
    events: ClassVar[tuple[str, ...]] = ()
    #: Set by the platform before ``handle``: what the handler may ask of it (approve an
    #: enrollment, renew a certificate, ...); carried out only if ``handle`` succeeds.
    platform: Platform

    @abc.abstractmethod
    def handle(self, event: EventContext) -> HandlerResult | None:
        """Do the work for one event; return what to record, or None."""


# --- Registration handlers ----------------------------------------------------------------


class Verdict(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    DEFER = "defer"


@dataclass(frozen=True, slots=True)
class RegistrationRequest:
    """An agent asking to join, as the registration handlers see it.

    Two kinds of fields. **Claims** are what the agent says of itself: anyone holding a
    registration token can send any value, so a claim alone must never be the reason to
    allow an agent (deny or defer on claims as you like). **Verified** fields are what the
    platform knows for certain: base an ``ALLOW`` on at least one of them.

    Claims:
        name, client_machine, agent_version: What the agent says of itself.
            ``client_machine`` is a syntactically valid host name or IP address (and
            matches the token's ``token_machine_pattern``, if it has one), nothing more.
        capabilities: Its store-type operations, e.g. ``("PEM.Inventory",)``.
        client_parameters: Free key/values the agent's administrator set.

    Verified:
        csr_pem: The certificate signing request for its key (its signature verified: the
            agent holds the key). Its subject is a claim.
        public_key_sha256: The SHA-256 of the CSR key's SubjectPublicKeyInfo (lowercase hex).
        source_address: The client address of the request, as the platform determines it:
            the TCP peer, or the address ``CERTYARD_TRUSTED_PROXIES`` trusted proxies put
            in ``X-Forwarded-For``; None if it is not a valid IP address.
        token_id: The primary key of the registration token used (None only for a request
            built outside a registration).
        token_description: That token's description, as its creator wrote it.
        token_labels: The labels set on that token when it was made, e.g. ``("prod",)``:
            only whoever made the token chose them.
        token_machine_pattern: The token's glob on client machines ("" for any); the
            claimed ``client_machine`` matches it, or the registration was refused.
        token_blueprint: The only blueprint an approval through this token may apply ("" for
            any): a decision naming another one leaves the orchestrator for an administrator.
        token_approves: Whether the token approves on its own when every handler defers.

    The verified fields have defaults, so code that builds a request with the claims alone
    (tests, older callers) keeps working.
    """

    name: str
    client_machine: str
    agent_version: str
    capabilities: tuple[str, ...]
    client_parameters: Mapping[str, str]
    csr_pem: str
    source_address: str | None
    token_id: int | None = None
    token_description: str = ""
    token_labels: tuple[str, ...] = ()
    token_machine_pattern: str = ""
    token_blueprint: str = ""
    token_approves: bool = False
    public_key_sha256: str = ""


@dataclass(frozen=True, slots=True)
class RegistrationDecision:
    """A registration handler's answer.

    Attributes:
        verdict: ``ALLOW`` approves the orchestrator, ``DENY`` disapproves it, ``DEFER``
            leaves the decision to the next handler, and to an administrator at the end.
        reason: Why, shown in the console and kept on the run.
        blueprint: The name of a blueprint whose stores and schedules the orchestrator
            receives once approved.
        metadata: Key/values recorded on the orchestrator.
        issue_certificate: False keeps the agent from receiving a client certificate
            (it must register again once an administrator approves it).
    """

    verdict: Verdict
    reason: str = ""
    blueprint: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    issue_certificate: bool = True


class RegistrationHandler(Handler):
    """Decides, inside registration, whether an agent is trusted.

    Registration handlers run in their registration order, synchronously, within the
    platform's total registration budget. The first ``ALLOW`` or ``DENY`` decides; a
    handler that raises, runs out of time or returns anything but a
    :class:`RegistrationDecision` counts as ``DEFER`` and is recorded as failed.
    """

    kind = HandlerKind.REGISTRATION

    @abc.abstractmethod
    def decide(self, request: RegistrationRequest) -> RegistrationDecision:
        """Allow, deny or defer this agent."""


# --- Metadata generators ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """A certificate as the inventory parsed it (no need to parse it again).

    Attributes:
        sha256: Its fingerprint (lowercase hex), the platform's key for it.
        subject, issuer: RFC 4514 strings as cryptography's ``rfc4514_string()`` writes
            them: the certificate's RDNs in reverse order, so the usual subject reads most
            specific first (``CN=web,OU=Payments,O=Example\\, Inc.,C=FR``); a multi-valued
            RDN joined by ``+``; ``CN``, ``L``, ``ST``, ``O``, ``OU``, ``C``, ``STREET``,
            ``DC``, ``UID`` by name and every other type as a dotted OID (emailAddress is
            ``1.2.840.113549.1.9.1=…``); ``\\`` before ``\\ " + , ; < >`` and a leading
            ``#`` or space or trailing space, NUL as ``\\00``, other characters (non-ASCII
            included) as themselves; a value that is no string as ``#`` and hex. Read an
            attribute with :func:`handlers.helpers.subject_attribute`.
        common_name: The subject's CN as text (no RFC 4514 escapes, NUL as ``\\x00``, at
            most 255 characters), or empty. With several CNs, the certificate's first,
            which ``subject`` writes last.
        sans: Subject alternative names in the certificate's order, each ``TYPE:value``:
            ``DNS:example.com``, ``IP:192.0.2.1``, ``IP:2001:db8::1`` (IPv6 compressed,
            lower-case), ``email:pki@example.com``, ``URI:https://…``, ``DirName:<RFC 4514
            name>``, ``RID:<dotted OID>``, ``othername:<OID>:<UPN text or DER hex>``,
            ``X400Address:<DER hex>``, ``EdiPartyName:<DER hex>``. Pick a type with
            :func:`handlers.helpers.sans_of`. ``docs/extending.md`` (*Formats*) has it all.
        serial_number: Hexadecimal.
        not_before, not_after: ISO 8601 UTC timestamps, or None when unreadable.
        key_algorithm: ``RSA``, ``EC``, ``Ed25519``, ...; key_size in bits, or None.
        signature_algorithm: e.g. ``sha256WithRSAEncryption``.
        is_ca, self_signed: As the certificate says.
        metadata: The certificate's metadata values so far.
    """

    sha256: str
    subject: str
    issuer: str
    common_name: str
    sans: tuple[str, ...]
    serial_number: str
    not_before: str | None
    not_after: str | None
    key_algorithm: str
    key_size: int | None
    signature_algorithm: str
    is_ca: bool
    self_signed: bool
    metadata: Mapping[str, str] = field(default_factory=dict)


class MetadataFieldType(StrEnum):
    """The types a metadata field can have (the platform's ``MetadataField.Type`` values)."""

    STRING = "string"  # one line of text
    TEXT = "text"  # several lines
    INTEGER = "integer"
    DATE = "date"  # YYYY-MM-DD
    BOOLEAN = "boolean"
    CHOICE = "choice"  # one of ``choices``
    EMAIL = "email"


# The platform's rule for a metadata field name: a letter, then letters, digits or _.
METADATA_FIELD_NAME = r"[A-Za-z][A-Za-z0-9_]{0,59}"


@dataclass(frozen=True, slots=True)
class MetadataFieldDeclaration:
    """A metadata field a generator fills, declared on its class.

    When an administrator registers the generator, the platform creates each declared
    field that does not exist yet, with this type, label and description. A field that
    already exists is left as it is when its type takes these values (declared ``string``
    values fit an existing ``text``, ``choice`` or ``email`` field; ``integer``,
    ``choice`` and ``email`` values fit ``string`` and ``text`` fields); when it cannot
    (a ``boolean`` field for ``string`` values), the registration is refused with a
    message naming the field, and nothing is changed.

    Attributes:
        name: The field's name (a letter, then letters, digits or ``_``; at most 60).
        type: A :class:`MetadataFieldType`.
        label: Shown in the console instead of the name (optional).
        description: What the value means, shown as the field's help text.
        choices: The allowed values of a ``choice`` field (and only of one).
    """

    name: str
    type: MetadataFieldType = MetadataFieldType.STRING
    label: str = ""
    description: str = ""
    choices: tuple[str, ...] = ()


def metadata_field_declarations_check(declared: Sequence[MetadataFieldDeclaration]) -> None:
    """Raise ``TypeError`` when a generator's field declarations are wrong (a bug in it)."""
    seen: set[str] = set()
    for declaration in declared:
        if not isinstance(declaration, MetadataFieldDeclaration):
            raise TypeError(f"{declaration!r} is not a MetadataFieldDeclaration")
        name = declaration.name
        if not (isinstance(name, str) and re.fullmatch(METADATA_FIELD_NAME, name)):
            raise TypeError(f"metadata field name {name!r} is invalid")
        if name in seen:
            raise TypeError(f"metadata field {name} is declared twice")
        seen.add(name)
        try:
            MetadataFieldType(declaration.type)
        except ValueError:
            raise TypeError(
                f"metadata field {name} has an unknown type {declaration.type!r}"
            ) from None
        if (declaration.type == MetadataFieldType.CHOICE) != bool(declaration.choices):
            raise TypeError(f"metadata field {name}: choices go with the choice type, only")


class MetadataGenerator(Handler):
    """Fills in metadata fields from what a certificate says (or what your systems know).

    Runs once for each new certificate, in batches in the background, and on demand over
    the whole inventory. Return only the fields you set, by metadata field name; values
    are checked against the field's type, and a value that fails is recorded as an error
    on the run without stopping the batch. Keep ``generate`` fast and free of network
    calls where you can: a backfill calls it for every certificate; override
    ``generate_many`` to look a whole batch up at once.

    Declare the fields it fills in ``fields`` (a tuple of
    :class:`MetadataFieldDeclaration`), or, when their names depend on the registration's
    parameters (a prefix), override ``declared_fields``. Registering the generator
    creates the fields that are missing, so it works without a manual setup step.
    """

    kind = HandlerKind.METADATA
    #: The metadata fields ``generate`` fills, created when the generator is registered.
    fields: ClassVar[tuple[MetadataFieldDeclaration, ...]] = ()

    @classmethod
    def declared_fields(cls, config: Mapping[str, Any]) -> Sequence[MetadataFieldDeclaration]:
        """The fields a registration with these (checked) parameter values fills.

        By default ``fields``; override it when a parameter names or prefixes the
        fields. Called when a registration is saved, never during a run.
        """
        return cls.fields

    @abc.abstractmethod
    def generate(self, certificate: CertificateInfo) -> Mapping[str, Any]:
        """The metadata values for this certificate, by field name."""

    def generate_many(self, certificates: list[CertificateInfo]) -> list[Mapping[str, Any]]:
        """One mapping per certificate, in order; by default ``generate`` for each."""
        return [self.generate(certificate) for certificate in certificates]


# --- Job complete handlers ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobCompleteContext:
    """A finished orchestrator job.

    Attributes:
        job_id, job_type, attempt: The job, its type (``inventory``, ...) and which attempt
            finished (1 for the first).
        outcome: ``success``, ``warning`` or ``failure``; message: the agent's or platform's.
        final: False when a failed attempt will be tried again.
        result: The job's result as the platform recorded it; for inventory
            ``{"inventory": {"entries", "added", "changed", "removed", "unchanged",
            "rejected_count", "added_aliases", ...}}``.
        orchestrator: ``{"id", "name", "client_machine"}``.
        store: ``{"id", "store_type", "client_machine", "store_path"}``, or None.
        source: Who asked for the job: ``schedule`` (an inventory schedule), ``admin``
            (a person in the console or Django admin), ``api`` (a person through the
            REST API) or ``handler`` (a handler's ``platform.schedule_job``, or other work
            a handler started).
        source_detail: Which one, as text: the user name (``admin``); ``token <name>
            (<prefix>…) of <user>`` or the user name (``api``); the django-q2 schedule's
            name and the store's interval (``schedule``); the handler registration's
            name (``handler``). Empty when unknown (jobs older than provenance).
        retry_of: The id of the job this one retries or follows (a person's *Retry*,
            or a handler's ``schedule_job(..., retry_of=...)``), or None.
        chain: The jobs from the first of this job's chain (following ``retry_of``
            back, at most 20 jobs) to this one, oldest first; this job is the last. Each
            ``{"id", "type", "source", "source_detail", "state", "outcome",
            "retry_of"}``. ``len(chain) > 1`` means this job follows another.
    """

    job_id: str
    job_type: str
    attempt: int
    outcome: str
    message: str
    final: bool
    result: Mapping[str, Any]
    orchestrator: Mapping[str, str]
    store: Mapping[str, str] | None
    source: str = ""
    source_detail: str = ""
    retry_of: str | None = None
    chain: tuple[Mapping[str, Any], ...] = ()


class Platform(Protocol):
    """The few things a handler may ask of the platform.

    Job complete handlers get it as an argument; event handlers as ``self.platform``.
    Requests are recorded on the run (``output["actions"]``, with the ids below) and
    carried out by the platform after the handler returns successfully; a failed run
    carries out none of them. ``send_mail`` is the one action carried out at once. A test
    builds its own object with these methods: a handler needs no platform (and no Django)
    to be tested.
    """

    def schedule_job(
        self,
        *,
        store_id: str,
        job_type: str,
        delay_seconds: int = 0,
        retry_of: str | None = None,
    ) -> str:
        """Open a job of ``job_type`` (handlers may open ``inventory`` only) for a store,
        to run after ``delay_seconds`` (at most a day); return the new job's id.

        The id (a UUID string) is allocated now and the job is created with it when the
        run succeeds, with source ``handler``, this registration's name as its
        ``source_detail`` and ``retry_of`` (a job id: the job this one retries or
        follows, usually ``job.job_id`` of the finished job) — so the new job's own
        completion carries them back to you (``JobCompleteContext.retry_of``,
        ``chain``). When the store already has an open inventory job, that job stands
        and the returned id is never created: the run's recorded action says so
        (``"existing_job_id"``). A ``retry_of`` naming no job fails the run's requests.
        """

    def set_metadata(self, *, certificate_sha256: str, values: Mapping[str, Any]) -> None:
        """Set metadata fields (by name) on a certificate. Returns None."""

    def approve_enrollment(self, *, enrollment_id: str, comment: str = "") -> str | None:
        """Approve a pending enrollment request (recorded as approved by this handler's
        registration); it is then issued like one a person approved. Returns the
        enrollment request's id."""

    def deny_enrollment(self, *, enrollment_id: str, comment: str) -> str | None:
        """Deny a pending enrollment request, saying why. Returns the enrollment
        request's id."""

    def renew_certificate(self, *, certificate_sha256: str, new_key: bool = True) -> None:
        """Renew a certificate the platform issued with a key it holds (PFX enrollment):
        with a new key, or the archived one. The new PKCS#12 waits for its requester to
        collect it; the template's approval rule applies. Returns None: the new
        enrollment request is made after the run commits, at most once per certificate
        (a renewal under way stands), so its id cannot be named in advance."""

    def renew_and_replace(
        self, *, certificate_sha256: str, template: str = "", new_key: bool = True
    ) -> None:
        """Renew a certificate and replace it in every store the inventory found it in
        (a key made on the device where the store type re-enrolls, else a platform key),
        under ``template`` or, empty, the template Certyard issued it with. A certificate
        found nowhere is renewed as ``renew_certificate`` does (``new_key`` applies then).
        Returns None, as ``renew_certificate`` (stores that make their own keys need no
        enrollment request at all); the jobs it queues record this registration as their
        source."""

    def send_mail(
        self, *, subject: str, body: str, to: Sequence[str], from_address: str | None = None
    ) -> None:
        """Send a plain-text mail now, through the platform's configured mail server.

        Unlike the requests above it is not deferred: the handler learns the server's
        answer. ``to`` lists the recipients (``Name <address>`` accepted);
        ``from_address`` None or empty means the platform's default sender. Raises what
        :mod:`smtplib` raises (``SMTPRecipientsRefused``, ``SMTPSenderRefused``,
        ``SMTPAuthenticationError``, ``SMTPResponseException``, ``SMTPException``) or
        ``OSError`` when the server cannot be reached; a handler turns them into a
        :class:`HandlerError`.
        """


class JobCompleteHandler(Handler):
    """Runs when an orchestrator job finishes, selected by job type and store type."""

    kind = HandlerKind.JOB_COMPLETE

    @abc.abstractmethod
    def handle(self, job: JobCompleteContext, platform: Platform) -> HandlerResult | None:
        """React to the finished job; use ``platform`` for follow-up work."""
