"""Store management end to end (issue 16): a real agent process runs add, remove, create,
inventory, discovery and reenrollment jobs on PEM folders, PKCS#12 files (made by openssl,
current and -legacy, and by keytool) and JKS/JCEKS keystores (made by keytool). After each
job the store's inventory in the API must match the file as keytool/openssl read it, and
bad input must end the job failed with a clear message and nothing lost.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.certs import Issued, issue
from tests.e2e.conftest import AgentProcess, LivePlatform, orchestrator_approved
from tests.e2e.keystores import (
    keytool_entries,
    keytool_keystore,
    openssl_pkcs12,
    openssl_pkcs12_contents,
    pem_folder_contents,
)
from tests.e2e.management import (
    Pki,
    batch_finished,
    deployed,
    expect,
    inventory_now,
    job_finished,
    job_message,
    pfx_certificate,
    pki_made,
    removed,
    store_inventory,
    store_made,
)

pytestmark = pytest.mark.e2e

PASSWORD = "store-pass-7f3a"
KINDS = ("PEM", "PKCS12-openssl", "PKCS12-legacy", "PKCS12-keytool", "JKS", "JCEKS")


@dataclass
class World:
    platform: LivePlatform
    agent: AgentProcess
    orchestrator: dict[str, Any]
    pki: Pki
    folder: Path
    ca: Issued  # a foreign CA: what the stores held before Certyard touched them
    old: Issued


@pytest.fixture(scope="module")
def world(live_platform: LivePlatform, module_agents: Callable[..., AgentProcess]) -> World:
    folder = module_agents.base / "stores"  # type: ignore[attr-defined]
    folder.mkdir()
    agent = module_agents("mgmt-a", folder=folder)
    agent.start()
    with live_platform.api() as api:
        orchestrator = orchestrator_approved(api, "mgmt-a")
    pki = pki_made(live_platform, label="Mgmt")
    ca = issue("Foreign Root", ca=True, days=3650)
    old = issue("old.example.test", issuer=ca)
    return World(live_platform, agent, orchestrator, pki, folder, ca, old)


def store_type_of(kind: str) -> str:
    return kind.split("-")[0]


def seeded_store(world: World, kind: str, name: str) -> Path:
    """A store as found on a server: the ``old`` certificate (with its key) and, in a Java
    keystore, its CA as a trusted entry."""
    path = world.folder / name
    if kind == "PEM":
        path.mkdir()
        (path / "old.pem").write_text(world.old.pem + world.old.key_pem)
    elif kind in ("PKCS12-openssl", "PKCS12-legacy"):
        openssl_pkcs12(
            path,
            certificate=world.old,
            password=PASSWORD,
            name="old",
            chain=(world.ca,),
            legacy=kind.endswith("legacy"),
        )
    else:
        store_type = "PKCS12" if kind == "PKCS12-keytool" else kind
        keytool_keystore(
            path,
            store_type=store_type,
            password=PASSWORD,
            key_entries={"old": world.old},
            trusted={"foreign-root": world.ca},
        )
    return path


def read_independently(kind: str, path: Path) -> dict[str, str]:
    """{alias (lower case): leaf SHA-256} as keytool (or, for a PEM folder, the files) say."""
    if kind == "PEM":
        return {name: shas[0] for name, shas in pem_folder_contents(path).items() if shas}
    # OpenSSL must be able to read every PKCS#12 Certyard leaves behind too.
    if kind.startswith("PKCS12"):
        openssl_pkcs12_contents(path, password=PASSWORD)
    store_type = "PKCS12" if kind.startswith("PKCS12") else kind
    entries = keytool_entries(path, store_type=store_type, password=PASSWORD)
    return {alias.lower(): entry.sha256 for alias, entry in entries.items()}


def inventory_lower(api: Any, store_id: str) -> dict[str, str]:
    return {alias.lower(): sha for alias, sha in store_inventory(api, store_id).items()}


def alias_of(entries: dict[str, str], sha256: str) -> str | None:
    return next((alias for alias, sha in entries.items() if sha == sha256), None)


@pytest.mark.parametrize("kind", KINDS)
def test_add_again_and_remove_end_with_the_inventory_matching_the_store(
    world: World, kind: str
) -> None:
    path = seeded_store(world, kind, f"add-{kind.lower()}")
    before = read_independently(kind, path)
    with world.platform.api() as api:
        store = store_made(
            api,
            world.orchestrator["id"],
            store_type_of(kind),
            str(path),
            password="" if kind == "PEM" else PASSWORD,
        )
        first = inventory_now(api, store["id"], world.agent)
        assert first["state"] == "succeeded", job_message(first)
        assert inventory_lower(api, store["id"]) == before

        web = pfx_certificate(api, world.pki, f"add-{kind.lower()}")
        # A PEM folder's alias is the file's name: one its file patterns (*.pem) match.
        alias = "web.pem" if kind == "PEM" else "web"
        batch = deployed(api, web["certificate"], [store["id"]], alias=alias)
        done = batch_finished(api, batch["id"], agents=(world.agent,))
        [deployment] = done["deployments"]
        assert deployment["state"] == "written", deployment
        assert deployment["key_origin"] == "platform"
        job = job_finished(api, deployment["job"])
        assert job["state"] == "succeeded" and job["outcome"] == "success", job_message(job)
        assert job["result"]["written"] is True
        assert job["result"]["key_origin"] == "platform"

        after = read_independently(kind, path)
        web_sha = job["result"]["certificate_sha256"]
        assert alias_of(after, web_sha) is not None, after
        # Nothing that was there is lost, and the platform re-read what the agent wrote.
        assert {a: s for a, s in after.items() if s != web_sha} == before
        assert inventory_lower(api, store["id"]) == after

        # Offered again (a re-sent job): the same certificate at the same alias is a no-op.
        again = batch_finished(
            api, deployed(api, web["certificate"], [store["id"]], alias=alias)["id"]
        )
        again_job = job_finished(api, again["deployments"][0]["job"])
        assert again_job["outcome"] == "success", job_message(again_job)
        assert again_job["result"]["written"] is False
        assert read_independently(kind, path) == after

        gone = batch_finished(api, removed(api, web["certificate"], [store["id"]])["id"])
        remove_job = job_finished(api, gone["deployments"][0]["job"])
        assert remove_job["outcome"] == "success", job_message(remove_job)
        assert remove_job["result"] == {"removed": True} or remove_job["result"]["removed"]
        assert read_independently(kind, path) == before
        assert inventory_lower(api, store["id"]) == before


@pytest.mark.parametrize("store_type", ["PEM", "PKCS12", "JKS", "JCEKS"])
def test_create_makes_an_empty_store_the_tools_can_open(world: World, store_type: str) -> None:
    path = world.folder / f"created-{store_type.lower()}"
    with world.platform.api() as api:
        store = store_made(
            api,
            world.orchestrator["id"],
            store_type,
            str(path),
            password="" if store_type == "PEM" else PASSWORD,
        )
        job = expect(api.post(f"stores/{store['id']}/create/"), 202)
        job = job_finished(api, job["job"], agent=world.agent)
        assert job["state"] == "succeeded", job_message(job)
        assert job["result"]["created"] is True
        assert path.exists()
        kind = "PKCS12-created" if store_type == "PKCS12" else store_type
        assert read_independently(kind, path) == {}
        assert store_inventory(api, store["id"]) == {}

        # Creating again: nothing to do, nothing lost.
        again = job_finished(api, expect(api.post(f"stores/{store['id']}/create/"), 202)["job"])
        assert again["state"] == "succeeded", job_message(again)
        assert again["result"]["created"] is False


def test_renew_and_replace_makes_the_new_key_on_the_device_in_every_store_type(
    world: World,
) -> None:
    paths = {
        kind: seeded_store(world, kind, f"rekey-{kind.lower()}")
        for kind in ("PEM", "PKCS12-openssl", "JKS", "JCEKS")
    }
    with world.platform.api() as api:
        stores = {
            kind: store_made(
                api,
                world.orchestrator["id"],
                store_type_of(kind),
                str(path),
                password="" if kind == "PEM" else PASSWORD,
            )
            for kind, path in paths.items()
        }
        web = pfx_certificate(api, world.pki, "rekey")
        for kind, store in stores.items():
            first = batch_finished(
                api,
                deployed(
                    api,
                    web["certificate"],
                    [store["id"]],
                    alias="web.pem" if kind == "PEM" else "web",
                )["id"],
                agents=(world.agent,),
            )
            assert {d["state"] for d in first["deployments"]} == {"written"}, first
        renewal = expect(
            api.post(
                f"certificates/{web['certificate']}/renew-and-replace/",
                json={"template": world.pki.template},
            ),
            202,
        )
        done = batch_finished(api, renewal["id"], agents=(world.agent,), timeout=180)
        assert len(done["deployments"]) == 4, done
        for deployment in done["deployments"]:
            assert deployment["action"] == "reenroll", deployment
            assert deployment["state"] == "written", deployment
            assert deployment["key_origin"] == "device", deployment
        old = expect(api.get(f"certificates/{web['certificate']}/"), 200)
        for kind, path in paths.items():
            entries = read_independently(kind, path)
            assert old["sha256"] not in entries.values(), (kind, entries)
            assert inventory_lower(api, stores[kind]["id"]) == entries
            # The old certificate's entry was replaced at its alias, the others kept.
            assert alias_of(entries, world.old.sha256) is not None, (kind, entries)


def test_discovery_classifies_by_content_and_an_approved_candidate_becomes_a_store(
    world: World,
) -> None:
    root = world.folder / "discover"
    (root / "etc" / "ssl").mkdir(parents=True)
    (root / "skip-me").mkdir()
    (root / "etc" / "ssl" / "site.pem").write_text(world.old.pem + world.old.key_pem)
    (root / "etc" / "ssl" / "site.der").write_bytes(world.old.der)
    (root / "etc" / "ssl" / "only.key").write_text(world.old.key_pem)
    (root / "etc" / "ssl" / "readme.txt").write_text("not a certificate")
    (root / "skip-me" / "hidden.pem").write_text(world.old.pem)
    openssl_pkcs12(root / "etc" / "app.p12", certificate=world.old, password=PASSWORD, name="app")
    keytool_keystore(
        root / "etc" / "app.jks",
        store_type="JKS",
        password=PASSWORD,
        key_entries={"app": world.old},
        trusted={"root": world.ca},
    )
    keytool_keystore(
        root / "etc" / "app.jceks", store_type="JCEKS", password=PASSWORD, trusted={"r": world.ca}
    )
    outside = world.folder.parent / "outside-roots"
    outside.mkdir(exist_ok=True)
    (outside / "secret.pem").write_text(world.old.pem)
    os.symlink(outside, root / "etc" / "link-out")

    oid = world.orchestrator["id"]
    with world.platform.api() as api:
        job = expect(
            api.post(
                f"orchestrators/{oid}/discovery/",
                json={
                    "directories": [str(root)],
                    "file_patterns": [],
                    "ignored_directories": ["skip-me"],
                    "follow_links": True,
                    "max_depth": 8,
                },
            ),
            202,
        )
        job = job_finished(api, job["id"], agent=world.agent)
        assert job["state"] == "succeeded", job_message(job)
        listed = expect(
            api.get("discovery-candidates/", params={"orchestrator": oid, "page_size": 500}), 200
        )
        found = {Path(c["path"]).relative_to(root).as_posix(): c for c in listed["results"]}
        # readme.txt holds no certificate material: not a candidate. skip-me is ignored, and
        # link-out leads outside the agent's roots: never followed.
        assert {path: c["kind"] for path, c in found.items()} == {
            "etc/ssl/site.pem": "pem",
            "etc/ssl/site.der": "der",
            "etc/ssl/only.key": "key_only",
            "etc/app.p12": "pkcs12",
            "etc/app.jks": "jks",
            "etc/app.jceks": "jceks",
        }, found
        assert found["etc/ssl/site.pem"]["private_key"] is True
        assert found["etc/app.jks"]["password_needed"] is True
        assert all(c["state"] == "new" for c in found.values())

        jks = found["etc/app.jks"]
        expect(
            api.post(
                f"discovery-candidates/{jks['id']}/approve/",
                json={"store_type": "JKS", "password": PASSWORD},
            ),
            200,
            201,
        )
        approved = expect(api.get("discovery-candidates/", params={"orchestrator": oid}), 200)
        [candidate] = [c for c in approved["results"] if c["id"] == jks["id"]]
        assert candidate["state"] == "approved" and candidate["store"], candidate
        inventory_now(api, candidate["store"], world.agent)
        assert inventory_lower(api, candidate["store"]) == read_independently(
            "JKS", root / "etc" / "app.jks"
        )

        # Run again after a file went away: it is reported gone, the others known.
        (root / "etc" / "ssl" / "site.der").unlink()
        rerun = expect(
            api.post(
                f"orchestrators/{oid}/discovery/",
                json={"directories": [str(root)], "ignored_directories": ["skip-me"]},
            ),
            202,
        )
        assert job_finished(api, rerun["id"], agent=world.agent)["state"] == "succeeded"
        listed = expect(api.get("discovery-candidates/", params={"orchestrator": oid}), 200)
        states = {Path(c["path"]).name: c["state"] for c in listed["results"]}
        assert states["site.der"] == "gone"


# --- Bad input: each job ends failed with a clear message, nothing in the store lost ------


def _outside(world: World) -> Path:
    outside = world.folder.parent / "not-a-root"
    outside.mkdir(exist_ok=True)
    return outside


BAD_INPUT: dict[str, tuple[str, Callable[[World], tuple[Path, str]], str]] = {}


def _case(name: str, store_type: str, expected: str):  # type: ignore[no-untyped-def]
    def register(make: Callable[[World], tuple[Path, str]]) -> Callable[[World], tuple[Path, str]]:
        BAD_INPUT[name] = (store_type, make, expected)
        return make

    return register


@_case("wrong store password", "JKS", "password")
def _wrong_password(world: World) -> tuple[Path, str]:
    return seeded_store(world, "JKS", "bad-password.jks"), "not-the-password"


@_case("corrupt keystore", "JCEKS", "")
def _corrupt(world: World) -> tuple[Path, str]:
    path = world.folder / "bad-corrupt.jceks"
    path.write_bytes(b"\xce\xce\xce\xce" + os.urandom(200))
    return path, PASSWORD


# What the platform itself refuses once the agent has reported its roots (issue 17); a
# link leading out of the roots is seen by the agent alone.
_REFUSED_BY_THE_PLATFORM = {"path outside the roots", "path outside the roots by .."}


@_case("path outside the roots", "PKCS12", "root")
def _outside_direct(world: World) -> tuple[Path, str]:
    return _outside(world) / "direct.p12", PASSWORD


@_case("path outside the roots by ..", "PKCS12", "root")
def _outside_dotdot(world: World) -> tuple[Path, str]:
    _outside(world)
    return world.folder / ".." / "not-a-root" / "dotdot.p12", PASSWORD


@_case("path outside the roots by a link", "PEM", "root")
def _outside_link(world: World) -> tuple[Path, str]:
    link = world.folder / "bad-link"
    if not link.exists():
        os.symlink(_outside(world), link)
    return link, ""


@_case("duplicate alias without overwrite", "PKCS12", "alias")
def _duplicate(world: World) -> tuple[Path, str]:
    return seeded_store(world, "PKCS12-openssl", "bad-duplicate.p12"), PASSWORD


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_the_job_with_a_clear_message_and_loses_nothing(
    world: World, case: str
) -> None:
    store_type, make, expected = BAD_INPUT[case]
    path, password = make(world)
    real = Path(os.path.realpath(path))
    snapshot = (
        {p.name: p.read_bytes() for p in real.iterdir()}
        if real.is_dir()
        else (real.read_bytes() if real.exists() else None)
    )
    with world.platform.api() as api:
        if case in _REFUSED_BY_THE_PLATFORM:
            # The agent reported its roots: the platform refuses the store itself, with the
            # agent's own words, so no job can be sent there.
            refused = api.post(
                "stores/",
                json={
                    "store_type": store_type,
                    "store_path": str(path),
                    "orchestrator": world.orchestrator["id"],
                    "password": password,
                },
            )
            assert refused.status_code == 400, refused.text
            message = str(refused.json()["error"]["fields"]["store_path"])
            assert ("outside the folders" in message) or ("'..'" in message), message
            assert (real.read_bytes() if real.is_file() else None) == snapshot
            return
        store = store_made(api, world.orchestrator["id"], store_type, str(path), password=password)
        web = pfx_certificate(api, world.pki, f"bad-{len(case)}-{abs(hash(case)) % 10000}")
        alias = "old" if "duplicate" in case else "web"
        batch = batch_finished(
            api,
            deployed(api, web["certificate"], [store["id"]], alias=alias, overwrite=False)["id"],
        )
        [deployment] = batch["deployments"]
        assert deployment["state"] == "failed", deployment
        job = job_finished(api, deployment["job"])
        assert job["outcome"] == "failure", job_message(job)
        message = (deployment["message"] or "") + job_message(job)
        assert expected.lower() in message.lower(), message
        assert "Traceback" not in message
    after = (
        {p.name: p.read_bytes() for p in real.iterdir()}
        if real.is_dir()
        else (real.read_bytes() if real.exists() else None)
    )
    assert after == snapshot, "the store changed although the job failed"


@pytest.mark.parametrize("kind", KINDS)
def test_the_judges_read_what_keytool_and_openssl_made(tmp_path: Path, kind: str) -> None:
    """The independent readers the tests above compare with see every seeded entry."""
    ca = issue("Judge Root", ca=True)
    old = issue("old.judge.test", issuer=ca)
    world = World(None, None, {}, None, tmp_path, ca, old)  # type: ignore[arg-type]
    entries = read_independently(kind, seeded_store(world, kind, f"judge-{kind.lower()}"))
    assert entries["old.pem" if kind == "PEM" else "old"] == old.sha256
    if kind in ("PKCS12-keytool", "JKS", "JCEKS"):
        assert entries["foreign-root"] == ca.sha256
