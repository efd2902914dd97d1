"""Webhooks and SSRF: with the default settings no URL reaches a non-public address, at creation or at delivery.

Nothing here leaves the machine. The resolver (app.webhooks.addresses.resolve) is stubbed for the whole module,
so no DNS question is asked, and the HTTP client's TCP connect is guarded so that anything but 127.0.0.1 and ::1
fails (and is recorded) instead of connecting. Public addresses appear only at creation, where nothing is sent,
or behind httpx.MockTransport, which captures the request before it would leave.
"""

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpcore
import httpx
import pytest
from standardwebhooks import Webhook

from tests.api.conftest import wait_for
from tests.security.helpers import succeeded_job
from tests.webhook_receiver import Receiver, serve

PUBLIC = "93.184.216.34"  # a public address: only ever named at creation, or captured by a MockTransport
LOOPBACK = {"127.0.0.1", "::1"}
EVENTS = ["job.succeeded"]

REFUSED = [
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.1.1/",  # RFC 1918
    "http://127.0.0.1/", "http://127.0.0.1:8000/hook", "http://localhost/", "http://LOCALHOST.:8080/",
    "http://api.localhost/", "http://[::1]/",  # loopback
    "http://[fd00::1]/",  # ULA
    "http://[fe80::1]/",  # IPv6 link-local
    "http://100.64.0.1/",  # CGNAT
    "http://224.0.0.1/", "http://[ff02::1]/",  # multicast
    "http://240.0.0.1/", "http://255.255.255.255/",  # reserved, broadcast
    "http://0.0.0.0/", "http://[::]/",  # unspecified
    "http://192.0.2.1/", "http://198.18.0.1/", "http://[2001:db8::1]/",  # documentation, benchmarking
    "http://[::ffff:127.0.0.1]/", "http://[::ffff:169.254.169.254]/",  # IPv4-mapped
    "http://[2002:7f00:1::]/", "http://[2002:a00:1::1]/",  # 6to4 of 127.0.0.1, 10.0.0.1
    "http://[64:ff9b::7f00:1]/", "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 127.0.0.1, 169.254.169.254
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    "https://169.254.169.254/", "http://user:pass@10.0.0.1:8080/x?y=1",
]


class Network:
    """The module's stand-ins for DNS and for TCP connect."""

    def __init__(self) -> None:
        self.answers: dict[str, Callable[[], list[str]]] = {}  # host -> what it resolves to (called per lookup)
        self.lookups: list[str] = []
        self.blocked: list[tuple[str, int]] = []  # connects refused by the guard: must stay empty

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host in self.answers:
            return self.answers[host]()
        raise socket.gaierror(socket.EAI_NONAME, f"{host} is not resolved in tests")


@pytest.fixture(scope="module")
def network(client) -> Iterator[Network]:  # noqa: ANN001
    """No DNS and no connection off this machine, for the whole module (the delivery loop included)."""
    from app.webhooks import addresses

    net = Network()
    real_connect = httpcore._backends.sync.SyncBackend.connect_tcp

    def guarded_connect(self, host: str, port: int, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if host not in LOOPBACK:
            net.blocked.append((host, port))
            raise httpcore.ConnectError(f"tests connect to loopback only, not {host}")
        return real_connect(self, host, port, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(addresses, "resolve", net.resolve)
    mp.setattr(httpcore._backends.sync.SyncBackend, "connect_tcp", guarded_connect)
    yield net
    mp.undo()


@pytest.fixture(autouse=True)
def net(network: Network) -> Iterator[Network]:
    """The module's network, with this test's DNS answers; after the test, no connection was attempted off it."""
    network.answers.clear()
    network.lookups.clear()
    yield network
    assert network.blocked == [], network.blocked


@pytest.fixture(scope="module", autouse=True)
def fast_delivery(client) -> Iterator[None]:  # noqa: ANN001
    """This module's delivery loop: retries within a second, looking every 50 ms; the default allow-list (none)."""
    from app.config import get_settings

    mp = pytest.MonkeyPatch()
    for name, value in {"webhook_poll_seconds": 0.05, "webhook_retry_base_seconds": 0.2,
                        "webhook_retry_max_seconds": 1.0, "webhook_max_attempts": 4,
                        "webhook_allow_hosts": []}.items():
        mp.setattr(get_settings(), name, value)
    yield
    mp.undo()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve() as rec:
        yield rec


@pytest.fixture
def allow(monkeypatch) -> Callable[..., None]:  # noqa: ANN001
    """Set webhook_allow_hosts for this test, as TAAS_WEBHOOK_ALLOW_HOSTS would."""
    from app.config import get_settings

    return lambda *hosts: monkeypatch.setattr(get_settings(), "webhook_allow_hosts", list(hosts))


def create(client, auth, url: str, events: list[str] = EVENTS):  # noqa: ANN001, ANN201
    return client.post("/v1/webhooks", headers=auth, json={"url": url, "events": events})


def forbidden(resp) -> bool:  # noqa: ANN001
    return resp.status_code == 422 and resp.json()["error"]["code"] == "webhook_url_forbidden"


def deliveries(client, auth, webhook_id: str) -> list[dict]:  # noqa: ANN001
    resp = client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=auth)
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]


def settled(client, auth, webhook_id: str) -> dict:  # noqa: ANN001
    """The endpoint's one delivery, once it is no longer pending."""
    return wait_for(lambda: (d := deliveries(client, auth, webhook_id)) and d[0]["status"] != "pending" and d[0],
                    timeout=30)


def claimed(url: str, secret: str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"):  # noqa: ANN201
    """A delivery as the loop claims it, to send by hand."""
    from app.webhooks.dispatch import Claimed

    return Claimed(id="msg_ssrf", attempt=1, endpoint_id="wh_ssrf", url=url, secret=secret,
                   event_type="job.succeeded", job_id=None, payload={"type": "job.succeeded", "data": {}})


def capture() -> tuple[httpx.Client, list[httpx.Request]]:
    """A client whose requests are answered 200 by a MockTransport, which records them: nothing is sent."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    return httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=False), sent


# --- at creation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", REFUSED)
def test_every_non_public_range_is_refused_by_default(client, auth, net, url):
    resp = create(client, auth, url)
    assert forbidden(resp), (url, resp.text)
    assert resp.json()["error"]["details"]["address"]
    assert net.lookups == []  # literals and localhost names are judged without asking DNS


def test_a_public_address_is_accepted_and_nothing_is_sent(client, auth, net):
    for url in (f"http://{PUBLIC}/hook", f"https://{PUBLIC}:8443/hook", "http://[2606:2800:220:1:248:1893:25c8:1946]/",
                f"http://[::ffff:{PUBLIC}]/", "http://[2002:5db8:d822::1]/", "http://[64:ff9b::5db8:d822]/"):
        resp = create(client, auth, url)
        assert resp.status_code == 201, (url, resp.text)
        # This tenant has no jobs, so no delivery will ever be due; deleted all the same.
        assert client.delete(f"/v1/webhooks/{resp.json()['id']}", headers=auth).status_code == 204
    assert net.lookups == []


def test_a_name_that_resolves_to_a_private_address_is_refused(client, auth, net):
    net.answers["intranet.example"] = lambda: ["10.1.2.3"]
    resp = create(client, auth, "https://intranet.example/hook")
    assert forbidden(resp) and resp.json()["error"]["details"]["address"] == "10.1.2.3", resp.text
    # Any refused address refuses the name, not only the first: the client could have picked either.
    net.answers["mixed.example"] = lambda: [PUBLIC, "2606:2800:220:1::1", "fd12::1"]
    resp = create(client, auth, "http://mixed.example:8080/")
    assert forbidden(resp) and resp.json()["error"]["details"]["address"] == "fd12::1", resp.text
    net.answers["mapped.example"] = lambda: ["::ffff:169.254.169.254"]
    assert forbidden(create(client, auth, "http://mapped.example/"))
    # A name that does not resolve cannot be checked: refused as well.
    resp = create(client, auth, "http://nowhere.example/")
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "webhook_url_unresolvable", resp.text
    net.answers["public.example"] = lambda: [PUBLIC]
    made = create(client, auth, "http://PUBLIC.example/hook")
    assert made.status_code == 201, made.text
    assert client.delete(f"/v1/webhooks/{made.json()['id']}", headers=auth).status_code == 204
    assert net.lookups == ["intranet.example", "mixed.example", "mapped.example", "nowhere.example",
                           "public.example"]


# --- at delivery ---------------------------------------------------------------------------------------------


def test_a_rebinding_name_is_refused_at_delivery_and_the_receiver_gets_nothing(client, auth, ready_dataset, net,
                                                                               receiver):
    """Public when the endpoint is made, loopback when the delivery is sent: refused for good, no connection."""
    answers = iter([[PUBLIC]])
    net.answers["rebind.example"] = lambda: next(answers, ["127.0.0.1"])
    port = receiver.server.server_address[1]
    made = create(client, auth, f"http://rebind.example:{port}/rebind")
    assert made.status_code == 201, made.text
    receiver.secrets["/rebind"] = made.json()["secret"]

    succeeded_job(client, auth, ready_dataset)
    d = settled(client, auth, made.json()["id"])
    assert d["status"] == "failed" and d["attempts"] == 1 and d["last_status_code"] is None, d
    assert "private" in d["last_error"], d
    assert receiver.at("/rebind") == []
    assert net.lookups == ["rebind.example", "rebind.example"]  # once at creation, once for the one attempt


def test_the_request_goes_to_the_address_that_was_checked(client, net):
    """One lookup per attempt: the request targets the checked address, so a second answer is never used."""
    from app.webhooks.dispatch import send

    answers = iter([[PUBLIC]])
    net.answers["pinned.example"] = lambda: next(answers, ["127.0.0.1"])
    http, sent = capture()
    secret = "whsec_" + "QUJD" * 8
    outcome = send(http, claimed("http://pinned.example:8080/hook?x=1", secret))
    assert outcome.ok, outcome
    [req] = sent
    assert str(req.url) == f"http://{PUBLIC}:8080/hook?x=1"
    assert req.headers["host"] == "pinned.example:8080"
    assert net.lookups == ["pinned.example"]
    Webhook(secret).verify(req.content, dict(req.headers))  # still signed as before

    # https: the address in the URL; Host, SNI and so certificate verification on the name; no kept connection.
    net.answers["tls.example"] = lambda: ["2606:2800:220:1::1"]
    assert send(http, claimed("https://TLS.example/hook")).ok
    req = sent[-1]
    assert str(req.url) == "https://[2606:2800:220:1::1]/hook"
    assert req.headers["host"] == "tls.example" and req.headers["connection"] == "close"
    assert req.extensions["sni_hostname"] == "tls.example"


def test_a_refused_address_at_delivery_sends_nothing(client, net):
    from app.webhooks.dispatch import send

    http, sent = capture()
    net.answers["turned.example"] = lambda: [PUBLIC, "169.254.169.254"]
    outcome = send(http, claimed("http://turned.example/"))
    assert not outcome.ok and outcome.permanent and "private" in outcome.error, outcome
    outcome = send(http, claimed("http://[::ffff:10.0.0.1]:9/"))
    assert not outcome.ok and outcome.permanent, outcome
    outcome = send(http, claimed("http://gone.example/"))  # unresolvable now: retried later, not given up
    assert not outcome.ok and not outcome.permanent and "does not resolve" in outcome.error, outcome
    assert sent == []


def test_the_next_checked_address_is_tried_when_one_cannot_be_reached(client, net):
    from app.webhooks.dispatch import send

    tried: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        if request.url.host == "2606:2800:220:1::1":
            raise httpx.ConnectError("no route to host", request=request)
        return httpx.Response(204)

    net.answers["dual.example"] = lambda: ["2606:2800:220:1::1", PUBLIC]
    outcome = send(httpx.Client(transport=httpx.MockTransport(handler)), claimed("http://dual.example/"))
    assert outcome.ok and outcome.status_code == 204, outcome
    assert tried == ["2606:2800:220:1::1", PUBLIC] and net.lookups == ["dual.example"]


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(client, auth, ready_dataset, allow):
    """The loop's own client: a 3xx to another address (allow-listed here, so it would be reachable) is not followed."""
    hits: list[str] = []

    class Redirecting(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(302 if self.path == "/start" else 200)
            self.send_header("location", f"http://127.0.0.1:{self.server.server_address[1]}/landing")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        allow("127.0.0.1")
        made = create(client, auth, f"http://127.0.0.1:{server.server_address[1]}/start")
        assert made.status_code == 201, made.text
        succeeded_job(client, auth, ready_dataset)
        d = settled(client, auth, made.json()["id"])
        assert d["status"] == "failed" and d["last_status_code"] == 302 and d["attempts"] == 4, d
        assert set(hits) == {"/start"}
    finally:
        server.shutdown()
        server.server_close()


# --- the allow-list ------------------------------------------------------------------------------------------


def test_an_allow_listed_receiver_gets_the_delivery_and_without_the_list_it_is_refused(client, auth, ready_dataset,
                                                                                       receiver, allow):
    url = receiver.url("/allowed")
    assert forbidden(create(client, auth, url))  # the default: no allow-list

    allow("127.0.0.1")  # TAAS_WEBHOOK_ALLOW_HOSTS=127.0.0.1
    made = create(client, auth, url)
    assert made.status_code == 201, made.text
    receiver.secrets["/allowed"] = made.json()["secret"]
    succeeded_job(client, auth, ready_dataset)
    d = settled(client, auth, made.json()["id"])
    assert d["status"] == "succeeded" and d["attempts"] == 1, d
    [got] = receiver.at("/allowed")
    assert got.verified and got.headers["webhook-id"] == d["id"]
    assert got.headers["host"] == url.split("/")[2]


def test_the_allow_list_setting_and_how_hosts_match(client, auth, net, monkeypatch, allow):
    from app.config import Settings
    from app.webhooks.addresses import check_url
    from app.webhooks.dispatch import send

    monkeypatch.setenv("TAAS_WEBHOOK_ALLOW_HOSTS", " Hooks.Internal. , [::1],127.0.0.1,,[0:0::0:10.0.0.5]")
    hosts = Settings().webhook_allow_hosts
    assert hosts == ["hooks.internal", "::1", "127.0.0.1", "::a00:5"]
    allow(*hosts)
    for url in ("http://HOOKS.internal:8080/x", "https://hooks.internal./", "http://[::1]:9/", "http://[0::1]/",
                "http://127.0.0.1/"):
        assert check_url(url) == url
    assert net.lookups == []  # an allow-listed host is trusted as named: not even resolved at creation
    for url in ("http://other.internal/", "http://hooks.internal.evil.example/", "http://127.0.0.2/",
                "http://[::ffff:127.0.0.1]/", "http://localhost/"):
        net.answers[url.split("/")[2]] = lambda: ["10.0.0.7"]
        assert forbidden(create(client, auth, url)), url

    # At delivery an allow-listed name is still resolved once and connected to by address, like any other.
    net.answers["hooks.internal"] = lambda: ["10.0.0.5"]
    http, sent = capture()
    assert send(http, claimed("http://Hooks.Internal:8080/x")).ok
    [req] = sent
    assert str(req.url) == "http://10.0.0.5:8080/x" and req.headers["host"] == "hooks.internal:8080"


# --- https end to end, on this machine -----------------------------------------------------------------------


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[int, ssl.SSLContext, list[tuple[str | None, str]]]]:
    """An https server on 127.0.0.1 with a self-signed certificate for hooks.test only (not for 127.0.0.1);
    yields its port, a client context that trusts it, and (SNI, Host) of each request."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=hooks.test",
                    "-addext", "subjectAltName=DNS:hooks.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    seen: list[tuple[str | None, str]] = []
    sni: dict[int, str | None] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length", 0)))
            seen.append((sni.get(id(self.connection)), self.headers["host"]))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.sni_callback = lambda sock, name, _ctx: sni.__setitem__(id(sock), name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], ssl.create_default_context(cafile=str(cert)), seen
    finally:
        server.shutdown()
        server.server_close()


def test_https_to_a_pinned_address_verifies_the_certificate_of_the_name(client, net, allow, tls_receiver):
    from app.webhooks.dispatch import send

    port, trust, seen = tls_receiver
    allow("hooks.test", "wrong.test")
    net.answers["hooks.test"] = net.answers["wrong.test"] = lambda: ["127.0.0.1"]
    with httpx.Client(verify=trust, follow_redirects=False, trust_env=False) as http:
        outcome = send(http, claimed(f"https://hooks.test:{port}/tls"))
        assert outcome.ok, outcome
        assert seen == [("hooks.test", f"hooks.test:{port}")]  # SNI and Host: the name; the socket: 127.0.0.1
        # The certificate is checked against the URL's name: one for hooks.test does not do for wrong.test.
        outcome = send(http, claimed(f"https://wrong.test:{port}/tls"))
        assert not outcome.ok and "CERTIFICATE_VERIFY_FAILED" in outcome.error, outcome
    assert len(seen) == 1
