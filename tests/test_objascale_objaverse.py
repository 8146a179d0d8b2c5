"""The Objaverse source through the real `objaverse` package, offline.

The test builds a cache in the package's own layout (hf-objaverse-v1/ with object-paths.json.gz,
lvis-annotations.json.gz, metadata/NNN-NNN.json.gz, glbs/NNN-NNN/UID.glb; the GLBs exported by bpy from built-in
meshes), points the package at it and patches only its network call (urllib.request.urlretrieve, the one function
objaverse 0.1.7 downloads with): a "server" folder answers the URLs, anything else is an HTTP 404.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("objaverse", reason="objaverse (objaverse extra) not installed")
pytest.importorskip("bpy", reason="bpy (objascale extra) not installed")
pytestmark = pytest.mark.blender

from objascale.assets.objaverse_source import choose_uids, committed_categories, glb_problem  # noqa: E402
from objascale.cli import main  # noqa: E402

HF = "https://huggingface.co/datasets/allenai/objaverse/resolve/main/"
MAKE_GLBS = """
import sys, bpy
for name, op in (("cube", lambda: bpy.ops.mesh.primitive_cube_add(size=1.0)),
                 ("cylinder", lambda: bpy.ops.mesh.primitive_cylinder_add(radius=0.3, depth=1.2)),
                 ("monkey", lambda: bpy.ops.mesh.primitive_monkey_add())):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    op()
    bpy.ops.export_scene.gltf(filepath=sys.argv[1] + "/" + name + ".glb", export_format="GLB")
"""
TINY = ["--min-side", "64", "--max-side", "96", "--samples-min", "1", "--samples-max", "2", "--threads", "2",
        "--probe-side", "48", "--area-ratio-min", "0.02", "--no-write-hdf5"]


def _uid(name: str) -> str:
    return hashlib.md5(name.encode()).hexdigest()  # Objaverse uids are 32 hex characters


def _gz_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump(obj, f)


@pytest.fixture(scope="module")
def glbs(tmp_path_factory):
    d = tmp_path_factory.mktemp("glbs")
    subprocess.run([sys.executable, "-c", MAKE_GLBS, str(d)], check=True, capture_output=True, timeout=120)
    return d


@pytest.fixture()
def cache(tmp_path, glbs):
    """cache (hf-objaverse-v1), server folder, and which uid plays which part."""
    base = tmp_path / "objaverse-home" / "hf-objaverse-v1"
    server = tmp_path / "server"
    lvis = {"chair": [_uid(f"chair{k}") for k in range(4)], "mug": [_uid(f"mug{k}") for k in range(4)],
            "banana": [_uid("banana0")]}  # not asked for: never downloaded
    chosen = choose_uids(lvis, ["chair", "mug"], 2, "all", 0.2)
    (c_ok, c_corrupt), (m_download, m_missing) = chosen["chair"], chosen["mug"]
    # GLBs in two shard folders; the cached object's metadata shard is cached, the downloaded one's is not
    paths = {u: f"glbs/000-00{0 if u == c_ok else 1 if u == m_download else k % 2}/{u}.glb"
             for k, u in enumerate(sorted(u for v in lvis.values() for u in v))}
    meta = {u: {"name": f"object {u[:6]}", "license": "by" if k % 2 else "cc0", "viewerUrl": f"https://sketchfab.com/3d-models/{u}",
                "user": {"username": f"user{k}", "displayName": f"User {k}", "profileUrl": f"https://sketchfab.com/user{k}"}}
            for k, u in enumerate(sorted(paths))}
    _gz_json(base / "object-paths.json.gz", paths)
    _gz_json(base / "lvis-annotations.json.gz", lvis)
    for shard in ("000-000", "000-001"):  # metadata: one shard cached, the other fetched through the "network"
        part = {u: m for u, m in meta.items() if paths[u].split("/")[1] == shard}
        _gz_json((base if shard == "000-000" else server) / "metadata" / f"{shard}.json.gz", part)
    for uid, src, where in ((c_ok, "cube", base), (c_corrupt, "cylinder", base), (m_download, "monkey", server)):
        dst = where / paths[uid]
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(glbs / f"{src}.glb", dst)
    corrupt = base / paths[c_corrupt]
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 2])  # an interrupted copy
    roles = dict(c_ok=c_ok, c_corrupt=c_corrupt, m_download=m_download, m_missing=m_missing, meta=meta)
    return base, server, roles


@pytest.fixture()
def network(monkeypatch, cache):
    """urllib.request.urlretrieve answered from the server folder; records every URL asked."""
    _, server, _ = cache
    asked = []

    def urlretrieve(url, filename=None, *a, **k):
        asked.append(url)
        src = server / url[len(HF):] if url.startswith(HF) else None
        if src is None or not src.is_file():
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        shutil.copy(src, filename)
        return filename, {}

    monkeypatch.setattr(urllib.request, "urlretrieve", urlretrieve)
    return asked


def test_committed_category_list():
    cats = committed_categories()
    assert len(cats) == 68 and len(set(cats)) == 68
    assert "chair" in cats and "car_(automobile)" in cats  # LVIS names, as the objaverse package keys them


def test_download_render_and_licences(tmp_path, cache, network):
    base, _, roles = cache
    out = tmp_path / "ds"
    rc = main(["--out", str(out), "--object-source", "objaverse", "--objaverse-dir", str(base), "--objaverse-download",
               "--objaverse-per-category", "2", "--objaverse-processes", "2", "--categories", "chair", "mug",
               "--split", "all", "--num-images", "2", *TINY])
    assert rc == 0
    # the package fetched through its own calls: the missing GLB, the uncached metadata shard; nothing for the
    # category that was not asked for (an HTTP 404 among parallel downloads does not hang the run)
    assert any(roles["m_download"] in u for u in network) and any("metadata/000-001.json.gz" in u for u in network)
    assert sum(roles["m_missing"] in u for u in network) >= 1 and not any(roles["c_ok"] in u for u in network)
    assert (base / f"glbs/000-00{0}").is_dir() and any(p.name.startswith(roles["m_download"]) for p in base.rglob("*.glb"))
    report = json.loads((out / "config.json").read_text())["object_source_report"]
    assert report["requested"] == 4 and report["usable"] == 2 and report["skipped"] == 2
    assert [d["uid"] for d in report["download_failed"]] == [roles["m_missing"]]
    assert [d["uid"] for d in report["corrupt"]] == [roles["c_corrupt"]] and "truncated" in report["corrupt"][0]["reason"]
    assert {o["uid"] for o in report["objects"]} == {roles["c_ok"], roles["m_download"]}
    objects = json.loads((out / "objects.json").read_text())
    assert {o["id"] for o in objects} == {f"objaverse:{roles['c_ok']}", f"objaverse:{roles['m_download']}"}
    recs = [json.loads(p.read_text()) for p in sorted((out / "records").glob("0*.json")) if ".skip" not in p.name]
    assert len(recs) == 2 and {r["category"] for r in recs} == {"chair", "mug"}
    for r in recs:
        uid = r["object_id"].split(":", 1)[1]
        m = roles["meta"][uid]
        assert r["object_license"] == {"by": "CC-BY-4.0", "cc0": "CC0-1.0"}[m["license"]]
        assert m["user"]["displayName"] in r["object_attribution"] and m["viewerUrl"] in r["object_attribution"]
        assert r["area_px"] > 0
    coco = json.loads((out / "annotations.json").read_text())
    assert {lic["name"] for lic in coco["licenses"]} == {r["object_license"] for r in recs}
    # a Slurm shard reads the same catalogue without any network access
    from objascale.assets.objaverse_source import objaverse_catalog
    from objascale.config import Config

    cfg = Config(**json.loads((out / "config.json").read_text())["config"])
    network.clear()
    objs, rep = objaverse_catalog(cfg, download=False)
    assert {o.id for o in objs} == {o["id"] for o in objects} and network == []


def test_corrupt_and_missing_glbs_counted_without_download(tmp_path, cache, network):
    base, _, roles = cache
    from objascale.assets.objaverse_source import objaverse_objects

    objs, report = objaverse_objects(base)
    assert [o.id.split(":")[1] for o in objs] == [roles["c_ok"]] and network == []
    assert [c["uid"] for c in report["corrupt"]] == [roles["c_corrupt"]] and report["missing"] == 7
    assert glb_problem(base / "nope.glb").startswith("missing")
    bad = tmp_path / "x.glb"
    bad.write_bytes(b"not a glb at all")
    assert "magic" in glb_problem(bad)
