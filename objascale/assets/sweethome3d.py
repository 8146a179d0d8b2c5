"""Sweet Home 3D furniture catalogue (Debian package `sweethome3d-furniture`): the built-in offline object source.

The package ships five .sh3f archives (zip files). Each holds PluginFurnitureCatalog.properties (Java
properties: id#N, name#N, category#N, model#N, width/depth/height#N in cm, modelRotation#N, creator#N) and one
folder per model (OBJ + MTL + textures). The archive's licence (LICENSE.TXT, `license=` key) applies to its
models: BlendSwap-CC-0 is CC0, the others CC-BY-3.0.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from .objects import ObjectAsset, ObjectSourceError, normalise_category

log = logging.getLogger(__name__)
PACKAGE = "sweethome3d-furniture"
SYSTEM_DIR = Path("/usr/share/sweethome3d/furniture")
ARCHIVE_LICENCES = {  # SPDX ids for the archives' LICENSE.TXT texts
    "BlendSwap-CC-0": "CC0-1.0",
    "BlendSwap-CC-BY": "CC-BY-3.0",
    "KatorLegaz": "CC-BY-3.0-US",
    "Reallusion": "CC-BY-3.0-US",
    "Scopia": "CC-BY-3.0",
}


def default_cache() -> Path:
    return Path(os.environ.get("OBJASCALE_SWEETHOME3D_DIR", Path.home() / ".cache" / "objascale" / "sweethome3d"))


def find_archives(cache: Path | None = None, install: bool = True) -> list[Path]:
    """The .sh3f archives: system install, else the cache, else download the .deb (no root) and unpack it."""
    cache = Path(cache) if cache else default_cache()
    for d in (SYSTEM_DIR, cache / "root" / SYSTEM_DIR.relative_to("/")):
        found = sorted(d.glob("*.sh3f"))
        if found:
            return found
    if not install:
        raise ObjectSourceError(f"Sweet Home 3D furniture not found in {SYSTEM_DIR} or {cache}")
    log.info("installing %s into %s (apt-get download + dpkg -x, no root needed)", PACKAGE, cache)
    cache.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", PACKAGE], cwd=cache, check=True, capture_output=True, text=True, timeout=600)
        debs = sorted(cache.glob(f"{PACKAGE}_*.deb"))
        if not debs:
            raise ObjectSourceError(f"apt-get download {PACKAGE} produced no .deb in {cache}")
        subprocess.run(["dpkg", "-x", str(debs[-1]), str(cache / "root")], check=True, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise ObjectSourceError(f"could not fetch {PACKAGE} with apt-get download/dpkg -x into {cache}: {detail.strip()[:300]}; "
                                f"install it (apt-get install {PACKAGE}) or pass --sweethome3d-dir") from None
    found = sorted((cache / "root" / SYSTEM_DIR.relative_to("/")).glob("*.sh3f"))
    if not found:
        raise ObjectSourceError(f"{PACKAGE} unpacked into {cache} but holds no .sh3f archives")
    return found


def parse_properties(text: str) -> dict[str, str]:
    """Java .properties: comments (#, !), key=value or key:value, backslash line continuations, \\uXXXX escapes."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].lstrip()
        i += 1
        if not line or line[0] in "#!":
            continue
        while line.endswith("\\") and not line.endswith("\\\\") and i < len(lines):
            line = line[:-1] + lines[i].lstrip()
            i += 1
        # split at the first unescaped = or :
        k_end = next((j for j, ch in enumerate(line) if ch in "=:" and (j == 0 or line[j - 1] != "\\")), len(line))
        key, value = line[:k_end].strip(), line[k_end + 1:].strip()
        try:
            value = value.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:
            pass
        out[key] = value
    return out


def _floats(s: str | None) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in (s or "").split())
    except ValueError:
        return ()


# OBJ files are Y-up; Blender's OBJ importer maps (x, y, z) -> (x, -z, y), i.e. p_blender = OBJ_TO_ZUP @ p_obj
OBJ_TO_ZUP = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))


def model_rotation_zup(rotation: tuple[float, ...] | list[float]) -> list[list[float]] | None:
    """The catalogue's modelRotation (9 numbers, row-major R) as the matrix to apply to the imported (Z-up) model.

    Sweet Home 3D applies R to the model's points as column vectors in the file's Y-up frame (p' = R p; checked on
    the catalogue: only R, not its transpose, turns e.g. the headphones' extents into the catalogue's width, height
    and depth, and keeps the X-rotated armchair upright). On the imported model that is C R C^T with C = OBJ_TO_ZUP.
    None for a missing or malformed entry (no rotation)."""
    if len(rotation) != 9:
        return None
    r = [list(map(float, rotation[0:3])), list(map(float, rotation[3:6])), list(map(float, rotation[6:9]))]
    c = OBJ_TO_ZUP
    cr = [[sum(c[i][k] * r[k][j] for k in range(3)) for j in range(3)] for i in range(3)]
    return [[sum(cr[i][k] * c[j][k] for k in range(3)) for j in range(3)] for i in range(3)]  # (C R) C^T


def sweethome3d_objects(cache: str | Path | None = None) -> list[ObjectAsset]:
    out: list[ObjectAsset] = []
    for arc in find_archives(Path(cache) if cache else None):
        pack = arc.stem
        try:
            with zipfile.ZipFile(arc) as z:
                props = parse_properties(z.read("PluginFurnitureCatalog.properties").decode("latin-1"))
        except (OSError, zipfile.BadZipFile, KeyError) as e:
            log.warning("Sweet Home 3D archive %s skipped: %s", arc, e)
            continue
        licence = ARCHIVE_LICENCES.get(pack, props.get("license", "see archive LICENSE.TXT"))
        n = 1
        while f"id#{n}" in props:
            g = lambda k: props.get(f"{k}#{n}")  # noqa: E731
            model = (g("model") or "").lstrip("/")
            if model and g("doorOrWindow") != "true" and g("staircaseCutOutShape") is None:
                name = g("name") or g("id").split("#")[-1]
                rot = _floats(g("modelRotation"))
                out.append(ObjectAsset(
                    id=f"sweethome3d:{pack}#{g('id').split('#')[-1]}", source="sweethome3d",
                    category=normalise_category(name), supercategory=g("category") or "",
                    path=f"{arc}!{model}", name=name, license=licence,
                    attribution=f"{g('creator') or 'unknown'} ({props.get('name', pack)}, Sweet Home 3D furniture library)",
                    rotation=rot if len(rot) == 9 else (),
                    size_cm=tuple(float(g(k) or 0) for k in ("width", "depth", "height"))))
            n += 1
    if not out:
        raise ObjectSourceError("the Sweet Home 3D catalogue yielded no models")
    return sorted(out, key=lambda a: a.id)


def materialize(path: str, cache: Path | None = None) -> Path:
    """'archive.sh3f!dir/model.obj' -> a real file, extracting the model's folder once (atomic rename)."""
    if "!" not in path:
        return Path(path)
    arc, member = path.split("!", 1)
    folder = member.rsplit("/", 1)[0] + "/" if "/" in member else ""
    dest_root = (Path(cache) if cache else default_cache()) / "extracted" / Path(arc).stem
    target = dest_root / member
    if target.is_file():
        return target
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".x-", dir=dest_root))
    try:
        with zipfile.ZipFile(arc) as z:
            names = [m for m in z.namelist() if m.startswith(folder) and not m.endswith("/")] if folder else [member]
            if member not in names:
                raise FileNotFoundError(f"{member} not in {arc}")
            z.extractall(tmp, members=names)
        final_dir = dest_root / folder.rstrip("/")
        if not final_dir.exists():
            final_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(tmp / folder.rstrip("/"), final_dir)
            except OSError:  # another worker won the race
                pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
