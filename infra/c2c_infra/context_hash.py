"""A content hash of a Docker build context, used as the image tag.

The tag must change exactly when what `docker build` would see changes, so it covers:
the build arguments, and every path the engine would receive from the context directory
after `.dockerignore` (matched with docker-py's implementation of Docker's rules, not a
gitignore look-alike): its kind, permission bits (COPY keeps them), and its bytes (file
contents, symlink targets). Ignored paths, file timestamps and the directory's own location
do not count, so the same sources give the same tag in any clone checked out with the same
file modes (a different umask gives other permission bits, hence another tag, as Docker would).

Several images may share one context (services/: one Dockerfile, common code, one directory
per service). Then `only` names the parts one image copies, and its tag covers just those,
plus the Dockerfile and .dockerignore, which every build from the context reads: a change to
one service's directory leaves the other images' tags alone.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

from docker.utils.build import exclude_paths

# Bump when the hashed fields change, so old tags can never collide with new ones.
_SCHEME = b"c2c-context-v1"
TAG_LENGTH = 16


def dockerignore_patterns(context: Path) -> list[str]:
    """The patterns of `<context>/.dockerignore`, read the way the Docker CLI reads them."""
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def context_paths(context: Path, only: Sequence[str] = ()) -> list[str]:
    """Paths (files, directories, links) sent to the engine, relative, '/'-separated, sorted.

    As with `docker build`, the Dockerfile and .dockerignore are always sent, whatever the
    patterns say. With `only` (paths relative to the context), just the sent paths at or below
    one of them, and the Dockerfile and .dockerignore; each must select something, so that a
    misspelt or wholly ignored part fails loudly instead of silently leaving the tag unchanged.
    """
    if not (context / "Dockerfile").is_file():
        raise FileNotFoundError(f"no Dockerfile in build context {context}")
    included = exclude_paths(str(context), dockerignore_patterns(context), dockerfile="Dockerfile")
    paths = sorted(path.replace(os.sep, "/") for path in included)
    if isinstance(only, str):  # a str is a Sequence[str] too: its letters would be the parts
        raise TypeError("only takes a sequence of paths, not one str")
    if not only:
        return paths
    parts = [_part(entry) for entry in only]
    for part in parts:
        if not any(_under(path, part) for path in paths):
            raise FileNotFoundError(f"{part!r} sends nothing from build context {context}")
    always = {"Dockerfile", ".dockerignore"}
    return [path for path in paths if path in always or any(_under(path, p) for p in parts)]


def context_digest(context: Path, build_args: Mapping[str, str], only: Sequence[str] = ()) -> str:
    """SHA-256 (hex) over the build arguments and the context's included paths."""
    digest = hashlib.sha256()
    _field(digest, _SCHEME)
    for name in sorted(build_args):
        _field(digest, b"arg", name.encode(), build_args[name].encode())
    for relative in context_paths(context, only):
        path = context / relative
        info = path.lstat()
        mode = f"{stat.S_IMODE(info.st_mode):04o}".encode()
        entry = relative.encode()
        if stat.S_ISLNK(info.st_mode):
            _field(digest, b"link", entry, os.fsencode(os.readlink(path)))
        elif stat.S_ISDIR(info.st_mode):
            _field(digest, b"dir", entry, mode)
        elif stat.S_ISREG(info.st_mode):
            _field(digest, b"file", entry, mode, _file_sha256(path))
        else:  # fifo, socket, device: never opened (reading a fifo would block)
            _field(digest, b"other", entry)
    return digest.hexdigest()


def context_tag(context: Path, build_args: Mapping[str, str], only: Sequence[str] = ()) -> str:
    """The image tag: a prefix of context_digest, 64 bits, ample for one stack's images."""
    return context_digest(context, build_args, only)[:TAG_LENGTH]


def _part(entry: str) -> str:
    """`entry` as a normalised relative path inside the context ('common', 'internal/app')."""
    path = PurePosixPath(entry)
    if not entry or path.is_absolute() or ".." in path.parts or str(path) == ".":
        raise ValueError(f"not a path inside the build context: {entry!r}")
    return str(path)


def _under(path: str, part: str) -> bool:
    return path == part or path.startswith(f"{part}/")


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


def _field(digest: _Digest, *parts: bytes) -> None:
    # Length-prefixed parts: no pair of different inputs can produce the same byte stream.
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()
