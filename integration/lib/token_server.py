#!/usr/bin/python3
"""A small Bearer token service for docker-registry's `auth: token:` config.

The registry is configured with
    auth:
      token:
        realm: http://127.0.0.1:PORT/token
        service: SERVICE
        issuer: ISSUER
        rootcertbundle: CERT        # the certificate passed here as --cert
and this service answers GET /token?service=SERVICE&scope=repository:NAME:pull,push
with a JWT (RS256 or ES256, signed by --key, the cert in the x5c header) granting the
requested actions. With --user/--password it demands matching Basic
credentials (401 otherwise); without them it serves anyone. With
--refresh-token it also accepts the OAuth2 refresh-token grant (POST form).

GET /stats returns {"requests": N, "issued": M, "refused": K}.
Binds 127.0.0.1 (port 0 = any free port, written to --port-file once
listening) and exits after --lifetime seconds.
"""
import argparse
import base64
import json
import os
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt  # python3-jwt (Debian: run with /usr/bin/python3)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--key", required=True, help="PEM private key (RSA or EC P-256)")
    p.add_argument("--cert", required=True, help="PEM certificate of that key (the registry's rootcertbundle)")
    p.add_argument("--issuer", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--user", help="require Basic auth with this user")
    p.add_argument("--password", default="")
    p.add_argument("--refresh-token", help="accept this OAuth2 refresh token (POST grant_type=refresh_token)")
    p.add_argument("--expires", type=int, default=300, help="token lifetime in seconds")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", help="write the listening port here once ready")
    p.add_argument("--lifetime", type=float, default=600, help="exit after this many seconds")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args()


class State:
    def __init__(self, args):
        self.args = args
        with open(args.key, "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), password=None)
        with open(args.cert, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        self.x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.alg = "ES256" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "RS256"
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "issued": 0, "refused": 0}

    def count(self, name):
        with self.lock:
            self.counts[name] += 1

    def token(self, subject, scopes):
        access = []
        for scope in scopes:
            # repository:NAME:ACTION[,ACTION] (NAME may contain ':' only as a port in a host)
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            typ, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
            access.append({"type": typ, "name": name, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        claims = {
            "iss": self.args.issuer,
            "sub": subject,
            "aud": self.args.service,
            "exp": now + self.args.expires,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        return jwt.encode(claims, self.key, algorithm=self.alg, headers={"x5c": self.x5c})


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            if state.args.verbose:
                super().log_message(fmt, *a)

        def reply(self, status, obj, extra=None):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def refuse(self, why):
            state.count("refused")
            self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": why}]},
                       {"WWW-Authenticate": 'Basic realm="ocix-token"'})

        def basic_user(self):
            h = self.headers.get("Authorization", "")
            if not h.lower().startswith("basic "):
                return None
            try:
                user, _, password = base64.b64decode(h[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return user if (user, password) == (state.args.user, state.args.password) else None

        def do_GET(self):
            state.count("requests")
            url = urlsplit(self.path)
            if url.path == "/stats":
                with state.lock:
                    return self.reply(200, dict(state.counts))
            if url.path != "/token":
                return self.reply(404, {"error": "not found"})
            q = parse_qs(url.query)
            if q.get("service", [""])[0] != state.args.service:
                return self.reply(400, {"error": "unknown service"})
            subject = "anonymous"
            if state.args.user:
                subject = self.basic_user()
                if subject is None:
                    return self.refuse("bad or missing credentials")
            token = state.token(subject, q.get("scope", []))
            state.count("issued")
            self.reply(200, {"token": token, "access_token": token, "expires_in": state.args.expires,
                             "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

        def do_POST(self):
            state.count("requests")
            length = int(self.headers.get("Content-Length", "0") or 0)
            form = parse_qs(self.rfile.read(length).decode(errors="replace"))
            if urlsplit(self.path).path != "/token":
                return self.reply(404, {"error": "not found"})
            if (not state.args.refresh_token or form.get("grant_type", [""])[0] != "refresh_token" or
                    form.get("refresh_token", [""])[0] != state.args.refresh_token):
                return self.refuse("bad refresh token")
            if form.get("service", [""])[0] != state.args.service:
                return self.reply(400, {"error": "unknown service"})
            scopes = " ".join(form.get("scope", [])).split()
            token = state.token("refresh-user", scopes)
            state.count("issued")
            self.reply(200, {"access_token": token, "expires_in": state.args.expires})

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
    server.serve_forever()


if __name__ == "__main__":
    main()
