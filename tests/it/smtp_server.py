"""A real SMTP server for the e-mail tests: aiosmtpd on 127.0.0.1 and a free port.

usage: smtp_server.py OUT_DIR [--tls] [--user U --password P] [--fail-first N]

--tls offers STARTTLS with a certificate of a throwaway CA (trustme), whose PEM it writes to
OUT_DIR/ca.pem. --user/--password require that login (AUTH only after STARTTLS).
--fail-first answers 451 to the first N messages. Each message accepted is parsed with Python's
e-mail parser and written to OUT_DIR/mail-<n>.json: envelope, headers, text, attachments,
whether TLS was on and who logged in. It prints "port <n>" once it listens, then runs until
killed.
"""

import argparse
import json
import os
import socket
import ssl
import sys
import time
from email import policy
from email.parser import BytesParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, out, fail_first):
        self.out = out
        self.fail_first = fail_first
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        if self.fail_first > 0:
            self.fail_first -= 1
            return "451 4.3.0 try again later"
        msg = BytesParser(policy=policy.default).parsebytes(envelope.content)
        body = msg.get_body(preferencelist=("plain",))
        attachments = [
            {
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "content": part.get_payload(decode=True).decode("utf-8"),
            }
            for part in msg.iter_attachments()
        ]
        self.count += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "subject": str(msg["subject"]),
            "text": body.get_content() if body is not None else "",
            "attachments": attachments,
            "tls": session.ssl is not None,
            "login": session.auth_data.decode() if session.auth_data else None,
            "raw": envelope.content.decode("utf-8", "replace"),
        }
        tmp = os.path.join(self.out, f".mail-{self.count}.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.out, f"mail-{self.count}.json"))
        return "250 2.0.0 OK"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--fail-first", type=int, default=0)
    a = p.parse_args()

    kwargs = {}
    if a.tls:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        ca.cert_pem.write_to_path(os.path.join(a.out, "ca.pem"))
        kwargs["tls_context"] = ctx
    if a.user:

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == a.user
                and auth_data.password.decode() == a.password
            )
            return AuthResult(success=ok, auth_data=auth_data.login if ok else None)

        kwargs["authenticator"] = authenticator
        kwargs["auth_require_tls"] = True
    port = free_port()
    controller = Controller(
        Handler(a.out, a.fail_first), hostname="127.0.0.1", port=port, **kwargs
    )
    controller.start()
    print(f"port {port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
