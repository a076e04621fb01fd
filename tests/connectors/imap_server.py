"""A private, real Dovecot IMAP server for tests: own config, ports, users and Maildirs.

Started as a subprocess (``dovecot -F -c <config>``) on free loopback ports, plain IMAP
with STARTTLS and implicit TLS on a self-signed certificate; users come from a passwd-file
and mail lives in a temporary directory owned by ``nobody``. Mail is delivered over IMAP
(APPEND), exactly as a client would.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import _free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
MAIL_UID = MAIL_GID = 65534  # nobody / nogroup: dovecot never serves mail as root

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = contextd-test-{port}
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = {uid}
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
"""


class DovecotServer:
    """One dovecot instance; ``users`` maps login -> password."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.root = Path(tempfile.mkdtemp(prefix="contextd-dovecot-"))
        self.root.chmod(0o755)
        self.port, self.tls_port = _free_port(), _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.cert = self.root / "cert.pem"

    def __enter__(self) -> DovecotServer:
        if not Path(DOVECOT).is_file():
            raise RuntimeError("dovecot is not installed: apt-get install -y dovecot-imapd "
                               "(.ci/run does this)")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(self.root / "key.pem"), "-out", str(self.cert)],
            check=True, capture_output=True)
        (self.root / "passwd").write_text(
            "".join(f"{user}:{{PLAIN}}{password}::::::\n"
                    for user, password in self.users.items()))
        mail = self.root / "mail"
        mail.mkdir()
        os.chown(mail, MAIL_UID, MAIL_GID)
        self.config = self.root / "dovecot.conf"
        self.config.write_text(CONFIG.format(root=self.root, port=self.port,
                                             tls_port=self.tls_port, uid=MAIL_UID,
                                             gid=MAIL_GID))
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.config)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"dovecot did not start: {self.log()}") from None
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def client(self, user: str) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        conn.login(user, self.users[user])
        return conn

    def deliver(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        """APPEND one message, creating the folder if needed."""
        conn = self.client(user)
        try:
            if folder != "INBOX":
                conn.create(f'"{folder}"')  # NO when it exists: fine
            status, data = conn.append(f'"{folder}"', None, None, raw)
            assert status == "OK", data
        finally:
            conn.logout()

    def expunge(self, user: str, message_id: str, folder: str = "INBOX") -> None:
        """Delete the message with this Message-ID for good."""
        conn = self.client(user)
        try:
            conn.select(f'"{folder}"')
            status, data = conn.uid("SEARCH", "HEADER", "Message-ID", message_id)
            uids = b" ".join(d for d in data if d).split()
            assert status == "OK" and uids, f"{message_id} not in {folder}"
            conn.uid("STORE", b",".join(uids).decode(), "+FLAGS", "(\\Deleted)")
            conn.expunge()
        finally:
            conn.logout()

    def set_uidvalidity(self, user: str, value: int, folder: str = "INBOX") -> None:
        """What a server restore or migration does: the folder's UIDs start over."""
        subprocess.run([DOVEADM, "-c", str(self.config), "mailbox", "update", "-u", user,
                        "--uid-validity", str(value), folder], check=True, capture_output=True)
