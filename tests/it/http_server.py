"""An HR API on loopback for the http source's tests (stdlib only).

Serves the files of --root under their names (GET /reports/users.csv serves
<root>/reports/users.csv; a request with a query string serves
<root>/<path>@<query>, so GET /people?cursor=b serves <root>/people@cursor=b;
a file <served>.link is sent as the Link header) to a request with the right
credentials (--bearer TOKEN, --basic USER:PASSWORD, or --oauth CLIENT:SECRET:
then a POST to a path ending in /token with the client's Basic login and
grant_type client_credentials answers a new token, the only one the API then
takes), and answers 401 otherwise.

Faults come from <root>/faults.json, read on every request: {"<path>":
["503", "429:1", "cut", "drop", "ok"]} (the path with its query string, or
without it for every query): each request of that path takes the next entry
(then "ok" for good; a new faults.json counts from its first request): a
status (with a Retry-After after the colon), "cut" (the headers say the
whole length, half the body is sent, the connection closed) or "drop" (the
connection closed before any answer).

Every request is appended to <root>/requests.log, or --log (method, path,
Authorization header present or not: never its value). Listens on --port
(default: a free one) and prints "port N" once it listens.
"""

import argparse
import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--root", required=True)
parser.add_argument("--bearer")
parser.add_argument("--basic")
parser.add_argument("--oauth")
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--log", help="where requests are logged (default <root>/requests.log)")
args = parser.parse_args()
log_path = args.log or os.path.join(args.root, "requests.log")
lock = threading.Lock()
taken = {}
last_faults = ["{}"]
issued = []


def expected_auth():
    if args.bearer:
        return "Bearer " + args.bearer
    if args.basic:
        return "Basic " + base64.b64encode(args.basic.encode()).decode()
    if args.oauth:
        return "Bearer " + (issued[-1] if issued else "none yet")
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        path, _, query = self.path.partition("?")
        auth = self.headers.get("Authorization")
        with lock:
            with open(log_path, "a") as log:
                log.write(f"GET {self.path} auth={'yes' if auth else 'no'}\n")
            try:
                with open(os.path.join(args.root, "faults.json")) as f:
                    text = f.read()
            except FileNotFoundError:
                text = "{}"
            # New faults count their requests from now.
            if text != last_faults[0]:
                last_faults[0] = text
                taken.clear()
            all_faults = json.loads(text)
            key = self.path if self.path in all_faults else path
            faults = all_faults.get(key, [])
            n = taken.get(key, 0)
            taken[key] = n + 1
            fault = faults[n] if n < len(faults) else "ok"
        want = expected_auth()
        if want is not None and auth != want:
            return self.answer(401, b'{"error": "unauthorized"}')
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault not in ("ok", "cut"):
            status, _, retry_after = fault.partition(":")
            return self.answer(int(status), b"try later", retry_after)
        file = os.path.join(args.root, path.lstrip("/"))
        if query:
            file += "@" + query
        if not os.path.isfile(file):
            return self.answer(404, b"not found")
        with open(file, "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if body[:1] in b"[{" else "text/csv")
        if os.path.isfile(file + ".link"):
            with open(file + ".link") as f:
                self.send_header("Link", f.read().strip())
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault == "cut":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = self.rfile.read(length).decode()
        auth = self.headers.get("Authorization")
        with lock:
            with open(log_path, "a") as log:
                log.write(f"POST {self.path} auth={'yes' if auth else 'no'}\n")
        client = "Basic " + base64.b64encode((args.oauth or "").encode()).decode()
        if not self.path.endswith("/token") or "grant_type=client_credentials" not in form:
            return self.answer(400, b'{"error": "invalid_request"}')
        if auth != client:
            return self.answer(401, b'{"error": "invalid_client"}')
        with lock:
            issued.append(f"at-{len(issued) + 1}-{os.urandom(4).hex()}")
            token = issued[-1]
        body = json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 3600})
        self.answer(200, body.encode())

    def answer(self, status, body, retry_after=""):
        self.send_response(status)
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
print(f"port {server.server_address[1]}", flush=True)
server.serve_forever()
