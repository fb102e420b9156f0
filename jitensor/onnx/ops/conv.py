"""Convolutions: Conv (1D/2D/3D, groups, depthwise, strides, dilations, pads, auto_pad) and ConvTranspose.

Formulation (written as numpy code, so it folds on constants and traces to graph IR otherwise):

- a 1x1 convolution with stride 1 and no padding is one matmul of the weight (group, Mg, Cg) with the
  input viewed as (N, group, Cg, H*W): no copy; the bias is added in the product's shape. When the input
  is a row-layout conv's output, it takes the row layout below instead (see `_row_layout_input`);
- a depthwise convolution (one input channel per group) is a sum over kernel offsets of shifted
  (strided) slices of the padded input times per-channel weights: elementwise, fused into one kernel;
- any other convolution is im2col + GEMM: the kernel offsets' strided slices, stacked offset-major, times
  the weight viewed as (group, Mg, nk*Cg). Wide outputs (rows of at least ROW_MIN) get one GEMM per output
  row, columns laid out (N, group, OH, nk*Cg, OW), so that every part of the stack is a copy of plain strided
  rows (measured 1.6x faster than flattening OH*OW, whose index division defeats vectorization); narrow
  outputs flatten the spatial dimensions into the GEMM's columns. The stack is a matmul operand that
  computes (a concatenation), so fusion gives it a buffer, written part by part, each a plain copy, and
  the GEMM template reads plain strided operands.

Measured variants for conv 1x64x56x56, 3x3, 64 -> 64, + bias + ReLU (2 threads, machine shared; onnxruntime
~2-3 ms): the stack fused into the product's loops 594 ms (no GEMM template); stack materialized as one
kernel 20-27 ms (nested selects over the offsets); sum of 9 flat matmuls 8.8 ms; sum of 9 per-row matmuls
on views of the padded input 7.9 ms; parts materialized then flattened 9.3 ms; row im2col (kept) 5.4-6.2 ms,
of which the GEMM alone (64x576x3136) is ~5.5 ms.

ConvTranspose is a convolution of the stride-dilated input (zeros between its elements) with the
flipped, transposed weight. Padding uses concatenation with constant blocks (negative pads crop).
"""
from __future__ import annotations

import itertools

import numpy as np

from ..registry import converter
from .common import dtype_of


# -- shared helpers (also used by pool.py and resize.py) ------------------------------------------------

def const_block(x, shape, value):
    """An array of `shape` filled with `value` (a number or a traced scalar) in x's dtype."""
    dt = dtype_of(x)
    if isinstance(value, (int, float, np.number, bool, np.bool_)) or isinstance(value, np.ndarray):
        return np.full(shape, np.asarray(value).reshape(()), dtype=dt)
    return np.zeros(shape, dtype=dt) + np.reshape(value, ()).astype(dt)


def crop_pad(x, axes, begin, end, value=0):
    """x padded with `value` by begin[i]/end[i] elements on axes[i] (negative amounts crop)."""
    for ax, b, e in zip(axes, begin, end):
        n = np.shape(x)[ax]
        if b < 0 or e < 0:
            lo, hi = max(-b, 0), n - max(-e, 0)
            if hi < lo:
                raise ValueError(f"pads crop more than the {n} elements of axis {ax}")
            idx = [slice(None)] * np.ndim(x)
            idx[ax] = slice(lo, hi)
            x = x[tuple(idx)]
            b, e = max(b, 0), max(e, 0)
        if b or e:
            shape = list(np.shape(x))
            parts = []
            if b:
                shape[ax] = b
                parts.append(const_block(x, tuple(shape), value))
            parts.append(x)
            if e:
                shape[ax] = e
                parts.append(const_block(x, tuple(shape), value))
            x = np.concatenate(parts, axis=ax)
    return x


def window_params(ctx, in_sizes, kernel, *, strides_default=None):
    """(strides, dilations, pads_begin, pads_end) of a windowed op over spatial sizes `in_sizes`, with
    auto_pad resolved (SAME_UPPER/SAME_LOWER pad so that out = ceil(in / stride); VALID pads nothing)."""
    n = len(in_sizes)
    strides = list(ctx.attr("strides", strides_default or [1] * n))
    dil = list(ctx.attr("dilations", [1] * n))
    pads = list(ctx.attr("pads", [0] * (2 * n)))
    if len(strides) != n or len(dil) != n or len(pads) != 2 * n or len(kernel) != n:
        raise ctx.error(f"strides {strides}, dilations {dil}, pads {pads} and kernel {list(kernel)} do not fit "
                        f"{n} spatial dimensions")
    if any(s < 1 for s in strides) or any(d < 1 for d in dil):
        raise ctx.error(f"strides {strides} and dilations {dil} must be positive")
    auto = ctx.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * n)
        for i in range(n):
            out = -(-in_sizes[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - in_sizes[i])
            small = total // 2
            pads[i], pads[i + n] = (small, total - small) if auto == "SAME_UPPER" else (total - small, small)
    elif auto == "VALID":
        pads = [0] * (2 * n)
    elif auto != "NOTSET":
        raise ctx.unsupported(f"auto_pad '{auto}'")
    return strides, dil, pads[:n], pads[n:]


def offset_slices(xp, first_axis, kernel, strides, dil, out):
    """For each kernel offset (row-major), the strided slice of `xp` that the offset sees, (..., *out)."""
    nd = np.ndim(xp)
    for offs in itertools.product(*(range(k) for k in kernel)):
        idx = [slice(None)] * nd
        for i, o in enumerate(offs):
            start = o * dil[i]
            idx[first_axis + i] = slice(start, start + (out[i] - 1) * strides[i] + 1, strides[i])
        yield offs, xp[tuple(idx)]


def shifted_slices(x, first_axis, kernel, strides, dil, out, pb, value=0):
    """Like `offset_slices` of x padded by `pb` at the front (and as needed at the end) with `value`, but
    each offset's slice is cut from x itself and only its own border is filled: no padded copy of x is
    made, and every slice reads the input buffer directly (a fused consumer computes its borders)."""
    nd = np.ndim(x)
    S = np.shape(x)[first_axis:first_axis + len(kernel)]
    for offs in itertools.product(*(range(k) for k in kernel)):
        key, lo, hi = [slice(None)] * nd, [], []
        empty = False
        for i, o in enumerate(offs):
            s, off = strides[i], o * dil[i] - pb[i]  # output position p reads input index p * s + off
            first = -(off // s) if off < 0 else 0  # first p with p * s + off >= 0: ceil(-off / s)
            last = min(out[i], (S[i] - 1 - off) // s + 1) if S[i] - 1 - off >= 0 else 0  # end of the valid p
            if last <= first:
                empty = True
                break
            q0 = first * s + off
            key[first_axis + i] = slice(q0, q0 + (last - first - 1) * s + 1, s)
            lo.append(first)
            hi.append(out[i] - last)
        if empty:
            shape = list(np.shape(x))
            shape[first_axis:first_axis + len(out)] = out
            yield offs, const_block(x, tuple(shape), value)
            continue
        yield offs, crop_pad(x[tuple(key)], list(range(first_axis, first_axis + len(out))), lo, hi, value)


# an output row at least this wide gets one GEMM per row (the columns are then plain strided copies);
# narrower outputs flatten the spatial dimensions into the GEMM's columns (measured: row GEMMs win from
# 28 columns up on 3x3 convs, flat ones at 14 and below)
ROW_MIN = 24


def _row_layout_input(x, limit: int = 256) -> bool:
    """Whether traced x is a row-layout conv's output moved to NCHW (a transpose over a matmul, perhaps
    under its bias, activation and residual work): a 1x1 conv reading it then takes the row layout too, so
    that the two moves cancel instead of costing a copy; any other input (a depthwise conv's fused output,
    say) is read flat, one GEMM over H*W columns, its producer writing NCHW."""
    node = getattr(x, "node", None)
    stack, seen = [node] if node is not None else [], set()
    while stack and len(seen) < limit:
        n = stack.pop()
        if id(n) in seen or n.op in ("input", "const", "matmul", "reduce", "cumsum", "slice", "concat", "gather"):
            continue
        seen.add(id(n))
        if n.op == "transpose":
            return True
        stack.extend(n.inputs)
    return False


def _gemm_conv(x, w, b, *, group, strides, dil, pb, pe, out):
    """Conv as GEMMs: the kernel offsets' strided slices of the padded input stacked offset-major (im2col),
    times the weight viewed as (group, Mg, nk*Cg). Wide outputs are laid out by rows, (N, group, *out[:-1],
    nk*Cg, OW), one GEMM per output row, so each part is a copy of plain strided rows and the product comes
    out as (..., Mg, OW), moved to NCHW by its consumer; narrow ones flatten the spatial dims (N, group, nk*Cg, P)."""
    xs, ws = np.shape(x), np.shape(w)
    N, M, Cg, K = xs[0], ws[0], ws[1], ws[2:]
    ns, Mg = len(out), ws[0] // group
    nk = int(np.prod(K, dtype=np.int64))
    P = int(np.prod(out, dtype=np.int64))
    padded = any(pb) or any(pe)
    wm = np.reshape(np.swapaxes(np.reshape(w, (group, Mg, Cg, nk)), 2, 3), (group, Mg, nk * Cg))
    # 1x1: the input is already the columns (unless it is a fused expression over shifted slices, below)
    if nk == 1 and not padded and all(s == 1 for s in strides) and not (
            ns > 1 and out[-1] >= ROW_MIN and _row_layout_input(x)):
        y = np.matmul(wm, np.reshape(x, (N, group, Cg, P)))
        if b is not None:  # in the product's own shape: the GEMM's epilogue
            y = y + np.reshape(b, (group, Mg, 1))
        return np.reshape(y, (N, M) + tuple(out))
    row = ns > 1 and out[-1] >= ROW_MIN
    parts = []
    # strided, few offsets: each part fills its own border (measured faster than a padded copy of the input,
    # which costs a full pass for an output s^2 times smaller); else one padded copy that every part reads
    if any(s > 1 for s in strides) and nk <= 9:
        slices = shifted_slices(x, 2, K, strides, dil, out, pb)
    else:
        slices = offset_slices(crop_pad(x, list(range(2, 2 + ns)), pb, pe, 0), 2, K, strides, dil, out)
    for _, sl in slices:
        v = np.reshape(sl, (N, group, Cg) + tuple(out))
        if row:
            v = np.moveaxis(v, 2, -2)  # (N, group, *out[:-1], Cg, OW)
        parts.append(v if row else np.reshape(v, (N, group, Cg, P)))
    cols = np.concatenate(parts, axis=-2) if len(parts) > 1 else parts[0]
    if row:
        y = np.matmul(np.reshape(wm, (group,) + (1,) * (ns - 1) + (Mg, nk * Cg)), cols)
        if b is not None:
            y = y + np.reshape(b, (group,) + (1,) * (ns - 1) + (Mg, 1))
        y = np.moveaxis(y, -2, 2)  # (N, group, Mg, *out)
    else:
        y = np.matmul(wm, cols)
        if b is not None:
            y = y + np.reshape(b, (group, Mg, 1))
    return np.reshape(y, (N, M) + tuple(out))


def _depthwise_conv(x, w, *, group, strides, dil, pb, pe, out):
    """One input channel per group (channel multiplier Mg): a sum over kernel offsets of shifted slices of
    the padded input times per-channel weights, elementwise work that fuses into one kernel."""
    xs, ws = np.shape(x), np.shape(w)
    N, M, K = xs[0], ws[0], ws[2:]
    ns, Mg = len(out), M // group
    nk = int(np.prod(K, dtype=np.int64))
    wk = np.reshape(w, (group, Mg, nk))
    y = None
    if all(s == 1 for s in strides):  # one padded copy, read by every offset (cheaper than 9 borders each)
        slices = offset_slices(crop_pad(x, list(range(2, 2 + ns)), pb, pe, 0), 2, K, strides, dil, out)
    else:  # strided: the output is smaller than the input, and each slice fills its own border
        slices = shifted_slices(x, 2, K, strides, dil, out, pb)
    for j, (_, sl) in enumerate(slices):
        term = np.reshape(sl, (N, group, 1) + tuple(out)) * np.reshape(wk[:, :, j], (group, Mg) + (1,) * ns)
        y = term if y is None else y + term
    return np.reshape(y, (N, M) + tuple(out))


def conv_nd(ctx, x, w, b=None, *, group=1, strides, dil, pb, pe):
    """ONNX Conv on x (N, C, *S) with w (M, C/group, *K) and explicit padding (see the module docstring)."""
    xs, ws = np.shape(x), np.shape(w)
    C, S = xs[1], xs[2:]
    M, Cg, K = ws[0], ws[1], ws[2:]
    ns = len(S)
    if len(ws) != len(xs) or group < 1 or C % group or M % group or C // group != Cg:
        raise ctx.error(f"input {list(xs)}, weight {list(ws)} and group {group} do not fit")
    padded = [S[i] + pb[i] + pe[i] for i in range(ns)]
    out = [(padded[i] - (K[i] - 1) * dil[i] - 1) // strides[i] + 1 for i in range(ns)]
    if any(o < 1 for o in out):
        raise ctx.error(f"the kernel {list(K)} (dilations {dil}) is larger than the padded input {padded}")
    # end padding past the last window is never read: drop it (a stride-2 SAME conv reads one row less)
    pe = [min(pe[i], (out[i] - 1) * strides[i] + (K[i] - 1) * dil[i] + 1 - S[i] - pb[i]) for i in range(ns)]
    dt = dtype_of(x)
    if dtype_of(w) != dt:
        w = w.astype(dt)
    kw = dict(group=group, strides=strides, dil=dil, pb=pb, pe=pe, out=out)
    nk = int(np.prod(K, dtype=np.int64))
    if b is not None and dtype_of(b) != dt:
        b = b.astype(dt)
    if Cg > 1 or nk == 1:
        return _gemm_conv(x, w, b, **kw)  # (adds the bias to the product before it is reshaped: an epilogue)
    y = _depthwise_conv(x, w, **kw)
    return y if b is None else y + np.reshape(b, (M,) + (1,) * ns)


def _kernel(ctx, w):
    ks = list(ctx.attr("kernel_shape", np.shape(w)[2:]))
    if tuple(ks) != tuple(np.shape(w)[2:]):
        raise ctx.error(f"kernel_shape {ks} does not match the weight's shape {list(np.shape(w))}")
    return ks


@converter("Conv")
def conv(ctx, x, w, b=None):
    if np.ndim(x) < 3:
        raise ctx.error(f"Conv needs an input of rank 3 or more (N, C, spatial...), got shape {list(np.shape(x))}")
    K = _kernel(ctx, w)
    strides, dil, pb, pe = window_params(ctx, np.shape(x)[2:], K)
    return conv_nd(ctx, x, w, b, group=ctx.attr("group", 1), strides=strides, dil=dil, pb=pb, pe=pe)


# -- ConvTranspose -----------------------------------------------------------------------------------------

def _dilate(x, axes, strides):
    """Zeros inserted between the elements of x along `axes` (stride s: s - 1 zeros between neighbors)."""
    for ax, s in zip(axes, strides):
        if s == 1:
            continue
        shape = list(np.shape(x))
        n = shape[ax]
        xe = np.expand_dims(x, ax + 1)
        zshape = shape[:ax + 1] + [s - 1] + shape[ax + 1:]
        z = np.concatenate([xe, const_block(x, tuple(zshape), 0)], axis=ax + 1)
        shape[ax] = n * s
        x = np.reshape(z, tuple(shape))
        idx = [slice(None)] * len(shape)
        idx[ax] = slice(0, (n - 1) * s + 1)
        x = x[tuple(idx)]
    return x


@converter("ConvTranspose")
def conv_transpose(ctx, x, w, b=None):
    xs, ws = np.shape(x), np.shape(w)
    if len(xs) < 3:
        raise ctx.error(f"ConvTranspose needs an input of rank 3 or more, got shape {list(xs)}")
    S, K = xs[2:], _kernel(ctx, w)
    ns = len(S)
    group = ctx.attr("group", 1)
    C, Mg = ws[0], ws[1]
    if C != xs[1] or C % group:
        raise ctx.error(f"input with {xs[1]} channels, weight {list(ws)} and group {group} do not fit")
    strides = list(ctx.attr("strides", [1] * ns))
    dil = list(ctx.attr("dilations", [1] * ns))
    opad = list(ctx.attr("output_padding", [0] * ns))
    pads = list(ctx.attr("pads", [0] * (2 * ns)))
    out_shape = ctx.attr("output_shape", None)
    auto = ctx.attr("auto_pad", "NOTSET")
    full = [strides[i] * (S[i] - 1) + opad[i] + (K[i] - 1) * dil[i] + 1 for i in range(ns)]
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        if out_shape is not None:
            out_shape = list(out_shape)[-ns:]
        else:
            out_shape = [S[i] * strides[i] for i in range(ns)]
        total = [full[i] - out_shape[i] for i in range(ns)]
        if auto == "SAME_UPPER":
            pads = [t // 2 for t in total] + [t - t // 2 for t in total]
        else:
            pads = [t - t // 2 for t in total] + [t // 2 for t in total]
    elif auto == "VALID":
        pads = [0] * (2 * ns)
    elif auto != "NOTSET":
        raise ctx.unsupported(f"auto_pad '{auto}'")
    pb, pe = pads[:ns], pads[ns:]
    Cg = C // group
    # the equivalent convolution's weight: (group*Mg, Cg, *K), kernel flipped
    wt = np.reshape(w, (group, Cg, Mg) + tuple(K))
    wt = np.swapaxes(wt, 1, 2)
    wt = wt[(slice(None),) * 3 + (slice(None, None, -1),) * ns]
    wt = np.reshape(wt, (group * Mg, Cg) + tuple(K))
    xd = _dilate(x, list(range(2, 2 + ns)), strides)
    cb = [(K[i] - 1) * dil[i] - pb[i] for i in range(ns)]
    ce = [(K[i] - 1) * dil[i] - pe[i] + opad[i] for i in range(ns)]
    return conv_nd(ctx, xd, wt, b, group=group, strides=[1] * ns, dil=dil, pb=cb, pe=ce)
