"""Kaggle credentials: found where Kaggle's own clients look, read as small regular files only,
checked before use, and never shown in a message.

Order: an access token (``KAGGLE_API_TOKEN``, the token or a file holding it;
``$KAGGLE_CONFIG_DIR/access_token``, ``~/.kaggle/access_token``) sent as a Bearer token; else
``KAGGLE_USERNAME`` + ``KAGGLE_KEY``; else ``kaggle.json`` (``{"username", "key"}``) in
``$KAGGLE_CONFIG_DIR``, ``~/.kaggle`` or ``~/.config/kaggle``, sent as HTTP Basic.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..common import jsontext
from ..errors import AuthError

log = logging.getLogger("dlsets")

TOKEN_URL = "https://www.kaggle.com/settings"
MAX_SECRET_FILE = 64 * 1024
"""Bytes a credentials file may have: a token or a kaggle.json is well under 1 KiB."""


@dataclass(frozen=True)
class Credentials:
    """How requests to Kaggle are signed, and where that came from (for messages)."""

    source: str
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    key: str | None = field(default=None, repr=False)

    def apply(self, session) -> None:
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        else:
            session.auth = (self.username, self.key)


def _config_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        dirs.append(Path(os.environ["KAGGLE_CONFIG_DIR"]).expanduser())
    dirs.append(Path.home() / ".kaggle")
    xdg = os.environ.get("XDG_CONFIG_HOME")
    dirs.append((Path(xdg).expanduser() if xdg else Path.home() / ".config") / "kaggle")
    return list(dict.fromkeys(dirs))


def read_small(path: Path, what: str) -> str | None:
    """The text of the small regular file at ``path``; None when there is none. Anything else
    there (a device, a FIFO, a folder, more than MAX_SECRET_FILE bytes, unreadable, not UTF-8)
    is an AuthError saying so: it is never waited for nor read in full."""
    try:
        # O_NONBLOCK: opening a FIFO does not wait for a writer; fstat then refuses it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuthError(f"{what} {path} cannot be read ({exc.strerror or exc}); fix its "
                        "permissions (chmod 600) or remove it") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO"
                    if stat.S_ISFIFO(st.st_mode) else "a device or other special file")
            raise AuthError(f"{what} {path} is {kind}, not a regular file; put the "
                            "credentials in a plain file there")
        data = os.read(fd, MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise AuthError(f"{what} {path} cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_FILE:
        raise AuthError(f"{what} {path} is larger than {MAX_SECRET_FILE:,} bytes: not a "
                        "credentials file; put only the credentials there")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthError(f"{what} {path} is not UTF-8 text; put only the credentials "
                        "there") from None


def check_secret(value: str, what: str) -> str:
    """``value`` if it can go in an HTTP header as it is (printable ASCII, no space), else an
    AuthError that says what is wrong and where, without showing it."""
    for i, c in enumerate(value):
        if not 33 <= ord(c) <= 126:
            kind = ("a line break" if c in "\r\n" else "a space or tab" if c in " \t"
                    else "a control character" if ord(c) < 32 or ord(c) == 127
                    else "a character outside ASCII")
            raise AuthError(f"{what} holds {kind} at position {i + 1} of {len(value)} (not "
                            "shown: it is a secret); Kaggle credentials are printable ASCII. "
                            f"Copy it again from {TOKEN_URL}")
    return value


def _token_file(path: Path, what: str) -> str | None:
    text = read_small(path, what)
    if text is None:
        return None
    text = text.strip()
    return check_secret(text, f"the token in {path}") if text else None


def credentials() -> Credentials:
    """The user's Kaggle credentials (see the module docstring for the order); raises
    AuthError saying where to put them when there are none, or what is wrong with them."""
    token = os.environ.get("KAGGLE_API_TOKEN", "").strip()
    if token:
        if os.sep in token or token.startswith("~"):
            path = Path(token).expanduser()
            held = _token_file(path, "KAGGLE_API_TOKEN names the file")
            if held is None:
                raise AuthError(f"KAGGLE_API_TOKEN names the file {path}, which does not exist "
                                "or is empty; put the token itself or a readable file there")
            return Credentials(f"the file {path} (KAGGLE_API_TOKEN)", token=held)
        return Credentials("KAGGLE_API_TOKEN", token=check_secret(token, "KAGGLE_API_TOKEN"))
    for d in _config_dirs():
        for fname in ("access_token", "access_token.txt"):
            held = _token_file(d / fname, "the access token file")
            if held:
                return Credentials(str(d / fname), token=held)
    user, key = os.environ.get("KAGGLE_USERNAME"), os.environ.get("KAGGLE_KEY")
    if user and key:
        return Credentials("KAGGLE_USERNAME and KAGGLE_KEY",
                           username=check_secret(user, "KAGGLE_USERNAME"),
                           key=check_secret(key, "KAGGLE_KEY"))
    for d in _config_dirs():
        p = d / "kaggle.json"
        text = read_small(p, "the Kaggle credentials file")
        if text is None:
            continue
        try:
            data = jsontext.loads(text)
            username, key = data["username"], data["key"]
        except jsontext.TooDeep:
            raise AuthError(f"{p} is not a Kaggle credentials file: it is nested too deeply; "
                            f"download a new one from {TOKEN_URL} (API, Create New Token)"
                            ) from None
        except (ValueError, KeyError, TypeError):
            raise AuthError(f"{p} is not a Kaggle credentials file: it must be JSON like "
                            '{"username": "...", "key": "..."}; download a new one from '
                            f"{TOKEN_URL} (API, Create New Token)") from None
        if not isinstance(username, str) or not isinstance(key, str):
            raise AuthError(f"{p}: 'username' and 'key' must be strings")
        return Credentials(str(p), username=check_secret(username, f"the username in {p}"),
                           key=check_secret(key, f"the key in {p}"))
    looked = ", ".join(str(d / "kaggle.json") for d in _config_dirs())
    raise AuthError(
        "Kaggle needs your credentials and none were found. Looked for: KAGGLE_API_TOKEN, "
        f"{Path.home() / '.kaggle' / 'access_token'}, KAGGLE_USERNAME + KAGGLE_KEY, and "
        f"kaggle.json in {looked} (KAGGLE_CONFIG_DIR names another folder). Create an API token "
        f"at {TOKEN_URL} and save it as ~/.kaggle/access_token (or put the kaggle.json it "
        "offers in ~/.kaggle/ and chmod 600 it)."
    )


_warned: set[str] = set()


def warn_if_plain(url: str, creds: Credentials) -> None:
    """Warn once per host when ``creds`` are about to go over plain http to a host that is not
    this machine (a DLSETS_KAGGLE_API proxy, say): anyone on the way can read them."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or host in _warned or _loopback(host):
        return
    _warned.add(host)
    log.warning("sending the Kaggle credentials from %s to %s over plain http (not https): "
                "anyone on the way can read them; point DLSETS_KAGGLE_API at an https URL",
                creds.source, host)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
