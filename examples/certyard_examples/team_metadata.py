"""A metadata generator: the team that owns a certificate, from its DNS names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.base import CertificateInfo, MetadataFieldDeclaration, MetadataGenerator
from handlers.parameters import Parameter, ParameterError, ParameterType


def _suffixes(lines: list[str]) -> dict[str, str]:
    """``suffix=team`` lines as {suffix: team}; ``ValueError`` naming the first wrong line."""
    teams: dict[str, str] = {}
    for line in lines:
        suffix, equals, team = line.partition("=")
        suffix = suffix.strip().lower().removeprefix("*.").strip(".")
        team = team.strip()
        if not equals or not suffix or not team:
            raise ValueError(f"{line!r} is not suffix=team (e.g. payments.example.com=payments)")
        if suffix in teams:
            raise ValueError(f"the suffix {suffix} is given twice")
        teams[suffix] = team
    return teams


class TeamFromDnsSuffix(MetadataGenerator):
    """Sets the team that owns a certificate from the DNS domain its names belong to.

    - **teams**: ``suffix=team`` lines, e.g. ``payments.example.com=payments`` and
      ``example.com=platform``. A name matches a suffix when it is that domain or lies
      under it (``api.payments.example.com``); case is ignored.
    - **field**: the metadata field to set (default ``team``). Registering the generator
      creates it (one-line text) when it does not exist yet.

    The certificate's DNS names and its common name are compared; the longest matching
    suffix wins, so the most specific team is chosen. A certificate no suffix matches is
    left as it is.
    """

    label = "Team from DNS suffix (example)"
    parameters = (
        Parameter(
            "teams",
            ParameterType.LIST,
            help="suffix=team lines, e.g. payments.example.com=payments; longest suffix wins.",
            required=True,
        ),
        Parameter(
            "field",
            help="The metadata field that receives the team.",
            default="team",
            pattern=r"[A-Za-z][A-Za-z0-9_]{0,59}",
        ),
    )

    @classmethod
    def declared_fields(cls, config: Mapping[str, Any]) -> tuple[MetadataFieldDeclaration, ...]:
        # The field's name is a parameter: declare the one this registration fills.
        return (
            MetadataFieldDeclaration(
                config.get("field") or "team",
                label="Team",
                description="The team that owns the certificate, from its DNS names.",
            ),
        )

    @classmethod
    def config_check(cls, config: Mapping[str, Any]) -> None:
        try:
            _suffixes(config["teams"])
        except ValueError as exc:
            raise ParameterError({"teams": str(exc)}) from exc

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        # Parsed once per batch, not once per certificate. A ValueError here (a line
        # saved before this version checked it) fails the run with its message.
        self._teams = _suffixes(self.config.get("teams") or [])
        self._field = self.config.get("field") or "team"

    def generate(self, certificate: CertificateInfo) -> Mapping[str, Any]:
        names = [san[4:] for san in certificate.sans if san.startswith("DNS:")]
        names.append(certificate.common_name)
        best_suffix, best_team = "", None
        for name in names:
            labels = name.lower().strip(".").split(".")
            # The name itself, then each parent domain: the first hit is this name's longest.
            for start in range(len(labels)):
                suffix = ".".join(labels[start:])
                team = self._teams.get(suffix)
                if team is not None:
                    if len(suffix) > len(best_suffix):
                        best_suffix, best_team = suffix, team
                    break
        return {self._field: best_team} if best_team else {}
