#!/usr/bin/env python3
"""A small service for rollout tests: answers its version; /slow takes 50 ms;
FAIL_RATIO makes that share of requests (not health checks) answer 500; JITTER_MS adds
a random delay of up to that many milliseconds (ordinary noise); /metrics counts the
requests answered, in Prometheus' text format."""
import http.server
import os
import random
import socketserver
import sys
import time

PORT = int(sys.argv[1])
VERSION = os.environ.get("MOBIUS_VERSION", "unknown").encode()
FAIL_RATIO = float(os.environ.get("FAIL_RATIO", "0"))
JITTER_MS = float(os.environ.get("JITTER_MS", "0"))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    answered = 0

    def do_GET(self):
        if self.path == "/metrics":
            body = ("# TYPE app_requests_total counter\napp_requests_total %d\n" % Handler.answered).encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain; version=0.0.4")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        Handler.answered += 1
        if self.path.startswith("/slow"):
            time.sleep(0.05)
        if JITTER_MS and self.path != "/healthz":
            time.sleep(random.uniform(0, JITTER_MS) / 1000)
        status = 200
        if self.path != "/healthz" and random.random() < FAIL_RATIO:
            status = 500
        self.send_response(status)
        self.send_header("content-length", str(len(VERSION)))
        self.end_headers()
        self.wfile.write(VERSION)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


print("listening on port %d, version %s" % (PORT, VERSION.decode()), flush=True)
# In a container it must listen beyond its own loopback (BIND=0.0.0.0).
Server((os.environ.get("BIND", "127.0.0.1"), PORT), Handler).serve_forever()
