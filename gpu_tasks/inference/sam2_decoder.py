"""SAM2 mask decoding for many prompts on one image, with the per-image work done once instead of per prompt."""

# SAM2's MaskDecoder (sam2 1.1.0, pinned) with repeat_image=True copies the 64x64x256 image embedding per prompt
# and runs every image-side projection per prompt, ~3.6 GFLOP each. The prompt side is tiny (T = 9 tokens for a
# box: object-score, IoU and 4 mask tokens, 2 corners and SAM2's padding point), so:
#
# * projections of the image embedding X (and of X + pos) are shared by all prompts and computed once;
# * each image->token attention updates the keys to LN(keys + A U + b), with A (HW x heads*T) the attention
#   weights and U (heads*T x C) the per-head values already pushed through out_proj; unrolled over the layers,
#   keys = alpha * (X * g) + A' M + beta (per-pixel scale alpha, low-rank A' M of rank ~heads*T per layer), so
#   any linear map of the keys is the shared X @ W' plus small per-prompt products (exact algebra, not an
#   approximation);
# * attention against the keys is contracted with the few prompt tokens before touching the HW rows;
# * the output upscaling (two 2x2/stride-2 transposed convolutions, LayerNorm2d, GELU) is pointwise per
#   embedding pixel, so it can be restricted to a window per prompt without changing the logits inside it;
# * everything that depends only on the image (the shared projections, the positional terms, the high-res
#   features in the upscaling's layout) is kept in a per-image cache, so that prompts decoded in several calls
#   (small batches are faster per box on a CPU) pay for it once.

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Logit written outside a prompt's window: far below any threshold, finite so bilinear resizing stays finite.
OUTSIDE_LOGIT = -1024.0


def unsupported_reason(decoder: nn.Module) -> str | None:
    """Why `decoder` cannot use the fast path (None when it can): anything but SAM2 1.1.0's layout falls back."""
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer
    from sam2.modeling.sam2_utils import LayerNorm2d

    if type(decoder) is not MaskDecoder:
        return f"mask decoder is {type(decoder).__name__}, not sam2 MaskDecoder"
    if decoder.training:
        return "decoder in training mode (dropout)"
    tr = decoder.transformer
    if type(tr) is not TwoWayTransformer or not len(tr.layers):
        return "transformer is not a sam2 TwoWayTransformer"
    for i, layer in enumerate(tr.layers):
        if type(layer) is not TwoWayAttentionBlock or layer.skip_first_layer_pe != (i == 0):
            return f"transformer layer {i} is not a stock TwoWayAttentionBlock"
        attns = (layer.self_attn, layer.cross_attn_token_to_image, layer.cross_attn_image_to_token)
        if any(type(a) is not Attention for a in attns):
            return f"layer {i} uses a non-stock attention (e.g. RoPE)"
        if layer.cross_attn_image_to_token.kv_in_dim != layer.cross_attn_image_to_token.embedding_dim:
            return "image->token attention with kv_in_dim"
    if type(tr.final_attn_token_to_image) is not Attention:
        return "final attention is not stock"
    ups = decoder.output_upscaling
    if len(ups) != 5:
        return "unexpected output_upscaling layout"
    dc1, ln1, _, dc2, _ = ups
    for dc in (dc1, dc2):
        if not (
            isinstance(dc, nn.ConvTranspose2d)
            and dc.kernel_size == (2, 2)
            and dc.stride == (2, 2)
            and dc.padding == (0, 0)
            and dc.output_padding == (0, 0)
            and dc.groups == 1
            and dc.dilation == (1, 1)
        ):
            # Only a 2x2/stride-2 transposed convolution is pointwise per input pixel (needed for windows).
            return "output upscaling is not 2x2/stride-2 transposed convolutions"
    if type(ln1) is not LayerNorm2d:
        return "output upscaling norm is not LayerNorm2d"
    return None


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    """(B, N, h*d) -> (B, h, N, d)."""
    b, n, c = x.shape
    return x.reshape(b, n, h, c // h).transpose(1, 2)


def _memo(cache: dict, key: str, make):
    """cache[key], computed by make() the first time."""
    if key not in cache:
        cache[key] = make()
    return cache[key]


class _Keys:
    """The image-side state of all prompts, kept factored so that linear maps of it stay cheap.

    After any number of layers, keys = alpha * (X * g) + A @ M + beta for every prompt: X (HW, C) the shared
    image, g (C,) the product of the layer norms' gains, alpha (N, HW, 1) the product of their row scales,
    A (N, HW, K) and M (N, K, C) the attention updates (and the layer norms' means and biases) as low-rank
    terms, beta (C,) the last layer norm's bias (A is kept transposed, (N, K, HW), as attention makes it).
    So keys @ W = alpha * (X @ gW) + A @ (M @ W) + beta @ W: the big product X @ gW is per image and cached,
    the rest is K = heads * T + 1 or 2 columns per layer.
    """

    def __init__(self, x: torch.Tensor, cache: dict) -> None:
        self.x = x  # (HW, C), shared: image embedding + dense no-mask embedding
        self.cache = cache  # per image: X @ gW for every projection, keyed by name and depth
        self.depth = 0
        self.alpha: torch.Tensor | None = None
        self.at: torch.Tensor | None = None
        self.m: torch.Tensor | None = None
        self.g: torch.Tensor | None = None
        self.beta: torch.Tensor | None = None
        self._explicit: torch.Tensor | None = None  # keys after the last push, while a later push needs them

    def prepare(self, w: torch.Tensor, key: str) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The factors of keys @ w: shared X @ gw (cached per image under `key`, which must name w), M @ w, beta @ w."""
        if not self.depth:
            return _memo(self.cache, f"{key}@0", lambda: self.x @ w), None, None
        xg = _memo(self.cache, f"{key}@{self.depth}", lambda: self.x @ (self.g[:, None] * w))
        return xg, self.m @ w, self.beta @ w

    def apply(self, prepared, box=None, rows: torch.Tensor | None = None, add: torch.Tensor | None = None):
        """keys @ w (+ add) from `prepare(w)`: all prompts and pixels, or prompts `box` at pixels rows (B, P)."""
        xg, mw, bw = prepared
        y = xg.unsqueeze(0) if rows is None else xg[rows]
        if add is not None:
            add = add if rows is None else add[rows]
        if mw is None:
            return y if add is None else y + add
        alpha, at = self.alpha, self.at
        if box is not None:
            alpha, at, mw = alpha[box], at[box], mw[box]
        if rows is not None:
            pick = torch.arange(len(rows), device=xg.device)[:, None]
            alpha = alpha[pick, rows]
            at = torch.gather(at, 2, rows[:, None, :].expand(-1, at.shape[1], -1))  # (B, K, P)
        return torch.baddbmm(bw if add is None else add + bw, at.transpose(1, 2), mw).addcmul_(alpha, y)

    def scores(self, w, bias, pe_w, m: torch.Tensor, key: str) -> torch.Tensor:
        """Per head m_h^T @ ((keys + pe) @ w + bias)_h^T for small per-prompt m (N, h, d, T); (N, h, T, HW)."""
        # The contraction with m is pushed inside the factors: HW x K x h*T per prompt, not HW x C x D. Pixels
        # are the last dimension throughout, so every pass below and the softmax after it run contiguously.
        xg, mw, bw = self.prepare(w, key)
        n, h, d, t = m.shape
        hw = xg.shape[0]
        mt = m.permute(1, 0, 3, 2).reshape(h, n * t, d)  # heads first: one bmm for all prompts
        if mw is None:  # keys = X: pe and bias join X @ w in a single contraction
            xpb = _memo(self.cache, f"{key}+pe", lambda: (xg + pe_w + bias).view(hw, h, d).permute(1, 2, 0).clone())
            return (mt @ xpb).view(h, n, t, hw).transpose(0, 1)
        # X @ gw (scaled per pixel by alpha) and the per-image constant pe @ w + bias + beta @ w, contracted
        # with m in one product: (h, N*T, d) x (h, d, 2 HW).
        both = _memo(
            self.cache,
            f"{key}+pe@{self.depth}",
            lambda: torch.stack([xg, pe_w + bias + bw]).view(2, hw, h, d).permute(2, 3, 0, 1).reshape(h, d, 2 * hw),
        )
        e = (mt @ both).view(h, n, t, 2, hw).transpose(0, 1)
        mwm = torch.einsum("nkhd,nhdt->nhtk", mw.view(n, -1, h, d), m).reshape(n, h * t, -1)
        y = torch.bmm(mwm, self.at).view(n, h, t, hw)
        return y.addcmul_(self.alpha.view(n, 1, 1, hw), e[..., 0, :]).add_(e[..., 1, :])

    def weighted_sum(self, w: torch.Tensor, bias: torch.Tensor, attn: torch.Tensor, key: str) -> torch.Tensor:
        """Per head attn_h @ (keys @ w + bias)_h for attention weights attn (N, h, T, HW); (N, h, T, d).

        Each row of attn is a softmax over the HW pixels, so it sums to 1.
        """
        # Left-multiplying by attn first keeps every product at T rows per head.
        xg, mw, bw = self.prepare(w, key)
        n, h, t, hw = attn.shape
        d = w.shape[1] // h
        acc = (bias if bw is None else bias + bw).view(h, 1, d)  # constant rows, weighted by rows summing to 1
        # Heads first for the bmm below; the alpha pixel scale rides along in the same pass.
        b = torch.empty((h, n, t, hw), dtype=attn.dtype, device=attn.device)
        if mw is None:
            b.copy_(attn.transpose(0, 1))
        else:
            full = (attn.reshape(n, h * t, hw) @ self.at.transpose(1, 2)) @ mw  # (N, h*T, D): all heads x columns
            acc = acc + torch.diagonal(full.view(n, h, t, h, d), dim1=1, dim2=3).permute(0, 3, 1, 2)
            torch.mul(attn.transpose(0, 1), self.alpha.view(1, n, 1, hw), out=b)
        # Prompts folded into the rows of one bmm per head: a broadcast matmul would copy X @ w per prompt.
        xgh = _memo(self.cache, f"{key}:heads@{self.depth}", lambda: xg.view(-1, h, d).transpose(0, 1).contiguous())
        bx = b.view(h, n * t, hw) @ xgh  # (h, N*T, d)
        return acc + bx.view(h, n, t, d).transpose(0, 1)

    def push(self, at, u: torch.Tensor, b: torch.Tensor, heads: int, norm: nn.LayerNorm, last: bool) -> None:
        """keys <- norm(keys + a @ u + b), keeping the factors and statistics for later linear maps.

        at = a^T (N, heads*T, HW) holds softmax weights: each head's T rows sum to 1 at every pixel. The
        materialised keys are kept only when a later push (not `last`) needs them.
        """
        a = at.transpose(1, 2)
        # Rows of a sum to `heads`, so a @ (u + b / heads) = a @ u + b: the bias costs no pass over (N, HW, C).
        u = u + b / heads
        n = a.shape[0]
        if self._explicit is None:  # first layer: the keys so far are the shared X
            if a.device.type == "cpu":
                # Into a buffer kept with the image: a fresh (N, HW, C) tensor per call costs page faults.
                z = _memo(self.cache, f"buffer{n}", lambda: a.new_empty((n, *self.x.shape), dtype=u.dtype))
                torch.bmm(a.to(u.dtype), u, out=z)
                z += self.x
            else:  # out= is outside autocast's casting rules; no page faults to save on a GPU anyway
                z = torch.bmm(a, u) + self.x
        else:  # the previous push's keys are ours alone: accumulate in place (in their fp32 under autocast)
            z = self._explicit.baddbmm_(a.to(self._explicit.dtype), u.to(self._explicit.dtype))
        # Statistics and normalised keys in fp32, as autocast runs layer_norm (one fused pass; var_mean alone is
        # slower on the CPU). The keys are kept only for a later push.
        zf = z.float()
        keys, mu, inv_sigma = torch.native_layer_norm(zf, (zf.shape[-1],), norm.weight, norm.bias, norm.eps)
        self._explicit = None if last else keys
        # norm(prev + a @ u) = inv_sigma * (prev + a @ u - mu) * gamma + beta_new, with prev in factored form.
        gamma = norm.weight
        mu_t, inv_sigma_t = mu.view(n, 1, -1), inv_sigma.view(n, 1, -1)
        cols, rows = [], []
        if self.depth:
            cols += [self.at, torch.ones_like(mu_t)]
            rows += [self.m, self.beta.expand(n, 1, -1)]
        cols += [at.to(mu.dtype), -mu_t]
        rows += [u.to(mu.dtype), torch.ones_like(gamma).expand(n, 1, -1)]
        self.at = torch.cat(cols, 1).mul_(inv_sigma_t)
        self.m = torch.cat(rows, 1) * gamma
        self.alpha = inv_sigma if self.alpha is None else self.alpha * inv_sigma
        self.g = gamma if self.g is None else self.g * gamma
        self.beta = norm.bias
        self.depth += 1


class _Ctx:
    """Per-call constants: the positional encoding and helpers for attention in both directions."""

    def __init__(self, pe: torch.Tensor, cache: dict) -> None:
        self.pe = pe  # (HW, C)
        self.cache = cache

    def pe_times(self, w: torch.Tensor, key: str) -> torch.Tensor:
        """pe @ w, cached."""
        return _memo(self.cache, f"pe@{key}", lambda: self.pe @ w)

    def token_to_image(self, attn, keys: _Keys, q: torch.Tensor, key: str) -> torch.Tensor:
        """attn(q=q, k=keys + pe, v=keys) for (N, T, C) queries against every prompt's keys."""
        wk, wv = attn.k_proj.weight.t(), attn.v_proj.weight.t()
        h = attn.num_heads
        qh = _heads(attn.q_proj(q), h)  # (N, h, T, d)
        scale = 1.0 / math.sqrt(qh.shape[-1])
        m = (qh * scale).transpose(-1, -2)
        s = keys.scores(wk, attn.k_proj.bias, self.pe_times(wk, f"{key}.k"), m, f"{key}.k")  # (N, h, T, HW)
        a = torch.softmax(s, dim=-1)  # over the pixels
        out = keys.weighted_sum(wv, attn.v_proj.bias, a, f"{key}.v")
        n, _, t, d = out.shape
        return attn.out_proj(out.transpose(1, 2).reshape(n, t, h * d))

    def image_to_token(self, attn, keys: _Keys, queries, query_pe, norm, key: str, last: bool) -> None:
        """keys <- norm(keys + attn(q=keys + pe, k=queries + query_pe, v=queries)), kept factored."""
        h = attn.num_heads
        wq = attn.q_proj.weight.t()
        kt = _heads(attn.k_proj(queries + query_pe), h)  # (N, h, T, d)
        vt = _heads(attn.v_proj(queries), h)
        n, _, t, d = kt.shape
        scale = 1.0 / math.sqrt(d)
        m = (kt * scale).transpose(-1, -2)
        s = keys.scores(wq, attn.q_proj.bias, self.pe_times(wq, f"{key}.q"), m, f"{key}.q")  # (N, h, T, HW)
        # Over the tokens, per head (a fast kernel in this layout): a^T (N, h*T, HW) for the factors.
        at = torch.softmax(s, dim=2).view(n, h * t, -1)
        # out_proj(concat_h a_h v_h) = sum_h a_h (v_h W_o,h): T rows per head instead of HW.
        wo = attn.out_proj.weight.t().reshape(h, d, -1)  # (h, d, C)
        u = (vt @ wo).reshape(n, h * t, -1)  # (N, h*T, C)
        keys.push(at, u, attn.out_proj.bias, h, norm, last)


@torch.no_grad()
def decode_boxes(
    decoder: nn.Module,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse_prompt_embeddings: torch.Tensor,
    dense_prompt_embeddings: torch.Tensor,
    high_res_features: list[torch.Tensor] | None = None,
    windows: torch.Tensor | None = None,
    image_cache: dict | None = None,
    only_best_multimask: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAM2 MaskDecoder.predict_masks(repeat_image=True) for N prompts on one image: the same four outputs."""
    # Outputs: masks (N, M, 4h, 4w) logits of all M mask tokens, iou_pred (N, M), mask_tokens_out (N, M, C),
    # object_score_logits (N, 1). `windows` (N, 4) ints rows0, rows1, cols0, cols1 on the h x w embedding
    # grid: mask logits are computed only inside them (as the full computation would) and are OUTSIDE_LOGIT
    # elsewhere. `image_cache`: a dict the caller keeps for as long as image, prompt encoder and decoder stay
    # the same (a fresh one per set_image), so later calls on the image skip its per-image work.
    # `only_best_multimask`: masks are (N, 1, 4h, 4w), each prompt's multimask token (1..M-1) with the highest
    # predicted IoU, the one SAM2ImagePredictor's callers keep; the other tokens' logits are never computed.
    # Callers check unsupported_reason() first.
    dec = decoder
    tr = dec.transformer
    if image_embeddings.shape[0] != 1:
        raise ValueError("decode_boxes serves prompts of one image: image_embeddings must have batch 1")
    dense = dense_prompt_embeddings
    if dense.shape[0] != 1:
        # The factoring needs one shared key image; per-prompt mask inputs would break it. Without a mask
        # prompt SAM2 broadcasts one no-mask embedding (batch stride 0): equal by construction.
        if dense.stride(0) != 0 and not torch.equal(dense, dense[:1].expand_as(dense)):
            raise ValueError("dense prompt embeddings differ between prompts (mask inputs are not supported)")
        dense = dense[:1]
    _, c, h, w = image_embeddings.shape
    cache = {} if image_cache is None else image_cache
    x = _memo(cache, "x", lambda: (image_embeddings + dense)[0].flatten(1).t().contiguous())  # (HW, C)
    ctx = _Ctx(_memo(cache, "pe", lambda: image_pe[0].flatten(1).t().contiguous()), cache)

    s = 1 if dec.pred_obj_scores else 0
    parts = [dec.obj_score_token.weight] if s else []
    output_tokens = torch.cat([*parts, dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
    n = sparse_prompt_embeddings.shape[0]
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(n, -1, -1), sparse_prompt_embeddings), dim=1)

    keys = _Keys(x, cache)
    queries, query_pe = tokens, tokens
    for i, layer in enumerate(tr.layers):
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)
        t2i = ctx.token_to_image(layer.cross_attn_token_to_image, keys, queries + query_pe, f"l{i}.t2i")
        queries = layer.norm2(queries + t2i)
        queries = layer.norm3(queries + layer.mlp(queries))
        last = i == len(tr.layers) - 1
        ctx.image_to_token(layer.cross_attn_image_to_token, keys, queries, query_pe, layer.norm4, f"l{i}.i2t", last)
    queries = queries + ctx.token_to_image(tr.final_attn_token_to_image, keys, queries + query_pe, "final.t2i")
    hs = tr.norm_final_attn(queries)

    iou_token_out = hs[:, s, :]
    mask_tokens_out = hs[:, s + 1 : s + 1 + dec.num_mask_tokens, :]
    hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], 1)
    iou_pred = dec.iou_prediction_head(iou_token_out)
    if dec.pred_obj_scores:
        object_score_logits = dec.pred_obj_score_head(hs[:, 0, :])
    else:
        object_score_logits = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)

    if only_best_multimask:
        best = iou_pred[:, 1:].argmax(dim=1) + 1
        hyper_in = hyper_in[torch.arange(n, device=best.device), best].unsqueeze(1)
    masks = _upscale_and_predict(dec, keys, hyper_in, h, w, high_res_features, windows)
    return masks, iou_pred, mask_tokens_out, object_score_logits


def _upscale_and_predict(dec, keys: _Keys, hyper_in, h: int, w: int, high_res_features, windows) -> torch.Tensor:
    """Mask logits hyper_in . upscale(keys), the first transposed convolution taken from the factored keys."""
    dc1, ln1, act1, dc2, act2 = dec.output_upscaling
    c1, c2 = dc1.out_channels, dc2.out_channels
    # A 2x2/stride-2 transposed convolution maps each input pixel to its own 2x2 block: a matmul per pixel.
    # Channels-last throughout (pixel, sub-pixel, channel): LayerNorm2d becomes one fused layer_norm and the
    # second convolution one matmul; weights ordered (a, b, channel) so that rows come out in that layout.
    w1 = _memo(keys.cache, "up.w1", lambda: dc1.weight.permute(0, 2, 3, 1).reshape(dc1.in_channels, 4 * c1))
    w2 = _memo(keys.cache, "up.w2", lambda: dc2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2))

    def image_terms() -> tuple[torch.Tensor, torch.Tensor]:
        """Bias and high-res feature terms added after each transposed convolution, in the rows' layout."""
        add1 = dc1.bias.repeat(4).expand(h * w, -1)  # (HW, 4*c1)
        add2 = dc2.bias.repeat(4)  # (4*c2,)
        if dec.use_high_res_features:
            feat_s0, feat_s1 = (f[0] for f in high_res_features)
            # feat_s1 (c1, 2h, 2w) -> (i, j, a, b, c1) rows; feat_s0 (c2, 4h, 4w) -> ((i, j, a, b), (a2, b2, c2)).
            add1 = add1 + feat_s1.view(c1, h, 2, w, 2).permute(1, 3, 2, 4, 0).reshape(h * w, 4 * c1)
            s0 = feat_s0.view(c2, h, 2, 2, w, 2, 2).permute(1, 4, 2, 5, 3, 6, 0).reshape(h * w, 4, 4 * c2)
            return add1, s0 + add2
        return add1, add2.expand(h * w, 4, -1)

    add1, add2 = _memo(keys.cache, "up.add", image_terms)
    prepared = keys.prepare(w1, "up.w1")
    n, m = hyper_in.shape[:2]

    def up(y: torch.Tensor, rows: torch.Tensor | None, rh: int, rw: int, hyper: torch.Tensor) -> torch.Tensor:
        """(B, M, 4rh, 4rw) logits from the dc1 output + add1 of rh x rw embedding pixels, y (B, rh*rw, 4*c1)."""
        b = y.shape[0]
        y = act1(F.layer_norm(y.view(b, -1, c1), (c1,), ln1.weight, ln1.bias, ln1.eps))  # (B, P*4, c1)
        a2 = add2.reshape(1, -1, 4 * c2).expand(b, -1, -1) if rows is None else add2[rows].view(b, -1, 4 * c2)
        y = act2(torch.baddbmm(a2, y, w2.expand(b, -1, -1)))
        logits = y.view(b, -1, c2) @ hyper.transpose(1, 2)  # (B, P*16, M)
        return logits.view(b, rh, rw, 2, 2, 2, 2, m).permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(b, m, 4 * rh, 4 * rw)

    if windows is None:
        return up(keys.apply(prepared, add=add1), None, h, w, hyper_in)
    masks = hyper_in.new_full((n, m, 4 * h, 4 * w), OUTSIDE_LOGIT)
    win = windows.to(hyper_in.device).long()
    r0, c0 = win[:, 0].clamp(0, h), win[:, 2].clamp(0, w)
    rh, rw = (win[:, 1].clamp(0, h) - r0).clamp(min=1), (win[:, 3].clamp(0, w) - c0).clamp(min=1)
    # Prompts are batched by window size, sizes rounded up to 8 pixels so that there are few batches (many
    # small ops are slow on a busy CPU); a grown window is moved back inside the grid, it only adds pixels.
    rh, rw = ((rh + 7) // 8 * 8).clamp(max=h), ((rw + 7) // 8 * 8).clamp(max=w)
    r0, c0 = torch.minimum(r0, h - rh), torch.minimum(c0, w - rw)
    sizes = rh * (w + 1) + rw
    for size in torch.unique(sizes).tolist():
        idx = torch.nonzero(sizes == size)[:, 0]
        gh, gw = int(rh[idx[0]]), int(rw[idx[0]])
        ys = r0[idx, None] + torch.arange(gh, device=idx.device)  # (B, gh)
        xs = c0[idx, None] + torch.arange(gw, device=idx.device)
        rows = (ys[:, :, None] * w + xs[:, None, :]).reshape(len(idx), -1)
        logits = up(keys.apply(prepared, idx, rows, add=add1), rows, gh, gw, hyper_in[idx])
        py = 4 * r0[idx, None] + torch.arange(4 * gh, device=idx.device)
        px = 4 * c0[idx, None] + torch.arange(4 * gw, device=idx.device)
        masks[idx[:, None, None], :, py[:, :, None], px[:, None, :]] = logits.permute(0, 2, 3, 1)
    return masks
