"""The cost unit of QUOTA_ACTIVE_COST (imageflow.domain.image_cost: output megapixels) and the
budget's check in services.image_handler.auth and imageflow.direct_uploads."""
from __future__ import annotations

import pytest

from imageflow import domain
from imageflow.direct_uploads import within_quota
from imageflow.engine.schema import resolve_operations
from imageflow.settings import Settings
from services.image_handler.auth import Auth, Caller
from services.image_handler.errors import ClientError
from tests.unit.fakes import FakeJobStore

W = domain.AUTO_QUALITY_WEIGHT


def ops(*operations):
    return resolve_operations(None, list(operations))


def test_one_output_costs_the_input_megapixels():
    assert domain.image_cost(ops({"op": "resize", "width": 800}), 12.0) == 12.0
    assert domain.image_cost(ops({"op": "format", "format": "webp", "quality": 80}), 2.0) == 2.0
    assert domain.image_cost([], 0.5) == 0.5


def test_variants_multiply_widths_by_formats():
    variants = {"op": "variants", "widths": [320, 640, 1280], "formats": ["webp", "avif"]}
    assert domain.output_counts(ops(variants)) == (6, 0)
    assert domain.image_cost(ops(variants), 2.0) == 12.0
    assert domain.output_counts(ops({"op": "variants", "widths": [320, 640]})) == (2, 0)
    assert domain.output_counts(ops({"op": "variants", "formats": ["jpeg", "webp", "avif"]})) == (3, 0)


def test_quality_auto_weighs_the_outputs_in_its_format_only():
    auto = {"op": "format", "format": "webp", "quality": "auto"}
    assert domain.output_counts(ops(auto)) == (1, 1)
    assert domain.image_cost(ops(auto), 2.0) == 2.0 * W
    # the renderer gives auto quality to the format op's format; the other variant formats get fixed defaults
    mixed = ops(auto, {"op": "variants", "widths": [320, 640], "formats": ["webp", "avif"]})
    assert domain.output_counts(mixed) == (4, 2)
    assert domain.image_cost(mixed, 1.0) == 2 + 2 * W
    assert domain.output_counts(ops(auto, {"op": "variants", "widths": [320, 640]})) == (2, 2)
    assert domain.output_counts(ops(auto, {"op": "variants", "formats": ["avif"]})) == (1, 0)


def test_the_abusive_job_is_32_weighted_outputs_per_image():
    widths = [160, 320, 480, 640, 800, 1024, 1600, 2048]
    abusive = ops({"op": "format", "format": "avif", "quality": "auto"},
                  {"op": "variants", "widths": widths, "formats": ["avif", "webp", "jpeg", "jxl"]})
    assert domain.output_counts(abusive) == (32, 8)
    assert domain.image_cost(abusive, 1.0) == 24 + 8 * W


def test_an_unknown_size_counts_as_the_assumed_megapixels():
    assert domain.image_cost([]) == domain.ASSUMED_MEGAPIXELS
    assert domain.image_cost([], None) == domain.image_cost([], 0) == domain.ASSUMED_MEGAPIXELS
    assert domain.megapixels(4000, 3000) == 12.0 and domain.megapixels(None, 10) is None


def test_a_jobs_unfinished_cost_is_its_average_times_the_images_left():
    job = domain.Job(job_id="j", total=10, cost=100.0, succeeded=3, failed=1)
    assert domain.unfinished_cost(job) == 60.0
    assert domain.unfinished_cost(domain.Job(job_id="j")) == 0.0


def budget(**env) -> Auth:
    return Auth.from_settings(Settings.from_env({"API_KEYS": "alice=alice-key-0123456789", **env}))


def store_with(*jobs):
    store = FakeJobStore()
    for job in jobs:
        store.create_job(job, [])
    return store


def test_over_the_cost_budget_is_refused_with_the_limit_in_the_details():
    a = budget(QUOTA_ACTIVE_COST="1000")
    alice = Caller("alice", enforced=True)
    jobs = store_with(domain.Job(job_id="a", owner="alice", status=domain.PROCESSING, total=10, cost=600.0,
                                 succeeded=5))                              # 300 unfinished
    a.check_quota(jobs, alice, 5, 700.0)
    with pytest.raises(ClientError) as err:
        a.check_quota(jobs, alice, 5, 701.0)
    assert err.value.status == 429 and err.value.code == "quota_exceeded"
    assert err.value.details == {"limit": "active_cost", "quota": 1000, "active": 300.0, "requested": 701.0,
                                 "room": 700.0}
    assert "QUOTA_ACTIVE_COST" in err.value.message and "output megapixels" in err.value.message


def test_reserving_a_job_again_with_its_real_cost_does_not_count_it_twice():
    a = budget(QUOTA_ACTIVE_COST="1000")
    alice = Caller("alice", enforced=True)
    jobs = FakeJobStore()
    a.reserve_quota(jobs, alice, "first", 10, 0.0)
    a.reserve_quota(jobs, alice, "first", 10, 900.0)       # the same job once its files are probed
    with pytest.raises(ClientError) as err:
        a.reserve_quota(jobs, alice, "second", 1, 101.0)     # a job still being created counts its reserved cost
    assert err.value.details["active"] == 900.0


def test_files_joining_an_open_job_count_their_cost():
    a = budget(QUOTA_ACTIVE_COST="100")
    admit = a.images_admission(Caller("alice", enforced=True))
    open_job = domain.Job(job_id="o", owner="alice", status=domain.OPEN, total=2, cost=60.0)
    image = domain.Image(job_id="o", image_id="i", filename="x.png", input_path="p", cost=30.0)
    assert admit([open_job], [image]) == [image]
    with pytest.raises(ClientError) as err:
        admit([open_job], [image, image])
    assert err.value.details["limit"] == "active_cost" and err.value.details["requested"] == 60.0


def test_direct_uploads_past_the_budget_join_as_failed_images_naming_it():
    open_job = domain.Job(job_id="o", owner="alice", status=domain.OPEN, total=1, cost=50.0)
    joining = [domain.Image(job_id="o", image_id=str(n), filename="x.png", input_path="p", cost=30.0)
               for n in range(3)]
    admitted = within_quota([open_job], joining, 0, 100)
    assert [i.status for i in admitted] == [domain.IMAGE_QUEUED, domain.IMAGE_FAILED, domain.IMAGE_FAILED]
    assert admitted[1].error_code == domain.ErrorCode.QUOTA_EXCEEDED and "QUOTA_ACTIVE_COST" in admitted[1].error
