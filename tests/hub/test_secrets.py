"""Channel secrets sealed at rest: Fernet tokens, rotation with several keys, the key file."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hub.secrets import (
    SEALED,
    SecretBox,
    SecretKeyError,
    SecretsUnreadable,
    is_sealed,
    new_key,
    secret_box,
)


def test_only_the_secret_settings_are_sealed_and_open_again() -> None:
    box = SecretBox([new_key()])
    stored = box.seal_settings({"secret": "s3cret", "outbound_url": "https://x.example",
                                "greeting": "hi"}, {"secret", "auth_token"})
    assert stored["outbound_url"] == "https://x.example" and stored["greeting"] == "hi"
    assert is_sealed(stored["secret"]) and "s3cret" not in str(stored)
    # Every sealing is new (random IV): equal secrets do not look equal at rest.
    assert box.seal("s3cret") != box.seal("s3cret")
    assert box.open_settings(stored) == {"secret": "s3cret", "outbound_url": "https://x.example",
                                         "greeting": "hi"}
    # A value stored in clear by an older version passes unchanged.
    assert box.open_settings({"secret": "old-clear"}) == {"secret": "old-clear"}
    assert "s3cret" not in repr(box) and "SecretBox" in repr(box)


def test_a_new_key_in_front_opens_old_seals_and_reseal_moves_them() -> None:
    old, new = new_key(), new_key()
    stored = SecretBox([old]).seal_settings({"secret": "s", "plain": "p"}, {"secret"})
    rotating = SecretBox([new, old])
    assert rotating.open_settings(stored)["secret"] == "s"
    resealed = rotating.reseal_settings(stored, {"secret"})
    assert resealed is not None and resealed["plain"] == "p"
    assert SecretBox([new]).open_settings(resealed)["secret"] == "s"  # old key dropped
    with pytest.raises(SecretsUnreadable, match="SWITCHBOARD_SECRET_KEY"):
        SecretBox([new]).open_settings(stored)
    # Clear secrets of an older version are sealed by a reseal; nothing to do is None.
    cleared = rotating.reseal_settings({"secret": "clear", "plain": "p"}, {"secret"})
    assert cleared is not None and is_sealed(cleared["secret"])
    assert rotating.reseal_settings({"plain": "p"}, {"secret"}) is None


def test_a_changed_token_fails_to_open_instead_of_opening_to_garbage() -> None:
    box = SecretBox([new_key()])
    token = box.seal("s")[SEALED]
    forged = {SEALED: token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")}
    with pytest.raises(SecretsUnreadable):
        box.open(forged)


def test_keys_that_are_not_fernet_keys_are_refused_clearly() -> None:
    with pytest.raises(SecretKeyError, match="32 url-safe base64"):
        secret_box("not-a-key", Path("/nonexistent"))
    with pytest.raises(SecretKeyError, match="32 url-safe base64"):
        secret_box(f"{new_key()}, short", Path("/nonexistent"))


def test_without_a_setting_one_key_file_is_made_and_shared(tmp_path: Path) -> None:
    # Processes starting together all end up with the same key.
    with ThreadPoolExecutor(8) as pool:
        boxes = list(pool.map(lambda _: secret_box("", tmp_path), range(16)))
    sealed = boxes[0].seal("s")
    assert all(box.open(sealed) == "s" for box in boxes)
    key_file = tmp_path / "secret.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]  # no leftovers
    # The configured keys win over the file.
    other = new_key()
    with pytest.raises(SecretsUnreadable):
        secret_box(other, tmp_path).open(sealed)
    key_file.write_text("")
    with pytest.raises(SecretKeyError, match="is empty"):
        secret_box("", tmp_path)
