"""The PKI and enrollment backend end to end: a real platform (gunicorn and the django-q2
worker cluster, as `make run` starts them), driven over HTTP only.

A built-in root and intermediate issue through the REST API with approvals by real
users; the chain, the CRL and the OCSP answers the running server publishes at the URLs
written into its certificates are checked with the ``openssl`` command line; the worker
runs the event handlers. A real CFSSL's certificate database is synchronized into the
inventory by the worker (progress in the API and the console), and a real Pebble issues
and revokes through the ACME gateway.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID

from tests.certs import csr_for
from tests.e2e.conftest import (
    LivePlatform,
    certificates_listed,
    console_client,
    platform_python,
    start_platform,
    stop_platform,
    wait_for,
)

pytestmark = pytest.mark.e2e

DOMAIN = "pki.e2e.test"
RECORDED_EVENTS = [
    "enrollment.pending",
    "enrollment.approved",
    "enrollment.denied",
    "certificate.issued",
    "certificate.revoked",
]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    """A platform of its own: as `make run` does, it writes its own address into the
    certificates it issues (CERTYARD_PUBLIC_URL left unset)."""
    live = start_platform(tmp_path_factory.mktemp("pki"))
    yield live
    stop_platform(live)


def in_platform(platform: LivePlatform, code: str) -> Any:
    """Run ``code`` in the platform's environment; the JSON its last line prints."""
    return json.loads(platform_python(platform, code).strip().splitlines()[-1])


def token_client(platform: LivePlatform, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{platform.url}/api/v1/",
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    )


def openssl(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *args], cwd=folder, capture_output=True, text=True, timeout=30, check=False
    )


def pem_certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def cdp_url(certificate: x509.Certificate) -> str:
    """The one URL of the certificate's CRL distribution point."""
    [point] = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    [url] = [name.value for name in point.full_name or []]
    return str(url)


def aia_url(certificate: x509.Certificate, method: x509.ObjectIdentifier) -> str:
    access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    [url] = [d.access_location.value for d in access.value if d.access_method == method]
    return str(url)


def created(answer: httpx.Response, state: str) -> dict[str, Any]:
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["state"] == state, body
    return body


# --- 1. The built-in CA, over HTTP, checked by openssl ------------------------------------

SETUP = """
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from certyard.accounts.services import api_token_create
from certyard.enrollment.models import Template
from certyard.enrollment.services import template_errors
from certyard.workflows.models import HandlerRegistration
from certyard.workflows.services import registration_save

for name, approval in (("pki-web", False), ("pki-web-approved", True)):
    template = Template(name=name, ca_id={ca_id}, allowed_domains=[{domain!r}],
                        validity_days=30, require_approval=approval)
    assert not template_errors(template), template_errors(template)
    template.save()

tokens = {{}}
for username, codenames in (
    ("alice", ["add_enrollmentrequest", "view_enrollmentrequest", "approve_enrollmentrequest"]),
    # Deciding on alice's request is acting on it (issue 14): the approvers' grant-all.
    ("bob", ["view_enrollmentrequest", "approve_enrollmentrequest",
             "manage_any_enrollmentrequest"]),
):
    user = get_user_model().objects.create_user(username, password=username + "-pw-7c1e")
    user.user_permissions.set(Permission.objects.filter(
        content_type__app_label="enrollment", codename__in=codenames))
    tokens[username] = api_token_create(user=user, name="e2e", expires_in=None)[1]

registration = registration_save(
    registration=HandlerRegistration(name="pki recorder", handler="test.record",
                                     events={events!r}),
    values={{"path": {path!r}}},
)
print(json.dumps({{"tokens": tokens, "registration": registration.pk}}))
"""


def test_builtin_ca_enrollment_approval_revocation_crl_and_ocsp_checked_by_openssl(
    platform: LivePlatform, tmp_path: Path
) -> None:
    admin = platform.api()
    root = admin.post("cas/", json={"name": "E2E Root", "path_length": 1})
    assert root.status_code == 201, root.text
    root_ca = root.json()
    issuing = admin.post(
        "cas/", json={"name": "E2E Issuing", "key_algorithm": "EC-P256", "parent": root_ca["id"]}
    )
    assert issuing.status_code == 201, issuing.text
    intermediate = issuing.json()
    assert intermediate["urls"]["crl_url"].startswith(platform.url + "/pki/")

    recorded = tmp_path / "events.jsonl"
    setup = in_platform(
        platform,
        SETUP.format(
            ca_id=intermediate["id"], domain=DOMAIN, events=RECORDED_EVENTS, path=str(recorded)
        ),
    )
    alice = token_client(platform, setup["tokens"]["alice"])
    bob = token_client(platform, setup["tokens"]["bob"])

    # Issued at once on the plain template.
    plain = created(
        alice.post("enrollments/", json={"template": "pki-web", "csr": csr_for(f"a.{DOMAIN}")}),
        "issued",
    )
    assert plain["requested_by"] == "alice" and plain["certificate"]
    # Waiting on the approval template; the requester may not approve her own.
    waiting = created(
        alice.post(
            "enrollments/", json={"template": "pki-web-approved", "csr": csr_for(f"b.{DOMAIN}")}
        ),
        "pending",
    )
    own = alice.post(f"enrollments/{waiting['id']}/approve/", json={})
    assert own.status_code == 403, own.text
    assert own.json()["error"]["code"] == "self_approval"
    approved = bob.post(f"enrollments/{waiting['id']}/approve/", json={"comment": "ok"})
    assert approved.status_code == 200, approved.text
    approved_body = approved.json()
    assert approved_body["state"] == "issued" and approved_body["decided_by"] == "bob"
    # Another one bob denies, saying why.
    refused = created(
        alice.post(
            "enrollments/", json={"template": "pki-web-approved", "csr": csr_for(f"c.{DOMAIN}")}
        ),
        "pending",
    )
    denied = bob.post(f"enrollments/{refused['id']}/deny/", json={"comment": "not this host"})
    assert denied.status_code == 200, denied.text
    assert denied.json()["state"] == "denied"
    assert denied.json()["decision_comment"] == "not this host"
    assert not denied.json()["certificate_pem"]

    # The first certificate revoked for key compromise (alice may not revoke).
    forbidden = alice.post(f"certificates/{plain['certificate']}/revoke/", json={"reason": 1})
    assert forbidden.status_code == 403, forbidden.text
    revoked = admin.post(f"certificates/{plain['certificate']}/revoke/", json={"reason": 1})
    assert revoked.status_code == 204, revoked.text

    # --- What a relying party sees, with openssl -----------------------------------------
    (tmp_path / "root.pem").write_text(root_ca["certificate_pem"])
    (tmp_path / "intermediate.pem").write_text(intermediate["certificate_pem"])
    (tmp_path / "chain.pem").write_text(plain["chain_pem"])
    (tmp_path / "revoked.pem").write_text(plain["certificate_pem"])
    (tmp_path / "good.pem").write_text(approved_body["certificate_pem"])
    for leaf in ("revoked.pem", "good.pem"):
        verified = openssl(
            tmp_path, "verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", leaf
        )
        assert verified.returncode == 0 and f"{leaf}: OK" in verified.stdout, (
            verified.stdout + verified.stderr
        )

    certificate = pem_certificate(plain["certificate_pem"])
    crl_url = cdp_url(certificate)
    assert crl_url == intermediate["urls"]["crl_url"]
    crl = httpx.get(crl_url, timeout=10)  # anonymous: a relying party logs in nowhere
    assert crl.status_code == 200
    assert crl.headers["content-type"] == "application/pkix-crl"
    (tmp_path / "crl.der").write_bytes(crl.content)
    listed = openssl(
        tmp_path,
        "crl",
        "-inform",
        "DER",
        "-in",
        "crl.der",
        "-CAfile",
        "intermediate.pem",
        "-noout",
        "-text",
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "verify OK" in listed.stdout + listed.stderr
    serial = format(certificate.serial_number, "X")
    assert f"Serial Number: {serial.zfill(len(serial) + len(serial) % 2)}" in listed.stdout
    assert "Key Compromise" in listed.stdout
    good_serial = format(pem_certificate(approved_body["certificate_pem"]).serial_number, "X")
    assert good_serial not in listed.stdout
    # openssl's own chain check with every CRL on the way (the intermediate's points at
    # the root's): the good leaf passes, the revoked one fails.
    root_crl = httpx.get(cdp_url(pem_certificate(intermediate["certificate_pem"])), timeout=10)
    assert root_crl.status_code == 200
    (tmp_path / "crls.pem").write_text(
        "".join(
            x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM).decode()
            for der in (crl.content, root_crl.content)
        )
    )
    for leaf, outcome in (("good.pem", "good.pem: OK"), ("revoked.pem", "certificate revoked")):
        checked = openssl(
            tmp_path,
            "verify",
            "-crl_check_all",
            "-CRLfile",
            "crls.pem",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "chain.pem",
            leaf,
        )
        assert outcome in checked.stdout + checked.stderr, checked.stdout + checked.stderr
        assert (checked.returncode == 0) == (leaf == "good.pem")

    # AIA: where to fetch the issuer (DER), and the OCSP responder.
    issuer = httpx.get(aia_url(certificate, AuthorityInformationAccessOID.CA_ISSUERS), timeout=10)
    assert issuer.status_code == 200
    assert issuer.content == pem_certificate(intermediate["certificate_pem"]).public_bytes(
        serialization.Encoding.DER
    )
    ocsp_url = aia_url(certificate, AuthorityInformationAccessOID.OCSP)
    assert ocsp_url == intermediate["urls"]["ocsp_url"]
    for leaf, status in (("revoked.pem", "revoked"), ("good.pem", "good")):
        # The intermediate signs its own answers: trusting the root is enough.
        answer = openssl(
            tmp_path,
            "ocsp",
            "-issuer",
            "intermediate.pem",
            "-cert",
            leaf,
            "-url",
            ocsp_url,
            "-CAfile",
            "root.pem",
            "-timeout",
            "10",
        )
        output = answer.stdout + answer.stderr
        assert answer.returncode == 0, output
        assert "Response verify OK" in output, output
        assert f"{leaf}: {status}" in output, output
        if status == "revoked":
            assert "Reason: keyCompromise" in output, output

    # --- The worker ran the recorder for every event -------------------------------------
    expected = Counter(
        {
            "enrollment.pending": 2,
            "enrollment.approved": 1,
            "enrollment.denied": 1,
            "certificate.issued": 2,
            "certificate.revoked": 1,
        }
    )

    def all_succeeded() -> list[dict[str, Any]] | None:
        answer = admin.get(
            "handler-runs/", params={"registration": setup["registration"], "page_size": 100}
        )
        assert answer.status_code == 200, answer.text
        runs = answer.json()["results"]
        assert not [r for r in runs if r["state"] == "failed"], runs
        done = Counter(r["event_kind"] for r in runs if r["state"] == "succeeded")
        return runs if done == expected else None

    wait_for(
        all_succeeded,
        timeout=60,
        every=1,
        what=f"the recorder's runs {dict(expected)}\n{platform.log()[-3000:]}",
    )
    events = [json.loads(line) for line in recorded.read_text().splitlines()]
    assert Counter(e["kind"] for e in events) == expected
    [revocation] = [e for e in events if e["kind"] == "certificate.revoked"]
    assert revocation["data"]["reason_code"] == 1
    assert revocation["data"]["serial_number"] == format(certificate.serial_number, "x")
    [denial] = [e for e in events if e["kind"] == "enrollment.denied"]
    assert denial["data"]["enrollment_id"] == refused["id"]
    assert denial["data"]["comment"] == "not this host"


# --- 2. CFSSL synchronized by the worker, with progress in the API and the console -------

GATEWAY = """
import json
from certyard.workflows.models import HandlerRegistration
from certyard.workflows.services import registration_save
registration = registration_save(
    registration=HandlerRegistration(name={name!r}, handler={handler!r}, timeout_seconds=20),
    values=json.loads({values!r}),
)
print(json.dumps(registration.pk))
"""


def gateway_registered(platform: LivePlatform, name: str, handler: str, **values: Any) -> int:
    code = GATEWAY.format(name=name, handler=handler, values=json.dumps(values))
    return int(in_platform(platform, code))


def test_cfssl_full_sync_runs_in_the_worker_and_shows_in_the_console(
    platform: LivePlatform, tmp_path: Path
) -> None:
    from handlers.builtin.cfssl import CfsslGateway
    from handlers.gateways import EnrollmentType, GatewayEnrollment
    from handlers.parameters import parameters_check
    from tests.servers.cfssl import cfssl_server

    admin = platform.api()
    with cfssl_server(tmp_path / "cfssl") as cfssl:
        # Issued at the CA directly, behind the platform's back.
        direct = CfsslGateway(parameters_check(CfsslGateway.parameters, {"url": cfssl.url}))
        outside = {}
        for n in range(20):
            name = f"host{n}.cfssl.e2e.test"
            record = direct.enroll(
                GatewayEnrollment(
                    request_id=f"outside-{n}",
                    type=EnrollmentType.NEW,
                    product_id="default",
                    csr_pem=csr_for(name),
                    subject=f"CN={name}",
                    sans=(f"DNS:{name}",),
                )
            )
            outside[name] = record
        with closing(sqlite3.connect(cfssl.certdb_path)) as db:
            [(rows,)] = db.execute("SELECT count(*) FROM certificates").fetchall()
        assert rows == 20

        gateway_id = gateway_registered(
            platform,
            "CFSSL e2e",
            "certyard.cfssl",
            url=cfssl.url,
            certdb_path=str(cfssl.certdb_path),
        )
        started = admin.post(f"gateways/{gateway_id}/sync/", json={"full": True})
        assert started.status_code == 202, started.text
        sync_id = started.json()["id"]
        assert started.json()["state"] == "running"

        def finished(sync_id: int) -> dict[str, Any] | None:
            answer = admin.get(f"gateway-syncs/{sync_id}/")
            assert answer.status_code == 200, answer.text
            return answer.json() if answer.json()["state"] != "running" else None

        sync = wait_for(
            lambda: finished(sync_id), timeout=60, what=f"the sync\n{platform.log()[-3000:]}"
        )
        assert sync["state"] == "finished" and not sync["error"], sync
        # Every certdb row read once; new to the inventory: the 20 and CFSSL's own CA.
        assert sync["processed"] == rows and sync["added"] == 21, sync
        # Run by the cluster's worker as its task, not by the web process.
        ran = in_platform(
            platform,
            "import json\nfrom django_q.models import Task\n"
            f"print(json.dumps(list(Task.objects.filter(name='gateway sync {sync_id}')"
            ".values_list('func', 'success', 'result'))))\n",
        )
        assert ran == [["certyard.enrollment.tasks.gateway_sync_run", True, rows]], ran
        found = certificates_listed(admin, search="Certyard Test CFSSL CA")
        assert [c["common_name"] for c in found].count("Certyard Test CFSSL CA") == 1

        listed = {c["common_name"]: c for c in certificates_listed(admin, search=".cfssl.e2e.test")}
        assert set(listed) == set(outside)
        for name, record in outside.items():
            assert listed[name]["serial_number"] == record.serial_number.lower().lstrip("0")

        with closing(console_client(platform)) as console:
            page = console.get(f"/gateways/{gateway_id}/")
            assert page.status_code == 200
            assert 'data-testid="sync-progress"' in page.text
            assert f'id="sync-{sync_id}"' in page.text and 'data-state="finished"' in page.text
            assert f'data-processed="{rows}"' in page.text and 'data-added="21"' in page.text
            card = console.get(f"/gateways/syncs/{sync_id}/")
            assert card.status_code == 200 and 'data-state="finished"' in card.text
            assert "hx-trigger" not in card.text  # a finished sync is not polled any more

        # An incremental sync starts after the last one's cursor: nothing read again.
        again = admin.post(f"gateways/{gateway_id}/sync/", json={})
        assert again.status_code == 202, again.text
        incremental = wait_for(lambda: finished(again.json()["id"]), timeout=60, what="the sync")
        assert incremental["state"] == "finished", incremental
        assert (incremental["processed"], incremental["added"]) == (0, 0), incremental

        # A synchronized certificate revoked through the platform, at CFSSL.
        chosen = listed["host7.cfssl.e2e.test"]
        revoked = admin.post(f"certificates/{chosen['id']}/revoke/", json={"reason": 4})
        assert revoked.status_code == 204, revoked.text
        statuses = cfssl.ocsp_statuses()
        assert statuses[int(chosen["serial_number"], 16)].certificate_status.name == "REVOKED"
        others = [s for serial, s in statuses.items() if serial != int(chosen["serial_number"], 16)]
        assert {s.certificate_status.name for s in others} == {"GOOD"}


# --- 3. ACME through the platform ---------------------------------------------------------


def test_acme_enrollment_and_revocation_through_the_platform(
    platform: LivePlatform, tmp_path: Path
) -> None:
    from handlers.builtin.acme import account_key_generate
    from tests.servers.pebble import pebble_server

    admin = platform.api()
    with pebble_server(tmp_path / "pebble") as pebble:
        gateway_id = gateway_registered(
            platform,
            "Pebble e2e",
            "certyard.acme",
            directory_url=pebble.directory_url,
            account_key_pem=account_key_generate(),
            ca_bundle=pebble.ca_bundle_pem,
            challenge_solver="none",
        )
        in_platform(
            platform,
            "import json\n"
            "from certyard.enrollment.models import Template\n"
            "from certyard.enrollment.services import template_errors\n"
            f"t = Template(name='acme-e2e', gateway_id={gateway_id}, product_id='default',\n"
            "              allowed_domains=['acme.e2e.test'])\n"
            "assert not template_errors(t), template_errors(t)\n"
            "t.save()\n"
            "print(json.dumps(t.pk))\n",
        )
        issued = created(
            admin.post(
                "enrollments/",
                json={"template": "acme-e2e", "csr": csr_for("www.acme.e2e.test")},
            ),
            "issued",
        )
        (tmp_path / "root.pem").write_text(pebble.root_pem())
        (tmp_path / "chain.pem").write_text(issued["chain_pem"])
        (tmp_path / "leaf.pem").write_text(issued["certificate_pem"])
        verified = openssl(
            tmp_path, "verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem"
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert pebble.certificate_status(issued["serial_number"])["Status"] == "Valid"

        revoked = admin.post(f"certificates/{issued['certificate']}/revoke/", json={"reason": 1})
        assert revoked.status_code == 204, revoked.text
        assert pebble.certificate_status(issued["serial_number"])["Status"] == "Revoked"
        again = admin.post(f"certificates/{issued['certificate']}/revoke/", json={"reason": 1})
        assert again.status_code == 409 and again.json()["error"]["code"] == "already_revoked"
