"""CurveZMQ on the links that leave the box (``tcp://``).

With ``[security] curve = true`` every tcp socket is encrypted and
authenticated. The roles that bind (decoder, collector) are Curve servers
with the site's server key pair; the roles that connect (handlers, and
decoders sending notices to the collector) are Curve clients with their
client key pair and the server's public key. A binding role admits only the
clients whose public key is in ``allowed_dir`` (a ZAP handler in a thread of
the role); anyone else, or a peer speaking plaintext, gets nothing, and the
refusal is logged. ``ipc://`` links stay on the box and are guarded by file
permissions instead.

Keys are ZeroMQ certificate files made by ``vidpipe keygen NAME``:
``NAME.key`` (public) and ``NAME.key_secret`` (mode 0600).
"""

import logging
import os
import threading
import time
from typing import Dict, Optional, Set

import zmq

from vidpipe.config import ConfigError, SecurityConfig, unreadable

log = logging.getLogger("vidpipe.security")


def _load(path: str, config_path: str, key: str, secret: bool) -> "tuple[bytes, bytes]":
    import zmq.auth

    problem = unreadable(path)  # pyzmq calls an unreadable file "invalid"
    if problem:
        raise ConfigError(config_path, key, problem)
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(config_path, key, "cannot read {}: {}".format(path, exc)) from None
    if secret and not secret_key:
        raise ConfigError(config_path, key, "{} holds no secret key".format(path))
    return public, secret_key or b""


def allowed_keys(directory: str) -> Set[bytes]:
    """The public keys (z85) of the ``*.key`` files in ``directory``."""
    import zmq.auth

    keys: Set[bytes] = set()
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return keys
    for name in names:
        if name.endswith(".key"):
            try:
                public, _secret = zmq.auth.load_certificate(os.path.join(directory, name))
            except (OSError, ValueError) as exc:
                log.warning("ignoring %s: %s", os.path.join(directory, name), exc)
                continue
            keys.add(public)
    return keys


class _AllowList:
    """The ZAP credentials provider: called in the authenticator's thread."""

    def __init__(self, directory: str, role: str) -> None:
        self.directory = directory
        self.role = role
        self.keys = allowed_keys(directory)
        self.loaded = time.monotonic()
        self.denied: Dict[bytes, int] = {}
        self.lock = threading.Lock()

    def callback(self, domain: str, key: bytes) -> bool:
        import zmq.utils.z85

        public = zmq.utils.z85.encode(key) if len(key) == 32 else key
        with self.lock:
            if time.monotonic() - self.loaded > 10:  # keys added later count too
                self.keys = allowed_keys(self.directory)
                self.loaded = time.monotonic()
            if public in self.keys:
                return True
            count = self.denied.get(public, 0) + 1
            if len(self.denied) < 1024:
                self.denied[public] = count
        if count in (1, 10, 100) or count % 1000 == 0:
            log.warning("%s: refused a Curve client whose key %s is not in %s (%d time(s))",
                        self.role, public.decode("ascii", "replace"), self.directory, count)
        return False


class Curve:
    """Curve settings for one role's sockets; ``None`` from :func:`make` when off."""

    def __init__(self, sec: SecurityConfig, config_path: str, role: str) -> None:
        self.sec = sec
        self.config_path = config_path
        self.role = role
        keys = sec.keys_dir
        self.server_public, _ = _load(os.path.join(keys, sec.server_key + ".key"),
                                      config_path, "security.server_key", False)
        self._client: Optional["tuple[bytes, bytes]"] = None
        self.auth: Optional[object] = None

    def _server_pair(self) -> "tuple[bytes, bytes]":
        path = os.path.join(self.sec.keys_dir, self.sec.server_key + ".key_secret")
        return _load(path, self.config_path, "security.server_key", True)

    def serve(self, context: zmq.Context, sock: zmq.Socket) -> None:
        """Make ``sock`` a Curve server admitting the allowed clients only."""
        public, secret = self._server_pair()
        if self.auth is None:
            from zmq.auth.thread import ThreadAuthenticator

            auth = ThreadAuthenticator(context)
            auth.start()
            auth.configure_curve_callback(
                "*", credentials_provider=_AllowList(self.sec.allowed_dir, self.role))
            self.auth = auth
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)

    def client(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a Curve client of the site's server key."""
        if self._client is None:
            path = os.path.join(self.sec.keys_dir, self.sec.client_key + ".key_secret")
            self._client = _load(path, self.config_path, "security.client_key", True)
        public, secret = self._client
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)

    def stop(self) -> None:
        if self.auth is not None:
            self.auth.stop()  # type: ignore[attr-defined]
            self.auth = None


def make(sec: SecurityConfig, config_path: str, role: str) -> Optional[Curve]:
    return Curve(sec, config_path, role) if sec.curve else None


def _service_group() -> Optional[int]:
    import grp

    try:
        return grp.getgrnam("vidpipe").gr_gid
    except KeyError:
        return None


def keygen(directory: str, name: str, allow: bool = False) -> "tuple[str, str]":
    """Write ``name.key`` and ``name.key_secret`` into ``directory``; with
    ``allow``, also admit the public key (copy into ``directory/allowed``).
    Existing keys are never overwritten.

    Run as root on a box with the ``vidpipe`` group, the directory and the
    secret key are ``root:vidpipe`` 0750 / 0640: the services can read them,
    cannot change them, and nobody else can read the secret. Otherwise the
    secret is 0600, owned by whoever ran it."""
    import shutil

    import zmq.auth

    created = not os.path.isdir(directory)
    os.makedirs(directory, mode=0o750, exist_ok=True)
    public = os.path.join(directory, name + ".key")
    secret = os.path.join(directory, name + ".key_secret")
    for path in (public, secret):
        if os.path.lexists(path):
            raise FileExistsError("{} exists; remove it first to make a new key".format(path))
    old = os.umask(0o077)
    try:
        zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    gid = _service_group() if os.geteuid() == 0 else None
    if gid is not None:
        # root keeps ownership; the services (group vidpipe) may read, nobody else
        info = os.stat(directory)
        if created or (info.st_uid == 0 and info.st_gid == 0):
            os.chown(directory, 0, gid)
            os.chmod(directory, 0o750)
        os.chown(secret, 0, gid)
        os.chmod(secret, 0o640)
        os.chown(public, 0, gid)
    if allow:
        allowed = os.path.join(directory, "allowed")
        os.makedirs(allowed, mode=0o755, exist_ok=True)
        shutil.copy(public, os.path.join(allowed, name + ".key"))
    return public, secret
