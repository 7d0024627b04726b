"""Channel secrets sealed at rest: what an inbox's settings mark secret is stored encrypted.

A sealed value is stored in the inbox's settings as `{"$sealed": "<Fernet token>"}` in place
of the clear string; everything else in the settings stays readable (an admin can still
query the non-secret ones). Fernet (from `cryptography`) authenticates what it encrypts, so
a token changed in the database fails to open instead of opening to garbage.

The key comes from `SWITCHBOARD_SECRET_KEY`: one or more Fernet keys separated by commas.
The first one seals; all of them open, so a key is rotated by putting the new one first,
running `switchboard reseal` (every sealed value is sealed again with the new key), then
dropping the old one. Without the setting, a key is generated once into
`<data dir>/secret.key` (mode 0600) and shared by every process using that directory:
right for one machine; several machines must share SWITCHBOARD_SECRET_KEY.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)

SEALED = "$sealed"
KEY_FILE = "secret.key"


class SecretsUnreadable(RuntimeError):
    """A sealed value none of the configured keys opens (the key was lost or changed)."""


class SecretKeyError(ValueError):
    """SWITCHBOARD_SECRET_KEY does not hold Fernet keys."""


def is_sealed(value: object) -> bool:
    """Whether a stored setting value is a sealed secret."""
    return isinstance(value, Mapping) and set(value) == {SEALED}


class SecretBox:
    """Seals and opens secret settings with the installation's keys (first one seals)."""

    def __init__(self, keys: Iterable[str | bytes]) -> None:
        fernets = []
        for key in keys:
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise SecretKeyError(
                    "SWITCHBOARD_SECRET_KEY: each key must be 32 url-safe base64-encoded "
                    "bytes (make one with `switchboard secret-key`)") from None
        if not fernets:
            raise SecretKeyError("SWITCHBOARD_SECRET_KEY: no key given")
        self._fernet = MultiFernet(fernets)
        self._keys = [k.encode() if isinstance(k, str) else bytes(k) for k in keys]

    def __repr__(self) -> str:  # never the keys
        return "SecretBox(...)"

    def signature(self, purpose: str, payload: str, *, key: int = 0) -> str:
        """An HMAC-SHA256 of `payload` (hex, 128 bits) for links sent to customers, with a
        key of its own per `purpose` derived from the installation's (first) key."""
        derived = hmac.new(self._keys[key], f"switchboard {purpose} v1".encode(),
                           hashlib.sha256).digest()
        return hmac.new(derived, payload.encode(), hashlib.sha256).hexdigest()[:32]

    def signed(self, purpose: str, payload: str, signature: str) -> bool:
        """Whether `signature` is `payload`'s for this purpose under any of the keys (an
        old key's links keep working through a rotation), compared in constant time."""
        return any(hmac.compare_digest(signature.encode(),
                                       self.signature(purpose, payload, key=n).encode())
                   for n in range(len(self._keys)))

    def seal(self, value: str) -> dict[str, str]:
        """A clear value, sealed as it is stored."""
        return {SEALED: self._fernet.encrypt(value.encode()).decode()}

    def open(self, value: Any) -> Any:
        """The clear value of a stored one (values that are not sealed pass unchanged)."""
        if not is_sealed(value):
            return value
        try:
            return self._fernet.decrypt(str(value[SEALED]).encode()).decode()
        except InvalidToken:
            raise SecretsUnreadable(
                "a channel secret was sealed with a key that is not in "
                "SWITCHBOARD_SECRET_KEY (or <data dir>/secret.key); put that key back, "
                "after the current one") from None

    def seal_settings(self, settings: Mapping[str, Any], secret: Iterable[str]) -> dict[str, Any]:
        """Settings as stored: the clear values of the `secret` names sealed."""
        names = set(secret)
        return {name: self.seal(value) if name in names and isinstance(value, str) else value
                for name, value in settings.items()}

    def open_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Stored settings with every sealed value opened."""
        return {name: self.open(value) for name, value in settings.items()}

    def reseal_settings(
        self, settings: Mapping[str, Any], secret: Iterable[str]
    ) -> dict[str, Any] | None:
        """Stored settings sealed again with the first key, secrets kept in clear sealed now;
        None when nothing changes."""
        names = set(secret)
        changed = False
        out: dict[str, Any] = {}
        for name, value in settings.items():
            if is_sealed(value):
                try:
                    token = self._fernet.rotate(str(value[SEALED]).encode()).decode()
                except InvalidToken:
                    raise SecretsUnreadable(f"the sealed setting {name!r} opens with none of "
                                            "the configured keys") from None
                out[name] = {SEALED: token}
                changed = True
            elif name in names and isinstance(value, str) and value:
                out[name] = self.seal(value)
                changed = True
            else:
                out[name] = value
        return out if changed else None


def new_key() -> str:
    """A fresh Fernet key, as SWITCHBOARD_SECRET_KEY takes it."""
    return Fernet.generate_key().decode()


def secret_box(secret_key: str, data_dir: Path) -> SecretBox:
    """The installation's box: the configured keys, else the data directory's key file
    (made the first time, by whichever process gets there first)."""
    keys = [k.strip() for k in secret_key.split(",") if k.strip()]
    if keys:
        return SecretBox(keys)
    return SecretBox([_key_file(data_dir / KEY_FILE)])


def _key_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written aside and linked into place: the link fails if another process made the
        # file first, and nobody ever reads a half-written key.
        # Unique per writer: two threads of one process must not share (and unlink) it.
        temp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, Fernet.generate_key())
        finally:
            os.close(fd)
        try:
            os.link(temp, path)
            log.info("made a new secret key in %s (keep it: channel secrets are sealed "
                     "with it)", path)
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
    key = path.read_bytes().strip()
    if key:
        return key
    raise SecretKeyError(f"{path} is empty: restore the key or set SWITCHBOARD_SECRET_KEY")
