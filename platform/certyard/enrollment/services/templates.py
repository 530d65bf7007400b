"""Checking and saving enrollment templates: one checker for admin, the API and tests."""

from __future__ import annotations

import re
from typing import Any

from certyard.enrollment import policy
from certyard.enrollment.gateways import GatewayFailed, gateway_call
from certyard.enrollment.models import Template
from certyard.errors import ServiceError
from certyard.inventory.models import MetadataField
from certyard.pki import crypto
from certyard.pki.crypto import EXTENDED_KEY_USAGES, KEY_USAGES
from certyard.pki.models import KeyAlgorithm
from handlers.base import HandlerKind

_DOMAIN = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")


def _list_of_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def template_errors(template: Template, *, check_product: bool = True) -> dict[str, str]:
    """Every problem with a template, by field name (empty: it can be saved)."""
    errors: dict[str, str] = {}
    if (template.ca_id is None) == (template.gateway_id is None):
        errors["ca"] = "Choose either a built-in CA or a CA gateway (one of them)."
    if template.ca_id is not None and template.ca.purpose:
        errors["ca"] = (
            f"{template.ca.name} is the platform's own CA ({template.ca.get_purpose_display()}): "
            "it certifies orchestrators and issues for no template. Choose another CA."
        )
    if template.gateway_id is not None:
        gateway = template.gateway
        if gateway.kind != HandlerKind.GATEWAY:
            errors["gateway"] = f"{gateway.name} is not a CA gateway registration."
        elif not template.product_id:
            errors["product_id"] = "Name the gateway's product to issue under."
        elif check_product:
            product_id, values = template.product_id, dict(template.product_parameters or {})
            try:
                gateway_call(
                    gateway,
                    "check the product",
                    lambda g: g.validate_product(product_id, values),
                )
            except GatewayFailed as exc:
                errors["product_id"] = exc.message
    if not 1 <= template.validity_days <= 3650:
        errors["validity_days"] = "Validity must be between 1 and 3,650 days."
    checks = (
        ("allowed_key_types", KeyAlgorithm.values, True),
        ("key_usage", KEY_USAGES, False),
        ("extended_key_usage", tuple(EXTENDED_KEY_USAGES), False),
    )
    for name, allowed, required in checks:
        value = getattr(template, name)
        if not _list_of_strings(value):
            errors[name] = "A list of names."
            continue
        unknown = [item for item in value if item not in allowed]
        if unknown:
            errors[name] = f"Unknown: {', '.join(unknown)}. Allowed: {', '.join(allowed)}."
        elif required and not value:
            errors[name] = "Allow at least one."
    if "key_usage" not in errors and "allowed_key_types" not in errors and template.key_usage:
        useless = [
            kind
            for kind in dict.fromkeys(template.allowed_key_types)
            if not crypto.key_usages_for(template.key_usage, kind)
        ]
        if useless:
            errors["key_usage"] = (
                f"None of these key usages applies to {', '.join(useless)} keys "
                "(keyEncipherment and dataEncipherment are for RSA keys, keyAgreement for EC "
                "keys; Ed25519 keys only sign): add digital_signature, or allow other key "
                "types. Usages a key cannot use are left out of its certificate."
            )
    if not _list_of_strings(template.allowed_domains):
        errors["allowed_domains"] = "A list of domain names."
    else:
        bad = [d for d in template.allowed_domains if not _DOMAIN.fullmatch(d.lower().strip("."))]
        if bad:
            errors["allowed_domains"] = f"Not domain names: {', '.join(bad)}."
    if template.san_pattern:
        try:
            re.compile(template.san_pattern)
        except re.error as exc:
            errors["san_pattern"] = f"Not a regular expression: {exc}."
    subject_problems = policy.subject_attributes_errors(template.subject_attributes)
    if subject_problems:
        errors["subject_attributes"] = " ".join(subject_problems)
    if not _list_of_strings(template.required_metadata):
        errors["required_metadata"] = "A list of metadata field names."
    else:
        known = set(
            MetadataField.objects.filter(name__in=template.required_metadata).values_list(
                "name", flat=True
            )
        )
        unknown = [name for name in template.required_metadata if name not in known]
        if unknown:
            errors["required_metadata"] = f"No metadata field named: {', '.join(unknown)}."
    if not isinstance(template.product_parameters, dict):
        errors["product_parameters"] = "An object of parameter values."
    return errors


def template_save(template: Template) -> Template:
    """Save a template after :func:`template_errors` found nothing."""
    errors = template_errors(template)
    if errors:
        field, message = next(iter(errors.items()))
        raise ServiceError(
            f"{field}: {message}", fields={name: [text] for name, text in errors.items()}
        )
    template.save()
    return template
