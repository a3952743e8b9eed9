"""The boards inventory: a TOML file in the user's config folder that names boards and holds no secrets.

    $EDGECONV_BOARDS                      (tests, CI)
    ${XDG_CONFIG_HOME:-~/.config}/edgeconv/boards.toml

    [boards.rpi]
    url = "ssh://pi@rpi5.local"           # ssh://[user@]host[:port]; no password: keys by path or the SSH agent
    kind = "rpi5"
    python = "/home/pi/venv/bin/python"   # the board's Python (default: python3 on the board's PATH)
    key = "/home/me/.ssh/id_ed25519"      # optional: a private key file on this host (else the agent, ~/.ssh/id_*)

Beside it, ``known_hosts`` holds the host keys edgeconv was told to trust (``boards add --accept-new-host-key``,
``boards check --trust-host-key``); the user's ``~/.ssh/known_hosts`` is read too. The file is untrusted input:
every field is checked (names, URL, paths) before it is used, and a field that could carry a secret is refused.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import BadInput, ToolchainMissing

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")
HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
# the board's Python: a command name or an absolute path, of characters no shell treats specially
PYTHON_RE = re.compile(r"^(/[A-Za-z0-9._+-]+)+$|^[A-Za-z0-9._+-]+$")
CACHE_RE = re.compile(r"^(~|~/[A-Za-z0-9._+/-]*|/[A-Za-z0-9._+/-]+)$")
RESERVED = {"local", "host", "localhost"}  # places that are not boards
SECRET_FIELDS = {"password", "passphrase", "secret", "token", "private_key"}
FIELDS = {"url", "kind", "python", "key", "cache", "timeout", "lock_wait"}

KINDS: dict[str, str] = {
    "rpi5": "Raspberry Pi 5 (Cortex-A76; LiteRT / ONNX Runtime on the CPU)",
    "rpi4": "Raspberry Pi 4 (Cortex-A72)",
    "jetson-orin-nano": "NVIDIA Jetson Orin Nano (JetPack: TensorRT, CUDA)",
    "jetson-orin-nx": "NVIDIA Jetson Orin NX",
    "jetson-agx-orin": "NVIDIA Jetson AGX Orin",
    "rk3588": "Rockchip RK3588 board (Orange Pi 5, Rock 5B...; NPU through rknn-toolkit-lite2)",
    "atlas-200i-dk-a2": "Huawei Atlas 200I DK A2 (Ascend 310B; CANN: pyACL, ais_bench)",
    "sophon-se7": "Sophgo SE7 micro server (BM1684X; SAIL)",
    "generic": "any Linux machine with Python >= 3.8 and numpy (also: the loopback board of the tests)",
}


@dataclass(frozen=True)
class Board:
    name: str
    url: str
    kind: str = "generic"
    python: str = "python3"
    key: str | None = None
    cache: str = "~/.cache/edgeconv-board"
    timeout: float = 20.0  # seconds to connect and log in
    lock_wait: float = 900.0  # seconds to wait for another run to free the board

    @property
    def user(self) -> str | None:
        return parse_url(self.url)[0]

    @property
    def host(self) -> str:
        return parse_url(self.url)[1]

    @property
    def port(self) -> int:
        return parse_url(self.url)[2]

    def address(self) -> str:
        user, host, port = parse_url(self.url)
        shown = f"[{host}]" if ":" in host else host
        return f"{user + '@' if user else ''}{shown}:{port}"


_DEFAULTS = {"kind": "generic", "python": "python3", "cache": "~/.cache/edgeconv-board", "timeout": 20.0,
             "lock_wait": 900.0}


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string (same escapes)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return _toml_str(v) if isinstance(v, str) else repr(float(v)) if isinstance(v, float) else str(int(v))


# -- validation ----------------------------------------------------------------------------------------------------
def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadInput(f"board name {name!r} is not allowed: letters, digits, '_', '.', '-' (up to 63), "
                       "starting with a letter or digit", stage="boards")
    if name.lower() in RESERVED:
        raise BadInput(f"board name {name!r} is reserved (it names a place that is not a board)", stage="boards")
    return name


def parse_url(url: str) -> tuple[str | None, str, int]:
    """``ssh://[user@]host[:port]`` -> (user, host, port); anything else (a password, a path, a query) refused."""
    from urllib.parse import urlsplit

    bad = lambda why: BadInput(f"board URL {url!r}: {why} (expected ssh://[user@]host[:port])",  # noqa: E731
                               stage="boards")
    if not isinstance(url, str) or any(c.isspace() or ord(c) < 32 for c in url):
        raise bad("not a URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from None
    if parts.scheme != "ssh":
        raise bad("the scheme must be ssh")
    if parts.password is not None:
        raise bad("a password does not belong in the inventory: use a key file (--key) or the SSH agent")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise bad("no path, query or fragment")
    user, host = parts.username, parts.hostname or ""
    if user is not None and not USER_RE.match(user):
        raise bad(f"user name {user!r} is not allowed")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not HOST_RE.match(host):
            raise bad(f"host {host!r} is not a host name or an IP address") from None
    return user, host, port or 22


def check_python(python: str) -> str:
    if not isinstance(python, str) or not PYTHON_RE.match(python) or ".." in python.split("/"):
        raise BadInput(f"board Python {python!r} is not allowed: a command name (python3) or an absolute path of "
                       "letters, digits and ._+-/", stage="boards")
    return python


def check_cache(cache: str) -> str:
    if not isinstance(cache, str) or not CACHE_RE.match(cache) or ".." in cache.split("/"):
        raise BadInput(f"board cache folder {cache!r} is not allowed: an absolute path or one under ~, of letters, "
                       "digits and ._+-/", stage="boards")
    return cache


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    path = Path(os.path.expanduser(str(key)))
    if not path.is_absolute():
        raise BadInput(f"key {key!r}: give an absolute path", stage="boards")
    return str(path)


def check_kind(kind: str) -> str:
    from ..records import did_you_mean

    if kind not in KINDS:
        raise BadInput(f"board kind {kind!r} is not known (known: {', '.join(KINDS)}){did_you_mean(kind, KINDS)}",
                       stage="boards")
    return kind


def check_seconds(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = -1.0
    if not 0 < v <= 86400:
        raise BadInput(f"{what} {value!r} must be a number of seconds in (0, 86400]", stage="boards")
    return v


def make_board(name: str, fields: dict[str, Any]) -> Board:
    """A ``Board`` from an inventory entry (or ``boards add``), every field checked."""
    check_name(name)
    secret = SECRET_FIELDS & set(fields)
    if secret:
        raise BadInput(f"board {name!r}: field {sorted(secret)[0]!r} is refused: the inventory holds no secrets "
                       "(use key = PATH or the SSH agent)", stage="boards")
    unknown = set(fields) - FIELDS
    if unknown:
        raise BadInput(f"board {name!r}: unknown field {sorted(unknown)[0]!r} (fields: {', '.join(sorted(FIELDS))})",
                       stage="boards")
    if "url" not in fields:
        raise BadInput(f"board {name!r} has no url", stage="boards")
    for k in ("url", "kind", "python", "key", "cache"):
        if k in fields and fields[k] is not None and not isinstance(fields[k], str):
            raise BadInput(f"board {name!r}: {k} must be a string", stage="boards")
    parse_url(fields["url"])
    return Board(
        name=name, url=fields["url"], kind=check_kind(fields.get("kind", "generic")),
        python=check_python(fields.get("python", "python3")), key=check_key(fields.get("key")),
        cache=check_cache(fields.get("cache", _DEFAULTS["cache"])),
        timeout=check_seconds(fields.get("timeout", 20.0), "timeout"),
        lock_wait=check_seconds(fields.get("lock_wait", 900.0), "lock_wait"),
    )


# -- the files -----------------------------------------------------------------------------------------------------
def inventory_path() -> Path:
    env = os.environ.get("EDGECONV_BOARDS")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgeconv" / "boards.toml"


def known_hosts_path() -> Path:
    """edgeconv's own known_hosts, beside the inventory."""
    return inventory_path().with_name("known_hosts")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ToolchainMissing("reading the boards inventory needs tomllib (Python 3.11+) or tomli", file=path,
                                   stage="boards", hint="pip install tomli") from None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read the boards inventory: {exc}", file=path, stage="boards") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"the boards inventory is not valid TOML: {exc}", file=path, stage="boards") from None


def read_inventory() -> tuple[dict[str, Board], dict[str, str]]:
    """(valid boards, problems by entry name): one broken entry does not hide the others."""
    path = inventory_path()
    if not path.exists():
        return {}, {}
    data = _read_toml(path)
    extra = set(data) - {"boards"}
    if extra or not isinstance(data.get("boards", {}), dict):
        raise BadInput(f"the boards inventory has unexpected content ({sorted(extra)[0] if extra else 'boards'}): "
                       "only [boards.NAME] tables", file=path, stage="boards")
    boards, problems = {}, {}
    for name, fields in data.get("boards", {}).items():
        try:
            if not isinstance(fields, dict):
                raise BadInput(f"board {name!r} is not a table", stage="boards")
            boards[name] = make_board(name, fields)
        except BadInput as exc:
            problems[name] = exc.cause
    return boards, problems


def get_board(name: str) -> Board:
    from ..records import did_you_mean

    boards, problems = read_inventory()
    if name in problems:
        raise BadInput(problems[name], file=inventory_path(), stage="boards")
    if name not in boards:
        known = ", ".join(sorted(boards)) or "none"
        raise BadInput(f"no board named {name!r} (boards: {known}){did_you_mean(name, boards)}",
                       file=inventory_path(), stage="boards",
                       hint="edgeconv boards add NAME ssh://user@host")
    return boards[name]


def write_inventory(entries: dict[str, dict[str, Any]]) -> Path:
    """Write the inventory atomically from its entries as read (``raw_entries``), edited: an entry that does not
    validate is kept as it was, so that fixing one board never loses another."""
    import tempfile

    path = inventory_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# edgeconv boards (docs/boards.md). No secrets here: keys by path or the SSH agent.\n"
    for name in sorted(entries):
        text += f"\n[boards.{_toml_str(name)}]\n"
        for key, value in entries[name].items():
            if not isinstance(value, (str, int, float, bool)):
                raise BadInput(f"board {name!r}: field {key!r} is not a plain value; fix the file by hand",
                               file=path, stage="boards")
            text += f"{_toml_str(key)} = {_toml_value(value)}\n"
    fd, tmp = tempfile.mkstemp(prefix=".boards-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def entry(board: Board) -> dict[str, Any]:
    """A board as its inventory entry (defaults left out)."""
    d = {k: v for k, v in asdict(board).items() if k != "name" and v is not None and v != _DEFAULTS.get(k)}
    return {"url": board.url, **d}


def raw_entries() -> dict[str, dict[str, Any]]:
    """The inventory's entries as read (valid or not), for ``boards remove`` of a broken entry."""
    path = inventory_path()
    if not path.exists():
        return {}
    boards = _read_toml(path).get("boards", {})
    return boards if isinstance(boards, dict) else {}
