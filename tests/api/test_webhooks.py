"""Webhooks: a real HTTP receiver on 127.0.0.1 verifies each Standard Webhooks signature with the endpoint's secret.

Jobs are driven to succeeded, failed and cancelled through the internal worker routes (no training); the delivery
loop runs in the module's API (its poll interval and backoff shortened), and tests wait by polling with deadlines.
"""

import logging
from collections.abc import Iterator

import pytest
from standardwebhooks import Webhook

from tests.api.conftest import wait_for
from tests.webhook_receiver import Receiver, serve

WORKER = {"Authorization": "Bearer test-worker-token"}
ALL = ["job.succeeded", "job.failed", "job.cancelled"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve() as rec:
        yield rec


@pytest.fixture(scope="module", autouse=True)
def fast_delivery(client) -> Iterator[None]:  # noqa: ANN001
    """Retries within a second, and the loop looking every 50 ms, for this module's API; the receiver on 127.0.0.1
    allow-listed (TAAS_WEBHOOK_ALLOW_HOSTS=127.0.0.1), as loopback is refused by default."""
    from app.config import get_settings

    mp = pytest.MonkeyPatch()
    for name, value in {"webhook_poll_seconds": 0.05, "webhook_retry_base_seconds": 0.2,
                        "webhook_retry_max_seconds": 1.0, "webhook_max_attempts": 4,
                        "webhook_allow_hosts": ["127.0.0.1"]}.items():
        mp.setattr(get_settings(), name, value)
    yield
    mp.undo()


def subscribe(client, auth, receiver: Receiver, path: str, events: list[str]) -> dict:  # noqa: ANN001
    resp = client.post("/v1/webhooks", headers=auth, json={"url": receiver.url(path), "events": events})
    assert resp.status_code == 201, resp.text
    receiver.secrets[path] = resp.json()["secret"]
    return resp.json()


def new_job(client, auth, ds_id: str) -> str:  # noqa: ANN001
    resp = client.post("/v1/jobs", headers=auth, json={"dataset_id": ds_id, "base_model": {
        "arch": "resnet18", "weights": "none"}, "hyperparameters": {"epochs": 2, "image_size": 32}})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def claim(client, job_id: str) -> int:  # noqa: ANN001
    resp = client.post(f"/internal/jobs/{job_id}/claim", headers=WORKER, json={"worker": "w"})
    assert resp.status_code == 200, resp.text
    return resp.json()["attempt"]


def succeed(client, job_id: str, classes: list[str]) -> str:  # noqa: ANN001
    attempt = claim(client, job_id)
    up = client.put(f"/internal/jobs/{job_id}/artifacts/safetensors?attempt={attempt}", headers=WORKER,
                    content=b"weights")
    assert up.status_code == 200, up.text
    body = {"attempt": attempt, "result": {"config": {"classes": classes}}}
    first = client.post(f"/internal/jobs/{job_id}/succeed", headers=WORKER, json=body)
    again = client.post(f"/internal/jobs/{job_id}/succeed", headers=WORKER, json=body)  # a retried post
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    return first.json()["model_id"]


def deliveries(client, auth, webhook_id: str) -> list[dict]:  # noqa: ANN001
    resp = client.get(f"/v1/webhooks/{webhook_id}/deliveries?limit=100", headers=auth)
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]


def settled(client, auth, webhook_id: str, n: int) -> list[dict]:  # noqa: ANN001
    """The endpoint's n deliveries once none is pending any more."""
    return wait_for(lambda: (d := deliveries(client, auth, webhook_id)) and len(d) == n
                    and all(x["status"] != "pending" for x in d) and d, timeout=30)


def test_one_signed_delivery_per_subscribed_event(client, auth, make_key, ready_dataset, receiver):
    every = subscribe(client, auth, receiver, "/every", ALL)
    failures = subscribe(client, auth, receiver, "/failures", ["job.failed"])
    other = make_key()  # another tenant, subscribed to everything: it hears nothing of these jobs
    theirs = subscribe(client, other, receiver, "/theirs", ALL)
    ds, classes = ready_dataset["id"], ready_dataset["classes"]

    ok = new_job(client, auth, ds)
    model_id = succeed(client, ok, classes)
    bad = new_job(client, auth, ds)
    attempt = claim(client, bad)
    for _ in range(2):  # the second post is a retry: one transition, one delivery
        resp = client.post(f"/internal/jobs/{bad}/fail", headers=WORKER,
                           json={"attempt": attempt, "code": "training_error", "message": "loss is NaN"})
        assert resp.status_code == 200, resp.text
    queued = new_job(client, auth, ds)
    assert client.post(f"/v1/jobs/{queued}/cancel", headers=auth).json()["status"] == "cancelled"
    running = new_job(client, auth, ds)
    attempt = claim(client, running)
    assert client.post(f"/v1/jobs/{running}/cancel", headers=auth).json()["status"] == "running"
    for _ in range(2):
        assert client.post(f"/internal/jobs/{running}/cancelled", headers=WORKER,
                           json={"attempt": attempt}).status_code == 200

    log = settled(client, auth, every["id"], 4)
    assert [d["id"] for d in settled(client, auth, failures["id"], 1)]
    # Nothing is pending any more, so nothing else can arrive: what was received is all there will be.
    got = {path: [(r.payload["type"], r.payload["data"]["id"]) for r in receiver.at(path)]
           for path in ("/every", "/failures", "/theirs")}
    assert sorted(got["/every"]) == sorted([("job.succeeded", ok), ("job.failed", bad),
                                            ("job.cancelled", queued), ("job.cancelled", running)])
    assert got["/failures"] == [("job.failed", bad)]
    assert got["/theirs"] == [] and deliveries(client, other, theirs["id"]) == []
    assert all(r.verified for r in receiver.got)

    by_job = {r.payload["data"]["id"]: r for r in receiver.at("/every")}
    assert by_job[ok].payload["data"]["model_id"] == model_id
    assert by_job[ok].payload["data"]["status"] == "succeeded"
    assert by_job[bad].payload["data"]["error"] == {"code": "training_error", "message": "loss is NaN"}
    assert by_job[running].payload["data"]["cancel_requested_at"]
    for d in log:
        assert d["status"] == "succeeded" and d["attempts"] == 1 and d["last_status_code"] == 200, d
        assert d["delivered_at"] and d["next_attempt_at"] is None and d["last_error"] is None
        # The log's id is the webhook-id header, and its payload is what was signed and sent.
        sent = by_job[d["job_id"]]
        assert sent.headers["webhook-id"] == d["id"] and sent.payload == d["payload"]
        assert d["event_type"] == d["payload"]["type"]


def test_a_failing_receiver_is_retried_with_backoff_and_the_log_shows_the_attempts(client, auth, ready_dataset,
                                                                                   receiver):
    flaky = subscribe(client, auth, receiver, "/flaky", ["job.succeeded"])
    receiver.plans["/flaky"] = [500, 503]
    job = new_job(client, auth, ready_dataset["id"])
    succeed(client, job, ready_dataset["classes"])

    [d] = settled(client, auth, flaky["id"], 1)
    assert d["status"] == "succeeded" and d["attempts"] == 3 and d["last_status_code"] == 200, d
    tries = receiver.at("/flaky")
    assert len(tries) == 3 and all(t.verified for t in tries)
    assert {t.headers["webhook-id"] for t in tries} == {d["id"]}  # one message id: receivers can deduplicate
    gaps = [b.at - a.at for a, b in zip(tries, tries[1:], strict=False)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4, gaps  # exponential: base 0.2 s, doubled


def test_a_receiver_that_never_recovers_is_given_up_after_max_attempts(client, auth, ready_dataset, receiver):
    down = subscribe(client, auth, receiver, "/down", ["job.failed"])
    receiver.plans["/down"] = [500] * 10
    job = new_job(client, auth, ready_dataset["id"])
    attempt = claim(client, job)
    client.post(f"/internal/jobs/{job}/fail", headers=WORKER, json={"attempt": attempt, "message": "boom"})

    [d] = settled(client, auth, down["id"], 1)
    assert d["status"] == "failed" and d["attempts"] == 4 and d["last_status_code"] == 500, d
    assert d["last_error"].startswith("HTTP 500") and d["delivered_at"] is None
    assert len(receiver.at("/down")) == 4


def test_an_unreachable_receiver_is_retried_and_the_error_is_logged(client, auth, ready_dataset, receiver):
    from tests.conftest import free_port

    resp = client.post("/v1/webhooks", headers=auth, json={"url": f"http://127.0.0.1:{free_port()}/gone",
                                                           "events": ["job.cancelled"]})
    job = new_job(client, auth, ready_dataset["id"])
    client.post(f"/v1/jobs/{job}/cancel", headers=auth)
    [d] = settled(client, auth, resp.json()["id"], 1)
    assert d["status"] == "failed" and d["attempts"] == 4 and d["last_status_code"] is None
    assert "ConnectError" in d["last_error"], d


def test_the_secret_is_shown_once_and_never_logged(client, auth, make_key, ready_dataset, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    headers = {**auth, "Idempotency-Key": "wh-1"}
    body = {"url": receiver.url("/once"), "events": ALL}
    made = client.post("/v1/webhooks", headers=headers, json=body)
    assert made.status_code == 201, made.text
    hook, secret = made.json(), made.json()["secret"]
    assert secret.startswith("whsec_") and len(Webhook(secret)._whsecret) == 32
    assert set(hook) == {"id", "url", "events", "created_at", "secret"}
    receiver.secrets["/once"] = secret
    # A replay of the creating request is the same answer; another body under the same key is refused.
    replay = client.post("/v1/webhooks", headers=headers, json=body)
    assert replay.status_code == 201 and replay.json() == hook
    assert client.post("/v1/webhooks", headers=headers, json={**body, "events": ["job.failed"]}).status_code == 409

    job = new_job(client, auth, ready_dataset["id"])
    succeed(client, job, ready_dataset["classes"])
    settled(client, auth, hook["id"], 1)
    assert receiver.at("/once")[0].verified
    later = [client.get("/v1/webhooks", headers=auth), client.get(f"/v1/webhooks/{hook['id']}", headers=auth),
             client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth)]
    assert all(r.status_code == 200 for r in later)
    assert later[1].json() == {k: v for k, v in hook.items() if k != "secret"}
    assert not [r for r in later if secret in r.text or secret[6:] in r.text]
    assert secret[6:] not in caplog.text and "webhook" in caplog.text  # the delivery was logged, its key not

    other = make_key()
    for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/deliveries")):
        resp = client.request(method, f"/v1/webhooks/{hook['id']}{path}", headers=other)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "webhook_not_found"
    assert client.delete(f"/v1/webhooks/{hook['id']}", headers=auth).status_code == 204
    assert client.get(f"/v1/webhooks/{hook['id']}", headers=auth).status_code == 404
    assert client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth).status_code == 404


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/hook", "http://", "javascript:alert(1)",
                                 "http://exa mple.com/", "http://example.com:99999/", "http://[::1/x",
                                 "file:///etc/passwd"])
def test_only_http_urls_are_accepted(client, auth, url):
    resp = client.post("/v1/webhooks", headers=auth, json={"url": url, "events": ["job.failed"]})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_webhook_url", resp.text


def test_events_are_validated_and_endpoints_are_capped(client, auth, monkeypatch):
    from app.config import get_settings
    from app.webhooks import addresses

    # example.com is checked at creation: answered here, so that no DNS question leaves the machine.
    monkeypatch.setattr(addresses, "resolve", lambda host, port: ["93.184.216.34"])

    for events in ([], ["job.started"], "job.failed"):
        resp = client.post("/v1/webhooks", headers=auth, json={"url": "http://example.com/", "events": events})
        assert resp.status_code == 422, resp.text
    twice = client.post("/v1/webhooks", headers=auth, json={"url": "http://example.com/",
                                                             "events": ["job.failed", "job.failed"]})
    assert twice.status_code == 201 and twice.json()["events"] == ["job.failed"]
    monkeypatch.setattr(get_settings(), "webhook_max_endpoints", 2)
    assert client.post("/v1/webhooks", headers=auth, json={"url": "https://example.com/2",
                                                           "events": ALL}).status_code == 201
    over = client.post("/v1/webhooks", headers=auth, json={"url": "https://example.com/3", "events": ALL})
    assert over.status_code == 429 and over.json()["error"]["code"] == "quota_exceeded"
    listed = client.get("/v1/webhooks?limit=1", headers=auth).json()
    assert len(listed["data"]) == 1 and listed["has_more"]
    rest = client.get(f"/v1/webhooks?after={listed['data'][0]['id']}", headers=auth).json()
    assert len(rest["data"]) == 1 and not rest["has_more"]


def test_private_addresses_are_refused_unless_allow_listed(client, auth, ready_dataset, receiver, monkeypatch):
    from app.config import get_settings

    # Made while allowed (this module allow-lists 127.0.0.1 for its receiver) ...
    hook = subscribe(client, auth, receiver, "/private", ["job.succeeded"])
    monkeypatch.setattr(get_settings(), "webhook_allow_hosts", [])  # the default
    for url in ("http://127.0.0.1:8000/", "http://10.1.2.3/", "http://169.254.169.254/latest/meta-data/",
                "http://[::1]/", "http://[::ffff:192.168.0.1]/", "http://localhost/", "http://0.0.0.0/",
                "http://100.64.0.1/"):
        resp = client.post("/v1/webhooks", headers=auth, json={"url": url, "events": ALL})
        assert resp.status_code == 422 and resp.json()["error"]["code"] == "webhook_url_forbidden", (url, resp.text)
    assert client.post("/v1/webhooks", headers=auth, json={"url": "https://93.184.216.34/hook",
                                                           "events": ["job.failed"]}).status_code == 201
    # ... and refused again at send time, without a connection and without retries.
    job = new_job(client, auth, ready_dataset["id"])
    succeed(client, job, ready_dataset["classes"])
    [d] = settled(client, auth, hook["id"], 1)
    assert d["status"] == "failed" and d["attempts"] == 1 and "private" in d["last_error"], d
    assert receiver.at("/private") == []


def test_deleting_an_endpoint_drops_what_it_had_pending(client, auth, ready_dataset, receiver):
    from sqlalchemy import select

    from app.db import get_sessionmaker
    from app.models import WebhookDelivery

    hook = subscribe(client, auth, receiver, "/deleted", ["job.succeeded"])
    receiver.plans["/deleted"] = [500] * 10
    job = new_job(client, auth, ready_dataset["id"])
    succeed(client, job, ready_dataset["classes"])
    wait_for(lambda: receiver.at("/deleted"))
    assert client.delete(f"/v1/webhooks/{hook['id']}", headers=auth).status_code == 204
    with get_sessionmaker()() as s:
        assert s.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == hook["id"])).all() == []


def test_concurrent_dispatchers_claim_each_delivery_once(client, monkeypatch):
    """Several API processes run the loop: each due delivery goes to exactly one of them (compare-and-set)."""
    import threading
    from datetime import timedelta

    from sqlalchemy import delete, select

    from app.db import get_sessionmaker
    from app.models import WebhookDelivery, WebhookEndpoint, utcnow
    from app.webhooks import dispatch
    from core.ids import new_id

    monkeypatch.setattr(dispatch, "deliver_once", lambda *_: 0)  # this module's own loop stands aside
    sessions = get_sessionmaker()
    endpoint = WebhookEndpoint(id=new_id("wh"), tenant="claims", url="http://127.0.0.1:9/", secret="whsec_AAAA",
                               events=["job.failed"])
    ids = [new_id("msg") for _ in range(40)]
    with sessions() as s:
        s.add(endpoint)
        s.add_all(WebhookDelivery(id=i, endpoint_id=endpoint.id, tenant="claims", event_type="job.failed",
                                  payload={}, status="pending", attempts=0,
                                  next_attempt_at=utcnow() - timedelta(seconds=1)) for i in ids)
        s.commit()
    barrier = threading.Barrier(4)
    claimed: list[list[str]] = [[] for _ in range(4)]

    def claimer(n: int) -> None:
        barrier.wait(timeout=30)
        with sessions() as s:
            while batch := dispatch.claim_due(s, limit=5):
                claimed[n] += [c.id for c in batch]

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    mine = [[i for i in got if i in set(ids)] for got in claimed]
    assert sorted(i for got in mine for i in got) == sorted(ids)  # every one claimed, none twice
    with sessions() as s:
        rows = s.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)).all()
        assert {r.attempts for r in rows} == {1} and all(r.next_attempt_at > utcnow() for r in rows)
        s.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
        s.delete(s.get(WebhookEndpoint, endpoint.id))
        s.commit()
