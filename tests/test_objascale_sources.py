"""A local object set as a new user brings it: Z-up scans with units and a missing MTL, the user's own HDRIs only,
every object rendered (--split all), shareable file modes. One tiny render (64-96 px, 1-2 samples)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("bpy", reason="bpy (objascale extra) not installed")
OpenEXR = pytest.importorskip("OpenEXR", reason="OpenEXR (objascale extra) not installed")
pytestmark = pytest.mark.blender

from objascale.cli import main  # noqa: E402


def box_obj(sx: float, sy: float, sz: float, header: str = "") -> str:
    v = "".join(f"v {x * sx} {y * sy} {z * sz}\n" for x in (-1, 1) for y in (-1, 1) for z in (-1, 1))
    return header + v + "f 1 2 4 3\nf 5 7 8 6\nf 1 5 6 2\nf 3 4 8 7\nf 1 3 7 5\nf 2 6 8 4\n"


@pytest.fixture()
def scans(tmp_path):
    root = tmp_path / "scans"
    (root / "plate").mkdir(parents=True)
    (root / "cup").mkdir()
    # a Z-up scan (plate: flat in x-y, thin along z) in centimetres, whose MTL file was not copied along
    (root / "plate" / "plate.obj").write_text(box_obj(10, 10, 1, header="mtllib plate.mtl\nusemtl glaze\n"))
    # a Y-up file without manifest frame columns (the OBJ convention): tall along y
    (root / "cup" / "cup.obj").write_text(box_obj(3, 5, 3))
    man = tmp_path / "objects.csv"
    man.write_text("path,category,up_axis,units,license\nplate/plate.obj,plate,Z,cm,CC0-1.0\ncup/cup.obj,cup,,,CC0-1.0\n")
    return root, man


@pytest.fixture()
def hdris(tmp_path):
    """Two user environments of odd sizes: a Radiance .hdr (flat RGBE scanlines) and an OpenEXR."""
    d = tmp_path / "hdris"
    d.mkdir()
    h, w = 9, 20
    rgbe = np.zeros((h, w, 4), np.uint8)
    rgbe[..., 0], rgbe[..., 1], rgbe[..., 2], rgbe[..., 3] = 200, 150, 100, 128
    (d / "dusk.hdr").write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (h, w) + rgbe.tobytes())
    px = np.ones((10, 24, 3), np.float32) * np.linspace(0.2, 1.5, 24, dtype=np.float32)[None, :, None]
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, {"RGB": px}) as f:
        f.write(str(d / "studio.exr"))
    (d / "studio.license").write_text("CC0-1.0")
    return d


def test_local_set_zup_units_mtl_user_hdris_split_all_modes(tmp_path, scans, hdris):
    root, man = scans
    out = tmp_path / "ds"
    old = os.umask(0o022)
    try:
        rc = main(["--out", str(out), "--object-source", "local", "--object-dir", str(root), "--object-manifest", str(man),
                   "--split", "all", "--num-images", "2", "--hdri-dirs", str(hdris), "--no-builtin-hdris",
                   "--min-side", "64", "--max-side", "96", "--samples-min", "1", "--samples-max", "2", "--threads", "2",
                   "--probe-side", "48", "--area-ratio-min", "0.02", "--tilt-max-deg", "0"])
    finally:
        os.umask(old)
    assert rc == 0
    recs = {r["category"]: r for r in (json.loads(p.read_text()) for p in (out / "records").glob("0*.json"))}
    assert sorted(recs) == ["cup", "plate"]  # --split all: both objects, whatever their hash
    plate, cup = recs["plate"], recs["cup"]
    # the Z-up plate lies flat (thin along Blender's z), in metres from the cm unit; the Y-up cup stands upright
    assert plate["object_up_axis"] == "Z" and plate["object_scale_to_m"] == 0.01
    np.testing.assert_allclose(plate["object_size_m"], [0.2, 0.2, 0.02], rtol=1e-4)
    assert cup["object_size_m"] is None and cup["object_up_axis"] == "format default"
    # the missing MTL is a warning in the image's metadata, not silence
    assert any("missing material library plate.mtl" in w for w in plate["warnings"]) and not cup["warnings"]
    # only the user's HDRIs, each of an odd size, with the licence file honoured
    cfg = json.loads((out / "config.json").read_text())
    assert sorted(h["name"] for h in cfg["hdris"]) == ["user/dusk", "user/studio"]
    assert all(r["hdri"]["name"].startswith("user/") for r in recs.values())
    assert {h["name"]: h["license"] for h in cfg["hdris"]}["user/studio"] == "CC0-1.0"
    # a dataset others can read: the umask decides (0644 here), and the name comes from the source
    for r in recs.values():
        for rel in (r["file_name"], r["mask_file"], f"records/{r['index']:06d}.json"):
            assert oct((out / rel).stat().st_mode & 0o777) == "0o644", rel
    h5 = out / "objascale-scans-mini-all-v1.hdf5"
    assert h5.is_file() and oct(h5.stat().st_mode & 0o777) == "0o644"
    assert oct((out / "annotations.json").stat().st_mode & 0o777) == "0o644"
