"""Signed links (imageflow.links): what one service signs, another verifies, for one path and
query until it expires, and only with the same secret."""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from imageflow.links import SECRET_FILE, LinkSigner, keys_on
from imageflow.settings import Settings, SettingsError

KEYS = "alice=alice-key-0123456789,bob=bob-key-0123456789ab"
URL = "http://h/api/v1/jobs/j/images/i/output?variant=small"
PATH = "/api/v1/jobs/j/images/i/output"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """Every signer here reads its generated secret from a fresh data directory."""
    monkeypatch.setenv("IMAGEFLOW_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def signer(**env) -> LinkSigner:
    return LinkSigner.from_settings(Settings.from_env({"API_KEYS": KEYS,
                                                       "IMAGEFLOW_DATA_DIR": os.environ["IMAGEFLOW_DATA_DIR"], **env}))


def args_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def test_a_signed_link_keeps_its_url_and_adds_expires_and_sig():
    url = signer().sign(URL, 1060)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "h", PATH)
    args = args_of(url)
    assert args["variant"] == "small" and args["expires"] == "1060" and len(args["sig"]) == 64


def test_a_link_verifies_only_for_its_path_and_query_until_it_expires():
    s = signer()
    args = args_of(s.sign_for(URL, 60, now=1000))
    assert s.verify(PATH, args, now=1030)
    assert s.verify(PATH, args, now=1060)                                              # the last second
    assert not s.verify(PATH, args, now=1061)                                          # expired
    assert not s.verify("/api/v1/jobs/j/images/other/output", args, now=1030)          # another file
    assert not s.verify(PATH, {**args, "variant": "large"}, now=1030)                  # another variant
    assert not s.verify(PATH, {**args, "extra": "1"}, now=1030)                        # a parameter added
    assert not s.verify(PATH, {**args, "expires": "99999"}, now=1030)                  # extended by hand
    tampered = args["sig"][:-1] + ("1" if args["sig"][-1] == "0" else "0")
    assert not s.verify(PATH, {**args, "sig": tampered}, now=1030)                     # tampered
    assert not s.verify(PATH, {k: v for k, v in args.items() if k != "sig"}, now=1030)  # unsigned
    assert not s.verify(PATH, {**args, "expires": "soon"}, now=1030)                   # not a number


def test_links_signed_in_one_process_verify_in_another_with_the_same_settings():
    """The interaction manager signs, the image-handler verifies: each derives the key itself."""
    args = args_of(signer().sign(URL, 2000))
    assert signer().verify(PATH, args, now=1000)
    configured = signer(URL_SIGNING_SECRET="shared-secret").sign(URL, 2000)
    assert signer(URL_SIGNING_SECRET="shared-secret").verify(PATH, args_of(configured), now=1000)


@pytest.mark.parametrize("other", [{"URL_SIGNING_SECRET": "another"}, {"IMAGEFLOW_DATA_DIR": "elsewhere"}])
def test_a_different_secret_or_data_directory_does_not_verify(other, tmp_path):
    """The secret is URL_SIGNING_SECRET, else the data directory's generated one: a process holding
    another value, or on another data directory, refuses the link."""
    if "IMAGEFLOW_DATA_DIR" in other:
        other = {"IMAGEFLOW_DATA_DIR": str(tmp_path / other["IMAGEFLOW_DATA_DIR"])}
    args = args_of(signer().sign(URL, 2000))
    assert not signer(**other).verify(PATH, args, now=1000)


@pytest.mark.parametrize("keys", ["", KEYS])
def test_the_secret_is_never_derived_from_other_settings(keys, data_dir):
    """Unset, the secret was sha256("imageflow-links:" + API_KEYS): with keys off a public constant,
    with keys on guessable from any key list. Now a link signed that way is refused, and the secret
    is 384 random bits kept in the data directory, readable only by its owner."""
    settings = Settings.from_env({"API_KEYS": keys, "IMAGEFLOW_DATA_DIR": str(data_dir)})
    derived = LinkSigner(hashlib.sha256(("imageflow-links:" + keys).encode()).digest())
    assert not LinkSigner.from_settings(settings).verify(PATH, args_of(derived.sign(URL, 2000)), now=1000)
    secret_file = data_dir / SECRET_FILE
    assert len(secret_file.read_text().strip()) >= 64
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    # kept: a restarted process signs with the same secret
    assert LinkSigner.from_settings(settings).key == LinkSigner.from_settings(settings).key


def test_processes_starting_at_once_on_one_data_directory_agree(data_dir):
    """Six processes race to create the secret: all end up with the same one."""
    code = ("import sys; from imageflow.links import LinkSigner; from imageflow.settings import Settings; "
            "print(LinkSigner.from_settings(Settings.from_env({'IMAGEFLOW_DATA_DIR': sys.argv[1]})).key.hex())")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(data_dir)], stdout=subprocess.PIPE, env=env)
             for _ in range(6)]
    keys = {proc.communicate(timeout=120)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(keys) == 1 and len(next(iter(keys))) == 64
    assert [p.name for p in data_dir.iterdir()] == [SECRET_FILE]   # no temp file left behind


GCP = {"IMAGEFLOW_BACKEND": "gcp", "GCP_PROJECT": "p", "GCS_BUCKET": "b"}


def test_on_gcp_keys_need_a_configured_secret():
    """No shared data directory on GCP: with keys on and no URL_SIGNING_SECRET the services refuse
    to start (a per-pod secret would break every link between pods); with it they start."""
    with pytest.raises(SettingsError, match="URL_SIGNING_SECRET is required with API_KEYS"):
        Settings.from_env({**GCP, "API_KEYS": KEYS})
    configured = signer(**GCP, URL_SIGNING_SECRET="shared-secret")
    assert configured.verify(PATH, args_of(signer(URL_SIGNING_SECRET="shared-secret").sign(URL, 2000)), now=1000)
    # keys off: no process verifies another's links there; each signs with its own random key
    open_api = LinkSigner.from_settings(Settings.from_env(GCP))
    assert open_api.key != hashlib.sha256(b"imageflow-links:").digest()


def test_keys_on_follows_api_keys():
    assert not keys_on(Settings.from_env({}))
    assert not keys_on(Settings.from_env({"API_KEYS": " , "}))
    assert keys_on(Settings.from_env({"API_KEYS": KEYS}))
