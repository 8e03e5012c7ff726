"""The outstanding-task counter survives crashes (issue 14): it is written in the same SQLite
transaction as the job document, so a writer SIGKILLed at any moment leaves the two agreeing.
A real OS process folds results, joins images and changes statuses as fast as it can and is
killed several times; after each kill the counter equals what the jobs add up to."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from imageflow.jobstore import scan_outstanding
from imageflow.jobstore.sqlite import SqliteJobStore

ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent('''
    import sys
    from pathlib import Path
    from imageflow import domain
    from imageflow.jobstore.sqlite import SqliteJobStore
    from imageflow.messages import Result

    store = SqliteJobStore(Path(sys.argv[1]))
    n = 0
    while True:
        job = domain.Job(job_id=domain.new_id(), status=domain.OPEN)
        store.create_job(job, [])
        images = [domain.Image(job_id=job.job_id, image_id=domain.new_id(), filename="a.png",
                               input_path=f"{job.job_id}/input/a") for _ in range(6)]
        store.add_images(job.job_id, images[:3], max_total=10, now=domain.utcnow())
        store.add_images(job.job_id, images[3:], max_total=10, now=domain.utcnow())
        store.close_job(job.job_id, domain.utcnow())
        for image in images[:4]:  # one result at a time, each one redelivered
            result = Result(job_id=job.job_id, image_id=image.image_id, status="succeeded", output_path="o")
            store.record_results([result, result])
        if n % 3 == 0:
            store.delete_job(job.job_id)
        n += 1
        print(n, flush=True)
''')


def test_a_writer_killed_at_any_moment_leaves_the_counter_exact(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    SqliteJobStore(path).close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for round_ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env,
                                start_new_session=True)
        try:
            for _ in range(3 + round_ * 2):  # some jobs done, then killed somewhere in the next
                assert proc.stdout.readline(), "the writer stopped early"
            time.sleep(0.01 * round_)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
        store = SqliteJobStore(path)
        try:
            counted, scanned = store.outstanding_tasks(), scan_outstanding(store)
            assert counted == scanned and scanned > 0, (round_, counted, scanned)
        finally:
            store.close()


def test_a_database_from_before_the_counter_is_counted_when_opened(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    from imageflow import domain

    store = SqliteJobStore(path)
    job = domain.Job(job_id=domain.new_id(), status=domain.PROCESSING, total=3, succeeded=1)
    store.create_job(job, [])
    with store.db.transaction() as conn:
        conn.execute("DROP TABLE counters")  # what an older version left
    store.close()
    reopened = SqliteJobStore(path)
    try:
        assert reopened.outstanding_tasks() == scan_outstanding(reopened) == 2
    finally:
        reopened.close()
