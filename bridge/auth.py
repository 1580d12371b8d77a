"""Who may use the bus: CurveZMQ "ironhouse" keys, and the plain-transport policy.

A station's ``[security]`` table (paths relative to the station file)::

    [security]
    server_key = "keys/server/server.key_secret"  # the server's key pair (zmq certificate)
    clients = "keys/server/clients"               # folder of allowed client public keys (*.key)
    allow_plain = false                           # plain (no keys) on loopback/ipc: only if true

With keys, every ``tcp://``/``ipc://`` connection is encrypted and authenticated
(CurveZMQ, the zguide's *ironhouse*): a ZAP authenticator
(:class:`KeyAuthenticator`, a ``zmq.auth.thread.ThreadAuthenticator``) admits
only clients whose public key is a file in ``clients``; a refused client gets no
service at all (its handshake fails) and the refusal is logged (logger
``bridge.auth``, WARNING). The caller's name (the key file's stem, e.g. ``alice``
for ``alice.key``) is the ZeroMQ ``User-Id`` of each of its messages; the server
records it with each drive. Key files added to ``clients`` later are picked up
at the next connection attempt; removing one refuses the next connection (the
folder is read at every handshake).

Without keys, the policy (:func:`check_binds`) is:

- ``inproc://`` is always allowed (it never leaves the process);
- ``tcp://`` on a loopback address (127.x, ``localhost``, ``::1``) and ``ipc://``
  are allowed when ``allow_plain = true`` (the default when a station has no
  ``[security]`` table at all, and for the built-in emulator station);
- any other ``tcp://`` bind refuses to start, with a message saying how to make keys.

Clients: ``RigClient(endpoint, curve_keys=DIR)`` where ``DIR`` holds the client's
own pair (exactly one ``NAME.key_secret``) and the server's public key
``server.key``; or ``curve_keys=(client_public, client_secret, server_public)``
(z85 bytes); or the environment variable ``NADO_KEYS=DIR``. Key pairs come from
``nado keys generate NAME --out DIR`` (:func:`generate`).
"""
from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.utils import z85
from zmq.auth.thread import ThreadAuthenticator

from .errors import StationError

log = logging.getLogger("bridge.auth")

KEYS_ENV = "NADO_KEYS"
SERVER_PUBLIC = "server.key"
_SECURITY_KEYS = ("server_key", "clients", "allow_plain")


@dataclass(frozen=True)
class Security:
    """A server's security settings: key pair file, allowed-clients folder, plain policy."""

    server_key: Path | None = None     # a zmq certificate holding the secret key (NAME.key_secret)
    clients: Path | None = None        # folder of allowed client public keys (*.key)
    allow_plain: bool = True

    @property
    def curve(self) -> bool:
        return self.server_key is not None

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None, base: str | Path | None = None) -> "Security":
        """From a station's ``settings`` (its ``[security]`` table); paths relative to ``base``."""
        table = (settings or {}).get("security")
        if table is None:
            return cls()
        if not isinstance(table, dict):
            raise StationError("[security] must be a table with server_key, clients and allow_plain")
        unknown = sorted(set(table) - set(_SECURITY_KEYS))
        if unknown:
            raise StationError(f"[security] has unknown key(s) {unknown}; it takes {list(_SECURITY_KEYS)}")
        allow = table.get("allow_plain", False)
        if not isinstance(allow, bool):
            raise StationError(f"[security] allow_plain must be true or false, got {allow!r}")
        root = Path(base) if base is not None else Path.cwd()
        key, clients = table.get("server_key"), table.get("clients")
        if (key is None) != (clients is None):
            raise StationError("[security] needs both server_key (the server's .key_secret file) and "
                               "clients (the folder of allowed client .key files), or neither")
        if key is None:
            return cls(allow_plain=allow)
        for k, v in (("server_key", key), ("clients", clients)):
            if not isinstance(v, str) or not v:
                raise StationError(f"[security] {k} must be a path string, got {v!r}")
        return cls(server_key=root / key, clients=root / clients, allow_plain=allow).checked()

    def checked(self) -> "Security":
        """Raise :class:`StationError` unless the key files exist and hold what they should."""
        if self.server_key is None:
            return self
        server_keys(self.server_key)
        if self.clients is None or not self.clients.is_dir():
            raise StationError(f"[security] clients folder {self.clients} does not exist; create it and "
                               "copy each allowed client's NAME.key (public key) into it")
        return self


def server_keys(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys from a ``NAME.key_secret`` certificate; StationError if unusable."""
    p = Path(path)
    if not p.is_file():
        raise StationError(f"server key file {p} not found; make one with `nado keys generate server --out DIR`")
    try:
        public, secret = zmq.auth.load_certificate(str(p))
    except Exception as exc:
        raise StationError(f"server key file {p} is not a zmq certificate ({exc})") from None
    if secret is None:
        raise StationError(f"server key file {p} holds no secret key; point server_key at the "
                           "NAME.key_secret file, not NAME.key")
    return public, secret


def client_keys(keys: Any) -> tuple[bytes, bytes, bytes]:
    """(client_public, client_secret, server_public) from a tuple or a keys folder (see module doc)."""
    if isinstance(keys, (tuple, list)):
        if len(keys) != 3 or not all(isinstance(k, (bytes, str)) and len(k) == 40 for k in keys):
            raise ValueError("curve_keys must be (client_public, client_secret, server_public), "
                             "each a 40-character z85 key")
        return tuple(k.encode() if isinstance(k, str) else k for k in keys)  # type: ignore[return-value]
    d = Path(keys)
    if not d.is_dir():
        raise ValueError(f"curve_keys folder {d} does not exist; make it with `nado keys generate NAME --out {d}`")
    secrets = sorted(d.glob("*.key_secret"))
    if len(secrets) != 1:
        raise ValueError(f"curve_keys folder {d} must hold exactly one NAME.key_secret (this client's pair), "
                         f"found {[s.name for s in secrets]}")
    server = d / SERVER_PUBLIC
    if not server.is_file():
        raise ValueError(f"curve_keys folder {d} lacks {SERVER_PUBLIC}, the server's public key; copy it "
                         "from the rig PC (its server.key, never server.key_secret)")
    public, secret = zmq.auth.load_certificate(str(secrets[0]))
    server_public, _ = zmq.auth.load_certificate(str(server))
    return public, secret, server_public


def _certificate(public: bytes, secret: bytes | None) -> str:
    """The text of a zmq certificate file (the format ``zmq.auth.load_certificate`` reads)."""
    kind = "secret" if secret else "public"
    lines = [f"#   ****  Generated by nado keys generate: CurveZMQ {kind} key  ****",
             "#   ZeroMQ CURVE " + ("**Secret** Certificate; DO NOT PROVIDE THIS FILE TO OTHER USERS"
                                    if secret else "Public Certificate; exchange securely, or use a secure "
                                    "mechanism to verify the contents"),
             "metadata", "curve", f'    public-key = "{public.decode("ascii")}"']
    if secret:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def _write_new(path: Path, text: str, mode: int) -> None:
    """Create ``path`` with ``mode`` from the first byte (never readable by others in between)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)   # the umask may have narrowed it further; never widened
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)


def generate(name: str, out: str | Path) -> tuple[Path, Path]:
    """Write the key pair ``out/NAME.key`` (public, 0644) and ``out/NAME.key_secret`` (secret, 0600).

    The secret file is created with mode 0600 (``os.open``), so it is never readable by
    others, not even for a moment; a folder made here is 0700.
    """
    if not name or not all(c.isalnum() or c in "_.-" for c in name):
        raise ValueError(f"key name must be letters, digits, '_', '.', '-', got {name!r}")
    d = Path(out)
    if not d.exists():
        d.mkdir(mode=0o700, parents=True)
        os.chmod(d, 0o700)
    public_path, secret_path = d / (name + ".key"), d / (name + ".key_secret")
    for p in (public_path, secret_path):
        if p.exists():
            raise FileExistsError(f"{p} exists; choose another NAME or --out, or delete it")
    public, secret = zmq.curve_keypair()
    _write_new(secret_path, _certificate(public, secret), 0o600)
    _write_new(public_path, _certificate(public, None), 0o644)
    return public_path, secret_path


def is_local(endpoint: str) -> bool:
    """Whether ``endpoint`` cannot be reached from another machine (inproc, ipc, loopback tcp)."""
    if endpoint.startswith(("inproc://", "ipc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://"):].rpartition(":")[0].strip("[]")
    if ";" in host:  # "source;destination" form: judge the local address
        host = host.split(";")[-1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False   # an interface name or a hostname: assume the network


def check_binds(endpoints: list[str], security: Security) -> None:
    """Refuse (StationError) binds the policy does not allow; see the module docstring."""
    if security.curve:
        return
    for ep in endpoints:
        if ep.startswith("inproc://"):
            continue
        if not is_local(ep):
            raise StationError(
                f"refusing to serve {ep} without keys: anyone on the network could drive the rigs. "
                "Add a [security] table with server_key and clients to the station (make keys with "
                "`nado keys generate server --out keys/server`), or bind tcp://127.0.0.1:PORT or ipc://PATH")
        if not security.allow_plain:
            raise StationError(
                f"the station's [security] table allows no plain connections, so {ep} would be open "
                "without keys; set server_key and clients, or allow_plain = true for loopback/ipc only")


class KeyAuthenticator(ThreadAuthenticator):
    """ZAP handler admitting the public keys found in a folder; logs refusals; names callers.

    The User-Id of an admitted client is its key file's stem (``alice.key`` -> ``alice``).
    The folder is read again at every connection attempt (ZAP asks once per handshake), so
    a key added later is admitted and a key removed is refused from the next connection on
    (connections already open stay until they close).
    """

    def __init__(self, context: zmq.Context, clients: Path) -> None:
        super().__init__(context, log=logging.getLogger("bridge.auth.zap"))
        self.clients_dir = Path(clients)
        self.names: dict[bytes, str] = {}
        self.refusals = 0
        self._load()

    def _load(self) -> None:
        names: dict[bytes, str] = {}
        for f in sorted(self.clients_dir.glob("*.key")):
            try:
                public, _ = zmq.auth.load_certificate(str(f))
            except Exception as exc:
                log.warning("ignoring %s: not a zmq public key certificate (%s)", f, exc)
                continue
            names[public] = f.stem
        self.names = names

    def callback(self, domain: str, key: bytes) -> bool:
        """Credentials provider for ``configure_curve_callback`` (``key``: z85 bytes)."""
        self._load()   # every handshake: removals take effect for the next connection
        if key in self.names:
            return True
        self.refusals += 1
        log.warning("refused a client with an unknown CURVE key %s (not in %s); add its .key file there "
                    "to allow it", key.decode("ascii", "replace"), self.clients_dir)
        return False

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.names.get(z85.encode(client_public_key), "unknown")

    def start_for(self) -> "KeyAuthenticator":
        self.start()
        self.configure_curve_callback(domain="*", credentials_provider=self)
        return self


def secure_server_socket(sock: zmq.Socket, security: Security) -> None:
    """Make ``sock`` (before bind) a CURVE server with the station's key pair."""
    public, secret = server_keys(security.server_key)  # type: ignore[arg-type]
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def secure_client_socket(sock: zmq.Socket, keys: tuple[bytes, bytes, bytes]) -> None:
    """Make ``sock`` (before connect) a CURVE client with (client_public, client_secret, server_public)."""
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = keys
