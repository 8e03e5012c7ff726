"""A hardened HTTP client for URLs that callers give us (image imports, webhooks): it never
lets a caller reach our own network.

SSRF rules, applied to every URL and again to every redirect:

- http and https only, no credentials in the URL, at most 2048 characters;
- the host name is resolved once and *every* address it resolves to must be public: no
  private, loopback, link-local (cloud metadata 169.254.169.254), shared (100.64/10),
  multicast, reserved or unspecified address, IPv4 hidden in IPv6 (mapped, 6to4, NAT64)
  included; the connection then goes to the checked address itself, so a second DNS
  answer (rebinding) cannot swap it for another;
- size (``FETCH_MAX_BYTES``) and time (``FETCH_TIMEOUT_SECONDS`` for the whole fetch,
  redirects included, enforced by a watchdog that closes the socket) are bounded;
- ``download`` streams a body in chunks (URL imports go straight to storage) under a
  per-process :class:`ByteBudget` (``FETCH_MAX_IN_FLIGHT_BYTES``); ``fetch`` reads a small
  body (an overlay) into memory;
- no ``Accept-Encoding`` is sent, so nothing is decompressed; the content is sniffed
  from its bytes by the image engine (``probe``), never trusted from Content-Type.

Tests run image servers on 127.0.0.1; ``FETCH_ALLOW_CIDRS`` lets them through and
``FETCH_HOSTS_OVERRIDE`` maps test names to addresses (both empty by default).
"""
from __future__ import annotations

import functools
import http.client
import io
import ipaddress
import logging
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from .metrics import FETCH_BYTES_IN_FLIGHT
from .settings import Settings, SettingsError

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
BLOCKED_NAMES = ("metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal")
USER_AGENT = "ImageFlow/1.0"

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


class FetchError(Exception):
    """A URL that cannot be fetched: ``code`` for programs, ``reason`` a sentence for people."""

    def __init__(self, code: str, reason: str):
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


# -- addresses -----------------------------------------------------------------------------
def is_public_address(ip: Address) -> bool:
    """True for a globally routable unicast address; IPv4 embedded in IPv6 is judged as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return is_public_address(ip.ipv4_mapped)
        if ip.sixtofour:
            return is_public_address(ip.sixtofour)
        if ip.teredo or ip in _NAT64_LOCAL:
            return False
        if ip in _NAT64:
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_link_local)


def _system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError("dns_error", f"the host name {host!r} does not resolve ({exc.strerror})") from None
    except (UnicodeError, OSError, ValueError) as exc:  # IDNA refuses the name (empty or long label, ...)
        raise FetchError("dns_error", f"the host name {host!r} cannot be looked up ({exc})") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass(frozen=True)
class FetchPolicy:
    """Limits and address rules for one kind of outbound request (import or webhook)."""

    timeout: float = 20.0
    max_bytes: int = 25 * 1024 * 1024
    max_redirects: int = 5
    allow: tuple = ()                                 # networks let through anyway (tests only)
    hosts: dict = field(default_factory=dict)         # name -> [addresses], consulted before DNS (tests only)
    resolver: Resolver = _system_resolver

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> "FetchPolicy":
        """The policy from FETCH_* settings; raises SettingsError on a malformed allow list or host map."""
        values = dict(timeout=settings.fetch_timeout_seconds, max_bytes=settings.fetch_max_bytes,
                      max_redirects=settings.fetch_max_redirects, allow=parse_networks(settings.fetch_allow_cidrs),
                      hosts=parse_hosts(settings.fetch_hosts_override))
        values.update(overrides)
        return cls(**values)

    def resolve(self, host: str, port: int) -> list[Address]:
        """Every address of ``host``, each one checked; raises FetchError if any is not allowed."""
        name = host.lower().rstrip(".")
        if name in BLOCKED_NAMES:
            raise FetchError("blocked_address", f"{host} is a cloud metadata host")
        try:
            raw = [str(ipaddress.ip_address(name))]       # a literal address needs no lookup
        except ValueError:
            raw = self.hosts.get(name) or self.resolver(name, port)
        return self._checked(host, raw)

    def check_without_lookup(self, url: str) -> None:
        """The rules of ``resolve`` applied now to every address the URL names without a DNS
        lookup: a metadata host name, an address in any notation the resolver takes (127.0.0.2,
        127.1, 2130706433, [::1], ::ffff:10.0.0.1), localhost, a FETCH_HOSTS_OVERRIDE name. Raises
        FetchError like ``resolve``. A name that needs DNS passes: only a lookup at the time of the
        request can tell where it points (``resolve`` checks it then)."""
        host = urlsplit(url).hostname or ""
        name = host.lower().rstrip(".")
        if name in BLOCKED_NAMES:
            raise FetchError("blocked_address", f"{host} is a cloud metadata host")
        if name == "localhost" or name.endswith(".localhost"):
            raw = self.hosts.get(name) or ["127.0.0.1", "::1"]   # loopback by definition (RFC 6761)
        else:
            try:
                infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
                raw = list(dict.fromkeys(info[4][0] for info in infos))
            except (socket.gaierror, UnicodeError, ValueError):   # not a numeric address
                raw = self.hosts.get(name)
        if raw:
            self._checked(host, raw)

    def _checked(self, host: str, raw: list[str]) -> list[Address]:
        addresses = []
        for text in raw:
            try:
                addresses.append(ipaddress.ip_address(text.split("%", 1)[0]))
            except ValueError:
                raise FetchError("dns_error", f"{host} resolved to an unusable address {text!r}") from None
        if not addresses:
            raise FetchError("dns_error", f"the host name {host!r} has no address")
        for ip in addresses:
            if not (is_public_address(ip) or any(ip in net for net in self.allow)):
                shown = host if host == str(ip) else f"{host} ({ip})"
                raise FetchError("blocked_address", f"{shown} is a private, loopback, link-local or reserved "
                                                    "address; only public addresses can be fetched")
        return addresses


def parse_networks(text: str) -> tuple:
    """``"127.0.0.1/32, ::1"`` -> networks (FETCH_ALLOW_CIDRS)."""
    networks = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(f"FETCH_ALLOW_CIDRS: {item!r} is not an address or network") from None
    return tuple(networks)


def parse_hosts(text: str) -> dict:
    """``"a.test=10.0.0.1, b.test=127.0.0.1|::1"`` -> {name: [addresses]} (FETCH_HOSTS_OVERRIDE)."""
    hosts: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, sep, addresses = item.partition("=")
        values = [a.strip() for a in addresses.split("|") if a.strip()]
        try:
            for value in values:
                ipaddress.ip_address(value)
        except ValueError:
            values = []
        if not sep or not name.strip() or not values:
            raise SettingsError(f"FETCH_HOSTS_OVERRIDE: {item!r} is not name=address[|address...]")
        hosts[name.strip().lower().rstrip(".")] = values
    return hosts


# -- URLs ----------------------------------------------------------------------------------
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


def _ascii_host(host: str) -> str:
    """The host as DNS sees it (IDNA for a non-ASCII name); FetchError for a name no DNS can hold."""
    if host.startswith("["):
        return host
    labels = host.rstrip(".").split(".")
    if any(not label for label in labels):
        raise FetchError("invalid_url", f"the host name {host[:100]!r} has an empty label")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise FetchError("invalid_url", f"the host name {host[:100]!r} is not a valid domain name") from None
    if len(ascii_host) > 253 or any(len(label) > 63 for label in ascii_host.split(".")):
        raise FetchError("invalid_url", f"the host name {host[:100]!r} is too long for DNS")
    return ascii_host


def _normalise(url: str) -> str:
    """The URL with an ASCII host and its non-ASCII path and query percent-encoded (UTF-8), as a
    browser sends it: http.client can only send ASCII."""
    parts = urlsplit(url)
    userinfo_host, _, port = parts.netloc.rpartition(":") if parts.port else (parts.netloc, "", "")
    netloc = _ascii_host(userinfo_host) + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, quote(parts.path, safe=_URL_SAFE), quote(parts.query, safe=_URL_SAFE),
                       ""))


def validate_url(url: str) -> str:
    """The URL, stripped and normalised (ASCII host, non-ASCII path percent-encoded, no fragment),
    if it may be imported (syntax only, no DNS); raises FetchError, never anything else."""
    if not isinstance(url, str) or not url.strip():
        raise FetchError("invalid_url", "the URL is empty")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise FetchError("invalid_url", f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise FetchError("invalid_url", "the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError("invalid_url", f"the URL is malformed ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise FetchError("invalid_url", f"only http and https URLs can be imported, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise FetchError("invalid_url", "the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise FetchError("invalid_url", "URLs with a user name or password are not accepted")
    if port == 0:
        raise FetchError("invalid_url", "port 0 is not a valid port")
    normalised = _normalise(url)
    if len(normalised) > MAX_URL_LENGTH:
        raise FetchError("invalid_url", f"the URL is longer than {MAX_URL_LENGTH} characters once encoded")
    return normalised


# -- the download byte budget ------------------------------------------------------------
class ByteBudget:
    """The bytes all downloads of one process may hold in memory at once (FETCH_MAX_IN_FLIGHT_BYTES).

    A download reserves each chunk before reading it and gives it back once the chunk has gone to
    storage, so N concurrent downloads never hold more than ``limit`` bytes between them, however
    large their files. A download that finds the budget spent waits for a chunk to come back (its
    time limit stops while it waits): it never fails for want of budget. A reservation larger than
    the whole budget is cut to it, so one chunk always fits."""

    def __init__(self, limit: int):
        self.limit = max(1, int(limit))
        self._changed = threading.Condition()
        self.in_flight = 0   # bytes reserved now, and the most there ever were (never above ``limit``)
        self.peak = 0
        self.waits = 0       # reservations that had to wait for budget, and those waiting now
        self.waiting = 0

    def reserve(self, size: int) -> int:
        """Block until ``size`` bytes (at most ``limit``) are free, take them and return how many."""
        size = max(1, min(int(size), self.limit))
        with self._changed:
            if self.in_flight + size > self.limit:
                self.waits += 1
                self.waiting += 1
                try:
                    while self.in_flight + size > self.limit:
                        self._changed.wait()
                finally:
                    self.waiting -= 1
            self.in_flight += size
            self.peak = max(self.peak, self.in_flight)
            FETCH_BYTES_IN_FLIGHT.set(self.in_flight)
        return size

    def release(self, size: int) -> None:
        with self._changed:
            self.in_flight -= size
            FETCH_BYTES_IN_FLIGHT.set(self.in_flight)
            self._changed.notify_all()


# -- HTTP over a checked address ---------------------------------------------------------
@dataclass
class Fetched:
    data: bytes
    content_type: str | None
    url: str                  # the final URL, after redirects


CHUNK_BYTES = 256 * 1024      # one read of a download: the unit the byte budget reserves


class _Watchdog:
    """Closes the socket when the deadline passes, so no slow server can hold a fetch. The deadline
    moves out by the time a download spends waiting for the byte budget (``extend``)."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock = sock
        self._lock = threading.Lock()
        self.deadline = deadline
        self.fired = False
        self._timer = self._start()

    def _start(self) -> threading.Timer:
        timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), self._fire)
        timer.daemon = True
        timer.start()
        return timer

    def _fire(self) -> None:
        with self._lock:
            if time.monotonic() < self.deadline - 0.01:  # extended meanwhile: the new timer fires later
                return
            self.fired = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def extend(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            if self.fired:
                return
            self._timer.cancel()
            self.deadline += seconds
            self._timer = self._start()

    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.deadline

    def cancel(self) -> None:
        with self._lock:
            self._timer.cancel()


def _connect(url: str, policy: FetchPolicy, deadline: float) -> tuple[http.client.HTTPConnection, str, str]:
    """A connection to a checked address of the URL's host; returns it, the Host header and the path."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname
    port = parts.port or (443 if scheme == "https" else 80)
    addresses = policy.resolve(host, port)
    last_error: Exception | None = None
    sock = None
    for ip in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            sock = socket.create_connection((str(ip), port), timeout=min(remaining, 10.0))
            break
        except OSError as exc:
            last_error = exc
    if sock is None:
        if time.monotonic() >= deadline:
            raise FetchError("timeout", "the server did not answer in time")
        raise FetchError("connect_error", f"could not connect to {host}:{port} ({last_error})")
    if scheme == "https":
        try:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise FetchError("tls_error", f"TLS with {host} failed ({exc})") from None
    conn = http.client.HTTPConnection(host, port, timeout=max(0.1, deadline - time.monotonic()))
    conn.sock = sock
    shown_host = f"[{host}]" if ":" in host else host
    default_port = 443 if scheme == "https" else 80
    host_header = shown_host if port == default_port else f"{shown_host}:{port}"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return conn, host_header, path


class _Exchange:
    """One request on its own connection (no redirect handling): ``status``, ``reason``, lower-cased
    ``headers``, and ``body()``, the response body as it arrives, at most ``read_limit`` bytes.
    ``close()`` releases the connection and the watchdog; every error is a FetchError."""

    def __init__(self, method: str, url: str, policy: FetchPolicy, deadline: float, *, body: bytes | None,
                 headers: dict | None, read_limit: int, budget: ByteBudget | None):
        self.policy, self.read_limit, self.budget, self.method = policy, read_limit, budget, method
        self.conn, host_header, path = _connect(url, policy, deadline)
        self.watchdog = _Watchdog(self.conn.sock, deadline)
        try:
            with self._errors():
                self.conn.request(method, path, body=body, headers={"Host": host_header, "User-Agent": USER_AGENT,
                                                                    "Connection": "close", **(headers or {})})
                self.response = self.conn.getresponse()
            self.status, self.reason = self.response.status, self.response.reason
            self.headers = {k.lower(): v for k, v in self.response.getheaders()}
            declared = self.headers.get("content-length", "")
            self.length = int(declared) if declared.isdigit() else None
            if method == "GET" and self.status not in REDIRECT_STATUSES and self.length is not None \
                    and self.length > read_limit:
                raise FetchError("too_large", f"the file is {self.length // 1024} KB, over the "
                                              f"{read_limit // 1024} KB limit")
        except BaseException:
            self.close()
            raise

    @contextmanager
    def _errors(self):
        try:
            yield
        except FetchError:
            raise
        except (OSError, http.client.HTTPException) as exc:
            if self.watchdog.expired():
                raise FetchError("timeout", f"the download did not finish within {self.policy.timeout:g} s") from None
            raise FetchError("http_error", f"the request failed ({type(exc).__name__}: {exc})") from None

    def body(self) -> Iterator[bytes]:
        """The body in chunks of at most CHUNK_BYTES, each read under a reservation of the byte
        budget that is held until the consumer asks for the next chunk (by then it has stored this
        one). Raises FetchError past the limit, on a timeout, or when the body stops short."""
        size = 0
        while True:
            reserved = 0
            if self.budget is not None:
                asked = time.monotonic()
                reserved = self.budget.reserve(CHUNK_BYTES)
                waited = time.monotonic() - asked
                if waited > 0.05:  # waiting for budget is not the server's time
                    self.watchdog.extend(waited)
            try:
                with self._errors():
                    chunk = self.response.read1(reserved or CHUNK_BYTES)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.read_limit:
                    raise FetchError("too_large", f"the file is larger than the {self.read_limit // 1024} KB limit")
                yield chunk
            finally:
                if reserved:
                    self.budget.release(reserved)
        if self.watchdog.fired:  # the socket was closed under the read: what came is partial
            raise FetchError("timeout", f"the download did not finish within {self.policy.timeout:g} s")
        if self.method == "GET" and self.length is not None and size < self.length:
            raise FetchError("http_error", f"the connection closed after {size} of {self.length} bytes")

    def close(self) -> None:
        self.watchdog.cancel()
        self.conn.close()


def _request(method: str, url: str, policy: FetchPolicy, deadline: float, *, body: bytes | None = None,
             headers: dict | None = None, read_limit: int) -> tuple[int, str, dict, bytes]:
    """One request (no redirect handling): status, reason, lower-cased headers and at most
    ``read_limit`` bytes of body; raises FetchError (``too_large`` past the limit)."""
    exchange = _Exchange(method, url, policy, deadline, body=body, headers=headers, read_limit=read_limit,
                         budget=None)
    try:
        # One growing buffer (a list of chunks joined at the end would hold the body twice).
        buffer = io.BytesIO()
        for chunk in exchange.body():
            buffer.write(chunk)
        return exchange.status, exchange.reason, exchange.headers, buffer.getvalue()
    finally:
        exchange.close()


def _only_fetch_errors(function):
    """Whatever goes wrong with a caller's URL is a FetchError with its reason, never another exception
    (which a message handler would take for a transient failure and retry forever)."""
    @functools.wraps(function)
    def guarded(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except FetchError:
            raise
        except Exception as exc:
            log.warning("unexpected %s from %s: %s", type(exc).__name__, function.__name__, exc)
            raise FetchError("http_error", f"the request failed ({type(exc).__name__}: {exc})") from None
    return guarded


@dataclass
class Download:
    """A response being downloaded: ``chunks`` yields its body as it arrives (see ``download``)."""

    content_type: str | None
    url: str                  # the final URL, after redirects
    length: int | None        # the declared Content-Length, if any
    chunks: Iterator[bytes]


@contextmanager
def download(url: str, policy: FetchPolicy, budget: ByteBudget | None = None) -> Iterator[Download]:
    """GET ``url`` under ``policy`` and stream its body: following at most ``max_redirects``
    redirects (each one checked like the first), it yields a :class:`Download` once a 200 has
    answered; its ``chunks`` come under ``budget`` (the process's download byte budget) and stop
    with FetchError past ``max_bytes``, on a timeout or when the body is cut short. Every failure
    is a FetchError with its reason (errors raised by the consumer of the chunks pass unchanged)."""
    try:
        deadline = time.monotonic() + policy.timeout
        current = validate_url(url)
        for _ in range(policy.max_redirects + 1):
            exchange = _Exchange("GET", current, policy, deadline, body=None, headers={"Accept": "image/*"},
                                 read_limit=policy.max_bytes, budget=budget)
            if exchange.status in REDIRECT_STATUSES:
                exchange.close()  # its body is never read
                location = exchange.headers.get("location")
                if not location:
                    raise FetchError("http_error", f"the server answered {exchange.status} without a Location")
                try:
                    current = validate_url(urljoin(current, location))
                except FetchError as exc:
                    raise FetchError("bad_redirect", f"redirected to a URL that cannot be fetched: {exc.reason}") \
                        from None
                deadline = exchange.watchdog.deadline  # budget waits of the redirect response count as extended
                continue
            if exchange.status != 200:
                exchange.close()
                raise FetchError("http_error", f"the server answered {exchange.status} {exchange.reason}".strip())
            break
        else:
            raise FetchError("too_many_redirects", f"more than {policy.max_redirects} redirects")
    except FetchError:
        raise
    except Exception as exc:
        log.warning("unexpected %s from download: %s", type(exc).__name__, exc)
        raise FetchError("http_error", f"the request failed ({type(exc).__name__}: {exc})") from None
    try:
        yield Download(exchange.headers.get("content-type"), current, exchange.length,
                       _only_fetch_errors_gen(exchange.body()))
    finally:
        exchange.close()


def _only_fetch_errors_gen(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks``, with any exception of the download itself turned into a FetchError."""
    try:
        yield from chunks
    except FetchError:
        raise
    except Exception as exc:
        log.warning("unexpected %s while downloading: %s", type(exc).__name__, exc)
        raise FetchError("http_error", f"the request failed ({type(exc).__name__}: {exc})") from None


@_only_fetch_errors
def fetch(url: str, policy: FetchPolicy) -> Fetched:
    """GET ``url`` under ``policy`` into memory (small files: overlays), following redirects as
    ``download`` does. Raises FetchError with the reason, and nothing else."""
    with download(url, policy) as response:
        buffer = io.BytesIO()  # one growing buffer, never a list of chunks joined (two copies)
        for chunk in response.chunks:
            buffer.write(chunk)
        return Fetched(buffer.getvalue(), response.content_type, response.url)


@_only_fetch_errors
def post(url: str, body: bytes, headers: dict, policy: FetchPolicy) -> int:
    """POST ``body`` to ``url`` under ``policy`` (redirects are not followed); the status code."""
    deadline = time.monotonic() + policy.timeout
    status, _, _, _ = _request("POST", validate_url(url), policy, deadline, body=body,
                               headers={"Content-Type": "application/json", **headers}, read_limit=64 * 1024)
    return status
