"""A real FTP server for the FTP source's tests: pyftpdlib on 127.0.0.1 and a free port.

usage: ftp_server.py ROOT USER PASSWORD [--tls explicit|implicit|none] [--ca-out FILE]

ROOT is the user's home (read and write). With --tls explicit the server offers AUTH TLS and
requires it, on the control and the data connections; with implicit, TLS starts at the first
byte. The certificate is a throwaway CA's (trustme), whose PEM goes to --ca-out. Passive mode
only. It prints "port <n>" once it listens, then serves until killed.
"""

import argparse
import socket
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("user")
    p.add_argument("password")
    p.add_argument("--tls", default="explicit", choices=["explicit", "implicit", "none"])
    p.add_argument("--ca-out")
    a = p.parse_args()

    authorizer = DummyAuthorizer()
    authorizer.add_user(a.user, a.password, a.root, perm="elradfmwMT")
    if a.tls == "none":
        handler = FTPHandler
    else:
        import tempfile

        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        if a.ca_out:
            ca.cert_pem.write_to_path(a.ca_out)
        pem = tempfile.NamedTemporaryFile(suffix=".pem", delete=False)
        cert.private_key_and_cert_chain_pem.write_to_path(pem.name)

        class Handler(TLS_FTPHandler):
            certfile = pem.name
            tls_control_required = True
            tls_data_required = True

            if a.tls == "implicit":

                def handle(self):
                    # TLS from the first byte: the banner goes out once the
                    # handshake is done, as with AUTH TLS.
                    self.secure_connection(self.ssl_context)
                    super().handle()

        handler = Handler
    handler.authorizer = authorizer
    handler.passive_ports = None
    handler.banner = "muster test ftp"
    port = free_port()
    server = FTPServer(("127.0.0.1", port), handler)
    print(f"port {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
