"""The shared-image SAM2 box decoder against SAM2's own mask decoder: same outputs, a fraction of the FLOPs."""

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from gpu_tasks.inference.refiner import _embedding_windows
from gpu_tasks.inference.sam2_decoder import OUTSIDE_LOGIT, decode_boxes, unsupported_reason

SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
TOL = 1e-3  # fp32: the factored algebra reorders sums, nothing more


@pytest.fixture(scope="module")
def sam2():
    """A random-weight SAM2.1 tiny and one image's features (random, of the encoder's shapes: no set_image)."""
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2(SAM2_CONFIG, ckpt_path=None, device="cpu")
    # Spread like real features so that the softmaxes are not all flat.
    feats = {
        "image_embed": torch.randn(1, 256, 64, 64) * 2,
        "high_res": [torch.randn(1, 32, 256, 256), torch.randn(1, 64, 128, 128)],
    }
    return model, feats


def _args(sam2, boxes_1024: np.ndarray) -> dict:
    """Decoder inputs for xyxy boxes in SAM's 1024 px input frame, encoded as SAM2ImagePredictor does."""
    model, feats = sam2
    coords = torch.as_tensor(boxes_1024, dtype=torch.float32).reshape(-1, 2, 2)
    labels = torch.tensor([[2, 3]], dtype=torch.int).repeat(len(coords), 1)
    sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    return dict(
        image_embeddings=feats["image_embed"],
        image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        high_res_features=feats["high_res"],
    )


def _boxes(n: int, seed: int = 0) -> np.ndarray:
    """n boxes in the 1024 frame; the first two touch the image borders (top-left, bottom-right)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 900, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(20, 320, (n, 2))], 1).clip(0, 1024)
    boxes[0] = (0, 0, 150, 90)
    if n > 1:
        boxes[1] = (800, 900, 1024, 1024)
    return boxes


@pytest.fixture(scope="module")
def stock32(sam2):
    """SAM2's own decoder on 32 boxes (repeat_image=True), with its FLOP count: run once, used by two tests."""
    args = _args(sam2, _boxes(32))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        out = sam2[0].sam_mask_decoder.predict_masks(repeat_image=True, **args)
    return args, out, counter.get_total_flops()


def _assert_same(ref, out):
    """All four predict_masks outputs agree within fp32 tolerance."""
    for name, a, b in zip(("masks", "iou_pred", "mask_tokens", "obj_score"), ref, out, strict=True):
        assert a.shape == b.shape, name
        assert (a - b).abs().max().item() < TOL, name


def test_tiny_sam21_is_supported_and_odd_layouts_are_not(sam2):
    dec = sam2[0].sam_mask_decoder
    assert unsupported_reason(dec) is None
    dec.train()
    try:
        assert "training" in unsupported_reason(dec)
    finally:
        dec.eval()


@pytest.mark.parametrize("n", [1, 5])
def test_matches_sam2_decoder(sam2, n):
    args = _args(sam2, _boxes(n, seed=n))
    with torch.inference_mode():
        ref = sam2[0].sam_mask_decoder.predict_masks(repeat_image=True, **args)
        out = decode_boxes(sam2[0].sam_mask_decoder, **args)
    _assert_same(ref, out)


def test_matches_sam2_decoder_on_32_boxes_with_a_fraction_of_the_flops(sam2, stock32):
    args, ref, stock_flops = stock32
    dec = sam2[0].sam_mask_decoder
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        out = decode_boxes(dec, **args)
    _assert_same(ref, out)
    full_flops = counter.get_total_flops()

    # Production windows (refine_boxes): box + 25 % + 16 px, boxes ~320 px of SAM's 1024 input.
    boxes = _boxes(32)
    size = boxes[:, 2:] - boxes[:, :2]
    slack = 0.25 * np.concatenate([size, size], 1) + 16
    keep = np.clip(boxes + np.array([-1, -1, 1, 1]) * slack, 0, 1024)
    windows = _embedding_windows(keep, (1024, 1024), (64, 64), torch.device("cpu"))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        windowed = decode_boxes(dec, windows=windows, **args)
    windowed_flops = counter.get_total_flops()
    for i, (r0, r1, c0, c1) in enumerate(windows.tolist()):
        inside = (slice(None), slice(4 * r0, 4 * r1), slice(4 * c0, 4 * c1))
        assert (windowed[0][i][inside] - ref[0][i][inside]).abs().max().item() < TOL
        # Windows may grow (batched by size) but every logit is either the stock one or OUTSIDE_LOGIT.
        same = (windowed[0][i] - ref[0][i]).abs() < TOL
        assert (same | (windowed[0][i] == OUTSIDE_LOGIT)).all()
        assert (windowed[0][i] == OUTSIDE_LOGIT).any()
    for a, b in zip(ref[1:], windowed[1:], strict=True):  # windows leave IoU, tokens and object score alone
        assert (a - b).abs().max().item() < TOL

    # Per box, shared per-image work included: ~44 % with the full upscaling, ~30 % with the windows.
    assert full_flops / stock_flops < 0.45
    assert windowed_flops / stock_flops < 0.35


def test_one_embedding_only(sam2):
    args = _args(sam2, _boxes(2))
    args["image_embeddings"] = args["image_embeddings"].expand(2, -1, -1, -1)
    with pytest.raises(ValueError, match="batch 1"), torch.inference_mode():
        decode_boxes(sam2[0].sam_mask_decoder, **args)


def test_calls_sharing_an_image_cache_match_and_skip_the_per_image_work(sam2, stock32):
    args, ref, _ = stock32
    dec = sam2[0].sam_mask_decoder
    cache: dict = {}
    outs, flops = [], []
    for part in (slice(0, 4), slice(4, 12)):  # two calls on one image, as Refiner.predict makes them
        part_args = dict(args, sparse_prompt_embeddings=args["sparse_prompt_embeddings"][part])
        part_args["dense_prompt_embeddings"] = args["dense_prompt_embeddings"][part]
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            outs.append(decode_boxes(dec, image_cache=cache, **part_args))
        flops.append(counter.get_total_flops() / (part.stop - part.start))
    for k, part in enumerate((slice(0, 4), slice(4, 12))):
        _assert_same(tuple(r[part] for r in ref), outs[k])
    assert cache  # filled by the first call ...
    assert flops[1] < 0.7 * flops[0]  # ... so the second pays per-box work only


def test_only_best_multimask_gives_the_best_tokens_logits(sam2, stock32):
    args, ref, _ = stock32
    with torch.inference_mode():
        masks, iou_pred, _, _ = decode_boxes(sam2[0].sam_mask_decoder, only_best_multimask=True, **args)
    best = ref[1][:, 1:].argmax(dim=1) + 1
    assert masks.shape == (32, 1, 256, 256)
    expected = ref[0][torch.arange(32), best]
    assert (masks[:, 0] - expected).abs().max().item() < TOL
    assert (iou_pred - ref[1]).abs().max().item() < TOL


def test_runs_under_reduced_precision_autocast_as_on_a_gpu(sam2):
    # CUDA runs the decoder under bf16/fp16 autocast; CPU bf16 autocast applies the same casting rules here.
    args = _args(sam2, _boxes(6, seed=3))
    dec = sam2[0].sam_mask_decoder
    with torch.inference_mode():
        ref = dec.predict_masks(repeat_image=True, **args)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = decode_boxes(dec, image_cache={}, **args)
            stock_bf16 = dec.predict_masks(repeat_image=True, **args)
    for name, a, b, c in zip(("masks", "iou_pred", "mask_tokens", "obj_score"), ref, out, stock_bf16, strict=True):
        ours, theirs = (a.float() - b.float()).abs().max().item(), (a.float() - c.float()).abs().max().item()
        # No worse than SAM2's own decoder under the same autocast (bf16 keeps ~3 significant digits).
        assert ours <= 2 * theirs + 1e-3, name
