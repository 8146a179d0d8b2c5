"""HDRI environments: the eight CC0 Poly Haven HDRIs inside the bpy wheel, plus user folders of .exr/.hdr."""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
HDRI_SUFFIXES = (".exr", ".hdr")
_EXR_MAGIC = b"\x76\x2f\x31\x01"
_HDR_MAGIC = (b"#?RADIANCE", b"#?RGBE")


@dataclass(frozen=True)
class Hdri:
    name: str
    path: str
    license: str
    attribution: str


def builtin_hdri_dir() -> Path | None:
    """bpy/5.0/datafiles/studiolights/world inside the installed wheel, found without importing bpy."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    for d in sorted(root.glob("*/datafiles/studiolights/world")):
        return d
    return None


def check_hdri_file(path: Path) -> str | None:
    """None when the file looks like a readable EXR/HDR, else a one-line reason."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    if path.suffix.lower() == ".exr" and not head.startswith(_EXR_MAGIC):
        return "not an OpenEXR file (bad magic number)"
    if path.suffix.lower() == ".hdr" and not head.startswith(_HDR_MAGIC):
        return "not a Radiance HDR file (bad header)"
    if path.stat().st_size < 64:
        return "file too small to be an image"
    return None


def list_hdris(extra_dirs: list[str] | tuple[str, ...] = (), builtin: bool = True) -> tuple[list[Hdri], list[tuple[str, str]]]:
    """Sorted, deterministic HDRI list and the (path, reason) of files skipped as unreadable."""
    found: list[Hdri] = []
    skipped: list[tuple[str, str]] = []
    if builtin:
        d = builtin_hdri_dir()
        if d is None:
            log.warning("bpy is not installed: no built-in HDRIs (install the objascale extra)")
        else:
            for p in sorted(d.glob("*.exr")):
                found.append(Hdri(f"polyhaven/{p.stem}", str(p), "CC0-1.0",
                                  "Greg Zaal, Poly Haven (polyhaven.com), shipped with Blender"))
    for extra in extra_dirs:
        root = Path(extra).expanduser()
        if not root.is_dir():
            skipped.append((str(root), "HDRI folder does not exist"))
            continue
        for p in sorted(q for q in root.rglob("*") if q.suffix.lower() in HDRI_SUFFIXES):
            reason = check_hdri_file(p)
            if reason:
                log.warning("HDRI %s skipped: %s", p, reason)
                skipped.append((str(p), reason))
                continue
            lic = p.with_suffix(".license")
            found.append(Hdri(f"user/{p.relative_to(root).with_suffix('').as_posix()}", str(p),
                              lic.read_text().strip() if lic.is_file() else "user-supplied (licence not recorded)",
                              ""))
    return found, skipped
