"""Signed links (imageflow.links): what one service signs, another verifies, for one path and
query until it expires, and only with the same secret."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from imageflow.links import LinkSigner, keys_on
from imageflow.settings import Settings

KEYS = "alice=alice-key-0123456789,bob=bob-key-0123456789ab"
URL = "http://h/api/v1/jobs/j/images/i/output?variant=small"
PATH = "/api/v1/jobs/j/images/i/output"


def signer(**env) -> LinkSigner:
    return LinkSigner.from_settings(Settings.from_env({"API_KEYS": KEYS, **env}))


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


@pytest.mark.parametrize("other", [{"URL_SIGNING_SECRET": "another"}, {"API_KEYS": "alice=alice-key-0123456789"}])
def test_a_different_secret_or_key_list_does_not_verify(other):
    """The secret is URL_SIGNING_SECRET, else derived from API_KEYS: a service missing either
    (or holding another value) refuses the link."""
    args = args_of(signer().sign(URL, 2000))
    assert not signer(**other).verify(PATH, args, now=1000)


def test_keys_on_follows_api_keys():
    assert not keys_on(Settings.from_env({}))
    assert not keys_on(Settings.from_env({"API_KEYS": " , "}))
    assert keys_on(Settings.from_env({"API_KEYS": KEYS}))
