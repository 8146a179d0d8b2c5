"""Dataset adapters: COCO json (RLE, uncompressed RLE, polygons, crowds), ObjaScale folders, FLIP HDF5, selection."""
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segcore.datasets import (CocoDataset, DatasetError, FlipHdf5Dataset, ItemError, ObjaScaleDataset, Selection,
                                open_dataset, select, write_flip_hdf5)
from tests.fixtures import make_coco_dataset, random_shapes


def _coco_file(tmp_path):
    (tmp_path / "imgs").mkdir()
    h, w = 20, 30
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(tmp_path / "imgs" / "a.jpg")
    m = np.zeros((h, w), np.uint8)
    m[2:8, 3:12] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    uncompressed = {"size": [h, w], "counts": [int(v) for v in _runs(m)]}
    anns = [
        {"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0, "area": 54, "segmentation": {"size": [h, w], "counts": rle["counts"].decode()}},
        {"id": 2, "image_id": 7, "category_id": 1, "iscrowd": 0, "area": 54, "segmentation": uncompressed},
        {"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 0, "area": 40, "segmentation": [[10, 10, 20, 10, 20, 14, 10, 14]]},
        {"id": 4, "image_id": 7, "category_id": 1, "iscrowd": 1, "area": 54, "segmentation": {"size": [h, w], "counts": rle["counts"].decode()}},
        {"id": 5, "image_id": 7, "category_id": 1, "iscrowd": 0, "area": 54, "segmentation": {"size": [h + 1, w], "counts": rle["counts"].decode()}},
    ]
    path = tmp_path / "val.json"
    path.write_text(json.dumps({"images": [{"id": 7, "file_name": "a.jpg", "width": w, "height": h}], "annotations": anns,
                                "categories": [{"id": 1, "name": "x"}]}))
    return path, m.astype(bool)


def _runs(m):
    """Uncompressed COCO RLE counts (column-major, starting with zeros)."""
    flat = m.T.reshape(-1)
    counts, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(n)
            cur, n = v, 0
        n += 1
    counts.append(n)
    return counts


def test_coco_adapter_decodes_rle_uncompressed_and_polygons_and_skips_crowds(tmp_path):
    path, m = _coco_file(tmp_path)
    ds = open_dataset(f"{path}::{tmp_path / 'imgs'}")
    assert isinstance(ds, CocoDataset) and ds.name == "val"
    (entry,) = ds.index()
    assert [o.object_id for o in entry.objects] == ["1", "2", "3", "5"] and ds.crowd_skipped == 1
    assert len(ds) == 4
    masks = ds.load_masks(entry, ["1", "2", "3", "5"])
    np.testing.assert_array_equal(masks["1"], m)
    np.testing.assert_array_equal(masks["2"], m)
    poly = np.asarray(masks["3"])
    assert poly.shape == (20, 30) and 30 <= poly.sum() <= 60 and poly[12, 15]
    assert isinstance(masks["5"], ItemError) and "size" in str(masks["5"])
    assert ds.load_image(entry).shape == (20, 30, 3)


def test_missing_paths_raise_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(str(tmp_path / "nope"))
    path, _ = _coco_file(tmp_path)
    with pytest.raises(DatasetError, match="image folder"):
        CocoDataset(path, tmp_path / "missing-images")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="cannot tell the format"):
        open_dataset(str(tmp_path / "empty"))


def test_objascale_folder_reads_metadata(tmp_path):
    root = make_coco_dataset(tmp_path / "objascale-mini", n_images=2)
    (root / "metadata.json").write_text(json.dumps({"preset": "mini", "seed": 3, "objects": [1, 2]}))
    ds = open_dataset(str(root))
    assert isinstance(ds, ObjaScaleDataset) and ds.name == "objascale-mini"
    assert ds.describe()["metadata"] == {"preset": "mini", "seed": 3}
    samples = list(ds)
    assert len(samples) == 2 and samples[0].load_image().dtype == np.uint8
    ann = json.loads((root / "annotations.json").read_text())  # tag the images with splits, as the generator does
    ann["images"][0]["objascale"] = {"split": "train"}
    ann["images"][1]["objascale"] = {"split": "eval"}
    (root / "annotations.json").write_text(json.dumps(ann))
    assert [e.image_id for e in open_dataset(str(root)).index()] == ["2"]
    assert [e.image_id for e in open_dataset(f"{root}#train").index()] == ["1"]
    assert len(open_dataset(f"{root}#all").index()) == 2


def test_hdf5_round_trip_and_corrupt_entries(tmp_path):
    import h5py

    rng = np.random.default_rng(0)
    images = [np.broadcast_to(rng.integers(0, 255, (1, 1, 3), dtype=np.uint8), (24, 32, 3)).copy() for _ in range(3)]
    masks = [random_shapes(rng, 24, 32, k) for k in (2, 1, 3)]
    path = tmp_path / "coco-val-v1.hdf5"
    write_flip_hdf5(path, images, masks, image_ids=[11, 12, 13])
    ds = open_dataset(str(path))
    assert isinstance(ds, FlipHdf5Dataset) and len(ds) == 6 and ds.num_images() == 3
    e = ds.index()[2]
    assert e.image_id == "2:13" and [o.object_id for o in e.objects] == ["3", "4", "5"]
    got = ds.load_masks(e, ["3", "4", "5"])
    for k, ref in zip(["3", "4", "5"], masks[2]):
        np.testing.assert_array_equal(got[k], ref)  # PNG is lossless
    assert np.abs(ds.load_image(e).astype(int) - images[2]).mean() < 4  # JPEG q95 of a flat colour
    with h5py.File(path, "r") as f:
        np.testing.assert_allclose(f["positions"][3], __import__("segcore.prompt").prompt.rho_from_mask(masks[2][0]), rtol=1e-5, atol=1e-7)
    ds.close()
    with h5py.File(path, "a") as f:  # break one image and one mask
        f["rgb_images"][1] = np.frombuffer(b"not a jpeg", np.uint8)
        f["instance_masks"][0] = np.frombuffer(b"junk", np.uint8)
    ds = FlipHdf5Dataset(path)
    with pytest.raises(ItemError, match="image 1"):
        ds.load_image(ds.index()[1])
    assert isinstance(ds.load_masks(ds.index()[0], ["0"])["0"], ItemError)


def test_hdf5_missing_datasets_is_a_config_error(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.hdf5", "w") as f:
        f["rgb_images"] = np.zeros(3)
    with pytest.raises(DatasetError, match="missing datasets"):
        open_dataset(str(tmp_path / "x.hdf5"))


def test_selection_limit_is_seeded_and_shards_partition(tmp_path):
    ds = open_dataset(str(make_coco_dataset(tmp_path / "d", n_images=8, objects_per_image=4)))
    pick = lambda **kw: {(e.image_id, o.object_id) for e, objs in select(ds, Selection(**kw)) for o in objs}
    a, b, c = pick(limit=10, seed=1), pick(limit=10, seed=1), pick(limit=10, seed=2)
    assert len(a) == 10 and a == b and a != c
    shards = [pick(limit=10, seed=1, shard=(k, 3)) for k in range(3)]
    assert set().union(*shards) == a and sum(map(len, shards)) == 10
    small = pick(max_area_ratio=0.01)
    assert small < pick()


def test_lvis_style_file_without_file_names_or_crowd_flags(tmp_path):
    """LVIS: images carry coco_url only (images live under train2017/ or val2017/), annotations have no iscrowd."""
    (tmp_path / "coco" / "val2017").mkdir(parents=True)
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "coco" / "val2017" / "000000000042.jpg")
    data = {"images": [{"id": 42, "width": 12, "height": 10, "coco_url": "http://images.cocodataset.org/val2017/000000000042.jpg"}],
            "annotations": [{"id": 1, "image_id": 42, "category_id": 3, "area": 12.0, "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]}],
            "categories": [{"id": 3, "name": "x"}]}
    (tmp_path / "lvis_v1_val.json").write_text(json.dumps(data))
    ds = open_dataset(f"lvis={tmp_path / 'lvis_v1_val.json'}::{tmp_path / 'coco'}")
    assert ds.name == "lvis"
    (e,) = ds.index()
    assert ds.load_image(e).shape == (10, 12, 3)
    assert ds.load_masks(e, ["1"])["1"].sum() > 0
