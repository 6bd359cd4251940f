#!/usr/bin/python3
"""An HTTP proxy in front of a registry on 127.0.0.1 that injects faults.

Every request is forwarded to --upstream (Host header kept, so the registry's
Location URLs point back at the proxy), except that:
  --fail-first N --fail-pattern RE [--fail-status 503]
      answers the first N requests whose "METHOD PATH?QUERY" matches RE with
      the status (and a registry-style JSON error), then passes them through;
  --drop-after K --drop-pattern RE [--drop-count M]
      for the first M successful GET responses whose path matches RE (default:
      blob GETs), sends the headers (full Content-Length) and K body bytes,
      then closes the connection.
GET /__proxy/stats answers {"requests", "failed", "dropped", "bytes_served",
"paths": {PATH: count}} (not counted itself); --stats-file gets the same JSON
at exit. Listens on 127.0.0.1:--port (0 = any; written to --port-file once
listening) and exits after --lifetime seconds.
"""
import argparse
import http.client
import json
import os
import signal
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True, help="HOST:PORT of the registry (plain HTTP)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--stats-file")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--fail-pattern", default=".")
    p.add_argument("--fail-status", type=int, default=503)
    p.add_argument("--drop-after", type=int, default=-1, help="bytes of body to send before dropping")
    p.add_argument("--drop-pattern", default=r"/blobs/sha256:")
    p.add_argument("--drop-count", type=int, default=1)
    p.add_argument("--lifetime", type=float, default=600)
    p.add_argument("--verbose", action="store_true")
    return p.parse_args()


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.fail_left = args.fail_first
        self.drop_left = args.drop_count if args.drop_after >= 0 else 0
        self.stats = {"requests": 0, "failed": 0, "dropped": 0, "bytes_served": 0, "paths": {}}

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.stats))

    def write_stats(self):
        if self.args.stats_file:
            tmp = self.args.stats_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.snapshot(), f)
            os.rename(tmp, self.args.stats_file)


def make_handler(state):
    args = state.args
    fail_re = re.compile(args.fail_pattern)
    drop_re = re.compile(args.drop_pattern)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            if args.verbose:
                super().log_message(fmt, *a)

        def send_body(self, status, body, ctype="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
                with state.lock:
                    state.stats["bytes_served"] += len(body)

        def forward(self):
            if self.path == "/__proxy/stats":
                body = json.dumps(state.snapshot()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            path_only = self.path.split("?", 1)[0]
            with state.lock:
                state.stats["requests"] += 1
                state.stats["paths"][path_only] = state.stats["paths"].get(path_only, 0) + 1
                fail = state.fail_left > 0 and fail_re.search(f"{self.command} {self.path}") is not None
                if fail:
                    state.fail_left -= 1
                    state.stats["failed"] += 1
            length = int(self.headers.get("Content-Length", "0") or 0)
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return self.send_body(411, b'{"errors":[{"code":"UNSUPPORTED","message":"chunked upload"}]}')
            body = self.rfile.read(length) if length else b""
            if fail:
                err = {"errors": [{"code": "UNAVAILABLE", "message": "injected by fault_proxy"}]}
                return self.send_body(args.fail_status, json.dumps(err).encode())

            conn = http.client.HTTPConnection(args.upstream, timeout=60)
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    if k.lower() not in HOP_BY_HOP:
                        conn.putheader(k, v)
                if body or self.command in ("POST", "PUT", "PATCH"):
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body if body else None)
                resp = conn.getresponse()
                self.relay(resp, path_only)
            except (OSError, http.client.HTTPException) as e:
                self.send_body(502, json.dumps({"errors": [{"code": "BAD_GATEWAY", "message": str(e)}]}).encode())
            finally:
                conn.close()

        def relay(self, resp, path_only):
            data_len = resp.getheader("Content-Length")
            if data_len is None and self.command != "HEAD":
                payload = resp.read()  # chunked upstream: buffer it (errors and small bodies)
                data_len = str(len(payload))
            else:
                payload = None
            drop = False
            if self.command == "GET" and 200 <= resp.status < 300 and drop_re.search(path_only):
                with state.lock:
                    if state.drop_left > 0:
                        state.drop_left -= 1
                        state.stats["dropped"] += 1
                        drop = True
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP:
                    self.send_header(k, v)
            if data_len is not None:
                self.send_header("Content-Length", data_len)
            self.end_headers()
            if self.command == "HEAD":
                return
            sent = 0
            limit = args.drop_after if drop else -1
            while True:
                if payload is not None:
                    chunk, payload = payload, b""
                else:
                    chunk = resp.read(65536)
                if not chunk:
                    break
                if limit >= 0 and sent + len(chunk) >= limit:
                    chunk = chunk[:limit - sent]
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    with state.lock:
                        state.stats["bytes_served"] += len(chunk)
                    self.wfile.flush()
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                self.wfile.write(chunk)
                sent += len(chunk)
                with state.lock:
                    state.stats["bytes_served"] += len(chunk)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = forward

    return Handler


def main():
    args = parse_args()
    state = State(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state))
    server.daemon_threads = True
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(server.server_address[1]))
        os.rename(tmp, args.port_file)
    timer = threading.Timer(args.lifetime, server.shutdown)
    timer.daemon = True
    timer.start()
    # SIGTERM: stop serving (and, for the proxy, write the stats) like a timeout does.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever()
    finally:
        state.write_stats()


if __name__ == "__main__":
    main()
