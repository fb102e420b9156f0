"""np.einsum as transposes, reductions and batched matmuls (pairwise, left to right); pure dot products as
a product and a row sum."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError, UnsupportedError
from .numpy_api import matmul
from .shapes import reshape, transpose
from .trace import user_frame


def _parse(subscripts: str, n: int):
    s = subscripts.replace(" ", "")
    if "." in s:
        raise UnsupportedError("np.einsum with '...' is not supported yet", where=user_frame())
    if "->" in s:
        lhs, out = s.split("->")
    else:
        lhs = s
        letters = lhs.replace(",", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    ins = lhs.split(",")
    if len(ins) != n:
        raise ShapeError(f"np.einsum: {len(ins)} operand subscripts for {n} operands", where=user_frame())
    return ins, out


def _reduce_to(x, spec: str, keep: set):
    """Sum out letters of one operand that no one else needs; reject repeated letters (diagonals)."""
    if len(set(spec)) != len(spec):
        raise UnsupportedError(f"np.einsum: repeated subscript in '{spec}' (diagonals) is not supported",
                               where=user_frame())
    drop = [i for i, c in enumerate(spec) if c not in keep]
    if drop:
        x = np.sum(x, axis=tuple(drop))
        spec = "".join(c for c in spec if c in keep)
    return x, spec


def _contract(a, sa: str, b, sb: str, keep: set):
    batch = [c for c in sa if c in sb and c in keep]
    contr = [c for c in sa if c in sb and c not in keep]
    fa = [c for c in sa if c not in sb]
    fb = [c for c in sb if c not in sa]
    size = {c: a.shape[i] for i, c in enumerate(sa)}
    for i, c in enumerate(sb):
        if c in size and size[c] != b.shape[i]:
            raise ShapeError(f"np.einsum: size of '{c}' differs between operands ({size[c]} vs {b.shape[i]})",
                             where=user_frame())
        size[c] = b.shape[i]
    prod = lambda cs: int(np.prod([size[c] for c in cs], dtype=np.int64))
    if not fa and not fb and a.dtype.kind in "iuf" and b.dtype.kind in "iuf":
        # dot products only ('ij,ij->i', 'i,i->'): a product and a row sum, where a batch of 1x1 matmuls
        # would pay the GEMM template's setup for every single output
        at = reshape(transpose(a, [sa.index(c) for c in batch + contr]), (prod(batch), prod(contr)))
        bt = reshape(transpose(b, [sb.index(c) for c in batch + contr]), (prod(batch), prod(contr)))
        p = at * bt
        r = np.sum(p, axis=-1, dtype=p.dtype)  # matmul's dtype: no promotion of small integers
        return reshape(r, tuple(size[c] for c in batch)), "".join(batch)
    at = transpose(a, [sa.index(c) for c in batch + fa + contr])
    bt = transpose(b, [sb.index(c) for c in batch + contr + fb])
    at = reshape(at, (prod(batch), prod(fa), prod(contr)))
    bt = reshape(bt, (prod(batch), prod(contr), prod(fb)))
    r = matmul(at, bt)
    spec = "".join(batch + fa + fb)
    return reshape(r, tuple(size[c] for c in spec)), spec


def einsum(subscripts: str, operands: list):
    ins, out = _parse(subscripts, len(operands))
    for x, s in zip(operands, ins):
        if x.ndim != len(s):
            raise ShapeError(f"np.einsum: operand with shape {x.shape} does not match subscripts '{s}'",
                             where=user_frame())
    ops_ = list(zip(operands, ins))
    x, s = ops_[0]
    rest = "".join(t for _, t in ops_[1:])
    x, s = _reduce_to(x, s, set(out) | set(rest))
    for i, (y, t) in enumerate(ops_[1:], start=1):
        later = "".join(u for _, u in ops_[i + 1:])
        y, t = _reduce_to(y, t, set(out) | set(s) | set(later))
        x, s = _contract(x, s, y, t, set(out) | set(later))
    x, s = _reduce_to(x, s, set(out))
    if set(s) != set(out):
        raise ShapeError(f"np.einsum: output subscript '{out}' names letters not in the inputs", where=user_frame())
    return transpose(x, [s.index(c) for c in out]) if s != out else x
