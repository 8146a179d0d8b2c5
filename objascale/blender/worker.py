"""Blender worker: `python -m objascale.blender.worker JOB.json` renders one chunk of planned images.

Runs in a fresh process per chunk (bpy state never leaks between chunks). Talks to the runner through stdout
lines starting with "@@" (START i / DONE i / SKIP i reason / RETRY i reason / FATAL reason); everything else on stdout is
Blender's own log. Each image's files are written atomically, the record last: a record means done.
An I/O failure is never a skip: RETRY leaves the image pending for the rerun, FATAL (disk full, read-only) stops.
"""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import sys
import time
import traceback

import numpy as np


def say(*parts) -> None:
    print("@@" + " ".join(str(p) for p in parts), flush=True)


def _bbox_fracs(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Box of a centred probe mask in fractions of the frame, relative to the frame centre."""
    h, w = mask.shape
    cols = np.flatnonzero(mask.any(0))
    rows = np.flatnonzero(mask.any(1))
    return cols[0] / w - 0.5, rows[0] / h - 0.5, (cols[-1] + 1) / w - 0.5, (rows[-1] + 1) / h - 0.5


def objects_region(sc, co, idx: np.ndarray, W: int, H: int, n_distractors: int):
    """Pixel box around everything Cycles must render: the target's mask box and the distractors' projected boxes,
    padded for the pixel filter (1.5 px) and denoiser context. None when nothing is in frame."""
    from . import base, masks

    boxes = []
    rows, cols = np.flatnonzero((idx > 0).any(1)), np.flatnonzero((idx > 0).any(0))
    if rows.size:
        boxes.append((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))
    for k in range(n_distractors):
        b = masks.projected_box(sc, co, base.TARGET_INDEX + 1 + k, W, H, margin=0)
        if b is None and any(o.pass_index == base.TARGET_INDEX + 1 + k and o.type == "MESH" for o in sc.objects):
            return (0, 0, W, H)  # a distractor reaches behind the camera: render everything
        if b is not None:
            boxes.append(b)
    if not boxes:
        return None
    b = np.array(boxes)
    x0, y0, x1, y1 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
    pad = max(4, int(0.05 * max(x1 - x0, y1 - y0)))
    return int(max(0, x0 - pad)), int(max(0, y0 - pad)), int(min(W, x1 + pad)), int(min(H, y1 + pad))


def render_attempt(plan: dict, cfg, sweethome3d_cache, tmp_parent: str | None = None) -> dict:
    """Render one attempt. Returns rgb, mask and metadata; raises AssetError for bad assets."""
    from objascale.assets.sweethome3d import materialize
    from objascale.plan import area_check

    from . import base, beauty, importer, masks, scene

    timings: dict[str, float] = {}
    t_start = time.time()
    cpu_start = time.process_time()  # all threads of this process: Cycles' CPU seconds included
    tmp = base.new_tmpdir(tmp_parent)
    try:
        sc = scene.reset_scene(cfg.threads)
        device = scene.configure_device(sc, cfg.device)
        sc.cycles.seed = plan["render_seed"]
        env_img = scene.setup_world(sc, plan["hdri"]["path"], plan["hdri_rotation_deg"], plan["hdri_strength"])
        t = time.time()
        target, warnings = importer.import_object(sc, plan["object"], base.TARGET_INDEX, lambda p: materialize(p, sweethome3d_cache))
        scene.set_pose(target, plan["pose"])
        timings["import_s"] = time.time() - t
        W, H = plan["width"], plan["height"]
        cam_plan = plan["camera"]
        co = scene.make_camera(sc, cam_plan, W, H)

        # --- distance from the projected area (probe renders, area ∝ 1/d²)
        t = time.time()
        scale = cfg.probe_side / max(W, H)
        pw, ph = max(8, round(W * scale)), max(8, round(H * scale))
        ratio = plan["area_ratio_planned"]
        d = 1.05 / math.sin(scene.min_half_fov(cam_plan, W, H))
        probes = []
        for _ in range(4):
            scene.place_camera(co, cam_plan, d)
            m = masks.render_index(sc, pw, ph, tmp) == base.TARGET_INDEX
            a = float(m.mean())
            if a == 0:
                raise base.AssetError(f"object {plan['object']['id']}: invisible in the probe render")
            probes.append({"distance": d, "area_ratio": a})
            d_probe, box = d, _bbox_fracs(m)
            d_new = d * math.sqrt(a / ratio)
            converged = abs(math.log(d_new / d)) < 0.01
            d = d_new
            # re-probe only while the object stays big enough at probe resolution to measure its area well
            if converged or ratio * pw * ph < 400:
                break
        timings["probe_s"] = time.time() - t

        # --- placement by lens shift: the projected shape does not change, only its position
        s = d_probe / d
        bx0, by0, bx1, by1 = box[0] * s * W, box[1] * s * H, box[2] * s * W, box[3] * s * H
        bw, bh = bx1 - bx0, by1 - by0
        mx, my = 1.0 - cfg.max_outside * bw, 1.0 - cfg.max_outside * bh  # margin (negative = may stick out)
        lo_x, hi_x = -W / 2 - bx0 + mx, W / 2 - bx1 - mx
        lo_y, hi_y = -H / 2 - by0 + my, H / 2 - by1 - my
        u, v = plan["placement_uv"]
        if hi_x < lo_x or hi_y < lo_y:
            raise base.AssetError(f"object {plan['object']['id']}: its box ({bw:.0f}x{bh:.0f} px) does not fit the "
                               f"{W}x{H} frame at area ratio {ratio:.3g}")
        ox = lo_x + u * (hi_x - lo_x)
        oy = lo_y + v * (hi_y - lo_y)
        scene.place_camera(co, cam_plan, d)
        co.data.shift_x = -ox / max(W, H)
        co.data.shift_y = oy / max(W, H)

        # --- distractors, positioned along rays through chosen frame points
        bpy_ctx = __import__("bpy").context
        bpy_ctx.view_layer.update()
        for k, dp in enumerate(plan["distractors"]):
            try:
                root, w2 = importer.import_object(sc, dp["object"], base.TARGET_INDEX + 1 + k, lambda p: materialize(p, sweethome3d_cache))
            except base.AssetError as e:
                warnings.append(f"distractor {k} skipped: {e}")
                continue
            warnings.extend(w2)
            frame = co.data.view_frame(scene=sc)  # corners in camera space: tr, br, bl, tl (with shift)
            tr, br, bl, tl = frame
            uu, vv = dp["frame_uv"]
            p_cam = tl + (tr - tl) * uu + (bl - tl) * vv
            ray = (co.matrix_world.to_3x3() @ p_cam).normalized()
            depth = d * dp["depth_factor"]
            scene.set_pose(root, dp["pose"], location=co.location + ray * depth, scale=dp["size_factor"] * dp["depth_factor"])

        # --- exact mask first: a failed area check costs no beauty render
        # only inside the target's projected box can its id appear (distractors may occlude it there, fine)
        t = time.time()
        bpy_ctx.view_layer.update()
        mask_box = masks.projected_box(sc, co, base.TARGET_INDEX, W, H, margin=2)
        idx = masks.render_index(sc, W, H, tmp, box_xyxy=mask_box)
        timings["mask_s"] = time.time() - t
        mask = idx == base.TARGET_INDEX
        area = int(mask.sum())
        reason = area_check(cfg, plan["area_px_planned"], area, occluders=bool(plan["distractors"]))
        result = {"mask": mask, "area_px": area, "distance": d, "probes": probes, "device": device,
                  "shift": [co.data.shift_x, co.data.shift_y], "offset_px": [ox, oy], "warnings": warnings,
                  "timings": timings, "reject": reason, "camera_location": list(co.location),
                  "camera_rotation_euler": list(co.rotation_euler),
                  "object_extent": [float(v) for v in target.get("extent_file_units", [])]}
        if reason:
            return result

        # --- beauty: the objects' region by Cycles, the rest the HDRI (analytic, or a low-sample Cycles pass)
        t = time.time()
        region = None
        if cfg.region_render:
            region = objects_region(sc, co, idx, W, H, len(plan["distractors"]))
        if region is not None and cfg.analytic_background:
            from .background import hdri_background

            frame = [np.array(c) for c in co.data.view_frame(scene=sc)]
            bg = hdri_background(scene.env_pixels(env_img), frame, np.array(co.matrix_world.to_3x3()), W, H,
                                 math.radians(plan["hdri_rotation_deg"]), plan["hdri_strength"])
            timings["background_s"] = time.time() - t
            rgb, render_info = beauty.render_composite(sc, W, H, plan["samples"], vars(cfg), region, bg, tmp)
        else:
            if region is not None and W * H / float((region[2] - region[0]) * (region[3] - region[1])) < cfg.region_min_saving:
                region = None  # the low-sample full frame would cost about as much as the region itself
            rgb, render_info = beauty.render_beauty(sc, W, H, plan["samples"], vars(cfg), region, tmp)
        timings["beauty_s"] = time.time() - t
        render_info.update(view_transform=sc.view_settings.view_transform, engine="CYCLES",
                           adaptive_threshold=cfg.adaptive_threshold, max_bounces=cfg.max_bounces,
                           mask_pass="Object Index, 1 spp, filter_width 0.01, no denoising",
                           mask_box_xyxy=list(mask_box) if mask_box else None)
        result.update(rgb=rgb, render=render_info)
        return result
    finally:
        timings["attempt_s"] = time.time() - t_start
        timings["cpu_s"] = time.process_time() - cpu_start
        shutil.rmtree(tmp, ignore_errors=True)


def write_outputs(out_root, plan: dict, res: dict, attempts: list, cfg) -> None:
    from pycocotools import mask as mask_utils

    from segcore.prompt import Prompt
    from objascale.io import Layout, atomic_write_bytes, atomic_write_json, encode_image

    lay = Layout(out_root)
    i = plan["index"]
    W, H = plan["width"], plan["height"]
    t = time.time()
    ext = "jpg" if W * H > cfg.jpeg_above_pixels else "png"
    atomic_write_bytes(lay.image_path(i, ext), encode_image(res["rgb"], ext, cfg.jpeg_quality))
    mask = res["mask"]
    atomic_write_bytes(lay.mask_path(i), encode_image((mask * 255).astype(np.uint8), "png"))
    prompt = Prompt.from_mask(mask)
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    box = prompt.box_xyxy
    res["timings"]["write_s"] = time.time() - t
    obj = plan["object"]
    record = {
        "index": i, "status": "done", "file_name": f"images/{i:06d}.{ext}", "mask_file": f"masks/{i:06d}.png",
        "width": W, "height": H, "seed": plan["seed"], "attempt": plan["attempt"], "attempts": attempts,
        "render_seed": plan["render_seed"], "split": cfg.split,
        "object_id": obj["id"], "object_source": obj["source"], "object_name": obj["name"],
        "category": plan["category"], "supercategory": obj.get("supercategory", ""),
        "object_license": obj["license"], "object_attribution": obj["attribution"], "object_path": obj["path"],
        "object_up_axis": obj.get("up_axis") or "format default", "object_scale_to_m": obj.get("scale_to_m") or None,
        "object_size_m": ([e * obj["scale_to_m"] for e in res.get("object_extent", [])] if obj.get("scale_to_m") else None),
        "object_extent_file_units": res.get("object_extent") or None,  # x, y, z (up): the up-axis check at merge
        "hdri": plan["hdri"], "hdri_rotation_deg": plan["hdri_rotation_deg"], "hdri_strength": plan["hdri_strength"],
        "area_ratio_planned": plan["area_ratio_planned"], "area_px_planned": plan["area_px_planned"],
        "area_px": res["area_px"], "area_ratio": res["area_px"] / float(W * H),
        "bbox_xyxy": box.tolist(), "bbox_xywh": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
        "rho": prompt.rho.tolist(), "rle": rle,
        "camera": dict(plan["camera"], distance=res["distance"], shift=res["shift"], offset_px=res["offset_px"],
                       location=res["camera_location"], rotation_euler=res["camera_rotation_euler"]),
        "pose": plan["pose"], "probes": res["probes"],
        "distractors": [{"object_id": dp["object"]["id"], "license": dp["object"]["license"],
                         "attribution": dp["object"]["attribution"], "index": k + 2} for k, dp in enumerate(plan["distractors"])],
        "render": dict(res["render"], device=res["device"]), "timings": res["timings"], "warnings": res["warnings"],
    }
    atomic_write_json(lay.record_path(i), record)


def write_skip(out_root, index: int, attempts: list, reason: str) -> None:
    from objascale.io import Layout, atomic_write_json

    atomic_write_json(Layout(out_root).skip_path(index), {"index": index, "status": "skipped", "reason": reason, "attempts": attempts})


def run_item(out_root, item: dict, cfg, sweethome3d_cache, tmp_parent: str | None = None) -> None:
    from .base import AssetError

    i = item["index"]
    attempts: list[dict] = []
    say("START", i)
    for plan in item["plans"]:
        t = time.time()
        try:
            res = render_attempt(plan, cfg, sweethome3d_cache, tmp_parent)
        except AssetError as e:
            attempts.append({"attempt": plan["attempt"], "object_id": plan["object"]["id"], "reason": str(e), "seconds": time.time() - t})
            print(f"objascale: image {i} attempt {plan['attempt']}: {e}", flush=True)
            continue
        if res["reject"]:
            attempts.append({"attempt": plan["attempt"], "object_id": plan["object"]["id"], "reason": res["reject"], "seconds": time.time() - t})
            print(f"objascale: image {i} attempt {plan['attempt']}: {res['reject']}", flush=True)
            continue
        attempts.append({"attempt": plan["attempt"], "object_id": plan["object"]["id"], "reason": "ok", "seconds": time.time() - t})
        write_outputs(out_root, plan, res, attempts, cfg)
        say("DONE", i)
        return
    reason = f"no acceptable render in {len(attempts)} attempts; last: {attempts[-1]['reason'] if attempts else 'none'}"
    write_skip(out_root, i, attempts, reason)
    say("SKIP", i, reason)


# the output cannot take more writes: stop the run (images stay pending, the rerun continues)
FATAL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def io_failure(exc: BaseException, dirs) -> OSError | None:
    """The OSError behind a failure, or None when it was not an I/O problem.

    An OSError is one; any other error (Blender reports a failed EXR/PNG write as RuntimeError) counts as I/O when a
    small write probe in the output or temp folder fails right after it."""
    if isinstance(exc, OSError):
        return exc
    for d in dirs:
        if not d:
            continue
        probe = os.path.join(d, f".io-probe-{os.getpid()}")
        try:
            with open(probe, "wb") as f:
                f.write(b"\0" * 65536)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            return e
        finally:
            try:
                os.unlink(probe)
            except OSError:
                pass
    return None


def main(argv: list[str]) -> int:
    from objascale.config import Config

    with open(argv[0]) as f:
        job = json.load(f)
    cfg = Config(**job["config"])
    tmp_parent = job.get("tmp_dir")
    if tmp_parent:
        os.makedirs(tmp_parent, exist_ok=True)
    for item in job["items"]:
        i = item["index"]
        try:
            run_item(job["out"], item, cfg, job.get("sweethome3d_cache"), tmp_parent)
        except Exception as e:
            io = io_failure(e, [job["out"], tmp_parent])
            if io is not None:  # never a permanent skip: the image stays pending for the rerun
                what = f"{io.strerror or io} ({io.filename or ''})"
                if io.errno in FATAL_ERRNOS:
                    say("FATAL", f"cannot write image {i} to {job['out']}: {what}")
                    return 3
                say("RETRY", i, f"I/O error: {what}")
                continue
            # a bug or a Blender failure on one image must not lose the chunk
            tb = traceback.format_exc(limit=3).replace("\n", " | ")
            reason = f"{type(e).__name__}: {e} [{tb[-400:]}]"
            try:
                write_skip(job["out"], i, [], reason)
            except OSError as e2:
                say("RETRY", i, f"I/O error writing the skip record: {e2}")
                continue
            say("SKIP", i, reason)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
