"""Training samples: benchmark dataset adapters → FLIP inputs (docs/flip.md §2, §3.4, §6.2–6.4).

One dataset item = one image with `masks_per_image` objects. Every random choice comes from a Generator seeded by
(run seed, epoch, stream position, rank), so a sample does not depend on which worker builds it, and a resumed
run sees the same stream. The C sampler gets explicit integer seeds drawn from that Generator.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from flip.gaussian import PER_AXIS, PIXEL, rot_from_rho
from segcore.prompt import PromptError, rho_from_mask

log = logging.getLogger("flip.train")

PATCH_SETS = {  # paper Table 2 ablations
    "default": (1, 2, 4, 8, 16),
    "maxpatch4x4": (1, 2, 4),
    "maxpatch64x64": (1, 2, 4, 8, 16, 32, 64),
    "minpatch4x4": (4, 8, 16),
}


@dataclass
class SampleConfig:
    patch_sizes: tuple = PATCH_SETS["default"]
    min_tokens: int = 32
    max_tokens: int = 2048
    mean_tokens: int = 512
    num_mask_pixels: int = 2048
    masks_per_image: int = 4
    tau_max: float = 4.0  # τ ~ U[0, tau_max)
    coverage_range: tuple = (0.1, 2.0)  # c ~ U[lo, hi)
    augment: bool = True
    convention: str = PER_AXIS  # Gaussian → model units (docs/flip.md §0); PIXEL is the clean formulation
    sampler_compat: str = "authors"  # patch-sampling rule (flip.sampler compat): the one the published models used
    max_retries: int = 8  # images tried before an item gives up


def item_rng(seed: int, epoch: int, position: int, rank: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(position), int(rank)]))


def to_model_and_pixel(rot_norm: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """rot (norm frame) → (model-units position, pixel Gaussian for the sampler), the authors' per-axis rule."""
    mx, my, s1, s2, a, b = rot_norm
    pos = np.array([mx * width / 256, my * height / 256, s1 * width / 256, s2 * height / 256, a, b])
    pix = np.array([(pos[0] + width / 256) * 128, (pos[1] + height / 256) * 128, pos[2] * 128, pos[3] * 128, a, b])
    return pos, pix


def pixel_rot_model_units(rho: np.ndarray, width: int, height: int) -> np.ndarray:
    """rot of the true pixel covariance, in model units (the PIXEL convention's frame)."""
    sx, sy = (width - 1) / 2.0, (height - 1) / 2.0
    mx, my, vx, vy, vxy = rho
    mean = np.array([(mx + 1) * sx, (my + 1) * sy]) / 128.0 - np.array([width, height]) / 256.0
    cov = np.array([vx * sx * sx, vy * sy * sy, vxy * sx * sy]) / 128.0**2
    return rot_from_rho(np.array([mean[0], mean[1], *cov]))


class ObjectSampler:
    """Builds one training object from (image, mask) with the fovea sampler. Stateless apart from its config."""

    def __init__(self, cfg: SampleConfig, group_counts: torch.Tensor | None = None):
        from flip import sampler  # the C sampler binding (flip/sampler.py)

        self.sampler = sampler
        self.cfg = cfg
        self.group_counts = group_counts  # shared-memory tensor written by the GroupBalancer

    def current_counts(self) -> np.ndarray:
        if self.group_counts is None:
            from .groups import default_counts

            return default_counts(self.cfg.num_mask_pixels)
        return self.group_counts.numpy().copy()

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, what: str) -> dict:
        """Raises ValueError (PromptError / SamplerError) naming `what` when the object is unusable."""
        cfg, s = self.cfg, self.sampler
        mask = np.ascontiguousarray(mask, dtype=bool)
        h, w = mask.shape
        if image.shape[:2] != (h, w):
            raise ValueError(f"{what}: mask shape {mask.shape} does not match image {image.shape[:2]}")
        area = int(mask.sum())
        if area == 0 or area == h * w:
            raise PromptError(f"{what}: mask is {'empty' if area == 0 else 'full'}")
        rho = rho_from_mask(mask)
        seeds = rng.integers(0, 2**31 - 1, size=4)
        if cfg.convention == PER_AXIS:
            gt_rot = rot_from_rho(rho)
            rot = np.asarray(s.augment_position(gt_rot, seed=int(seeds[0])), np.float64) if cfg.augment else gt_rot
            gt_pos, _ = to_model_and_pixel(gt_rot, w, h)
            pos, g = to_model_and_pixel(rot, w, h)
            if cfg.sampler_compat == "authors":  # their wrapper's float32 chain from the rot (docs/sampler.md)
                g = s.authors_gaussian_px(rot, w, h)
        elif cfg.convention == PIXEL:
            # augmentation is frame-agnostic (shift/rotate/scale along the Gaussian's own axes): apply it in model units
            gt_pos = pixel_rot_model_units(rho, w, h)
            pos = np.asarray(s.augment_position(gt_pos, seed=int(seeds[0])), np.float64) if cfg.augment else gt_pos
            g = np.array([(pos[0] + w / 256) * 128, (pos[1] + h / 256) * 128, pos[2] * 128, pos[3] * 128, pos[4], pos[5]])
        else:
            raise ValueError(f"unknown Gaussian convention {cfg.convention!r}")
        if not np.all(np.isfinite(pos)):
            raise PromptError(f"{what}: augmented Gaussian is not finite")
        # validity filter (docs/flip.md §2, step 3): ≥ ~0.64 px stds, sane box
        ys, xs = np.nonzero(mask)
        half = np.array([xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]) / 2 / 128
        if gt_pos[2] <= 0.005 or gt_pos[3] <= 0.005 or np.any(half <= 0.005) or np.any(half >= 25):
            raise PromptError(f"{what}: object too small or too large for training (stds {gt_pos[2:4]*128} px)")
        n_tok = int(s.sample_num_tokens(seed=int(seeds[1]), min_tokens=cfg.min_tokens, max_tokens=cfg.max_tokens,
                                        mean_tokens=cfg.mean_tokens))
        tau = float(rng.uniform(0.0, cfg.tau_max))
        cov = float(rng.uniform(*cfg.coverage_range))
        ps = s.sample_patches(image, g, num_tokens=n_tok, patch_sizes=cfg.patch_sizes, tau=tau, coverage=cov,
                              seed=int(seeds[2]), compat=cfg.sampler_compat)
        total = int(sum(ps.counts))
        if total < cfg.min_tokens:
            raise PromptError(f"{what}: only {total} patches placed (< {cfg.min_tokens})")
        counts = self.current_counts()
        labels, coords = s.sample_mask_pixels(mask, g, counts, seed=int(seeds[3]))
        labels = np.asarray(labels, np.float32).reshape(-1)
        coords = np.asarray(coords, np.float32).reshape(-1, 2)
        if labels.shape[0] != cfg.num_mask_pixels or coords.shape[0] != labels.shape[0]:
            raise ValueError(f"{what}: mask sampler returned {labels.shape[0]} pixels, expected {cfg.num_mask_pixels}")
        return {
            "patches": [torch.from_numpy(np.ascontiguousarray(p)).permute(0, 3, 1, 2) for p in ps.patches],  # uint8 CHW
            "coords": [torch.from_numpy(np.asarray(c, np.float32).reshape(-1, 2)) for c in ps.coords],
            "position": torch.tensor(pos, dtype=torch.float32),
            "mask_coords": torch.from_numpy(coords),
            "labels": torch.from_numpy(labels),
            "group_counts": torch.from_numpy(np.asarray(counts, np.int64)),
            "area_ratio": area / float(h * w),
            "tau": tau, "coverage": cov, "num_tokens": total,
        }


class TrainSet(torch.utils.data.Dataset):
    """Map-style dataset over a weighted mixture of adapters. Indices come from MixtureSampler as tuples
    (dataset index, image index, epoch, position); each item is a list of up to masks_per_image objects."""

    def __init__(self, adapters, cfg: SampleConfig, seed: int, rank: int = 0, group_counts=None):
        self.adapters = list(adapters)
        self.entries = [a.index() for a in self.adapters]
        for a, e in zip(self.adapters, self.entries):
            if not e:
                raise ValueError(f"dataset {getattr(a, 'name', a)} has no image with objects")
        self.cfg, self.seed, self.rank = cfg, seed, rank
        self.group_counts = group_counts
        self._objs = None
        self.errors = 0  # unreadable images / masks (per process: each DataLoader worker counts its own)
        self._warned = 0
        self.objects_skipped = 0  # objects the filter or the sampler rejected (tiny, full, off-image...)

    @property
    def make_object(self) -> ObjectSampler:
        if self._objs is None:  # created lazily inside each worker
            self._objs = ObjectSampler(self.cfg, self.group_counts)
        return self._objs

    def sizes(self) -> list[int]:
        return [len(e) for e in self.entries]

    def __len__(self):
        return sum(self.sizes())

    def _load(self, d: int, i: int, rng: np.random.Generator) -> list[dict]:
        adapter, entry = self.adapters[d], self.entries[d][i]
        what = f"{getattr(adapter, 'name', 'dataset')}:{entry.image_id}"
        k = self.cfg.masks_per_image
        objs = list(entry.objects)
        pick = rng.choice(len(objs), size=k, replace=len(objs) < k)
        image = adapter.load_image(entry)
        ids = [objs[j].object_id for j in pick]
        masks = adapter.load_masks(entry, sorted(set(ids)))
        out = []
        for oid in ids:
            m = masks.get(oid)
            if m is None or isinstance(m, Exception):
                self._warn("skip %s object %s: %s", what, oid, m if m is not None else "mask missing")
                self.errors += 1
                continue
            try:
                out.append(self.make_object(image, np.ascontiguousarray(m, dtype=bool), rng, f"{what} object {oid}"))
            except ValueError as e:  # PromptError, SamplerError, ItemError are ValueErrors
                self.objects_skipped += 1
                log.debug("skip %s", e)
        return out

    def __getitem__(self, index) -> list[dict]:
        d, i, epoch, position = index
        rng = item_rng(self.seed, epoch, position, self.rank)
        for attempt in range(self.cfg.max_retries):
            try:
                objs = self._load(d, i, rng)
            except ValueError as e:  # unreadable image/masks: log, count, try another image of the same dataset
                self._warn("skip image: %s", e)
                self.errors += 1
                objs = []
            if objs:
                return objs
            i = int(rng.integers(len(self.entries[d])))
        self._warn("no usable object after %d images (dataset %d); item skipped", self.cfg.max_retries, d)
        return []

    def _warn(self, msg, *args) -> None:
        """The first 20 warnings, then one in 1000 with the count: a dataset of unreadable images must not
        write hundreds of MB of log before the trainer stops (loop.MAX_EMPTY_BATCHES)."""
        self._warned += 1
        if self._warned <= 20 or self._warned % 1000 == 0:
            log.warning(msg + ("" if self._warned <= 20 else f" (warning {self._warned} of this process)"), *args)


class MixtureSampler(torch.utils.data.Sampler):
    """Weighted mixture of datasets (docs/flip.md §6.7): every draw picks dataset g with probability w_g, then the next
    image of that dataset's own shuffled queue (reshuffled when exhausted). Sharded by rank: rank r gets
    draws r, r+world, … of the global stream. `start` skips already consumed items (resume)."""

    def __init__(self, sizes, weights, seed: int, epoch_length: int, rank: int = 0, world: int = 1):
        w = np.asarray(weights, np.float64)
        if len(w) != len(sizes) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"dataset weights {weights} do not fit {len(sizes)} datasets")
        self.sizes, self.p = list(sizes), w / w.sum()
        self.seed, self.epoch_length, self.rank, self.world = seed, epoch_length, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0):
        self.epoch, self.start = epoch, start

    def __len__(self):
        return self.epoch_length - self.start

    def __iter__(self):
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, 7919]))
        queues = [rng.permutation(n) for n in self.sizes]
        heads = [0] * len(self.sizes)
        choice = rng.choice(len(self.sizes), size=self.epoch_length * self.world, p=self.p)
        for pos in range(self.epoch_length):
            d = int(choice[pos * self.world + self.rank])
            # every rank advances all queues identically, so ranks draw disjoint images
            for r in range(self.world):
                dd = int(choice[pos * self.world + r])
                if heads[dd] >= self.sizes[dd]:
                    queues[dd], heads[dd] = rng.permutation(self.sizes[dd]), 0
                if r == self.rank:
                    img = int(queues[dd][heads[dd]])
                heads[dd] += 1
            if pos >= self.start:
                yield (d, img, self.epoch, pos)


class ShardStream(torch.utils.data.IterableDataset):
    """SA-1B shards as one endless stream per rank (segcore.datasets.sa1b.Sa1bSource.stream: shards dealt out to
    ranks per epoch from the seed, pairs in a seeded order inside each shard).

    DataLoader worker w of W builds the batches j ≡ w (mod W), counted from the resume point `start`. That is the
    order in which the DataLoader hands batches out, so what a rank has consumed is always a prefix of its stream,
    whatever the worker count: resuming at `start` = items consumed continues exactly. Each item is seeded by its
    identity (seed, epoch, shard, pair), never by its position or worker."""

    def __init__(self, source, cfg: SampleConfig, seed: int, batch_images: int, rank: int = 0, world: int = 1,
                 group_counts=None):
        self.source, self.cfg, self.seed = source, cfg, int(seed)
        self.batch_images, self.rank, self.world = int(batch_images), int(rank), int(world)
        self.group_counts = group_counts
        self.start = 0
        self.errors: Counter = Counter()  # per process: images, masks, objects_skipped
        self._objs = None

    def set_start(self, start: int) -> None:
        self.start = int(start)

    @property
    def make_object(self) -> ObjectSampler:
        if self._objs is None:
            self._objs = ObjectSampler(self.cfg, self.group_counts)
        return self._objs

    def keys(self, worker: int = 0, workers: int = 1, epochs: int | None = None):
        """(k, epoch, shard index, stem) this worker builds."""
        for key in self.source.stream(self.seed, self.rank, self.world, start=self.start, epochs=epochs):
            if ((key[0] - self.start) // self.batch_images) % workers == worker:
                yield key

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for _, epoch, si, stem in self.keys(w, nw):
            yield self.item(epoch, si, stem)

    def item(self, epoch: int, si: int, stem: str) -> list[dict]:
        """Up to masks_per_image objects of one pair; [] (counted) when the pair is unusable."""
        from segcore.datasets.sa1b import annotation_rle, decode_image, decode_rle, name_hash, parse_record
        from segcore.image import ItemError

        shard = self.source.shards[si]
        what = f"{shard.name}:{stem}"
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch), name_hash(what)]))
        try:
            jpg, js = shard.read(stem)
            rec = parse_record(js, f"{what}.json")
            anns = rec["annotations"]
            if not anns:
                raise ItemError(f"{what}: no annotation")
            k = self.cfg.masks_per_image
            pick = rng.choice(len(anns), size=k, replace=len(anns) < k)
            image = decode_image(jpg, rec, f"{what}.jpg")
        except ItemError as e:
            self.errors["images"] += 1
            log.warning("skip %s", e)
            return []
        out = []
        for j in pick:
            ann = anns[int(j)]
            owhat = f"{what} object {ann['id']}"
            try:
                mask = decode_rle(annotation_rle(ann, rec["height"], rec["width"], owhat), owhat)
            except ItemError as e:
                self.errors["masks"] += 1
                log.warning("skip %s", e)
                continue
            try:
                obj = self.make_object(image, mask, rng, owhat)
            except ValueError as e:  # the validity filter or the sampler rejected it
                self.errors["objects_skipped"] += 1
                log.debug("skip %s", e)
                continue
            obj["key"], obj["epoch"] = f"{what}:{ann['id']}", int(epoch)
            out.append(obj)
        return out


def collate(items: list[list[dict]]) -> dict | None:
    """Flatten images × masks into one packed batch. Per patch size: concatenated patches, coords and the number
    of patches each object contributes; mask queries (B, M) and labels (B, M); per-object group counts (B, 7)."""
    objs = [o for it in items for o in it]
    if not objs:
        return None
    n_sizes = len(objs[0]["patches"])
    return {
        "patches": [torch.cat([o["patches"][k] for o in objs]) for k in range(n_sizes)],
        "coords": [torch.cat([o["coords"][k] for o in objs]) for k in range(n_sizes)],
        "counts": torch.tensor([[o["patches"][k].shape[0] for k in range(n_sizes)] for o in objs], dtype=torch.int64),
        "position": torch.stack([o["position"] for o in objs]),
        "mask_coords": torch.stack([o["mask_coords"] for o in objs]),
        "labels": torch.stack([o["labels"] for o in objs]),
        "group_counts": torch.stack([o["group_counts"] for o in objs]),
        "num_tokens": torch.tensor([o["num_tokens"] for o in objs]),
        "area_ratio": torch.tensor([o["area_ratio"] for o in objs], dtype=torch.float64),
        "failed_items": sum(1 for it in items if not it),  # images that gave no object (counted by the loop)
        "epoch": max(o.get("epoch", -1) for o in objs),  # the stream's epoch (-1: map-style data)
    }


def worker_init_fn(worker_id: int) -> None:
    # samples are seeded per item (item_rng), so workers need no RNG of their own; keep each to one thread
    torch.set_num_threads(1)
