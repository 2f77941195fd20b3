"""A webhook receiver for the tests: a real HTTP server that records every
request and verifies signatures with the stock `standardwebhooks` and `svix`
libraries (unchanged, as a customer would).

    python3 tests/webhook_receiver.py        # prints the port, then serves

Behaviour by path (the last segment names the endpoint in the log):
    /ok/<name>            200
    /fail/<n>/<name>      500 for the first n requests of each webhook-id, then 200
    /retry-after/<s>/<name>  429 with Retry-After: s once per webhook-id, then 200
    /slow/<ms>/<name>     waits ms, then 200
    /hang/<name>          waits 60 s (longer than any test timeout), then 200
    /gone/<name>          410
Control:
    GET  /_log                      every request so far (JSON array)
    POST /_verify {"name", "secret"} each request of <name> checked by both libraries
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks
from svix.webhooks import Webhook as SvixWebhook

LOCK = threading.Lock()
LOG = []
SEEN = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_log":
            with LOCK:
                body = json.dumps(LOG).encode()
            self.reply(200, body, [("Content-Type", "application/json")])
        else:
            self.reply(404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if self.path == "/_verify":
            self.verify(json.loads(raw))
            return
        parts = [p for p in self.path.split("/") if p]
        kind, name = parts[0], parts[-1]
        wid = self.headers.get("webhook-id", "")
        with LOCK:
            SEEN[(name, wid)] = SEEN.get((name, wid), 0) + 1
            nth = SEEN[(name, wid)]
        status, extra, delay = 200, [], 0
        if kind == "fail" and nth <= int(parts[1]):
            status = 500
        elif kind == "retry-after" and nth == 1:
            status, extra = 429, [("Retry-After", parts[1])]
        elif kind == "slow":
            delay = int(parts[1]) / 1000
        elif kind == "hang":
            delay = 60
        elif kind == "gone":
            status = 410
        # Logged on arrival, so a hanging request is seen while it hangs.
        record = {
            "name": name,
            "path": self.path,
            "at": time.time(),
            "status": status,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": raw.decode("utf-8", "replace"),
        }
        with LOCK:
            LOG.append(record)
        time.sleep(delay)
        self.reply(status, b'{"ok": true}' if status == 200 else b'{"error": "nope"}', extra)

    def verify(self, req):
        with LOCK:
            records = [r for r in LOG if r["name"] == req["name"]]
        out = []
        for r in records:
            headers = {k: r["headers"].get(k, "") for k in
                       ("webhook-id", "webhook-timestamp", "webhook-signature")}
            result = {"webhook_id": headers["webhook-id"]}
            for lib, cls in (("standardwebhooks", standardwebhooks.Webhook),
                             ("svix", SvixWebhook)):
                try:
                    cls(req["secret"]).verify(r["body"], headers)
                    result[lib] = True
                except Exception as e:  # noqa: BLE001 - any failure is "not verified"
                    result[lib] = False
                    result[lib + "_error"] = str(e)
            out.append(result)
        self.reply(200, json.dumps(out).encode(), [("Content-Type", "application/json")])


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
