"""SA-1B (Segment Anything 1B): `sa_<id>.jpg` + `sa_<id>.json` pairs, read from `.tar` shards in place (tarfile,
never extracted) or from a folder of extracted pairs. The json holds `image` (width, height) and `annotations`
(COCO RLE masks); masks decode with pycocotools.

Two users:
- the benchmark and the map-style trainer: `Sa1bDataset` is a normal adapter (`--data sa1b=DIR`); its index reads
  every json once (meant for a held-out shard, not for the 11M-image training set);
- streaming training: `Sa1bSource.stream()` yields the (epoch, shard, pair) keys of one rank's endless stream
  without reading any json: per epoch the shards are permuted from the seed and dealt out rank r ← r, r+world, …;
  each shard's pairs are visited in a seeded permutation. Ranks are disjoint and together cover the epoch; a
  resumed stream skips the first `start` keys (only tar headers are read to skip).

Broken input never stops a run: a corrupt json, a truncated tar or a file without its partner is counted in
`problems` and left out; an image whose size differs from its json, or an RLE whose size or pixel count does not
match the image, fails that image or object alone with the reason (the harness records and counts it, the
training stream counts and skips it).
"""
from __future__ import annotations

from collections import Counter, OrderedDict
import hashlib
import json
import logging
import os
from pathlib import Path
import re
import tarfile
from typing import Iterator, Sequence

import numpy as np

from .base import Dataset, DatasetError, ImageEntry, ItemError, ObjectEntry, areas_from_rles, decode_rle, masks_from_rles  # noqa: F401  (decode_rle: the trainer's stream)
from ..image import decode_image_bytes

log = logging.getLogger("segcore.sa1b")

_PAIR_FILE = re.compile(r"^(?:.*/)?([^/]+)\.(jpg|jpeg|json)$", re.IGNORECASE)
OPEN_SHARDS = 2  # tar handles (and their member tables) kept open per process: SA-1B shards hold ~11k pairs


def name_hash(text: str) -> int:
    """Stable 63-bit integer of a name (seeds come from an item's identity, never from its position)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def _is_sa1b_name(name: str) -> bool:
    n = name.lower()
    return n.endswith(".tar") or (n.startswith("sa_") and n.endswith(".json"))


def looks_like_sa1b(path: Path) -> bool:
    """A .tar file, or a folder holding .tar shards or sa_*.json files (checked without walking the whole tree)."""
    if path.is_file():
        return path.suffix.lower() == ".tar"
    if not path.is_dir():
        return False
    with os.scandir(path) as it:
        for e in it:
            n = e.name.lower()
            if _is_sa1b_name(n):
                return True
            if e.is_dir() and not n.startswith("."):
                try:
                    with os.scandir(e.path) as sub:
                        if any(_is_sa1b_name(s.name) for s in sub):
                            return True
                except OSError:
                    pass
    return False


class TarShard:
    """One .tar shard. The header scan (`stems()`) lists the pairs; members are read by offset."""

    kind = "tar"

    def __init__(self, path: Path, name: str, owner: "Sa1bSource"):
        self.path, self.name, self.owner = Path(path), name, owner

    def _table(self) -> tuple[tarfile.TarFile, dict]:
        return self.owner._open_tar(self)

    def stems(self) -> list[str]:
        return sorted(self._table()[1])

    def read(self, stem: str) -> tuple[bytes, bytes]:
        tf, table = self._table()
        jpg, js = table[stem]
        try:
            return tf.extractfile(jpg).read(), tf.extractfile(js).read()
        except (OSError, tarfile.TarError) as e:
            raise ItemError(f"{self.name}:{stem}: cannot read from the tar ({type(e).__name__}: {e})") from None


class PairShard:
    """One extracted pair in a folder (the unit of the split for folders: any number of ranks can share one)."""

    kind = "pair"

    def __init__(self, jpg: Path, js: Path, name: str):
        self.jpg, self.js, self.name = jpg, js, name

    def stems(self) -> list[str]:
        return [self.js.stem]

    def read(self, stem: str) -> tuple[bytes, bytes]:
        try:
            return self.jpg.read_bytes(), self.js.read_bytes()
        except OSError as e:
            raise ItemError(f"{self.name}: cannot read ({type(e).__name__}: {e})") from None


class Sa1bSource:
    """The shards of an SA-1B folder (or one .tar file): .tar files and loose pairs, in sorted name order."""

    def __init__(self, root):
        self.root = Path(root)
        if not self.root.exists():
            raise DatasetError(f"SA-1B path does not exist: {self.root}")
        self.problems: Counter = Counter()  # unpaired_files, corrupt_shards (per process)
        self._open: OrderedDict = OrderedDict()
        self.shards = self._find()
        if not self.shards:
            raise DatasetError(f"{self.root}: no .tar shard and no sa_<id>.jpg/.json pair found")

    def _find(self) -> list:
        if self.root.is_file():
            return [TarShard(self.root, self.root.name, self)]
        tars, jsons, jpgs = [], {}, {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in filenames:
                p = Path(dirpath) / f
                low = f.lower()
                if low.endswith(".tar"):
                    tars.append(p)
                elif low.endswith(".json") and f != "config.json":
                    jsons[p.with_suffix("")] = p
                elif low.endswith((".jpg", ".jpeg")):
                    jpgs[p.with_suffix("")] = p
        shards = [TarShard(t, str(t.relative_to(self.root)), self) for t in tars]
        for key in sorted(set(jsons) | set(jpgs)):
            if key in jsons and key in jpgs:
                shards.append(PairShard(jpgs[key], jsons[key], str(key.relative_to(self.root))))
            else:
                self.problems["unpaired_files"] += 1
        return sorted(shards, key=lambda s: s.name)

    def _open_tar(self, shard: TarShard):
        pid = os.getpid()
        hit = self._open.get(shard.name)
        if hit is not None and hit[0] == pid:
            self._open.move_to_end(shard.name)
            return hit[1], hit[2]
        if hit is not None:  # inherited across fork: never share a file offset with the parent
            self._open.pop(shard.name)
        files: dict[str, dict] = {}
        tf = None
        try:
            tf = tarfile.open(shard.path, "r:")  # uncompressed, as SA-1B ships: members are read by offset
            for info in tf:  # header scan; data is skipped
                m = _PAIR_FILE.match(info.name) if info.isfile() else None
                if m:
                    files.setdefault(m.group(1), {})["json" if m.group(2).lower() == "json" else "jpg"] = info
        except (OSError, tarfile.TarError, EOFError) as e:
            # a truncated or damaged tar: keep the members read before the damage, count the shard
            self.problems["corrupt_shards"] += 1
            log.warning("SA-1B shard %s: %s: %s (pairs before the damage are used)", shard.name, type(e).__name__, e)
            if tf is None:
                tf = _EmptyTar()
        table = {}
        for stem, d in files.items():
            if "json" in d and "jpg" in d:
                table[stem] = (d["jpg"], d["json"])
            else:
                self.problems["unpaired_files"] += 1
        self._open[shard.name] = (pid, tf, table)
        while len(self._open) > OPEN_SHARDS:
            _, (p, old, _) = self._open.popitem(last=False)
            if p == pid:
                old.close()
        return tf, table

    def __getstate__(self):  # DataLoader workers get the shard list, never open file handles
        st = dict(self.__dict__)
        st["_open"] = OrderedDict()
        return st

    def stream(self, seed: int, rank: int = 0, world: int = 1, start: int = 0,
               epochs: int | None = None) -> Iterator[tuple[int, int, int, str]]:
        """(k, epoch, shard index, stem) of rank `rank`'s stream, from key `start` on (endless unless `epochs`).

        Epoch e: the shards in the permutation of SeedSequence([seed, e]); rank r takes positions r, r+world, …;
        inside a shard, the pairs in the permutation seeded by (seed, e, shard name)."""
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world size {world}")
        if len(self.shards) < world:
            raise DatasetError(f"{self.root}: {len(self.shards)} shard(s) for {world} ranks; every rank needs at least "
                               "one (split the tar shards finer, or use fewer ranks)")
        k, epoch = 0, 0
        while epochs is None or epoch < epochs:
            order = np.random.default_rng(np.random.SeedSequence([int(seed), epoch, 0x5A1B])).permutation(len(self.shards))
            before = k
            for si in order[rank::world]:
                shard = self.shards[int(si)]
                stems = shard.stems()
                if k + len(stems) <= start:  # resume: skip whole shards by their header count
                    k += len(stems)
                    continue
                perm = np.random.default_rng(np.random.SeedSequence([int(seed), epoch, name_hash(shard.name)])).permutation(len(stems))
                for j in perm:
                    if k >= start:
                        yield k, epoch, int(si), stems[int(j)]
                    k += 1
            if k == before:
                raise DatasetError(f"{self.root}: rank {rank} of {world} has no readable pair in epoch {epoch}")
            epoch += 1


class _EmptyTar:
    def extractfile(self, _):
        raise tarfile.ReadError("shard could not be opened")

    def close(self):
        pass


def parse_record(data: bytes, what: str) -> dict:
    """An SA-1B json → {"width", "height", "annotations"}; ItemError when it is not one."""
    try:
        rec = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ItemError(f"{what}: corrupt json ({type(e).__name__}: {e})") from None
    img = rec.get("image") if isinstance(rec, dict) else None
    anns = rec.get("annotations") if isinstance(rec, dict) else None
    if not isinstance(img, dict) or not isinstance(anns, list):
        raise ItemError(f"{what}: not an SA-1B record (needs 'image' and 'annotations')")
    w, h = img.get("width"), img.get("height")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h)):
        raise ItemError(f"{what}: image width/height missing or not positive integers ({w!r}, {h!r})")
    return {"width": w, "height": h, "annotations": [a for a in anns if isinstance(a, dict) and "id" in a]}


def annotation_rle(ann: dict, height: int, width: int, what: str) -> dict:
    """The annotation's compressed RLE, checked against the image size (ItemError otherwise)."""
    from .coco import segmentation_to_rle

    seg = ann.get("segmentation")
    if not isinstance(seg, dict):
        raise ItemError(f"{what}: SA-1B annotations carry RLE dicts, got {type(seg).__name__}")
    return segmentation_to_rle(seg, height, width, what)


def decode_image(data: bytes, rec: dict, what: str) -> np.ndarray:
    """The jpg, checked against the size its json states (a mismatch would misplace every mask)."""
    image = decode_image_bytes(data, what)
    if image.shape[:2] != (rec["height"], rec["width"]):
        raise ItemError(f"{what}: image is {image.shape[1]}x{image.shape[0]}, its json says "
                        f"{rec['width']}x{rec['height']}")
    return image


class Sa1bDataset(Dataset):
    """SA-1B adapter for the benchmark (and the map-style trainer). The index reads every json once."""

    kind = "sa1b"

    def __init__(self, root, name: str | None = None):
        super().__init__()
        self.source = Sa1bSource(root)
        self.root = self.source.root
        self.name = name or (self.root.stem if self.root.is_file() else self.root.name)
        self.problems = self.source.problems  # image- and shard-level: corrupt_json, unpaired_files, corrupt_shards
        self._last = None  # (key, record): the runner asks for one image's masks right after its image

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "path": str(self.root), "shards": len(self.source.shards),
                "problems": dict(self.problems)}

    def _record(self, key) -> tuple[dict, bytes]:
        si, stem = key
        jpg, js = self.source.shards[si].read(stem)
        rec = parse_record(js, f"{self.source.shards[si].name}:{stem}.json")
        return rec, jpg

    def _build_index(self) -> list[ImageEntry]:
        entries = []
        for si, shard in enumerate(self.source.shards):
            for stem in shard.stems():
                try:
                    rec, _ = self._record((si, stem))
                except ItemError as e:
                    self.problems["corrupt_json"] += 1
                    log.warning("skip %s", e)
                    continue
                # an object whose RLE does not fit the image stays in the index and fails alone, with the reason
                # (load_masks → ItemError), as in the COCO adapter: the harness records and counts it
                objs = [ObjectEntry(str(a["id"]), float(a["area"]) if isinstance(a.get("area"), (int, float)) else None)
                        for a in rec["annotations"]]
                if objs:
                    entries.append(ImageEntry(stem, rec["width"], rec["height"], tuple(objs), key=(si, stem)))
        return entries

    def _cached(self, entry: ImageEntry) -> dict:
        if self._last is None or self._last[0] != entry.key:
            self._last = (entry.key, self._record(entry.key)[0])
        return self._last[1]

    def load_image(self, entry: ImageEntry) -> np.ndarray:
        si, stem = entry.key
        rec, jpg = self._record(entry.key)
        self._last = (entry.key, rec)
        return decode_image(jpg, rec, f"{self.source.shards[si].name}:{stem}.jpg")

    def _rles(self, entry: ImageEntry, object_ids: Sequence[str]) -> dict:
        try:
            rec = self._cached(entry)
        except ItemError as e:
            return {oid: e for oid in object_ids}
        anns = {str(a["id"]): a for a in rec["annotations"]}
        out = {}
        for oid in object_ids:
            what = f"object {oid} of image {entry.image_id}"
            try:
                if oid not in anns:
                    raise ItemError(f"{what}: not in its json")
                out[oid] = annotation_rle(anns[oid], rec["height"], rec["width"], what)
            except ItemError as e:
                out[oid] = e
        return out

    def load_masks(self, entry: ImageEntry, object_ids: Sequence[str]) -> dict:
        return masks_from_rles(self._rles(entry, object_ids), entry.image_id)

    def mask_areas(self, entry: ImageEntry, object_ids: Sequence[str]) -> dict:
        return areas_from_rles(self._rles(entry, object_ids))
