"""The agent's side of secret references (``orchestrators.secret_refs``): every
``ref+agent:`` reference of a job resolved before the store type sees it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from orchestrators.sdk import JobConfiguration
from orchestrators.secret_refs import (
    SecretContext,
    SecretProvider,
    is_reference,
    secret_resolve,
)


def job_secrets_resolve(
    job: JobConfiguration,
    providers: Mapping[str, type[SecretProvider]],
    context: SecretContext,
) -> JobConfiguration:
    """``job`` with every reference in its store password, store properties and entry
    parameters replaced by the secret; unchanged when it holds none.

    Raises:
        SecretUnavailable: naming the field and the reference that could not be resolved.
    """
    store = job.store

    def resolve(value: Any, where: str) -> Any:
        return secret_resolve(value, where, providers, context, side="agent")

    password = resolve(store.password, "store password")
    properties = {
        key: resolve(value, f"store property {key}") for key, value in store.properties.items()
    }
    payload = job.payload
    parameters = payload.get("entry_parameters")
    if isinstance(parameters, dict) and any(is_reference(v, "agent") for v in parameters.values()):
        payload = {
            **payload,
            "entry_parameters": {
                key: resolve(value, f"entry parameter {key}") for key, value in parameters.items()
            },
        }
    if password is store.password and properties == store.properties and payload is job.payload:
        return job
    return dataclasses.replace(
        job,
        store=dataclasses.replace(store, password=password, properties=properties),
        payload=payload,
    )
