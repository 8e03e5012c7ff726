"""URL import rules without the network: which addresses may be fetched, which URLs are
accepted, how URL lists and CSVs are read."""
from __future__ import annotations

import ipaddress

import pytest

from imageflow.safe_http import (
    ByteBudget,
    FetchError,
    FetchPolicy,
    _system_resolver,
    fetch,
    is_public_address,
    parse_hosts,
    parse_networks,
    post,
    validate_url,
)
from imageflow.settings import Settings, SettingsError
from services.image_handler.url_lists import (
    MAX_CSV_BYTES,
    check_entries,
    entries_from_csv,
    entries_from_json,
    filename_from_url,
)


@pytest.mark.parametrize("address", [
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "127.0.0.1", "127.9.9.9", "0.0.0.0", "169.254.169.254",
    "100.64.0.1", "100.100.100.200", "224.0.0.1", "255.255.255.255", "198.18.0.1", "240.0.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1",
    "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",   # IPv4-mapped
    "2002:a00:1::", "2002:7f00:1::",                                    # 6to4 around private IPv4
    "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe",                              # NAT64 around private IPv4
    "2001::1",                                                          # Teredo
])
def test_private_loopback_link_local_and_metadata_addresses_are_not_public(address):
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                     "64:ff9b::808:808"])
def test_public_addresses_are_public(address):
    assert is_public_address(ipaddress.ip_address(address))


def resolver(table):
    def resolve(host, port):
        if host not in table:
            raise AssertionError(f"unexpected DNS lookup of {host}")
        return table[host]
    return resolve


def test_a_name_is_refused_if_any_of_its_addresses_is_private():
    policy = FetchPolicy(resolver=resolver({"mixed.example": ["93.184.216.34", "10.0.0.7"],
                                            "public.example": ["93.184.216.34"]}))
    assert [str(a) for a in policy.resolve("public.example", 443)] == ["93.184.216.34"]
    with pytest.raises(FetchError) as err:
        policy.resolve("mixed.example", 443)
    assert err.value.code == "blocked_address" and "10.0.0.7" in err.value.reason


def test_metadata_host_names_are_refused_before_any_lookup():
    policy = FetchPolicy(resolver=resolver({}))
    for name in ("metadata.google.internal", "METADATA.google.internal.", "metadata"):
        with pytest.raises(FetchError) as err:
            policy.resolve(name, 80)
        assert err.value.code == "blocked_address"


def test_localhost_is_refused_by_default():
    with pytest.raises(FetchError) as err:
        FetchPolicy().resolve("localhost", 80)
    assert err.value.code == "blocked_address"


def test_the_test_allow_list_and_host_map_are_off_by_default_and_exact():
    default = FetchPolicy.from_settings(Settings.from_env({}))
    assert default.allow == () and default.hosts == {}
    policy = FetchPolicy.from_settings(Settings.from_env({
        "FETCH_ALLOW_CIDRS": "127.0.0.1/32", "FETCH_HOSTS_OVERRIDE": "images.test=127.0.0.1,evil.test=10.1.2.3"}))
    assert [str(a) for a in policy.resolve("images.test", 80)] == ["127.0.0.1"]
    assert [str(a) for a in policy.resolve("127.0.0.1", 80)] == ["127.0.0.1"]
    for host in ("127.0.0.2", "evil.test"):
        with pytest.raises(FetchError):
            policy.resolve(host, 80)


def test_malformed_test_settings_fail_fast():
    with pytest.raises(SettingsError):
        parse_networks("127.0.0.1/33")
    with pytest.raises(SettingsError):
        parse_hosts("images.test")
    with pytest.raises(SettingsError):
        parse_hosts("images.test=not-an-ip")
    assert parse_hosts("a.test=127.0.0.1|::1") == {"a.test": ["127.0.0.1", "::1"]}


@pytest.mark.parametrize("url", ["https://example.com/a.jpg", "http://example.com:8080/x?y=1",
                                 "  https://cdn.example.org/img.png  "])
def test_http_and_https_urls_are_accepted(url):
    assert validate_url(url) == url.strip()


@pytest.mark.parametrize("url, words", [
    ("ftp://example.com/a.jpg", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("gopher://127.0.0.1:6379/_INFO", "only http and https"),
    ("javascript:alert(1)", "only http and https"),
    ("https://", "no host"),
    ("https://user:secret@example.com/a.jpg", "user name or password"),
    ("https://exa mple.com/a.jpg", "spaces or control"),
    ("https://example.com/\r\nHost: evil", "spaces or control"),
    ("https://example.com:99999/", "malformed"),
    ("https://example.com/" + "a" * 2100, "longer than"),
    ("", "empty"),
])
def test_other_urls_are_refused_with_a_reason(url, words):
    with pytest.raises(FetchError) as err:
        validate_url(url)
    assert words in err.value.reason


def test_csv_with_a_header_keeps_name_and_product_columns():
    data = "\ufeffURL,Name,Product\nhttps://a.example/1.jpg,Red shoe,SKU-1\n\nhttps://a.example/2.png,,SKU-2\n"
    entries = entries_from_csv(data.encode("utf-8"))
    assert [(e.url, e.meta, e.row) for e in entries] == [
        ("https://a.example/1.jpg", {"name": "Red shoe", "product": "SKU-1"}, 2),
        ("https://a.example/2.png", {"product": "SKU-2"}, 4)]
    assert [e.filename for e in entries] == ["Red shoe", "2.png"]


def test_csv_without_header_takes_the_first_column_and_rejects_bad_rows_by_number():
    data = b"https://a.example/x/photo%201.jpg\nnot a url\nftp://a.example/y.jpg\n"
    good, bad = check_entries(entries_from_csv(data))
    assert [e.url for e in good] == ["https://a.example/x/photo%201.jpg"]
    assert good[0].filename == "photo 1.jpg"
    assert [(r.row, r.code) for r in bad] == [(2, "invalid_url"), (3, "invalid_url")]
    assert bad[0].message.startswith("row 2:")


def test_csv_with_semicolons_is_read():
    entries = entries_from_csv(b"url;name\nhttps://a.example/1.jpg;one\n")
    assert entries[0].url == "https://a.example/1.jpg" and entries[0].meta == {"name": "one"}


@pytest.mark.parametrize("data, code", [(b"\xff\xfe\x00bad", "invalid_csv"), (b"\n\n", "invalid_csv"),
                                        (b"x" * (MAX_CSV_BYTES + 1), "csv_too_large")])
def test_unreadable_csvs_are_refused(data, code):
    with pytest.raises(FetchError) as err:
        entries_from_csv(data)
    assert err.value.code == code


def test_json_url_lists_take_strings_and_objects():
    entries = entries_from_json(["https://a.example/1.jpg",
                                 {"url": "https://a.example/2.jpg", "name": "two", "product": 7, "x": {"no": 1}}])
    assert [(e.url, e.meta) for e in entries] == [("https://a.example/1.jpg", {}),
                                                  ("https://a.example/2.jpg", {"name": "two", "product": "7"})]
    for bad in ([], "https://a.example/1.jpg", [42], [{"name": "no url"}]):
        with pytest.raises(FetchError):
            entries_from_json(bad)


def test_filename_from_url():
    assert filename_from_url("https://a.example/dir/caf%C3%A9.png?size=2") == "café.png"
    assert filename_from_url("https://a.example/") == "image"


@pytest.mark.parametrize("url", ["http://a..b/x.png", "http://.example.com/x.png", "http://" + "a" * 64 + ".com/x.png",
                                 "http://" + ("abcdefgh." * 30) + "com/x.png"])
def test_host_names_no_dns_can_hold_are_refused_as_invalid_urls(url):
    """They used to pass validation and raise UnicodeError (IDNA) inside the fetch."""
    with pytest.raises(FetchError) as err:
        validate_url(url)
    assert err.value.code == "invalid_url"


def test_non_ascii_hosts_and_paths_are_normalised_as_a_browser_sends_them():
    assert validate_url("https://bücher.example/straße/ö.png?q=é") == \
        "https://xn--bcher-kva.example/stra%C3%9Fe/%C3%B6.png?q=%C3%A9"
    assert validate_url("http://example.com:8080/a%20b.png#frag") == "http://example.com:8080/a%20b.png"
    assert validate_url("http://[2606:4700::1111]:8443/x.png") == "http://[2606:4700::1111]:8443/x.png"


@pytest.mark.parametrize("url", ["http://a..b/x.png", "http://example.test/ü.png", "http://" + "a" * 64 + ".test/"])
def test_fetch_and_post_raise_only_fetch_errors(url):
    """A hostile URL given straight to fetch/post (past validate_url's callers) and a resolver that blows up."""
    def broken_resolver(host, port):
        raise UnicodeError("label empty or too long")
    policy = FetchPolicy(timeout=2, resolver=broken_resolver)
    with pytest.raises(FetchError):
        fetch(url, policy)
    with pytest.raises(FetchError):
        post(url, b"{}", {}, policy)


def test_the_system_resolver_turns_idna_errors_into_fetch_errors():
    with pytest.raises(FetchError) as err:
        _system_resolver("a..b", 80)
    assert err.value.code == "dns_error"


def test_the_byte_budget_makes_a_download_wait_and_never_exceeds_its_limit():
    import threading
    import time

    from imageflow.metrics import FETCH_BYTES_IN_FLIGHT

    budget = ByteBudget(100)
    assert budget.reserve(300) == 100          # a chunk larger than the budget is cut to it: it always fits
    assert FETCH_BYTES_IN_FLIGHT._value.get() == 100
    got = []
    waiter = threading.Thread(target=lambda: got.append(budget.reserve(10)))
    waiter.start()
    end = time.monotonic() + 10
    while budget.waiting != 1 and time.monotonic() < end:
        time.sleep(0.01)
    assert budget.waiting == 1 and got == []    # the second download waits; it does not fail
    budget.release(100)
    waiter.join(10)
    assert got == [10] and budget.in_flight == 10 and budget.peak == 100 and budget.waits == 1
    budget.release(10)
    assert budget.in_flight == 0 and FETCH_BYTES_IN_FLIGHT._value.get() == 0


def test_the_in_flight_budget_setting():
    assert Settings.from_env({}).fetch_max_in_flight_bytes == 32 * 1024 * 1024
    assert Settings.from_env({"FETCH_MAX_IN_FLIGHT_BYTES": "1048576"}).fetch_max_in_flight_bytes == 1048576
