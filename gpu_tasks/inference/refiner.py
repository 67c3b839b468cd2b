"""SAM2 box refinement: one image embedding per context crop, all of its boxes decoded in one batched call."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .device import autocast, nvtx_range, pick_device, run_in_chunks
from .errors import Cancelled, ModelUnavailable
from .polygons import Polygon, mask_to_polygons, polygons_bounds
from .sam2_decoder import decode_boxes, unsupported_reason

log = logging.getLogger(__name__)

SAM_INPUT_PX = 1024  # SAM2's square input side
FAST_DECODER_MIN_BOXES = 2  # fewest boxes per call for which sam2_decoder beats the stock decoder in FLOPs


class Refiner:
    """A loaded SAM2 image predictor: set_image(chip) once, then predict(boxes) for all boxes of the chip."""

    def __init__(self, predictor, device: torch.device, max_boxes_per_call: int | None = None) -> None:
        self.predictor = predictor
        self.device = device
        # The mask decoder copies the image features once per box; this bounds that memory.
        # On the CPU the decoder is bound by memory traffic on per-box tensors: 4 boxes per call measured
        # fastest per box (benchmarks/search.py section 5); a GPU wants large batches.
        self.max_boxes_per_call = max_boxes_per_call or (64 if device.type == "cuda" else 4)
        self.nvtx = False
        self._chip_hw: tuple[int, int] | None = None
        self._image_cache: dict = {}  # the fast decoder's per-image work, valid until the next set_image
        self._dense_pe: torch.Tensor | None = None  # the prompt encoder's positional grid: fixed per model
        # The shared-image decoder (sam2_decoder) gives SAM2's own masks at a fraction of the FLOPs per box;
        # a model layout it does not know keeps SAM2's stock decoder.
        self.fast_decoder_unsupported = unsupported_reason(predictor.model.sam_mask_decoder)
        if self.fast_decoder_unsupported:
            log.info("SAM2 stock mask decoder in use: %s", self.fast_decoder_unsupported)

    @classmethod
    def load(
        cls,
        config_name: str,
        checkpoint: Path | str | None,
        device: torch.device | str | None = None,
        *,
        allow_random_weights: bool = False,
    ) -> Refiner:
        """Build SAM2 from a package config name and a checkpoint (None only with allow_random_weights)."""
        if checkpoint is None and not allow_random_weights:
            raise ModelUnavailable(config_name, "no SAM2 checkpoint given")
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise ModelUnavailable(str(checkpoint), "no such checkpoint file")
        # Imported here: sam2 pulls in hydra and compiles TorchScript helpers, seconds that a failing
        # configuration check above should not pay.
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        dev = pick_device(str(device)) if device is not None else pick_device()
        try:
            model = build_sam2(config_name, ckpt_path=str(checkpoint) if checkpoint else None, device=str(dev))
        except RuntimeError as exc:
            # sam2 raises a bare RuntimeError when the checkpoint's keys do not match the config.
            raise ValueError(f"SAM2 checkpoint {checkpoint} does not match config {config_name}: {exc}") from exc
        log.info("loaded SAM2 %s (%s) on %s", config_name, checkpoint or "random weights", dev)
        return cls(SAM2ImagePredictor(model), dev)

    @torch.inference_mode()
    def set_image(self, chip_rgb: np.ndarray) -> None:
        """Compute the image embedding of an (H, W, 3) uint8 chip (resized to 1024 inside SAM2)."""
        if chip_rgb.ndim != 3 or chip_rgb.shape[2] != 3 or chip_rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 chip, got {chip_rgb.shape} {chip_rgb.dtype}")
        # Forget the previous image first: if set_image fails, predict says so rather than using stale state.
        self._chip_hw, self._image_cache = None, {}
        with autocast(self.device), nvtx_range("sam2_set_image", self.nvtx):
            self.predictor.set_image(chip_rgb)
        self._chip_hw = (int(chip_rgb.shape[0]), int(chip_rgb.shape[1]))

    @torch.inference_mode()
    def predict(
        self, boxes_xyxy_px: np.ndarray, keep_xyxy_px: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Masks (n, H, W) bool and predicted IoUs (n,) for n xyxy boxes in chip pixels.

        Each box gets three candidate masks (multimask output, better for coarse box prompts); the one with
        the highest predicted IoU is kept before upsampling, so only n full-size masks are ever built.
        keep_xyxy_px (n, 4) end-exclusive chip px: each mask the same as without it inside, False outside.
        """
        # Windows let the decoder skip the mask upscaling where the caller discards the mask anyway.
        if self._chip_hw is None:
            raise RuntimeError("set_image must be called before predict")
        boxes = np.asarray(boxes_xyxy_px, dtype=np.float32).reshape(-1, 4)
        h, w = self._chip_hw
        keep = None if keep_xyxy_px is None else np.asarray(keep_xyxy_px, dtype=np.float64).reshape(-1, 4)
        if keep is not None and len(keep) != len(boxes):
            raise ValueError(f"{len(keep)} keep windows for {len(boxes)} boxes")
        masks = np.zeros((len(boxes), h, w), dtype=bool)
        ious = np.zeros(len(boxes), dtype=np.float32)

        def run(start: int, stop: int) -> None:
            masks[start:stop], ious[start:stop] = self._decode(
                boxes[start:stop], None if keep is None else keep[start:stop]
            )

        self.max_boxes_per_call = run_in_chunks(len(boxes), self.max_boxes_per_call, run, self.device, "SAM2 boxes")
        return masks, ious

    def _decode(self, boxes: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One batched prompt-encoder + mask-decoder call for all boxes.

        Mirrors SAM2ImagePredictor._predict (sam2 1.1.0, pinned) except that the best of the three masks is
        chosen at 256x256 before upsampling; tests compare it with predictor.predict to catch upstream drift.
        """
        pred = self.predictor
        model = pred.model
        n = len(boxes)
        orig_hw = pred._orig_hw[-1]
        with autocast(self.device), nvtx_range("sam2_decode", self.nvtx):
            box_t = torch.as_tensor(boxes, dtype=torch.float32, device=self.device)
            coords = pred._transforms.transform_boxes(box_t, normalize=True, orig_hw=orig_hw)  # (n, 2, 2)
            labels = torch.tensor([[2, 3]], dtype=torch.int, device=self.device).repeat(n, 1)  # box corners
            sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            high_res = [level[-1].unsqueeze(0) for level in pred._features["high_res_feats"]]
            if self._dense_pe is None:
                self._dense_pe = model.sam_prompt_encoder.get_dense_pe()
            args = dict(
                image_embeddings=pred._features["image_embed"][-1].unsqueeze(0),
                image_pe=self._dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                high_res_features=high_res,
            )
            # The fast decoder pays ~4 GFLOP of per-image work once per image (kept in _image_cache across
            # calls) and saves ~2-3 GFLOP per box (SAM2.1 tiny): a lone box on a new image is cheaper on the stock
            # path, any box once the image's work is cached is not.
            fast = n >= FAST_DECODER_MIN_BOXES or bool(self._image_cache)
            if self.fast_decoder_unsupported is None and fast:
                dec = model.sam_mask_decoder
                h, w = args["image_embeddings"].shape[-2:]
                windows = None if keep is None else _embedding_windows(keep, orig_hw, (h, w), self.device)
                # Only the best multimask token's logits are computed (multimask_output=True then argmax).
                chosen, iou_pred, _, _ = decode_boxes(
                    dec, windows=windows, image_cache=self._image_cache, only_best_multimask=True, **args
                )
                iou_pred = iou_pred[:, 1:]  # MaskDecoder.forward with multimask_output=True drops token 0
                best = iou_pred.argmax(dim=1)
            else:
                low_res, iou_pred, _, _ = model.sam_mask_decoder(multimask_output=True, repeat_image=n > 1, **args)
                best = iou_pred.argmax(dim=1)
                chosen = low_res[torch.arange(n, device=self.device), best].unsqueeze(1)  # (n, 1, 256, 256)
            rows = torch.arange(n, device=self.device)
            tf = pred._transforms
            windowed = keep is not None and tf.max_hole_area == 0 and tf.max_sprinkle_area == 0
            if windowed:
                # Only the keep windows are used: upsample those, not n full chips (the biggest per-box
                # cost left on a CPU). Same bilinear sampling as postprocess_masks' F.interpolate.
                masks = _upsample_windows(chosen[:, 0].float(), keep, orig_hw, pred.mask_threshold)
            else:
                up = tf.postprocess_masks(chosen, orig_hw)
                masks = (up[:, 0] > pred.mask_threshold).cpu().numpy()
            ious = iou_pred[rows, best].float().cpu().numpy()
        if keep is not None and not windowed:
            # Cut to exactly the keep window (_upsample_windows writes nothing outside it), so that the output
            # does not depend on which path ran.
            masks &= _keep_mask(keep, masks.shape[1:])
        return masks, ious


def _source_index(out_idx: torch.Tensor, in_size: int, out_size: int) -> tuple[torch.Tensor, ...]:
    """Bilinear taps (i0, i1, weight of i1) as upsample_bilinear2d computes them with align_corners=False."""
    # float32 throughout, as PyTorch computes it, so threshold ties fall the same way.
    scale = torch.tensor(in_size, dtype=torch.float32) / out_size
    src = ((out_idx.float() + 0.5) * scale - 0.5).clamp_(min=0.0)
    i0 = src.floor().long().clamp_(max=in_size - 1)
    i1 = (i0 + 1).clamp_(max=in_size - 1)
    return i0, i1, src - i0.float()


def _upsample_windows(logits: torch.Tensor, keep: np.ndarray, orig_hw: tuple[int, int], threshold: float) -> np.ndarray:
    """(n, H, W) bool: logits (n, h, w) upsampled to the chip and thresholded inside each keep window only."""
    n, h, w = logits.shape
    out_h, out_w = int(orig_hw[0]), int(orig_hw[1])
    masks = np.zeros((n, out_h, out_w), dtype=bool)
    for j in range(n):
        c0, r0 = max(int(np.floor(keep[j, 0])), 0), max(int(np.floor(keep[j, 1])), 0)
        c1, r1 = min(int(np.ceil(keep[j, 2])), out_w), min(int(np.ceil(keep[j, 3])), out_h)
        if c1 <= c0 or r1 <= r0:
            continue
        y0, y1, wy = _source_index(torch.arange(r0, r1, device=logits.device), h, out_h)
        x0, x1, wx = _source_index(torch.arange(c0, c1, device=logits.device), w, out_w)
        m = logits[j]
        top = m[y0][:, x0] * (1 - wx) + m[y0][:, x1] * wx
        bottom = m[y1][:, x0] * (1 - wx) + m[y1][:, x1] * wx
        window = top * (1 - wy)[:, None] + bottom * wy[:, None]
        masks[j, r0:r1, c0:c1] = (window > threshold).cpu().numpy()
    return masks


def _embedding_windows(
    keep: np.ndarray, orig_hw: tuple[int, int], emb_hw: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """(n, 4) rows0, rows1, cols0, cols1 on the embedding grid that decide every chip pixel in `keep`."""
    # postprocess_masks resizes the 4h x 4w logits bilinearly (align_corners=False): chip pixel y reads low-res
    # rows floor(s) and floor(s) + 1 with s = (y + 0.5) * 4h / H - 0.5; the upscaling maps each embedding
    # pixel to its own 4x4 block. One embedding pixel more on each side absorbs float rounding.
    out = np.zeros((len(keep), 4), dtype=np.int64)
    for axis, (size, grid) in enumerate(zip(orig_hw, emb_hw, strict=True)):
        lo_px = np.clip(np.floor(keep[:, 1 - axis]), 0, size - 1)
        hi_px = np.clip(np.ceil(keep[:, 3 - axis]) - 1, 0, size - 1)
        f = 4 * grid / size
        lo = np.floor((lo_px + 0.5) * f - 0.5)
        hi = np.floor((hi_px + 0.5) * f - 0.5) + 1
        out[:, 2 * axis] = np.clip(np.floor(lo / 4) - 1, 0, grid)
        out[:, 2 * axis + 1] = np.clip(np.floor(hi / 4) + 2, 0, grid)
    return torch.as_tensor(out, device=device)


def _keep_mask(keep: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(n, H, W) True inside each end-exclusive keep window."""
    h, w = hw
    ys, xs = np.arange(h), np.arange(w)
    inside_y = (ys >= np.floor(keep[:, 1:2])) & (ys < np.ceil(keep[:, 3:4]))
    inside_x = (xs >= np.floor(keep[:, 0:1])) & (xs < np.ceil(keep[:, 2:3]))
    return inside_y[:, :, None] & inside_x[:, None, :]


@dataclass(frozen=True)
class CropPlan:
    """A context crop for SAM2: native window, the size to read it at, and the boxes it serves."""

    col_off_px: int
    row_off_px: int
    width_px: int
    height_px: int
    out_w_px: int  # read size: longer side <= SAM's 1024 input, never upsampled (SAM resizes itself)
    out_h_px: int
    box_indices: tuple[int, ...]

    @property
    def scale_x(self) -> float:
        """Native px per chip px along x."""
        return self.width_px / self.out_w_px

    @property
    def scale_y(self) -> float:
        """Native px per chip px along y."""
        return self.height_px / self.out_h_px


def _window_1d(center: float, side: int, extent: int) -> tuple[int, int]:
    """(offset, length) of a window of `side` px centred on `center`, moved inside [0, extent)."""
    if side >= extent:
        return 0, extent
    off = int(round(center - side / 2))
    return min(max(off, 0), extent - side), side


def plan_crops(
    boxes_px: np.ndarray,
    scene_w: int,
    scene_h: int,
    target_object_px: int = 320,
    min_crop_px: int = 256,
    max_crop_px: int = 2048,
    sam_input_px: int = SAM_INPUT_PX,
    context_frac: float = 0.25,
) -> list[CropPlan]:
    """Square context crops so that each object spans ~target_object_px of SAM's input; nearby boxes share one.

    A box's crop side is clamp(max(w, h) * sam_input_px / target_object_px, min_crop_px, max_crop_px), at least
    the box plus context. Largest boxes first; a box joins an existing crop when the box grown by context_frac
    of its size lies inside it and that crop is at most twice the side the box would want for itself.
    """
    boxes = np.asarray(boxes_px, dtype=np.float64).reshape(-1, 4)
    sizes = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    crops: list[dict] = []
    for i in np.argsort(-sizes, kind="stable"):
        x0, y0, x1, y1 = boxes[i]
        size = float(max(sizes[i], 1.0))
        pad = max(context_frac * size, 4.0)
        want = min(max(size * sam_input_px / target_object_px, min_crop_px), max_crop_px)
        want = int(math.ceil(max(want, size + 2 * pad)))
        # The part of the grown box inside the scene must be inside the crop.
        gx0, gy0 = max(x0 - pad, 0.0), max(y0 - pad, 0.0)
        gx1, gy1 = min(x1 + pad, float(scene_w)), min(y1 + pad, float(scene_h))
        for crop in crops:
            cx0, cy0, cw, ch = crop["window"]
            fits = cx0 <= gx0 and cy0 <= gy0 and gx1 <= cx0 + cw and gy1 <= cy0 + ch
            if fits and max(cw, ch) <= 2 * want:
                crop["boxes"].append(int(i))
                break
        else:
            col, w = _window_1d((x0 + x1) / 2, want, scene_w)
            row, h = _window_1d((y0 + y1) / 2, want, scene_h)
            crops.append({"window": (col, row, w, h), "boxes": [int(i)]})
    plans = []
    for crop in crops:
        col, row, w, h = crop["window"]
        f = min(1.0, sam_input_px / max(w, h))
        plans.append(CropPlan(col, row, w, h, max(1, round(w * f)), max(1, round(h * f)), tuple(sorted(crop["boxes"]))))
    return plans


@dataclass
class RefinedMask:
    """SAM2's outline of one box: polygons in native px, the box tightened to them, SAM's own quality estimate."""

    polygons_px: list[Polygon]  # each [exterior, *holes], closed rings of (x, y) native px
    box_px: tuple[float, float, float, float]  # xyxy native px, tight around the polygons, clipped to the scene
    iou_pred: float
    mask_area_px: float  # mask area in native px^2 (before simplification)


def _add_time(timings: dict | None, name: str, seconds: float) -> None:
    """Accumulate seconds under `name`."""
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + seconds


def refine_boxes(
    *,
    refiner: Refiner,
    read_rgb: Callable[[int, int, int, int, int, int], np.ndarray],
    boxes_px: np.ndarray | Sequence[Sequence[float]],
    scene_w: int,
    scene_h: int,
    progress: Callable[[float, str], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    timings: dict | None = None,
    simplify_px: float = 1.0,
    box_slack_frac: float = 0.25,
    box_slack_px: float = 16.0,
    **crop_options,
) -> list[RefinedMask | None]:
    """SAM2 masks for xyxy native-px boxes; None where the mask is empty (the caller keeps the box).

    Mask pixels farther than box_slack (a fraction of the box size plus px) outside the prompt box are
    dropped: the box comes from a coarse patch grid, but SAM must not annex a neighbouring object.
    """
    boxes = np.asarray(boxes_px, dtype=np.float64).reshape(-1, 4)
    results: list[RefinedMask | None] = [None] * len(boxes)
    if not len(boxes):
        return results
    crops = plan_crops(boxes, scene_w, scene_h, **crop_options)
    done = 0
    for k, crop in enumerate(crops):
        if should_cancel is not None and should_cancel():
            raise Cancelled("refinement cancelled")
        t0 = time.perf_counter()
        chip = read_rgb(crop.col_off_px, crop.row_off_px, crop.width_px, crop.height_px, crop.out_w_px, crop.out_h_px)
        _add_time(timings, "read", time.perf_counter() - t0)

        t0 = time.perf_counter()
        refiner.set_image(chip)
        _add_time(timings, "sam_embed", time.perf_counter() - t0)

        idx = np.asarray(crop.box_indices)
        sx, sy = crop.scale_x, crop.scale_y
        offset = np.array([crop.col_off_px, crop.row_off_px] * 2, dtype=np.float64)
        scale = np.array([sx, sy] * 2)
        chip_boxes = (boxes[idx] - offset) / scale
        h, w = crop.out_h_px, crop.out_w_px
        keep = np.zeros((len(idx), 4), dtype=np.int64)  # c0, r0, c1, r1: the mask pixels used below
        for j in range(len(idx)):
            bx0, by0, bx1, by1 = chip_boxes[j]
            slack_x = (box_slack_frac * (bx1 - bx0)) + box_slack_px / sx
            slack_y = (box_slack_frac * (by1 - by0)) + box_slack_px / sy
            c0, r0 = max(int(math.floor(bx0 - slack_x)), 0), max(int(math.floor(by0 - slack_y)), 0)
            c1, r1 = min(int(math.ceil(bx1 + slack_x)), w), min(int(math.ceil(by1 + slack_y)), h)
            keep[j] = (c0, r0, c1, r1)
        t0 = time.perf_counter()
        # Only the box + slack part of each mask is used: the decoder skips the upscaling elsewhere.
        masks, ious = refiner.predict(chip_boxes, keep_xyxy_px=keep)
        _add_time(timings, "sam_decode", time.perf_counter() - t0)

        t0 = time.perf_counter()
        for j, i in enumerate(idx):
            c0, r0, c1, r1 = (int(v) for v in keep[j])
            sub = masks[j, r0:r1, c0:c1]
            if not sub.any():
                continue
            # Staircase edges of an upsampled chip are `scale` px tall: simplify at least half of that away.
            polys = mask_to_polygons(
                sub,
                crop.col_off_px + c0 * sx,
                crop.row_off_px + r0 * sy,
                sx,
                sy,
                simplify_px=max(simplify_px, 0.5 * max(sx, sy)),
            )
            bounds = polygons_bounds(polys)
            if bounds is None:
                continue
            box = (
                max(bounds[0], 0.0),
                max(bounds[1], 0.0),
                min(bounds[2], float(scene_w)),
                min(bounds[3], float(scene_h)),
            )
            results[int(i)] = RefinedMask(polys, box, float(ious[j]), float(sub.sum()) * sx * sy)
        _add_time(timings, "polygons", time.perf_counter() - t0)
        done += len(idx)
        if progress:
            progress(done / len(boxes), f"refined {done}/{len(boxes)} boxes in {k + 1}/{len(crops)} crops")
    return results
