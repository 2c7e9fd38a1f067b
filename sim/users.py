"""What a virtual user does, request by request: sign in by the email-code flow (the code
read from maildev's API, as a person reads the inbox), vote, watch results, upload
images and wait for their thumbnails. Every request is timed into a Recorder; what the
server acknowledged goes into a Ledger, which the checkers hold against what storage
and the database hold afterwards."""
import base64
import json
import random
import re
import time
import uuid

import gevent
import gevent.event
import gevent.lock

import stackenv

MAIL_DOMAIN = "sim.example.com"
LAST_TOKEN = [None]  # the newest token signed in: the checkers read published results with it


class Ledger:
    """What clients sent and what the server acknowledged (the checkers' input)."""

    def __init__(self):
        self.votes_sent = []  # [poll, user, option]: every attempt, acknowledged or not
        self.votes_acked = []  # [poll, user, option, status, t]
        self.uploads_sent = 0
        self.uploads_unknown = 0  # no answer: the outcome is unknown to the client
        self.uploads_accepted = []  # [image id, user, bytes, format, t]
        self.uploads_ready = {}  # image id -> seconds from 202 to ready seen by the client
        self.users = []  # user ids of this run
        self.polls = []  # poll ids of this run

    def to_json(self):
        return {"votes_sent": self.votes_sent, "votes_acked": self.votes_acked, "uploads_sent": self.uploads_sent,
                "uploads_unknown": self.uploads_unknown, "uploads_accepted": self.uploads_accepted,
                "uploads_ready": self.uploads_ready, "users": self.users, "polls": self.polls}


class Mailbox:
    """One reader of the web inbox for all virtual users: it lists maildev's mail, hands
    each waiting user the code sent to their address, and deletes the mail it read
    (addresses of the simulation only, so whoever else uses the inbox keeps theirs)."""

    def __init__(self, base):
        self.http = stackenv.Http(base, timeout=30)
        self.waiting = {}  # address -> AsyncResult
        self.lock = gevent.lock.Semaphore()
        self.greenlet = gevent.spawn(self._run)

    def code_for(self, address, timeout=60):
        result = gevent.event.AsyncResult()
        self.waiting[address] = result
        try:
            return result.get(timeout=timeout)
        finally:
            self.waiting.pop(address, None)

    def _run(self):
        while True:
            gevent.sleep(0.25 if self.waiting else 1.0)
            if not self.waiting:
                continue
            try:
                mails = self.http.request("GET", "/email").json()
            except Exception:  # noqa: BLE001  the inbox restarting; try again
                gevent.sleep(1)
                self.http = stackenv.Http(f"http://{self.http.host}:{self.http.port}", timeout=30)
                continue
            for m in mails:
                to = [t.get("address", "") for t in m.get("to", [])]
                ours = [a for a in to if a.endswith("@" + MAIL_DOMAIN)]
                if not ours:
                    continue
                match = re.search(r"\b(\d{6})\b", m.get("text") or "")
                for a in ours:
                    waiter = self.waiting.get(a)
                    if waiter is not None and match and not waiter.ready():
                        waiter.set(match.group(1))
                try:
                    self.http.request("DELETE", f"/email/{m['id']}")
                except Exception:  # noqa: BLE001
                    pass

    def close(self):
        self.greenlet.kill()


def jwt_subject(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]


class Client:
    """One virtual user: its own source address, its own connection, its token."""

    def __init__(self, index, recorder, ledger, mailbox, base=None, timeout=15.0):
        self.index = index
        self.rec, self.ledger, self.mailbox = recorder, ledger, mailbox
        self.base = base or stackenv.gateway()
        self.source = stackenv.source_address(index)
        self.timeout = timeout
        self.http = None
        self.token = None
        self.user = None
        self.email = None

    def bind(self):
        """Connections made by the current greenlet leave from this user's address."""
        gevent.getcurrent().nimbus_source = self.source

    def _http(self):
        if self.http is None:
            self.http = stackenv.Http(self.base, timeout=self.timeout)
        return self.http

    def call(self, endpoint, method, path, body=None, headers=None, auth=True):
        """One request, timed and recorded; status 0 when no HTTP answer came."""
        self.bind()
        h = dict(headers or {})
        if auth and self.token:
            h["Authorization"] = f"Bearer {self.token}"
        start = time.monotonic()
        at = self.rec.now()
        try:
            r = self._http().request(method, path, body=body, headers=h)
        except Exception:  # noqa: BLE001  refused, reset, timed out: no answer
            self.rec.add(endpoint, 0, (time.monotonic() - start) * 1000, at=at)
            if self.http is not None:
                self.http.close()
            self.http = None
            return None
        self.rec.add(endpoint, r.status, (time.monotonic() - start) * 1000, at=at)
        if r.headers.get("connection", "").lower() == "close":
            self.http.close()
            self.http = None
        return r

    def sign_in(self, attempts=5):
        """POST start, the code from the inbox, POST verify; retried on 429/503."""
        self.email = f"u{self.index}-{uuid.uuid4().hex[:10]}@{MAIL_DOMAIN}"
        for attempt in range(attempts):
            r = self.call("POST /v1/auth/email/start", "POST", "/v1/auth/email/start", {"email": self.email})
            if r is None or r.status != 202:
                gevent.sleep(min(5, 0.5 * 2 ** attempt) + random.random())
                continue
            try:
                code = self.mailbox.code_for(self.email, timeout=60)
            except gevent.Timeout:
                continue
            r = self.call("POST /v1/auth/email/verify", "POST", "/v1/auth/email/verify",
                          {"email": self.email, "code": code})
            if r is not None and r.status == 200:
                body = r.json()
                self.token = body["access_token"]
                self.user = body["user"]["id"]
                LAST_TOKEN[0] = self.token
                self.ledger.users.append(self.user)
                return True
            gevent.sleep(min(5, 0.5 * 2 ** attempt))
        return False

    # ------------------------------------------------------------------ polls

    def create_poll(self, title, options=("A", "B", "C", "D")):
        key = uuid.uuid4().hex
        for _ in range(5):
            r = self.call("POST /v1/polls", "POST", "/v1/polls", {"title": title, "options": list(options)},
                          headers={"Idempotency-Key": key})
            if r is not None and r.status == 201:
                poll = r.json()
                self.ledger.polls.append(poll["id"])
                return poll
            gevent.sleep(0.5)
        return None

    def vote(self, poll_id, option, retries=20, pause=0.25):
        """A vote and its safe retries (the same selection) until an answer that is not
        503 or a lost connection; returns the final status (0: never answered)."""
        for attempt in range(retries):
            self.ledger.votes_sent.append([poll_id, self.user, option])
            r = self.call("POST /v1/polls/{id}/votes", "POST", f"/v1/polls/{poll_id}/votes", {"option_ids": [option]})
            status = 0 if r is None else r.status
            if status in (200, 201):
                self.ledger.votes_acked.append([poll_id, self.user, option, status, round(self.rec.now(), 3)])
                return status
            if status not in (0, 502, 503, 504):
                return status
            gevent.sleep(pause * min(8, 1 + attempt))
        return 0

    # ------------------------------------------------------------------ images

    def upload(self, image, multipart, retries=20, pause=0.5):
        """Uploads until accepted (202) or refused for good; the id or None."""
        for attempt in range(retries):
            # Unknown until an answer comes: a lost connection and a request cut off by
            # the end of the run (its greenlet killed mid-call) may both have stored it.
            self.ledger.uploads_sent += 1
            self.ledger.uploads_unknown += 1
            if multipart:
                boundary = uuid.uuid4().hex
                head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{image.name}\"\r\n"
                        f"Content-Type: {image.content_type}\r\n\r\n").encode()
                body = head + image.data + f"\r\n--{boundary}--\r\n".encode()
                r = self.call("POST /v1/images (multipart)", "POST", "/v1/images", body,
                              headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            else:
                r = self.call("POST /v1/images (raw)", "POST", "/v1/images", image.data,
                              headers={"Content-Type": image.content_type})
            status = 0 if r is None else r.status
            if status != 0:
                self.ledger.uploads_unknown -= 1
            if status == 202:
                image_id = r.json()["id"]
                self.ledger.uploads_accepted.append([image_id, self.user, len(image.data), image.format,
                                                     round(self.rec.now(), 3)])
                return image_id
            if status not in (0, 429, 502, 503, 504):
                return None
            gevent.sleep(pause * min(8, 1 + attempt))
        return None

    def wait_ready(self, image_id, timeout=180, interval=0.5):
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            r = self.call("GET /v1/images/{id}", "GET", f"/v1/images/{image_id}")
            if r is not None and r.status == 200:
                status = r.json()["status"]
                if status in ("ready", "failed"):
                    if status == "ready":
                        self.ledger.uploads_ready[image_id] = round(time.monotonic() - start, 3)
                    return r.json()
            gevent.sleep(interval)
        return None

    def fetch_variant(self, image_id, name):
        r = self.call("GET /v1/images/{id}/variants/{name}", "GET", f"/v1/images/{image_id}/variants/{name}")
        if r is None or r.status != 302:
            return None
        location = r.headers.get("location")
        u = stackenv.urllib.parse.urlparse(location)
        storage = stackenv.Http(f"{u.scheme}://{u.netloc}", timeout=self.timeout)
        self.bind()
        start, at = time.monotonic(), self.rec.now()
        try:
            s = storage.request("GET", u.path + (f"?{u.query}" if u.query else ""))
        except Exception:  # noqa: BLE001
            self.rec.add("GET storage (presigned)", 0, (time.monotonic() - start) * 1000, at=at)
            return None
        finally:
            storage.close()
        self.rec.add("GET storage (presigned)", s.status, (time.monotonic() - start) * 1000, at=at)
        return s.body if s.status == 200 else None

    def history(self, pages=2):
        cursor = None
        for _ in range(pages):
            path = "/v1/me/images?limit=10" + (f"&cursor={stackenv.urllib.parse.quote(cursor, safe='')}" if cursor else "")
            r = self.call("GET /v1/me/images", "GET", path)
            if r is None or r.status != 200:
                return
            cursor = r.json().get("next_cursor")
            if not cursor:
                return

    def close(self):
        if self.http is not None:
            self.http.close()
            self.http = None
