"""API keys, ownership, quotas and signed links (services.image_handler.auth), with an in-memory job list."""
from __future__ import annotations

import hashlib

import pytest

from imageflow import domain
from imageflow.settings import Settings, SettingsError
from services.image_handler.auth import (
    ANONYMOUS,
    Auth,
    Caller,
    key_from_headers,
    parse_keys,
)
from services.image_handler.errors import ClientError
from tests.unit.fakes import FakeJobStore

ALICE_KEY = "alice-key-0123456789"
BOB_KEY = "bob-key-0123456789ab"


def auth(**env) -> Auth:
    return Auth.from_settings(Settings.from_env({"API_KEYS": f"alice={ALICE_KEY},bob={BOB_KEY}", **env}))


def jobs_of(jobs):
    """The in-memory job store holding ``jobs``."""
    store = FakeJobStore()
    for job in jobs:
        store.create_job(job, [])
    return store


def test_keys_are_off_by_default_and_everyone_is_the_anonymous_caller():
    open_auth = Auth.from_settings(Settings.from_env({}))
    assert not open_auth.enabled
    assert open_auth.caller({}) is ANONYMOUS
    assert ANONYMOUS.can_access(domain.Job(job_id=domain.new_id(), owner="alice"))


def test_a_valid_key_names_its_owner_in_either_header():
    a = auth()
    assert a.caller({"Authorization": f"Bearer {ALICE_KEY}"}) == Caller("alice", enforced=True)
    assert a.caller({"X-API-Key": BOB_KEY}).owner == "bob"


@pytest.mark.parametrize("headers, code", [({}, "api_key_required"), ({"Authorization": "Bearer "}, "api_key_required"),
                                           ({"Authorization": "Bearer wrong-key-0123456789"}, "invalid_api_key"),
                                           ({"X-API-Key": ALICE_KEY + "x"}, "invalid_api_key")])
def test_missing_or_wrong_keys_are_401(headers, code):
    with pytest.raises(ClientError) as err:
        auth().caller(headers)
    assert err.value.status == 401 and err.value.code == code


def test_keys_may_be_configured_as_sha256_digests():
    digest = hashlib.sha256(ALICE_KEY.encode()).hexdigest()
    a = Auth.from_settings(Settings.from_env({"API_KEYS": f"alice=sha256:{digest}"}))
    assert a.caller({"X-API-Key": ALICE_KEY}).owner == "alice"


@pytest.mark.parametrize("raw", ["alice", "alice=short", f"alice={ALICE_KEY},bob={ALICE_KEY}", "=k" * 10,
                                 "alice=sha256:xyz"])
def test_malformed_key_lists_fail_fast(raw):
    with pytest.raises(SettingsError):
        parse_keys(raw)


def test_key_from_headers():
    assert key_from_headers({"Authorization": "bearer abc"}) == "abc"
    assert key_from_headers({"Authorization": "Basic abc"}) is None
    assert key_from_headers({"X-API-Key": " k "}) == "k"


def test_a_job_is_visible_only_to_its_owner_when_keys_are_on():
    job = domain.Job(job_id=domain.new_id(), owner="alice")
    assert Caller("alice", enforced=True).can_access(job)
    assert not Caller("bob", enforced=True).can_access(job)


def active(owner, total, done=0, status=domain.PROCESSING):
    return domain.Job(job_id=domain.new_id(), owner=owner, total=total, succeeded=done, status=status)


def test_quota_of_active_jobs_counts_only_the_callers_queued_and_processing_jobs():
    a = auth(QUOTA_ACTIVE_JOBS="2")
    alice = Caller("alice", enforced=True)
    jobs = jobs_of([active("alice", 1), active("alice", 1, status=domain.COMPLETED), active("bob", 1),
                     active("bob", 1)])
    a.check_quota(jobs, alice, 1)                         # one active: room for one more
    jobs.create_job(active("alice", 1, status=domain.QUEUED), [])
    with pytest.raises(ClientError) as err:
        a.check_quota(jobs, alice, 1)
    assert err.value.status == 429 and "2 active jobs" in err.value.message and "'alice'" in err.value.message


def test_quota_of_images_counts_unfinished_images():
    a = auth(QUOTA_ACTIVE_IMAGES="10")
    alice = Caller("alice", enforced=True)
    jobs = jobs_of([active("alice", 8, done=3)])        # 5 unfinished
    a.check_quota(jobs, alice, 5)
    with pytest.raises(ClientError) as err:
        a.check_quota(jobs, alice, 6)
    assert err.value.status == 429 and err.value.details == {"limit": "active_images", "quota": 10, "active": 5,
                                                             "requested": 6, "room": 5}


def test_no_quota_by_default():
    auth().check_quota(jobs_of([active("alice", 10_000)] * 50), Caller("alice", enforced=True), 10_000)


def test_signed_links_verify_only_for_their_path_and_query_until_they_expire():
    a = auth()
    url = a.sign_link("http://h/api/v1/jobs/j/images/i/output?variant=small", 60, now=1000)
    query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
    path = "/api/v1/jobs/j/images/i/output"
    assert a.verify_link(path, query, now=1030)
    assert not a.verify_link(path, query, now=1061)                                   # expired
    assert not a.verify_link("/api/v1/jobs/j/images/other/output", query, now=1030)   # another file
    assert not a.verify_link(path, {**query, "variant": "large"}, now=1030)           # another variant
    assert not a.verify_link(path, {**query, "expires": "99999"}, now=1030)           # extended by hand
    other = Auth.from_settings(Settings.from_env({"API_KEYS": f"alice={ALICE_KEY}", "URL_SIGNING_SECRET": "s"}))
    assert not other.verify_link(path, query, now=1030)                               # another secret


def test_links_are_left_alone_when_keys_are_off():
    assert Auth().sign_link("http://h/x", 60) == "http://h/x"
