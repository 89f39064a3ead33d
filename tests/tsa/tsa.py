#!/usr/bin/env python3
"""A throwaway RFC 3161 time-stamping authority for tests (issue 15).

Usage: tsa.py DIR PORT [ec|rsa]

Makes a fresh key and a self-signed certificate with
extendedKeyUsage=critical,timeStamping in DIR (DIR/tsa.crt is what a test
passes to `verify --tsa-cert`), then answers every POST on 127.0.0.1:PORT
(application/timestamp-query) with `openssl ts -reply`. Nothing secret is
committed: the key exists only in DIR for the test's life. Binds loopback only.
"""
import http.server
import os
import subprocess
import sys
import tempfile

DIR, PORT = sys.argv[1], int(sys.argv[2])
ALG = sys.argv[3] if len(sys.argv) > 3 else "ec"
os.makedirs(DIR, exist_ok=True)
KEY, CRT, CNF = (os.path.join(DIR, n) for n in ("tsa.key", "tsa.crt", "tsa.cnf"))

with open(CNF, "w") as f:
    f.write(f"""[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = custody test TSA {PORT}
[ ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {DIR}
serial = {DIR}/serial
signer_cert = {CRT}
signer_key = {KEY}
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
""")
with open(os.path.join(DIR, "serial"), "w") as f:
    f.write("01\n")

if ALG == "rsa":
    keyopt = ["-newkey", "rsa:2048"]
else:
    keyopt = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
subprocess.run(["openssl", "req", "-x509", "-new", "-nodes", *keyopt, "-keyout", KEY,
                "-out", CRT, "-days", "2", "-config", CNF, "-extensions", "ext", "-sha256"],
               check=True, capture_output=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        with tempfile.TemporaryDirectory() as t:
            q, r = os.path.join(t, "q.tsq"), os.path.join(t, "r.tsr")
            with open(q, "wb") as f:
                f.write(body)
            p = subprocess.run(["openssl", "ts", "-reply", "-config", CNF, "-queryfile", q,
                                "-out", r], capture_output=True)
            if p.returncode != 0:
                self.send_response(400)
                self.end_headers()
                return
            with open(r, "rb") as f:
                out = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
