"""A second independent JMAP client library (jmaplib, from PyPI) against `tidings serve`.

jmaplib is capability-driven: it reads the Session and offers exactly what the server
advertises. This script runs one step per capability URI the Session offers (at the top
and in the account), with real round trips and asserted results, and FAILS when the
Session offers a URI it has no step for (Tidings' own `urn:tidings:*` ones aside), so a
capability cannot be added without a real client exercising it.

The extension steps (quota, vacationresponse, sieve, blob, mdn, webpush-vapid) run only
where the Session offers them: quota and sieve/vacationresponse only for accounts whose
mail server has QUOTA or ManageSieve, which the test's Dovecot is given.

Environment (set by tests/jmaplib.rs):
  JMAP_URL, JMAP_USER, JMAP_PASSWORD  the Tidings session (https) and its login
  JMAP_CA_FILE, JMAP_TOKEN            the CA of its certificate; an API token
  MAIL_ADDRESS, IMAP_PASSWORD         the mailbox on the private Dovecot
  IMAP_PORT, IMAP_CA_FILE             its IMAPS port and CA, for checking the server side
  LMTP_PORT                           its LMTP port, for deliveries

Prints one JSON object: {"offered": [...], "steps": [{"capability", "ok", "error"?}],
"results": {capability: {...}}}; exits 1 when a step failed. Every wait is bounded.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import imaplib
import json
import os
import queue
import smtplib
import ssl
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from jmap import AuthenticationError
from jmap.auth import BasicAuth, BearerAuth
from jmap.blobs import download_url
from jmap.client import JMAPClient
from jmap.core.ids import CreationRef
from jmap.models.push import StateChange
from jmap.push import EventSourceClient, WebSocketClient

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
WEBSOCKET = "urn:ietf:params:jmap:websocket"
VACATION = "urn:ietf:params:jmap:vacationresponse"
QUOTA = "urn:ietf:params:jmap:quota"
SIEVE = "urn:ietf:params:jmap:sieve"
BLOB = "urn:ietf:params:jmap:blob"
MDN = "urn:ietf:params:jmap:mdn"
VAPID = "urn:ietf:params:jmap:webpush-vapid"

#: How long a change may take to reach the IMAP server, or a delivery to reach Tidings.
WAIT = 30.0
#: One tag per run, so that what a step looks for on the server cannot be left over.
RUN = uuid.uuid4().hex[:10]


class Failed(Exception):
    """A check that did not hold: which, what was expected, what came back."""


def check(ok: bool, what: str, expected: Any = None, got: Any = None) -> None:
    if not ok:
        raise Failed(f"{what}: expected {expected!r}, got {got!r}")


def wait_for(what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Polls `probe` until it returns something truthy, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise Failed(f"{what}: not within {timeout:.0f}s (last: {last!r})")
        time.sleep(0.2)


def connect(auth: Any, account_id: str | None = None) -> JMAPClient:
    """A jmaplib client of the Session at JMAP_URL (https), trusting the test CA."""
    ctx = ssl.create_default_context(cafile=env("JMAP_CA_FILE"))
    http = httpx.Client(verify=ctx, follow_redirects=True, timeout=30.0)
    return JMAPClient.connect(env("JMAP_URL"), auth=auth, account_id=account_id, http=http)


# -- the mail server side, without Tidings ------------------------------------------------


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set")
    return value


def imap(other: bool = False) -> imaplib.IMAP4_SSL:
    """A login to the mailbox of the primary account, or of the second one."""
    ctx = ssl.create_default_context(cafile=env("IMAP_CA_FILE"))
    c = imaplib.IMAP4_SSL("127.0.0.1", int(env("IMAP_PORT")), ssl_context=ctx, timeout=10)
    if other:
        c.login(env("OTHER_ADDRESS"), env("OTHER_PASSWORD"))
    else:
        c.login(env("MAIL_ADDRESS"), env("IMAP_PASSWORD"))
    return c


def imap_names() -> set[str]:
    """The mailbox names an IMAP LIST shows (RFC 3501 6.3.8)."""
    c = imap()
    try:
        typ, lines = c.list()
        check(typ == "OK", "IMAP LIST", "OK", typ)
        names = set()
        for line in lines:
            if isinstance(line, bytes):
                # (\Flags) "/" name  - the name is last, quoted or not.
                name = line.decode().rsplit(" ", 1)[-1].strip('"')
                names.add(name)
        return names
    finally:
        c.logout()


def imap_subscribed() -> set[str]:
    """The mailbox names an IMAP LSUB shows (RFC 3501 6.3.9)."""
    c = imap()
    try:
        typ, lines = c.lsub()
        check(typ == "OK", "IMAP LSUB", "OK", typ)
        return {line.decode().rsplit(" ", 1)[-1].strip('"') for line in lines if isinstance(line, bytes)}
    finally:
        c.logout()


def imap_search(mailbox: str, criteria: str, other: bool = False) -> list[bytes]:
    """UIDs in `mailbox` matching an IMAP SEARCH (RFC 3501 6.4.4); [] if it does not exist."""
    c = imap(other)
    try:
        typ, _ = c.select(f'"{mailbox}"', readonly=True)
        if typ != "OK":
            return []
        typ, data = c.uid("SEARCH", criteria)
        return data[0].split() if typ == "OK" and data and data[0] else []
    finally:
        c.logout()


def imap_flags(mailbox: str, subject: str) -> str:
    """The FLAGS of the message in `mailbox` whose subject contains `subject`."""
    c = imap()
    try:
        c.select(f'"{mailbox}"', readonly=True)
        typ, data = c.uid("SEARCH", f'SUBJECT "{subject}"')
        uids = data[0].split() if typ == "OK" and data and data[0] else []
        if not uids:
            return ""
        typ, data = c.uid("FETCH", uids[0].decode(), "(FLAGS)")
        return str(data[0]) if typ == "OK" else ""
    finally:
        c.logout()


def deliver(subject: str, body: str = "delivered by LMTP", extra_headers: str = "") -> None:
    """One message into the INBOX by LMTP (RFC 2033), as a mail server would."""
    address = env("MAIL_ADDRESS")
    raw = (
        f"From: Dora <dora@example.org>\r\nTo: {address}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.org>\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
        f"{extra_headers}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    )
    # Three tries: once in a long run Python's smtplib read a garbled LMTP greeting from
    # Dovecot ("(-1, b'tkit Dovecot ready.')"); a delivery is the test's input, not what
    # it checks.
    # The same misread once showed as a refused MAIL FROM ("500 5.5.2 Invalid command
    # syntax") and a QUIT answered 250: any SMTP-level error before the message was
    # accepted is retried; the session is closed without letting QUIT's answer raise.
    for attempt in range(3):
        lmtp = None
        try:
            lmtp = smtplib.LMTP("127.0.0.1", int(env("LMTP_PORT")), timeout=10)
            refused = lmtp.sendmail("dora@example.org", [address], raw.encode())
            check(not refused, "LMTP delivery", {}, refused)
            return
        except (smtplib.SMTPException, ConnectionError) as e:
            print(f"LMTP delivery, try {attempt + 1}: {e!r}", file=sys.stderr)
            time.sleep(0.3)
        finally:
            if lmtp is not None:
                try:
                    lmtp.quit()
                except (smtplib.SMTPException, OSError):
                    lmtp.close()
    raise Failed("LMTP delivery: three tries failed")


# -- push receivers -----------------------------------------------------------------------


def watch(events: Any, stop: threading.Event) -> queue.Queue[Any]:
    """Reads a blocking push iterator on a daemon thread into a queue, until `stop`."""
    q: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        try:
            for event in events:
                q.put(event)
                if stop.is_set():
                    return
        except Exception as e:  # noqa: BLE001 - handed to the waiting side
            if not stop.is_set():
                q.put(e)

    threading.Thread(target=run, daemon=True).start()
    return q


def wait_state_change(q: queue.Queue[Any], account: str, type_name: str, since: str) -> str:
    """The first StateChange that moves `type_name` of `account` past `since`."""
    deadline = time.monotonic() + WAIT
    seen = []
    while time.monotonic() < deadline:
        try:
            event = q.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if isinstance(event, Exception):
            raise Failed(f"push stream failed: {event!r}")
        if isinstance(event, StateChange):
            state = event.changed.get(account, {}).get(type_name)
            seen.append(event.changed)
            if state is not None and state != since:
                return state
    raise Failed(f"no StateChange for {type_name} within {WAIT:.0f}s (saw {seen!r})")


class PushReceiver:
    """A loopback HTTP endpoint for PushSubscription (RFC 8620 7.2): records each POST."""

    def __init__(self) -> None:
        self.posts: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = min(int(self.headers.get("Content-Length", "0")), 1 << 20)
                body = self.rfile.read(length)
                posts.put(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/push/{RUN}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, what: str) -> tuple[dict[str, str], bytes]:
        try:
            return self.posts.get(timeout=WAIT)
        except queue.Empty:
            raise Failed(f"{what}: no POST to the push URL within {WAIT:.0f}s") from None

    def close(self) -> None:
        self.server.shutdown()


def decode_push(headers: dict[str, str], body: bytes, keys: Any) -> dict[str, Any]:
    """A push body as JSON. With keys, every push must be encrypted (RFC 8620 7.2, RFC 8291
    `aes128gcm`) and is decrypted by jmaplib's PushKeyPair; without, it is plain JSON."""
    if keys is not None:
        encoding = headers.get("content-encoding", "")
        check(encoding == "aes128gcm", "Content-Encoding of an encrypted push", "aes128gcm", encoding)
        body = keys.decrypt(body)
    return json.loads(body)


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_vapid(authorization: str, server_key: str, push_url: str) -> dict[str, Any]:
    """RFC 8292 2-3: `vapid t=<JWT>, k=<key>`, k the Session's applicationServerKey
    (RFC 9749), the JWT signed ES256 by that key, `aud` the push resource's origin, `exp`
    within 24 hours, `sub` a contact URI. Returns the claims."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    check(authorization.startswith("vapid "), "VAPID Authorization scheme", "vapid ...", authorization)
    params = dict(p.strip().split("=", 1) for p in authorization[len("vapid ") :].split(","))
    check(params.get("k") == server_key, "VAPID k is the applicationServerKey", server_key, params.get("k"))
    token = params.get("t", "")
    parts = token.split(".")
    check(len(parts) == 3, "VAPID t is a JWS compact serialization", 3, len(parts))
    header, claims = json.loads(b64url_decode(parts[0])), json.loads(b64url_decode(parts[1]))
    check(header.get("alg") == "ES256", "JWT alg (RFC 8292 2)", "ES256", header)
    raw_sig = b64url_decode(parts[2])
    check(len(raw_sig) == 64, "ES256 signature length", 64, len(raw_sig))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(server_key))
    der = encode_dss_signature(int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big"))
    try:
        key.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
    except Exception as e:  # noqa: BLE001 - cryptography's InvalidSignature, reported
        raise Failed(f"VAPID JWT signature does not verify with the applicationServerKey: {e!r}") from None
    origin = "/".join(push_url.split("/")[:3])
    check(claims.get("aud") == origin, "JWT aud is the push URL's origin", origin, claims.get("aud"))
    exp = claims.get("exp", 0)
    check(time.time() < exp <= time.time() + 24 * 3600 + 60, "JWT exp within 24 hours", "now < exp <= now+24h", exp)
    check(isinstance(claims.get("sub"), str) and claims["sub"], "JWT sub", "a contact URI", claims.get("sub"))
    return claims


# -- the steps ----------------------------------------------------------------------------


class Run:
    def __init__(self, client: JMAPClient, other: JMAPClient) -> None:
        self.client = client
        self.account = client.default_account
        # The same user's second account (another mailbox on the same Dovecot), for the
        # methods between accounts: Blob/copy, Email/copy.
        self.other = other

    def mailbox_by_role(self, role: str) -> Any:
        with self.client.batch() as b:
            got = b.mail.mailbox.get(ids=None)
        found = [m for m in got.result.items if m.role == role]
        check(len(found) == 1, f"one Mailbox with role {role}", 1, [m.name for m in found])
        return found[0]

    def email_ids_with_subject(self, text: str) -> list[str]:
        with self.client.batch() as b:
            q = b.mail.email.query(filter={"subject": text})
        return list(q.result.ids)

    # RFC 8620: echo, blobs up and down, EventSource and PushSubscription push.
    def core(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["echo"] = self.client.echo(hello="jmaplib")
        check(out["echo"] == {"hello": "jmaplib"}, "Core/echo", {"hello": "jmaplib"}, out["echo"])

        # An API token as a bearer token (RFC 6750), and a wrong one refused with a
        # challenge (RFC 6750 3).
        with connect(BearerAuth(env("JMAP_TOKEN"))) as bearer:
            check(bearer.echo(token=True) == {"token": True}, "Core/echo with a bearer token", {"token": True}, None)
            out["bearer_username"] = bearer.session.username
        try:
            connect(BearerAuth("tid_wrong")).close()
            raise Failed("a wrong bearer token: expected AuthenticationError, got a session")
        except AuthenticationError as e:
            check(bool(e.challenges), "WWW-Authenticate on a refused token", "a challenge", e.challenges)
            out["wrong_token_refused"] = True

        data = bytes((i * 7 + 3) % 256 for i in range(5000))
        up = self.client.upload(data, content_type="application/octet-stream")
        check(up.size == len(data), "upload size (RFC 8620 6.1)", len(data), up.size)
        down = self.client.download(up.blob_id, name="x.bin")
        check(
            hashlib.sha256(down).digest() == hashlib.sha256(data).digest(),
            "downloaded blob equals the upload (RFC 8620 6.2)",
            len(data),
            len(down),
        )
        out["blob_roundtrip"] = True
        # RFC 8620 6.2: the response's Content-Type is the `type` asked for, parameters
        # included; the URL is jmaplib's expansion of the Session's downloadUrl template.
        text = "Grüße".encode()
        tup = self.client.upload(text, content_type="text/plain; charset=utf-8")
        url = download_url(
            self.client.session, self.account, tup.blob_id, name="grüße.txt", content_type="text/plain; charset=utf-8"
        )
        resp = self.client.http.get(url)
        check(
            (resp.status_code, resp.headers.get("content-type"), resp.content)
            == (200, "text/plain; charset=utf-8", text),
            "download with type text/plain; charset=utf-8",
            (200, "text/plain; charset=utf-8", text),
            (resp.status_code, resp.headers.get("content-type"), resp.content),
        )
        out["download_type"] = resp.headers.get("content-type")

        # Blob/copy (RFC 8620 6.3) into the second account, downloaded there.
        with self.other.batch() as b:
            cp = b.core.blob.copy(from_account_id=self.account, blob_ids=[up.blob_id, "bnope"])
        copied = cp.result.copied.get(up.blob_id)
        check(copied is not None, "Blob/copy copied", up.blob_id, cp.result)
        check("bnope" in cp.result.not_copied, "Blob/copy of an unknown blob is notCopied", "bnope", cp.result)
        there = self.other.download(copied, name="x.bin")
        check(there == data, "the copy downloads from the other account", len(data), len(there))
        out["blob_copied_to_other_account"] = True

        # EventSource (RFC 8620 7.3): a StateChange for Email after an LMTP delivery.
        with self.client.batch() as b:
            g = b.mail.email.get(ids=[])
        since = g.result.state
        stop = threading.Event()
        es = EventSourceClient(self.client, types=["Email"], ping=5)
        events = es.events()
        q = watch(events, stop)
        time.sleep(0.5)
        deliver(f"EventSource {RUN}")
        wait_state_change(q, self.account, "Email", since)
        stop.set()
        out["eventsource_saw_email"] = True

        # PushSubscription (RFC 8620 7.2): the PushVerification, its code sent back, then a
        # StateChange after a delivery; in clear, then encrypted to jmaplib's keys (RFC 8291).
        from jmap.push import PushKeyPair

        for label, keys in (("push_subscription", None), ("push_subscription_encrypted", PushKeyPair.generate())):
            receiver = PushReceiver()
            try:
                result = self.push_subscription(receiver, keys=keys)
                out[label] = result["state_change"]
            finally:
                receiver.close()
        return out

    def push_subscription(self, receiver: PushReceiver, keys: Any) -> dict[str, Any]:
        """Creates a subscription to `receiver`, verifies it, sees a StateChange, destroys it.

        jmaplib's `new_subscription` refuses a non-https URL (RFC 8620 7.2 requires https),
        so the create object is written out; the server allows http only for this test.
        """
        out: dict[str, Any] = {}
        create: dict[str, Any] = {
            "deviceClientId": f"jmaplib-{RUN}",
            "url": receiver.url,
            "types": ["Email"],
        }
        if keys is not None:
            create["keys"] = keys.keys.to_wire()
        with self.client.batch() as b:
            made = b.core.push_subscription.set(create={"p": create})
        r = made.result
        check("p" in r.created, "PushSubscription/set create", "created p", r.not_created)
        sub_id = r.created["p"].id
        headers, body = receiver.next("PushVerification")
        verification = decode_push(headers, body, keys)
        check(
            verification.get("@type") == "PushVerification"
            and verification.get("pushSubscriptionId") == sub_id,
            "PushVerification (RFC 8620 7.2.2)",
            {"@type": "PushVerification", "pushSubscriptionId": sub_id},
            verification,
        )
        out["verification_headers"] = headers
        out["url"] = receiver.url
        with self.client.batch() as b:
            upd = b.core.push_subscription.set(
                update={sub_id: {"verificationCode": verification["verificationCode"]}}
            )
        check(sub_id in upd.result.updated, "verificationCode update", sub_id, upd.result)
        with self.client.batch() as b:
            got = b.core.push_subscription.get(ids=[sub_id])
        items = got.result.items
        check(
            len(items) == 1 and items[0].verification_code == verification["verificationCode"],
            "PushSubscription/get shows the verification code",
            verification["verificationCode"],
            items,
        )
        deliver(f"PushSubscription {RUN}")
        deadline = time.monotonic() + WAIT
        while True:
            headers, body = receiver.next("StateChange push")
            change = decode_push(headers, body, keys)
            if change.get("@type") == "StateChange" and "Email" in change.get("changed", {}).get(
                self.account, {}
            ):
                out["state_change_headers"] = headers
                break
            check(time.monotonic() < deadline, "a StateChange for Email", "Email", change)
        out["state_change"] = True
        with self.client.batch() as b:
            gone = b.core.push_subscription.set(destroy=[sub_id])
        check(gone.result.destroyed == [sub_id], "PushSubscription destroy", [sub_id], gone.result)
        return out

    # RFC 8621 2-5: Mailbox, Email, Thread, SearchSnippet; every change checked on IMAP.
    def mail(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        c = self.client
        with c.batch() as b:
            everything = b.mail.mailbox.get(ids=None)
            by_name = b.mail.mailbox.query(sort=[{"property": "name", "isAscending": True}])
            inboxes = b.mail.mailbox.query(filter={"role": "inbox"})
        names = {m.id: m.name for m in everything.result.items}
        check(
            sorted(names.values()) == [names[i] for i in by_name.result.ids],
            "Mailbox/query sorted by name",
            sorted(names.values()),
            [names.get(i) for i in by_name.result.ids],
        )
        inbox = self.mailbox_by_role("inbox")
        check(list(inboxes.result.ids) == [inbox.id], "Mailbox/query role inbox", [inbox.id], inboxes.result.ids)
        archive = self.mailbox_by_role("archive")

        # Create, rename, destroy a Mailbox: each reaches the IMAP server.
        first, second = f"jmaplib-{RUN}", f"jmaplib-renamed-{RUN}"
        with c.batch() as b:
            made = b.mail.mailbox.set(create={"m": {"name": first, "parentId": None}})
            # Read back in the same request by its creation id (RFC 8620 5.3).
            back = b.mail.mailbox.get(ids=[CreationRef("m")], properties=["name"])
        check("m" in made.result.created, "Mailbox/set create", "created", made.result.not_created)
        box = made.result.created["m"].id
        check(
            [(m.id, m.name) for m in back.result.items] == [(box, first)],
            "Mailbox/get of #m in the creating request",
            [(box, first)],
            back.result,
        )
        out["imap_list_after_create"] = bool(wait_for(f"IMAP LIST shows {first}", lambda: first in imap_names()))
        # RFC 8621 2: isSubscribed defaults to true in the user's own account, and reaches
        # the server as a subscription (IMAP clients showing subscribed folders see it).
        check(made.result.created["m"].is_subscribed is True, "isSubscribed of a created Mailbox", True, made.result.created["m"])
        out["imap_lsub_after_create"] = bool(
            wait_for(f"IMAP LSUB shows {first}", lambda: first in imap_subscribed())
        )
        with c.batch() as b:
            ren = b.mail.mailbox.set(update={box: {"name": second}})
        check(box in ren.result.updated, "Mailbox/set rename", box, ren.result.not_updated)
        out["imap_list_after_rename"] = bool(
            wait_for(
                f"IMAP LIST shows {second} and not {first}",
                lambda: (lambda n: second in n and first not in n)(imap_names()),
            )
        )
        with c.batch() as b:
            gone = b.mail.mailbox.set(destroy=[box])
        check(gone.result.destroyed == [box], "Mailbox/set destroy", [box], gone.result.not_destroyed)
        out["imap_list_after_destroy"] = bool(
            wait_for(f"IMAP LIST without {second}", lambda: second not in imap_names())
        )

        # Email/query + Email/get with bodies, Thread/get, in one request by back-references.
        with c.batch() as b:
            found = b.mail.email.query(
                filter={"inMailbox": inbox.id, "subject": "Quarterly report"},
                sort=[{"property": "subject", "isAscending": True}],
                calculate_total=True,
            )
            emails = b.mail.email.get(
                ids=found.ref_ids(),
                properties=["subject", "threadId", "textBody", "bodyValues", "keywords", "mailboxIds", "blobId"],
                fetchTextBodyValues=True,
            )
            threads = b.mail.thread.get(ids=emails.ref_list("threadId"))
        subjects = [e.subject for e in emails.result.items]
        check(
            subjects == [f"Quarterly report {i}" for i in range(3)],
            "Email/query + Email/get subjects",
            [f"Quarterly report {i}" for i in range(3)],
            subjects,
        )
        check(found.result.total == 3, "Email/query total", 3, found.result.total)
        for e in emails.result.items:
            part = e.text_body[0].part_id
            text = e.body_values[part].value.strip()
            check(text == "the numbers are up this quarter", "text body", "the numbers are up this quarter", text)
        thread_emails = {t.id: list(t.email_ids) for t in threads.result.items}
        for e in emails.result.items:
            check(e.id in thread_emails.get(e.thread_id, []), "Thread/get holds the email", e.id, thread_emails)
        out["bodies"] = True

        # SearchSnippet/get (RFC 8621 5.1): the matched word is marked.
        with c.batch() as b:
            sq = b.mail.email.query(filter={"text": "numbers"})
            snippets = b.mail.search_snippet.get(filter={"text": "numbers"}, email_ids=sq.ref_ids())
        marked = [s.preview for s in snippets.result.items if s.preview and "<mark>numbers</mark>" in s.preview]
        check(len(marked) == 3, "SearchSnippet/get marks the word in 3 previews", 3, snippets.result.items)

        # Email/set keywords and a move by mailboxIds, both seen on the IMAP server.
        target = emails.result.items[0]
        with c.batch() as b:
            kw = b.mail.email.set(update={target.id: {"keywords/$flagged": True, "keywords/$seen": True}})
        check(target.id in kw.result.updated, "Email/set keywords", target.id, kw.result.not_updated)
        flags = wait_for(
            "IMAP FLAGS \\Flagged \\Seen",
            lambda: (lambda f: f if "\\Flagged" in f and "\\Seen" in f else "")(imap_flags("INBOX", target.subject)),
        )
        out["imap_flags"] = flags
        with c.batch() as b:
            mv = b.mail.email.set(update={target.id: {"mailboxIds": {archive.id: True}}})
        check(target.id in mv.result.updated, "Email/set mailboxIds move", target.id, mv.result.not_updated)
        wait_for(
            "the moved message in Archive and not in INBOX on IMAP",
            lambda: imap_search(archive.name, f'SUBJECT "{target.subject}"')
            and not imap_search("INBOX", f'SUBJECT "{target.subject}"'),
        )
        with c.batch() as b:
            after = b.mail.email.get(ids=[target.id], properties=["mailboxIds"])
        check(
            after.result.items[0].mailbox_ids == {archive.id: True},
            "the moved Email keeps its id, now in Archive (RFC 8621 4.1.1)",
            {archive.id: True},
            after.result.items[0].mailbox_ids,
        )
        out["moved"] = True

        # Email/import (RFC 8621 4.8) of an uploaded message, filed on the server.
        subject = f"Imported by jmaplib {RUN}"
        raw = (
            f"From: Erin <erin@example.org>\r\nTo: {env('MAIL_ADDRESS')}\r\nSubject: {subject}\r\n"
            f"Message-ID: <import-{RUN}@example.org>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\n"
            "imported\r\n"
        ).encode()
        blob = c.upload(raw, content_type="message/rfc822")
        with c.batch() as b:
            imp = b.mail.email.import_(
                emails={"i": {"blobId": blob.blob_id, "mailboxIds": {archive.id: True}, "keywords": {"$seen": True}}}
            )
        check("i" in imp.result.created, "Email/import", "created i", imp.result.not_created)
        out["imported_in_imap"] = bool(
            wait_for("the imported message on IMAP", lambda: imap_search(archive.name, f'SUBJECT "{subject}"'))
        )

        # Email/copy (RFC 8621 4.7) into the second account's INBOX, seen on its server.
        with self.other.batch() as b:
            their = b.mail.mailbox.get(ids=None)
        their_inbox = next(m for m in their.result.items if m.role == "inbox")
        with self.other.batch() as b:
            cp = b.mail.email.copy(
                from_account_id=self.account,
                create={"c": {"id": target.id, "mailboxIds": {their_inbox.id: True}}},
            )
        check("c" in cp.result.created, "Email/copy between accounts", "created c", cp.result.not_created)
        out["copied_in_other_imap"] = bool(
            wait_for(
                "the copy on the second account's IMAP server",
                lambda: imap_search("INBOX", f'SUBJECT "{target.subject}"', other=True),
            )
        )

        # Email/changes after an LMTP delivery: exactly the new message.
        with c.batch() as b:
            g = b.mail.email.get(ids=[])
        since = g.result.state

        def changes() -> Any:
            with c.batch() as b:
                ch = b.mail.email.changes(since_state=since)
            return ch.result if ch.result.created else None

        deliver(f"Changes {RUN}")
        ch = wait_for("Email/changes shows the delivery", changes)
        out["changes_created"] = len(ch.created)
        with c.batch() as b:
            new = b.mail.email.get(ids=list(ch.created), properties=["subject"])
        check(
            [e.subject for e in new.result.items] == [f"Changes {RUN}"],
            "Email/changes created the delivered message",
            [f"Changes {RUN}"],
            [e.subject for e in new.result.items],
        )
        return out

    # RFC 8621 6-7: Identity and EmailSubmission through Postfix into Dovecot.
    def submission(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        c = self.client
        address = env("MAIL_ADDRESS")
        with c.batch() as b:
            ids = b.submission.identity.get(ids=None)
        identities = [i for i in ids.result.items if i.email == address]
        check(len(identities) == 1, "Identity/get", address, [i.email for i in ids.result.items])
        identity = identities[0]
        drafts, sent = self.mailbox_by_role("drafts"), self.mailbox_by_role("sent")
        subject = f"Sent by jmaplib {RUN}"
        with c.batch() as b:
            made = b.mail.email.set(
                create={
                    "d": {
                        "mailboxIds": {drafts.id: True},
                        "keywords": {"$draft": True, "$seen": True},
                        "from": [{"name": "Alice", "email": address}],
                        "to": [{"email": address}],
                        "subject": subject,
                        "bodyValues": {"t": {"value": "sent through Postfix"}},
                        "textBody": [{"partId": "t", "type": "text/plain"}],
                    }
                }
            )
            draft = b.mail.email.get(ids=[CreationRef("d")], properties=["subject", "keywords"])
            sub = b.submission.email_submission.set(
                create={"s": {"identityId": identity.id, "emailId": CreationRef("d")}},
                onSuccessUpdateEmail={
                    "#s": {
                        "keywords/$draft": None,
                        f"mailboxIds/{drafts.id}": None,
                        f"mailboxIds/{sent.id}": True,
                    }
                },
            )
        check("d" in made.result.created, "Email/set create draft", "created d", made.result.not_created)
        check("s" in sub.result.created, "EmailSubmission/set create", "created s", sub.result.not_created)
        email_id = made.result.created["d"].id
        check(
            [(e.id, e.subject) for e in draft.result.items] == [(email_id, subject)],
            "Email/get of #d in the creating request",
            [(email_id, subject)],
            draft.result,
        )
        # RFC 8621 7.5: the implicit Email/set of onSuccessUpdateEmail answers right after,
        # under the same call id (jmaplib keeps it in the handle's `extra`).
        implicit = [r.name for r in sub.extra]
        check(implicit == ["Email/set"], "the implicit Email/set response", ["Email/set"], implicit)
        out["implicit_email_set"] = len(implicit)
        with c.batch() as b:
            after = b.mail.email.get(ids=[email_id], properties=["keywords", "mailboxIds"])
        e = after.result.items[0]
        check("$draft" not in e.keywords, "onSuccessUpdateEmail cleared $draft", "no $draft", e.keywords)
        check(e.mailbox_ids == {sent.id: True}, "onSuccessUpdateEmail filed it in Sent", {sent.id: True}, e.mailbox_ids)
        out["draft_keyword_cleared"] = True
        out["delivered_into_inbox"] = bool(
            wait_for("the sent message delivered into INBOX", lambda: imap_search("INBOX", f'SUBJECT "{subject}"'))
        )
        sid = sub.result.created["s"].id

        def settled() -> Any:
            with c.batch() as b:
                got = b.submission.email_submission.get(ids=[sid])
            items = got.result.items
            check(len(items) == 1 and items[0].email_id == email_id, "EmailSubmission/get", email_id, items)
            status = (items[0].delivery_status or {}).get(address)
            if items[0].undo_status == "final" and status is not None and status.smtp_reply:
                return status
            return None

        # RFC 8621 7: final once relayed, with the server's reply to RCPT TO / DATA.
        status = wait_for("the submission final with an SMTP reply", settled)
        check(
            status.smtp_reply.startswith("250") and status.delivered in ("queued", "yes"),
            "deliveryStatus after the relay",
            "250 ..., queued|yes",
            status,
        )
        out["smtp_reply"] = status.smtp_reply[:3]

        # A submission held for an hour (FUTURERELEASE HOLDFOR, RFC 4865) and canceled:
        # nothing sent, the draft stays in Drafts (RFC 8621 7.5 undoStatus "canceled").
        held = f"Held by jmaplib {RUN}"
        with c.batch() as b:
            made = b.mail.email.set(
                create={
                    "h": {
                        "mailboxIds": {drafts.id: True},
                        "keywords": {"$draft": True},
                        "from": [{"email": address}],
                        "to": [{"email": address}],
                        "subject": held,
                        "bodyValues": {"t": {"value": "never sent"}},
                        "textBody": [{"partId": "t", "type": "text/plain"}],
                    }
                }
            )
            sub = b.submission.email_submission.set(
                create={
                    "s": {
                        "identityId": identity.id,
                        "emailId": CreationRef("h"),
                        "envelope": {
                            "mailFrom": {"email": address, "parameters": {"HOLDFOR": "3600"}},
                            "rcptTo": [{"email": address}],
                        },
                    }
                }
            )
        check("s" in sub.result.created, "EmailSubmission/set held", "created s", sub.result.not_created)
        hid, held_email = sub.result.created["s"].id, made.result.created["h"].id
        with c.batch() as b:
            cancel = b.submission.email_submission.set(update={hid: {"undoStatus": "canceled"}})
            after = b.submission.email_submission.get(ids=[hid], properties=["undoStatus"])
            draft = b.mail.email.get(ids=[held_email], properties=["mailboxIds", "keywords"])
        check(hid in cancel.result.updated, "cancel a held submission", hid, cancel.result.not_updated)
        check(after.result.items[0].undo_status == "canceled", "undoStatus canceled", "canceled", after.result.items)
        d = draft.result.items[0]
        check(
            d.mailbox_ids == {drafts.id: True} and "$draft" in d.keywords,
            "the canceled draft stays in Drafts",
            {drafts.id: True},
            (d.mailbox_ids, d.keywords),
        )
        out["canceled_kept_draft"] = True
        return out

    # RFC 8887: requests and push over one WebSocket.
    def websocket(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with WebSocketClient(self.client) as ws:
            with ws.batch() as b:
                g = b.mail.email.get(ids=[])
                echo = b.add("Core/echo", {"over": "websocket"})
            check(echo.result == {"over": "websocket"}, "Core/echo over the WebSocket", {"over": "websocket"}, echo.result)
            since = g.result.state
            ws.enable_push(["Email"])
            stop = threading.Event()
            q = watch(ws.notifications(), stop)
            time.sleep(0.3)
            deliver(f"WebSocket {RUN}")
            wait_state_change(q, self.account, "Email", since)
            stop.set()
            out["push_saw_email"] = True
        return out

    # RFC 8621 8: the VacationResponse singleton.
    def vacationresponse(self) -> dict[str, Any]:
        c = self.client
        with c.batch() as b:
            got = b.vacation.vacation_response.get(ids=None)
        items = got.result.items
        check([v.id for v in items] == ["singleton"], "VacationResponse/get", ["singleton"], items)
        subject = f"Away {RUN}"
        with c.batch() as b:
            st = b.vacation.vacation_response.set(
                update={
                    "singleton": {
                        "isEnabled": True,
                        "subject": subject,
                        "textBody": "back on Monday",
                        "fromDate": None,
                        "toDate": None,
                    }
                }
            )
        check("singleton" in st.result.updated, "VacationResponse/set", "singleton", st.result.not_updated)
        with c.batch() as b:
            again = b.vacation.vacation_response.get(ids=["singleton"])
        v = again.result.items[0]
        check(
            (v.is_enabled, v.subject, v.text_body) == (True, subject, "back on Monday"),
            "VacationResponse/get after set",
            (True, subject, "back on Monday"),
            (v.is_enabled, v.subject, v.text_body),
        )
        # RFC 8621 8: creating or destroying the singleton is forbidden.
        with c.batch() as b:
            bad = b.add("VacationResponse/set", {"destroy": ["singleton"]})
        check("singleton" in bad.result.not_destroyed, "VacationResponse destroy refused", "notDestroyed", bad.result)
        with c.batch() as b:
            off = b.vacation.vacation_response.set(update={"singleton": {"isEnabled": False}})
        check("singleton" in off.result.updated, "VacationResponse/set off", "singleton", off.result.not_updated)
        return {"set_and_read_back": True}

    # RFC 9425: Quota/get, /query, /changes; usage follows a delivery.
    def quota(self) -> dict[str, Any]:
        c = self.client
        with c.batch() as b:
            got = b.quota.quota.get(ids=None)
            q = b.quota.quota.query(filter={})
        quotas = got.result.items
        check(len(quotas) > 0, "Quota/get lists at least one quota", ">0", quotas)
        for x in quotas:
            check(x.resource_type in ("count", "octets"), "Quota resourceType (RFC 9425 2)", "count|octets", x.resource_type)
            check(x.scope in ("account", "domain", "global"), "Quota scope (RFC 9425 2)", "account|domain|global", x.scope)
            check(
                isinstance(x.used, int) and isinstance(x.hard_limit, int) and 0 <= x.used <= x.hard_limit,
                "Quota used within hardLimit",
                "0 <= used <= hardLimit",
                (x.used, x.hard_limit),
            )
            # RFC 9425 2 names JMAP type names ("Email"); its own example says "Mail".
            check("Mail" in x.types or "Email" in x.types, "Quota types name mail", "Mail or Email", x.types)
        check(
            sorted(q.result.ids) == sorted(x.id for x in quotas),
            "Quota/query ids = Quota/get ids",
            sorted(x.id for x in quotas),
            sorted(q.result.ids),
        )
        octets = [x for x in quotas if x.resource_type == "octets"]
        before = {x.id: x.used for x in octets}
        size = 4000
        deliver(f"Quota {RUN}", body="x" * size)

        def grown() -> Any:
            # At least the delivered body more than before: this delivery, not only one
            # of an earlier step still being counted.
            with c.batch() as b:
                ch = b.quota.quota.changes(since_state=got.result.state)
                now = b.quota.quota.get(ids=list(before))
            bigger = [x for x in now.result.items if x.used >= before.get(x.id, x.used) + size]
            return (ch.result, bigger) if ch.result.updated and bigger else None

        if octets:
            ch, bigger = wait_for("Quota/changes and a larger octets quota after a delivery", grown)
            check(
                ch.old_state == got.result.state and ch.new_state != got.result.state,
                "Quota/changes states",
                got.result.state,
                (ch.old_state, ch.new_state),
            )
        return {"quotas": len(quotas)}

    # RFC 9661: SieveScript validate, create and activate, deactivate, destroy.
    def sieve(self) -> dict[str, Any]:
        c = self.client
        good = f'require ["imap4flags"];\r\nif header :contains "subject" "sieve {RUN}" {{ addflag "\\\\Flagged"; }}\r\n'
        bad = "require [\"imap4flags\"];\r\nif header :contains {\r\n"
        good_blob = c.upload(good.encode(), content_type="application/sieve")
        bad_blob = c.upload(bad.encode(), content_type="application/sieve")
        with c.batch() as b:
            ok = b.sieve.sieve_script.validate(blob_id=good_blob.blob_id)
            ko = b.sieve.sieve_script.validate(blob_id=bad_blob.blob_id)
        check(ok.result.error is None, "SieveScript/validate of a good script", None, ok.result.error)
        check(ko.result.error is not None, "SieveScript/validate of a broken script", "an error", ko.result.error)
        name = f"jmaplib-{RUN}"
        with c.batch() as b:
            made = b.sieve.sieve_script.set(
                create={"s": {"name": name, "blobId": good_blob.blob_id}},
                onSuccessActivateScript="#s",
            )
        check("s" in made.result.created, "SieveScript/set create", "created s", made.result.not_created)
        sid = made.result.created["s"].id
        with c.batch() as b:
            got = b.sieve.sieve_script.get(ids=[sid])
            q = b.sieve.sieve_script.query(filter={"name": name})
        check(got.result.items[0].is_active is True, "the script is active", True, got.result.items)
        check(list(q.result.ids) == [sid], "SieveScript/query by name", [sid], q.result.ids)
        # The active script runs at delivery (Pigeonhole in LMTP).
        deliver(f"sieve {RUN}")
        flagged = wait_for(
            "the delivery flagged by the script",
            lambda: "\\Flagged" in imap_flags("INBOX", f"sieve {RUN}"),
        )
        with c.batch() as b:
            off = b.sieve.sieve_script.deactivate()
        check(off.result is not None, "deactivate", "a /set response", off.result)
        with c.batch() as b:
            gone = b.sieve.sieve_script.set(destroy=[sid])
        check(gone.result.destroyed == [sid], "SieveScript destroy", [sid], gone.result.not_destroyed)
        return {"flagged_at_delivery": bool(flagged)}

    # RFC 9404: Blob/upload, Blob/get (whole, a range, a digest), Blob/lookup.
    def blob(self) -> dict[str, Any]:
        c = self.client
        head, tail = f"hello {RUN} ", bytes(range(200))
        whole = head.encode() + tail
        with c.batch() as b:
            up = b.blob.blob.upload(
                create={
                    "b": {
                        "data": [{"data:asText": head}, {"data:asBase64": base64.b64encode(tail).decode()}],
                        "type": "application/octet-stream",
                    }
                }
            )
            # RFC 9404 4.1: the created blob is usable as #b later in the same request.
            got = b.blob.blob.get(ids=[CreationRef("b")], properties=["data:asBase64", "size", "digest:sha-256"])
        check("b" in up.result.created, "Blob/upload", "created b", up.result.not_created)
        blob_id = up.result.created["b"].id
        check(up.result.created["b"].size == len(whole), "Blob/upload size", len(whole), up.result.created["b"])
        item = got.result.items[0]
        check(item.data == whole, "Blob/get data:asBase64 gives the uploaded bytes", len(whole), item)
        digest = base64.b64encode(hashlib.sha256(whole).digest()).decode()
        check(item.digest("sha-256") == digest, "Blob/get digest:sha-256 (RFC 9404 4.2)", digest, item.digest("sha-256"))
        with c.batch() as b:
            part = b.blob.blob.get(ids=[blob_id], properties=["data:asText", "size"], offset=0, length=5)
        p0 = part.result.items[0]
        check(
            (p0.as_text, p0.size, p0.is_truncated) == (head[:5], len(whole), False),
            "Blob/get of a range: its text, the whole size (RFC 9404 4.2)",
            (head[:5], len(whole), False),
            (p0.as_text, p0.size, p0.is_truncated),
        )
        # Blob/lookup (RFC 9404 4.3): the Email, its Mailboxes and its Thread.
        ids = self.email_ids_with_subject("Quarterly report")
        with c.batch() as b:
            em = b.mail.email.get(ids=ids[:1], properties=["blobId", "mailboxIds", "threadId"])
        email = em.result.items[0]
        with c.batch() as b:
            lk = b.blob.blob.lookup(type_names=["Email", "Mailbox", "Thread"], ids=[email.blob_id])
        entries = lk.result.items
        check(len(entries) == 1 and entries[0].id == email.blob_id, "Blob/lookup entry", email.blob_id, lk.result)
        found = entries[0]
        check(found.ids_of("Email") == [email.id], "Blob/lookup Email", [email.id], found.matched_ids)
        check(
            sorted(found.ids_of("Mailbox")) == sorted(email.mailbox_ids),
            "Blob/lookup Mailbox",
            sorted(email.mailbox_ids),
            found.matched_ids,
        )
        check(found.ids_of("Thread") == [email.thread_id], "Blob/lookup Thread", [email.thread_id], found.matched_ids)
        return {"upload_get_lookup": True}

    # RFC 9007: MDN/parse of a received receipt, MDN/send of one.
    def mdn(self) -> dict[str, Any]:
        c = self.client
        address = env("MAIL_ADDRESS")
        # A message asking for a receipt (RFC 8098 2.1), to acknowledge.
        subject = f"Receipt wanted {RUN}"
        deliver(subject, extra_headers=f"Disposition-Notification-To: {address}\r\n")
        ids = wait_for("the message asking for a receipt", lambda: self.email_ids_with_subject(subject))
        with c.batch() as b:
            idn = b.submission.identity.get(ids=None)
        identity = next(i for i in idn.result.items if i.email == address)
        with c.batch() as b:
            sent = b.mdn.mdn.send(
                identity_id=identity.id,
                send={
                    "k": {
                        "forEmailId": ids[0],
                        "subject": f"Read: {subject}",
                        "textBody": "It was displayed.",
                        "includeOriginalMessage": False,
                        "disposition": {
                            "actionMode": "manual-action",
                            "sendingMode": "mdn-sent-manually",
                            "type": "displayed",
                        },
                    }
                },
            )
        check("k" in (sent.result.sent or {}), "MDN/send", "sent k", sent.result.not_sent)
        with c.batch() as b:
            kw = b.mail.email.get(ids=ids[:1], properties=["keywords"])
        check("$mdnsent" in kw.result.items[0].keywords, "$mdnsent set (RFC 9007 2.1)", "$mdnsent", kw.result.items[0].keywords)
        # The receipt travels through Postfix back to the requester, here alice herself.
        rids = wait_for("the receipt delivered", lambda: self.email_ids_with_subject(f"Read: {subject}"), timeout=WAIT * 2)
        with c.batch() as b:
            got = b.mail.email.get(ids=rids[:1], properties=["blobId"])
            parsed = b.mdn.mdn.parse(blob_ids=got.ref_list("blobId"))
        blob = got.result.items[0].blob_id
        mdn = (parsed.result.parsed or {}).get(blob)
        check(mdn is not None, "MDN/parse of the delivered receipt", blob, parsed.result)
        disposition = mdn.disposition
        check(
            disposition is not None
            and (disposition.action_mode, disposition.sending_mode, disposition.type)
            == ("manual-action", "mdn-sent-manually", "displayed"),
            "MDN/parse disposition (RFC 8098 3.2.6)",
            ("manual-action", "mdn-sent-manually", "displayed"),
            disposition,
        )
        return {"sent_and_parsed": True}

    # RFC 9749: VAPID on PushSubscription (RFC 8292 Authorization on every push, RFC 8291
    # encryption to the subscription's keys).
    def webpush_vapid(self) -> dict[str, Any]:
        from jmap.push import PushKeyPair

        value = self.client.session.capabilities.get(VAPID) or {}
        server_key = value.get("applicationServerKey", "") if isinstance(value, dict) else ""
        raw = b64url_decode(server_key) if server_key else b""
        check(
            len(raw) == 65 and raw[0] == 4,
            "applicationServerKey is an uncompressed P-256 point, base64url (RFC 9749 3)",
            "65 octets starting 0x04",
            server_key,
        )
        receiver = PushReceiver()
        try:
            out = self.push_subscription(receiver, keys=PushKeyPair.generate())
        finally:
            receiver.close()
        claims = check_vapid(out["verification_headers"].get("authorization", ""), server_key, out["url"])
        check_vapid(out["state_change_headers"].get("authorization", ""), server_key, out["url"])
        return {"vapid_verified": True, "aud": claims.get("aud")}


STEPS: dict[str, str] = {
    CORE: "core",
    MAIL: "mail",
    SUBMISSION: "submission",
    WEBSOCKET: "websocket",
    VACATION: "vacationresponse",
    QUOTA: "quota",
    SIEVE: "sieve",
    BLOB: "blob",
    MDN: "mdn",
    VAPID: "webpush_vapid",
}


def offered(client: JMAPClient) -> list[str]:
    """Every capability URI of the Session and of any account, less `urn:tidings:*`."""
    session = client.session
    uris = set(session.capabilities)
    for account in session.accounts.values():
        uris |= set(account.account_capabilities)
    return sorted(u for u in uris if not u.startswith("urn:tidings:"))


def main() -> int:
    auth = BasicAuth(env("JMAP_USER"), env("JMAP_PASSWORD"))
    client = connect(auth)
    others = [a for a in client.session.accounts if a != client.default_account]
    if len(others) != 1:
        raise SystemExit(f"expected a second account in the Session, got {others!r}")
    other = connect(auth, account_id=others[0])
    run = Run(client, other)
    # The first sync: the three seeded messages are there before any step starts.
    wait_for("the first sync", lambda: len(run.email_ids_with_subject("Quarterly report")) == 3, timeout=60)

    def other_synced() -> bool:
        with other.batch() as b:
            got = b.mail.mailbox.get(ids=None)
        return any(m.role == "inbox" for m in got.result.items)

    wait_for("the first sync of the second account", other_synced, timeout=60)
    uris = offered(client)
    order = [u for u in STEPS if u in uris] + [u for u in uris if u not in STEPS]
    steps, results, failed = [], {}, False
    for uri in order:
        name = STEPS.get(uri)
        if name is None:
            steps.append({"capability": uri, "ok": False, "error": "no jmaplib step for this capability"})
            failed = True
            continue
        started = time.monotonic()
        try:
            results[name] = getattr(run, name)()
            steps.append({"capability": uri, "ok": True, "seconds": round(time.monotonic() - started, 2)})
        except Exception as e:  # noqa: BLE001 - reported per step, then the next step runs
            failed = True
            steps.append(
                {
                    "capability": uri,
                    "ok": False,
                    "error": f"{type(e).__name__}: {e}",
                    "where": traceback.format_exc().strip().splitlines()[-3:],
                }
            )
            print(f"step {name} failed:\n{traceback.format_exc()}", file=sys.stderr)
    print(json.dumps({"offered": uris, "steps": steps, "results": results}, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
