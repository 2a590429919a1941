#!/usr/bin/env python3
"""Stand-in for Exoscale's instance metadata server and for the Exoscale Vault
auth plugin (exoscale/vault-plugin-auth-exoscale v0.2.0), placed in front of a
real OpenBao server.

One process, two HTTP servers on loopback:
  * the metadata port serves /1.0/meta-data/<key> as plain text;
  * the vault port answers POST/PUT /v1/auth/<mount>/login like the plugin
    (minting a real OpenBao token with the root token), proxies every other
    request verbatim to OpenBao, and exposes a control API under /_standin/.
Faults (sealed, hangs, oversize bodies, login errors, metadata outages) can be
set by flag or at runtime. See README.md beside this file.

Stdlib only, Python 3.11. Never logs bodies or tokens: they carry secrets.
"""

import argparse
import email.utils
import http.client
import json
import os
import select
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_INSTANCE_ID = "2f7c3b1e-8d4a-4c6e-9b0f-5a1d2e3c4b5a"

# Faults and the type of their value (None: a plain switch).
FAULT_KINDS = {
    "metadata-down": None,
    "metadata-404": None,
    "metadata-slow": float,
    "metadata-hang": None,
    "sealed": None,
    "vault-hang": None,
    "vault-oversize": None,
    "login-500": None,
    "login-429": None,
    "login-403": None,
    "transient-503": int,
    "transit-429": int,
}

# Faults that count down, one per request they answer, and clear themselves at zero.
COUNTED_FAULTS = ("transient-503", "transit-429")

# Headers that describe one HTTP hop, not the message; never forwarded.
# Content-Length is recomputed; Expect is answered by http.server itself.
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "proxy-connection", "te", "trailer", "trailers", "transfer-encoding",
    "upgrade", "host", "content-length", "expect",
}

# Token-bearing path forms of the token store; their last segment is redacted
# from logs and counters.
TOKEN_IN_PATH = (
    "/v1/auth/token/lookup/", "/v1/auth/token/renew/",
    "/v1/auth/token/revoke/", "/v1/auth/token/revoke-orphan/",
)

OVERSIZE_BYTES = 8 * 1024 * 1024

# A vault address may carry a client tag, http://HOST:PORT/client/<tag>, so that many
# clients behind this one proxy stay apart in OpenBao's audit log: the prefix is stripped and
# the tag forwarded in this header (audit it with sys/config/auditing/request-headers).
CLIENT_PREFIX = "/client/"
CLIENT_HEADER = "X-Standin-Client"

# Apache-style 404 page: what a static metadata server answers for a missing key.
METADATA_404 = (
    '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n'
    "<html><head>\n<title>404 Not Found</title>\n</head><body>\n"
    "<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on this server.</p>\n"
    "</body></html>\n"
).encode()


def log(line):
    """One line per event on stderr; callers pass only safe text."""
    sys.stderr.write(f"[standin] {line}\n")
    sys.stderr.flush()


def safe_path(raw_path):
    """Path for logs and counters: no query string, no token in the path."""
    path = urllib.parse.urlsplit(raw_path).path
    for prefix in TOKEN_IN_PATH:
        if path.startswith(prefix) and len(path) > len(prefix):
            return prefix + "<redacted>"
    return path


def split_client(raw_path):
    """'/client/<tag>/v1/...' -> ('<tag>', '/v1/...'); any other path -> (None, path)."""
    if not raw_path.startswith(CLIENT_PREFIX):
        return None, raw_path
    tag, sep, rest = raw_path[len(CLIENT_PREFIX):].partition("/")
    if not sep or not tag or len(tag) > 64 or not all(c.isalnum() or c in "-_." for c in tag):
        return None, raw_path
    return tag, "/" + rest


def vault_json(obj):
    """Encode like Go's json.Encoder, as Vault does: compact, UTF-8,
    newline-terminated."""
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def address_family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def vault_errors(*messages):
    return vault_json({"errors": list(messages)})


def parse_fault(spec):
    """'name' or 'name=value' -> (name, value); ValueError if malformed."""
    name, sep, raw = str(spec).strip().partition("=")
    if name not in FAULT_KINDS:
        raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULT_KINDS)})")
    kind = FAULT_KINDS[name]
    if kind is None:
        if sep:
            raise ValueError(f"fault {name} takes no value")
        return name, True
    if not sep:
        raise ValueError(f"fault {name} needs a value: {name}=N")
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"fault {name}: bad value {raw!r}") from None
    if value < 0:
        raise ValueError(f"fault {name}: value must be >= 0")
    return name, value


def parse_role(spec):
    """'NAME=POLICY[,POLICY...]' -> (name, [policies])."""
    name, sep, policies = spec.partition("=")
    if not name or not sep:
        raise argparse.ArgumentTypeError(f"--role wants NAME=POLICY[,POLICY...], got {spec!r}")
    return name, [p.strip() for p in policies.split(",") if p.strip()]


class State:
    """Faults and counters shared by all handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.faults = {}
        self.requests = {"vault": {}, "metadata": {}}
        self.statuses = {"vault": {}, "metadata": {}}
        self.logins = 0
        self.tokens_minted = 0

    def fault(self, name):
        with self.lock:
            return self.faults.get(name)

    def count_request(self, server, path):
        with self.lock:
            table = self.requests[server]
            table[path] = table.get(path, 0) + 1

    def count_status(self, server, status):
        with self.lock:
            table = self.statuses[server]
            table[str(status)] = table.get(str(status), 0) + 1

    def count_login(self):
        with self.lock:
            self.logins += 1

    def count_token(self):
        with self.lock:
            self.tokens_minted += 1

    def take(self, name):
        """Consume one answer of a counted fault; it clears itself when used up."""
        with self.lock:
            left = self.faults.get(name)
            if not left:
                self.faults.pop(name, None)
                return False
            if left == 1:
                del self.faults[name]
            else:
                self.faults[name] = left - 1
            return True

    def change_faults(self, set_specs=(), clear_names=(), clear_all=False):
        """Apply a change atomically; raises ValueError before changing anything."""
        if not isinstance(set_specs, (list, tuple)) or not isinstance(clear_names, (list, tuple)):
            raise ValueError('"set" and "clear" must be lists of fault names')
        to_set = [parse_fault(spec) for spec in set_specs]
        to_clear = []
        for spec in clear_names:
            name = str(spec).partition("=")[0].strip()
            if name not in FAULT_KINDS:
                raise ValueError(f"unknown fault {name!r}")
            to_clear.append(name)
        with self.lock:
            if clear_all:
                self.faults.clear()
            for name in to_clear:
                self.faults.pop(name, None)
            for name, value in to_set:
                if name in COUNTED_FAULTS and value == 0:
                    self.faults.pop(name, None)
                else:
                    self.faults[name] = value

    def snapshot(self):
        with self.lock:
            return {
                "faults": dict(self.faults),
                "requests": {k: dict(v) for k, v in self.requests.items()},
                "statuses": {k: dict(v) for k, v in self.statuses.items()},
                "logins": self.logins,
                "tokens_minted": self.tokens_minted,
            }


class Server(ThreadingHTTPServer):
    """Threaded server whose handler threads never delay shutdown or exit."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a herd of clients connecting at once would see
    # dropped SYNs and wait a second for the retransmission, time that is not the server's.
    request_queue_size = 1024

    def __init__(self, address, handler, app):
        self.app = app
        self.address_family = address_family(address[0])
        super().__init__(address, handler)

    def handle_error(self, request, client_address):
        # The default prints a traceback; a one-liner keeps stderr one line
        # per event and cannot quote request data.
        exc = sys.exception()
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc and exc.__traceback__ else None
        where = f" at line {frame.lineno}" if frame else ""
        log(f"handler error: {type(exc).__name__}{where}")

    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn): skip it,
        # it can stall for seconds where resolv.conf points nowhere.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class MetadataListener:
    """The metadata port, which the metadata-down fault closes and re-opens.

    While down, a bound but non-listening socket keeps the port number so the
    kernel refuses connections (like a host with nothing there) and the port is
    still ours when the fault clears.
    """

    def __init__(self, app, host, port):
        self.app = app
        self.host = host
        self.port = port
        self.lock = threading.Lock()
        self.server = None
        self.placeholder = None

    def up(self):
        with self.lock:
            if self.server:
                return
            if self.placeholder:
                self.placeholder.close()
                self.placeholder = None
            self.server = Server((self.host, self.port), MetadataHandler, self.app)
            self.port = self.server.server_address[1]
            threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                             name="metadata", daemon=True).start()
            log(f"metadata listening on {self.host}:{self.port}")

    def down(self):
        with self.lock:
            if not self.server:
                return
            self._stop_server()
            holder = socket.socket(address_family(self.host), socket.SOCK_STREAM)
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.bind((self.host, self.port))
            self.placeholder = holder
            log(f"metadata port {self.port} closed (metadata-down)")

    def _stop_server(self):
        # Called with self.lock held. shutdown() waits for serve_forever to
        # return; handler threads already running (e.g. hanging) are left be.
        self.server.shutdown()
        self.server.server_close()
        self.server = None

    def sync(self):
        """Match the socket to the metadata-down fault."""
        if self.app.state.fault("metadata-down"):
            self.down()
        else:
            self.up()

    def is_up(self):
        with self.lock:
            return self.server is not None

    def close(self):
        with self.lock:
            if self.server:
                self._stop_server()
            if self.placeholder:
                self.placeholder.close()
                self.placeholder = None


class App:
    """Configuration plus the shared state both servers read."""

    def __init__(self, args):
        self.args = args
        self.state = State()
        self.stopping = threading.Event()
        self.roles = dict(args.role or [])
        self.instances = set(args.instance or [args.instance_id])
        self.login_path = f"/v1/auth/{args.mount.strip('/')}/login"
        upstream = urllib.parse.urlsplit(args.upstream)
        if upstream.scheme not in ("http", "https") or not upstream.hostname:
            raise SystemExit(f"--upstream must be http(s)://host:port, got {args.upstream!r}")
        self.upstream = upstream
        self.root_token = args.root_token or os.environ.get("STANDIN_ROOT_TOKEN") or "root"
        self.metadata = {
            "instance-id": args.instance_id,
            "availability-zone": args.zone,
            "public-ipv4": args.public_ipv4,
            "local-ipv4": args.local_ipv4 or args.public_ipv4,
            "local-hostname": args.local_hostname,
        }
        self.metadata_listener = None
        self._oversize_body = None

    def upstream_request(self, method, target, headers, body, timeout=None):
        """One request to OpenBao -> (status, reason, [(header, value)], body).

        A fresh connection each time: simple, and no stale keep-alive socket
        can turn a live OpenBao into a spurious error.
        """
        port = self.upstream.port or (443 if self.upstream.scheme == "https" else 80)
        cls = (http.client.HTTPSConnection if self.upstream.scheme == "https"
               else http.client.HTTPConnection)
        conn = cls(self.upstream.hostname, port, timeout=timeout or self.args.upstream_timeout)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", self.upstream.netloc)
            for name, value in headers:
                conn.putheader(name, value)
            if body or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()

    def oversize_body(self):
        """~8 MiB of syntactically valid Vault-shaped JSON, built once."""
        if self._oversize_body is None:
            head = ('{"request_id":"%s","lease_id":"","renewable":false,"lease_duration":0,'
                    '"data":{"plaintext":"' % uuid.uuid4())
            tail = '"},"wrap_info":null,"warnings":null,"auth":null}\n'
            filler = "A" * (OVERSIZE_BYTES - len(head) - len(tail))
            self._oversize_body = (head + filler + tail).encode()
        return self._oversize_body


def http_date():
    return email.utils.formatdate(usegmt=True)


class BaseHandler(BaseHTTPRequestHandler):
    """Shared plumbing: logging without secrets, body reading, hanging."""

    protocol_version = "HTTP/1.1"  # keep-alive, as Go's net/http offers it
    server_version = "standin"
    label = "?"
    # An idle keep-alive connection must not pin a thread for ever.
    timeout = 120

    def setup(self):
        # As Go's net/http (Vault, the metadata server's peers) does on every connection:
        # without it, the headers and the body written apart meet the client's delayed ACK
        # and each answer waits ~40 ms for nothing.
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def app(self):
        return self.server.app

    # BaseHTTPRequestHandler logs the raw request line and error details;
    # replace that with our own line (method, redacted path, status).
    def log_message(self, format, *args):  # noqa: A002 - signature is fixed
        pass

    def log_request(self, code="-", size="-"):
        pass

    def log_error(self, format, *args):  # noqa: A002
        # Only the status code: the other arguments may quote the request line.
        code = args[0] if args and isinstance(args[0], int) else "-"
        log(f"{self.label} {self.command or '-'} error {code}")

    def note(self, status):
        """Log one finished request and count its status (control API aside)."""
        path = safe_path(self.path)
        log(f"{self.label} {self.command} {path} {status}")
        if not path.startswith("/_standin/"):
            self.app.state.count_status(self.label, status)

    def send_body(self, status, body, content_type, extra_headers=(), reason=None):
        self.send_response_only(status, reason)
        self.send_header("Content-Type", content_type)
        for name, value in extra_headers:
            self.send_header(name, value)
        self.send_header("Date", http_date())
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.write_body(body)
        self.note(status)

    def write_body(self, body):
        if self.command == "HEAD":
            return
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. on an oversize body): expected.
            self.close_connection = True

    def read_body(self):
        """The request body, Content-Length or chunked."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
            self.close_connection = True  # cannot tell where the next request starts
        return self.rfile.read(length) if length > 0 else b""

    def read_chunked(self):
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # Skip trailers up to the blank line.
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def hang(self, fault):
        """Never answer: hold the connection until the client gives up, the
        fault is cleared or we stop; then close it without a response."""
        self.close_connection = True
        log(f"{self.label} {self.command} {safe_path(self.path)} hang ({fault})")
        sock = self.connection
        while not self.app.stopping.is_set() and self.app.state.fault(fault):
            readable, _, _ = select.select([sock], [], [], 0.2)
            if not readable:
                continue
            try:
                if not sock.recv(1, socket.MSG_PEEK):
                    return  # the client closed its end
            except OSError:
                return
            time.sleep(0.2)  # pipelined bytes: keep ignoring them

    def pause(self, seconds):
        """Sleep, but wake up at once when the process stops."""
        self.app.stopping.wait(seconds)


class MetadataHandler(BaseHandler):
    """Exoscale's metadata server: GET /1.0/meta-data/<key>, plain text."""

    label = "metadata"

    def do_GET(self):
        path = safe_path(self.path)
        self.app.state.count_request("metadata", path)
        state = self.app.state
        if state.fault("metadata-hang"):
            self.hang("metadata-hang")
            return
        slow = state.fault("metadata-slow")
        if slow:
            self.pause(slow)
        if state.fault("metadata-404"):
            self.not_found()
            return
        text = self.lookup(path)
        if text is None:
            self.not_found()
        else:
            # Exactly the value: no trailing newline, as Exoscale serves it.
            self.send_body(200, text.encode(), "text/plain")

    do_HEAD = do_GET  # write_body() leaves the body out for HEAD

    def lookup(self, path):
        """Value for a metadata path, the key listing, or None."""
        for version in ("/1.0/meta-data", "/latest/meta-data"):
            if path in (version, version + "/"):
                return "\n".join(sorted(self.app.metadata))
            if path.startswith(version + "/"):
                return self.app.metadata.get(path[len(version) + 1:])
        return None

    def not_found(self):
        self.send_body(404, METADATA_404, "text/html; charset=iso-8859-1")


class VaultHandler(BaseHandler):
    """Vault port: plugin login, verbatim proxy to OpenBao, control API."""

    label = "vault"

    def do_any(self):
        self.client, self.path = split_client(self.path)
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/_standin/"):
            self.control(path)
            return
        # Read the whole request first: "hang" means the request was received.
        body = self.read_body()
        self.app.state.count_request("vault", safe_path(self.path))
        state = self.app.state
        if state.fault("vault-hang"):
            self.hang("vault-hang")
        elif state.fault("sealed") or state.take("transient-503"):
            self.sealed(path)
        elif path.startswith("/v1/transit/") and state.take("transit-429"):
            # What OpenBao's rate-limit quota answers (without its optional headers).
            self.send_json(429, vault_errors(
                f'request path "{path[len("/v1/"):]}": rate limit quota exceeded'))
        elif state.fault("vault-oversize"):
            self.send_json(200, self.app.oversize_body())
        elif path == self.app.login_path:
            self.login(body)
        else:
            self.proxy(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_any
    do_LIST = do_any  # Vault's own verb for listing

    def send_json(self, status, body, extra_headers=()):
        # Every Vault API answer carries Cache-Control: no-store.
        self.send_body(status, body, "application/json",
                       [("Cache-Control", "no-store"), *extra_headers])

    # --- sealed -----------------------------------------------------------

    def sealed(self, path):
        """What a sealed OpenBao answers (checked against OpenBao 2.x)."""
        if self.command in ("GET", "HEAD") and path == "/v1/sys/health":
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            try:
                status = int(query.get("sealedcode", ["503"])[0])
            except ValueError:
                status = 503
            self.send_json(status, vault_json({
                "initialized": True, "sealed": True, "standby": True,
                "replication_performance_mode": "unknown", "replication_dr_mode": "unknown",
                "server_time_utc": int(time.time()), "version": self.upstream_version(),
            }))
        elif self.command in ("GET", "HEAD") and path == "/v1/sys/seal-status":
            self.send_json(200, vault_json({
                "type": "shamir", "initialized": True, "sealed": True, "t": 1, "n": 1,
                "progress": 0, "nonce": "", "recovery_seal": False,
                "version": self.upstream_version(), "migration": False,
                "storage_type": "inmem",
            }))
        else:
            self.send_json(503, vault_errors("Vault is sealed"))

    def upstream_version(self):
        """OpenBao's version for the sealed health bodies, if it answers."""
        try:
            status, _, _, body = self.app.upstream_request(
                "GET", "/v1/sys/seal-status", [], b"", timeout=2)
            if status == 200:
                return json.loads(body).get("version", "")
        except (OSError, http.client.HTTPException, ValueError):
            pass
        return ""

    # --- login (the plugin) -------------------------------------------------

    def login(self, body):
        if self.command not in ("POST", "PUT"):
            self.send_json(405, vault_errors("unsupported operation"))
            return
        self.app.state.count_login()
        state = self.app.state
        # Rate-limit quotas act before the plugin runs, then plugin trouble.
        if state.fault("login-429"):
            message = f'request path "{self.app.login_path[len("/v1/"):]}": rate limit quota exceeded'
            self.send_json(429, vault_errors(message), [("Retry-After", "1")])
            return
        if state.fault("login-500"):
            self.send_json(500, vault_errors(
                "internal error: unable to retrieve Compute instance information: "
                "exoscale API error (standin fault login-500)"))
            return
        if state.fault("login-403"):
            self.send_json(403, vault_errors("permission denied"))
            return
        data, error = parse_login_body(body, self.headers.get("Content-Type", ""))
        if error:
            self.send_json(400, vault_errors(error))
            return
        status, result = check_login(self.app, data, self.client_address[0])
        if status != 200:
            self.send_json(status, vault_errors(result))
            return
        role, instance = result
        status, payload, extra = mint_token(self.app, role, instance, self.client)
        if status == 200:
            state.count_token()
        self.send_json(status, payload, extra)

    # --- proxy ------------------------------------------------------------

    def proxy(self, body):
        """Forward verbatim; return OpenBao's status, headers and body."""
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        if self.client:
            headers.append((CLIENT_HEADER, self.client))
        try:
            status, reason, resp_headers, data = self.app.upstream_request(
                self.command, self.path, headers, body)
        except (OSError, http.client.HTTPException) as exc:
            self.send_json(503, vault_errors(f"standin: upstream OpenBao unreachable: {exc}"))
            return
        self.send_response_only(status, reason)
        upstream_length = None
        for name, value in resp_headers:
            lname = name.lower()
            if lname == "content-length":
                upstream_length = value
            if lname not in HOP_BY_HOP:
                self.send_header(name, value)
        if self.command == "HEAD" and upstream_length is not None:
            self.send_header("Content-Length", upstream_length)
        elif status not in (204, 304):
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.write_body(data)
        self.note(status)

    # --- control API --------------------------------------------------------

    def control(self, path):
        body = self.read_body()
        if path == "/_standin/state" and self.command == "GET":
            self.send_state()
        elif path == "/_standin/faults" and self.command in ("POST", "PUT"):
            try:
                change = json.loads(body or b"{}")
                if not isinstance(change, dict):
                    raise ValueError("body must be a JSON object")
                self.app.state.change_faults(
                    set_specs=change.get("set") or [],
                    clear_names=change.get("clear") or [],
                    clear_all=bool(change.get("clear_all")),
                )
            except ValueError as exc:
                self.send_json(400, vault_errors(str(exc)))
                return
            self.app.metadata_listener.sync()
            log(f"faults now {json.dumps(self.app.state.snapshot()['faults'])}")
            self.send_state()
        else:
            self.send_json(404, vault_errors(f"standin: no control endpoint {self.command} {path}"))

    def send_state(self):
        snap = self.app.state.snapshot()
        snap["metadata_listening"] = self.app.metadata_listener.is_up()
        self.send_json(200, vault_json(snap))


def parse_login_body(body, content_type):
    """Login fields as Vault reads them -> (dict, None) or (None, error)."""
    if not body.strip():
        return {}, None
    is_form_type = content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded"
    if is_form_type and not body.lstrip().startswith(b"{"):
        # Like Vault: a form post is parsed as a form unless the body looks like
        # JSON (curl -d '{...}' labels JSON as a form).
        try:
            return dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)), None
        except UnicodeDecodeError:
            pass
    try:
        data = json.loads(body)
    except ValueError as exc:
        return None, f"failed to decode JSON input: {exc}"
    if not isinstance(data, dict):
        return None, "failed to decode JSON input: not a JSON object"
    return data, None


def field_string(data, name):
    """A TypeString field as the Vault SDK decodes it -> (present, value, error).

    JSON null counts as absent; numbers and booleans are weakly converted
    (mapstructure: true -> "1"); objects and arrays are a decode error.
    """
    value = data.get(name)
    if value is None:
        return False, "", None
    if isinstance(value, bool):
        return True, "1" if value else "0", None
    if isinstance(value, (str, int, float)):
        return True, str(value), None
    return True, "", f'error converting input for field "{name}": expected a string'


def check_login(app, data, client_ip):
    """The plugin's checks, in the plugin's order -> (status, message) or
    (200, (role, instance)).

    Order (path_login.go, backend.go in v0.2.0): role field present, role
    exists, instance field present, instance non-empty, instance exists in the
    Exoscale API, then the role's validator (default client_ip ==
    instance_public_ip).
    """
    approle = app.args.approle_mode
    role_field, instance_field = ("role_id", "secret_id") if approle else ("role", "instance")

    present, role, error = field_string(data, role_field)
    if error:
        return 400, error
    if not present:
        return 400, f"missing field: {role_field}"
    if role not in app.roles:
        return 400, f"role {json.dumps(role, ensure_ascii=False)} not found"

    present, instance, error = field_string(data, instance_field)
    if error:
        return 400, error
    if not present:
        return 400, f"missing field: {instance_field}"
    if instance == "":
        # v0.2.0 names the non-AppRole field here even in AppRole mode.
        return 400, "missing field: instance"
    if instance not in app.instances:
        return 403, "permission denied"  # GetInstance said not found
    if app.args.require_client_ip and client_ip != app.args.public_ipv4:
        return 403, "permission denied"  # validator evaluated to false
    return 200, (role, instance)


def mint_token(app, role, instance, client=None):
    """Create the token the plugin's login would produce -> (status, body, headers).

    A rate-limit quota on OpenBao answers the login itself: 429 with the login's path, as
    the quota acts before the plugin, and OpenBao's Retry-After when it sent one."""
    request = {
        "policies": app.roles[role],
        "ttl": app.args.token_ttl,
        "display_name": f"exoscale-{role}",
        "meta": {"role": role, "instance_id": instance, "zone": app.args.zone},
        "no_default_policy": False,
        "renewable": True,
        # Login tokens have no parent; without this they would be root's children.
        "no_parent": True,
    }
    headers = [("X-Vault-Token", app.root_token), ("Content-Type", "application/json")]
    if client:
        headers.append((CLIENT_HEADER, client))
    try:
        status, _, resp_headers, body = app.upstream_request(
            "POST", "/v1/auth/token/create", headers, json.dumps(request).encode())
    except (OSError, http.client.HTTPException) as exc:
        return 500, vault_errors(f"standin: upstream OpenBao unreachable: {exc}"), []
    if status == 429:
        login = app.login_path[len("/v1/"):]
        passed = [(k, v) for k, v in resp_headers
                  if k.lower() == "retry-after" or k.lower().startswith("x-ratelimit-")]
        return 429, vault_errors(f'request path "{login}": rate limit quota exceeded'), passed
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    auth = answer.get("auth") if isinstance(answer, dict) else None
    if status != 200 or not isinstance(auth, dict):
        errors = answer.get("errors") if isinstance(answer, dict) else None
        return 500, vault_errors(f"standin: token creation failed: HTTP {status}: {errors}"), []
    # The plugin stores role/instance/zone in Auth.InternalData, not in
    # Auth.Metadata, so a real login answer has "metadata": null.
    auth["metadata"] = None
    return 200, vault_json({
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": None,
        "wrap_info": None,
        "warnings": None,
        "auth": auth,
    }), []


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1", help="bind address for both servers")
    p.add_argument("--metadata-port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--vault-port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--upstream", default="http://127.0.0.1:8200", help="the real OpenBao")
    p.add_argument("--upstream-timeout", type=float, default=30.0, help="seconds")
    p.add_argument("--root-token", default=None,
                   help="mints login tokens (default: $STANDIN_ROOT_TOKEN, else 'root')")
    p.add_argument("--instance-id", default=DEFAULT_INSTANCE_ID)
    p.add_argument("--zone", default="ch-gva-2")
    p.add_argument("--public-ipv4", default="1.2.3.4")
    p.add_argument("--local-ipv4", default=None, help="default: the public IPv4")
    p.add_argument("--local-hostname", default="vault-luks-test")
    p.add_argument("--mount", default="exoscale", help="auth mount: /v1/auth/<mount>/login")
    p.add_argument("--role", action="append", type=parse_role, metavar="NAME=POLICY[,POLICY]",
                   help="repeatable")
    p.add_argument("--instance", action="append", metavar="UUID",
                   help="instances the Exoscale API knows (repeatable; default: --instance-id)")
    p.add_argument("--approle-mode", action="store_true",
                   help="login fields role_id/secret_id instead of role/instance")
    p.add_argument("--token-ttl", default="60s")
    p.add_argument("--require-client-ip", action="store_true",
                   help="default validator: client IP must equal --public-ipv4")
    p.add_argument("--fault", action="append", default=[], metavar="NAME[=VALUE]",
                   help=f"repeatable; one of: {', '.join(FAULT_KINDS)}")
    return p


def main():
    args = build_parser().parse_args()
    app = App(args)
    try:
        app.state.change_faults(set_specs=args.fault)
    except ValueError as exc:
        raise SystemExit(f"--fault: {exc}") from None

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    # Bind the metadata port for real first, so port 0 resolves and
    # metadata-down then holds a known number.
    app.metadata_listener = MetadataListener(app, args.listen, args.metadata_port)
    try:
        app.metadata_listener.up()
        app.metadata_listener.sync()
        vault = Server((args.listen, args.vault_port), VaultHandler, app)
    except OSError as exc:
        raise SystemExit(f"standin: cannot listen on {args.listen}: {exc}") from None
    threading.Thread(target=vault.serve_forever, kwargs={"poll_interval": 0.1},
                     name="vault", daemon=True).start()
    log(f"vault listening on {args.listen}:{vault.server_address[1]}, upstream {args.upstream}")

    print(json.dumps({"metadata_port": app.metadata_listener.port,
                      "vault_port": vault.server_address[1]}), flush=True)

    while not stop.wait(0.5):
        pass
    log("stopping")
    app.stopping.set()
    vault.shutdown()
    vault.server_close()
    app.metadata_listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
