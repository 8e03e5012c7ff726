"""The email function's claim stores (files locally, Firestore on the emulator): a job is
mailed once; a send that died mid-way is taken over after the lease instead of being lost;
a refused mail is never recorded as sent."""
from __future__ import annotations

import threading

import pytest

from functions.email_notifier import claims as claim_stores
from functions.email_notifier.mailers import TransientError

JOB = "cd" * 16


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(params=["local", "gcp"])
def claims(request, tmp_path, clock):
    if request.param == "gcp":
        emulators = request.getfixturevalue("gcp_emulators")
        settings = request.getfixturevalue("gcp_settings")
        emulators.wipe_firestore(settings.gcp_project)
        return claim_stores.FirestoreClaims(settings.gcp_project, lease_seconds=60, clock=clock)
    return claim_stores.FileClaims(tmp_path / "claims", lease_seconds=60, clock=clock)


def test_claim_is_taken_once_then_marked_sent(claims):
    assert claims.state(JOB) is None
    assert claims.claim(JOB)
    assert claims.state(JOB) == "sending"
    claims.mark_sent(JOB)
    assert claims.state(JOB) == "sent"
    assert not claims.claim(JOB)


def test_a_released_claim_is_taken_again(claims):
    assert claims.claim(JOB)
    claims.release(JOB)
    assert claims.state(JOB) is None
    assert claims.claim(JOB)


def test_a_send_in_progress_asks_for_a_retry_then_is_taken_over(claims, clock):
    assert claims.claim(JOB)                       # this instance dies before mark_sent
    with pytest.raises(TransientError, match="retry later"):
        claims.claim(JOB)
    clock.now += 61
    assert claims.claim(JOB)                       # the lease ran out: taken over, mailed
    claims.mark_sent(JOB)
    assert not claims.claim(JOB)


def test_a_refused_mail_is_not_sent_again_nor_recorded_as_sent(claims):
    assert claims.claim(JOB)
    claims.mark_refused(JOB, "SendGrid refused the mail (400)")
    assert claims.state(JOB) == "refused"
    assert not claims.claim(JOB)


def test_of_racing_claims_exactly_one_wins(claims):
    wins, errors = [], []
    barrier = threading.Barrier(4)

    def race():
        barrier.wait()
        try:
            wins.append(claims.claim(JOB))
        except TransientError:
            errors.append(1)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1 and len(wins) + len(errors) == 4


def test_local_claims_from_before_the_states_count_as_sent(tmp_path):
    directory = tmp_path / "claims"
    directory.mkdir()
    (directory / JOB).touch()
    claims = claim_stores.FileClaims(directory)
    assert claims.state(JOB) == "sent" and not claims.claim(JOB)
    assert [p.name for p in directory.iterdir()] == [JOB]  # no temp file left behind
