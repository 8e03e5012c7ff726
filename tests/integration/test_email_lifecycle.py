"""The email Cloud Function on lifecycle events (issue 16): a cancelled job, a retried run
mailed again, the savings line."""
from __future__ import annotations

import email
from email import policy

from functions.email_notifier import main as fn
from tests.integration.test_email_function import JOB, cloud_event, completed, env  # noqa: F401 (fixture)


def mails(outbox):
    return {f.name: email.message_from_bytes(f.read_bytes(), policy=policy.default) for f in outbox.glob("*.eml")}


def test_a_cancelled_job_says_so_with_its_counts(env):  # noqa: F811
    fn.notify(cloud_event(completed(status="cancelled", total=10, succeeded=3, failed=0, skipped=7)))
    [message] = mails(env / "outbox").values()
    assert "Your job was cancelled: 3 of 10 images are ready" in message["Subject"]
    text = message.get_body(("plain",)).get_content()
    assert "3 succeeded, 0 failed, 7 skipped, 10 in all" in text


def test_each_run_of_a_retried_job_is_mailed_once(env):  # noqa: F811
    fn.notify(cloud_event(completed()))
    fn.notify(cloud_event(completed(run=1, status="completed", succeeded=5, failed=0)))
    fn.notify(cloud_event(completed(run=1, status="completed", succeeded=5, failed=0)))  # redelivered
    sent = mails(env / "outbox")
    assert sorted(sent) == [f"{JOB}.1.eml", f"{JOB}.eml"]
    assert "All 5 of your images are ready" in sent[f"{JOB}.1.eml"]["Subject"]


def test_the_savings_are_in_the_text_and_the_html(env):  # noqa: F811
    fn.notify(cloud_event(completed(bytes_in=923_000_000, bytes_out=111_000_000)))
    [message] = mails(env / "outbox").values()
    assert "Saved 774 MB, 88 %" in message.get_body(("plain",)).get_content()
    assert "Saved 774 MB, 88 %" in message.get_body(("html",)).get_content()
    assert fn.savings_line({"bytes_in": 100, "bytes_out": 150}) == \
        "The outputs are 50 bytes larger than the originals (50 %)"
    assert fn.savings_line({}) == ""
