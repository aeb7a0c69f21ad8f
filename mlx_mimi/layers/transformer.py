"""The codec transformers: pre-norm layers, RoPE, causal attention over a sliding window; Mimi's LayerNorm and
LayerScale or JODIO's RMSNorm and final norm, as a ``TransformerConfig`` says.

Attention state is a fixed-size cache of the ``sliding_window - 1`` keys and values before the current
call (the window is the current step and the 249 before it, transformers' semantics), plus the absolute
position of the next step for RoPE. A call with L new steps attends over ``cache + L`` keys with an
in-graph mask, then keeps the last ``window - 1``: the same code serves a 2-step streaming frame and a
1000-step offline chunk, and memory never grows with the stream.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from ..config import TransformerConfig
from ..schedule import Schedule
from .activations import gelu, masked_softmax, silu
from .linear import Dense


def rope_table(pos: mx.array, steps: int, head_dim: int, base: float) -> tuple[mx.array, mx.array]:
    """cos and sin (B, 1, steps, head_dim / 2) of the angles of positions pos .. pos + steps - 1 of each row
    (``pos`` (B,)), to broadcast over the heads: MLX's own formula
    (its CPU fallback's float32 ops in its order), so that ``rotate_half`` matches ``mx.fast.rope`` bit for bit."""
    half = head_dim // 2
    positions = mx.arange(steps, dtype=mx.float32) + pos[:, None, None]  # (B, 1, steps)
    inv_freqs = mx.exp(mx.arange(0, -half, -1, dtype=mx.float32) * mx.array(math.log(base) / half, mx.float32))
    theta = positions[..., None] * inv_freqs
    return mx.cos(theta), mx.sin(theta)


def rotate_half(x: mx.array, cos: mx.array, sin: mx.array) -> mx.array:
    """Non-traditional RoPE of x (..., steps, head_dim) by a ``rope_table``. Not compiled: fused, a compiler
    may contract ``a * b - c * d`` into an FMA and round differently from MLX's separate ops (compiled, it
    was no faster)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return mx.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def interleaved_to_rotate_half(w, num_heads: int):
    """Reorder q or k projection rows (out, in) from interleaved RoPE pairs (Kyutai's layout) to rotate-half
    halves (transformers' layout, which ``Attention`` uses). NumPy or MLX arrays."""
    out_dim, in_dim = w.shape
    head_dim = out_dim // num_heads
    return w.reshape(num_heads, head_dim // 2, 2, in_dim).transpose(0, 2, 1, 3).reshape(out_dim, in_dim)


class Attention(nn.Module):
    """Multi-head self-attention; ``qkv`` stacks q|k|v with q/k in the rotate-half RoPE layout."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.rope = config.rope
        self.rope_theta = config.rope_theta
        self.scale = self.head_dim**-0.5
        inner = self.num_heads * self.head_dim
        self.qkv = Dense(config.hidden_size, 3 * inner, bias=config.bias)
        self.out = Dense(inner, config.hidden_size, bias=config.bias)

    def __call__(
        self,
        x: mx.array,
        keys: mx.array,
        values: mx.array,
        pos: mx.array,
        mask: mx.array,
        schedule: Schedule,
        table: tuple[mx.array, mx.array] | None = None,
    ) -> tuple[mx.array, mx.array, mx.array]:
        """``table``: the call's ``rope_table`` (``schedule.shared_rope``); None: ``mx.fast.rope`` at ``pos``."""
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.rope and table is not None:
            qk = rotate_half(qkv[:2], *table)
            q, k = qk[0], qk[1]
        elif self.rope:
            q = mx.fast.rope(q, self.head_dim, traditional=False, base=self.rope_theta, scale=1.0, offset=pos)
            k = mx.fast.rope(k, self.head_dim, traditional=False, base=self.rope_theta, scale=1.0, offset=pos)
        context = keys.shape[2]
        keys = mx.concatenate([keys, k], axis=2)
        values = mx.concatenate([values, v], axis=2)
        block = schedule.attention_block
        if block is None or n <= block:
            h = self._attend(q, keys, values, mask, schedule)
        else:  # block i's queries reach keys i .. i + block + context (schedule.py, attention_block)
            spans = [(i, i + block, i + block + context) for i in range(0, n, block)]
            parts = [
                self._attend(q[:, :, i:j], keys[:, :, i:r], values[:, :, i:r], mask[..., i:j, i:r], schedule)
                for i, j, r in spans
            ]
            h = mx.concatenate(parts, axis=2)
        h = h.transpose(0, 2, 1, 3).reshape(b, n, -1)
        return self.out(h), keys[:, :, -context:], values[:, :, -context:]

    def _attend(self, q: mx.array, keys: mx.array, values: mx.array, mask: mx.array, schedule: Schedule) -> mx.array:
        if schedule.fast_math and q.shape[2] > schedule.min_steps_own_softmax:
            # the same product as MLX's CPU attention (scale q, q k^T, softmax, times v), with a faster exp
            weights = masked_softmax((q * self.scale) @ keys.swapaxes(-1, -2), mask, fast=True)
            return weights @ values
        return mx.fast.scaled_dot_product_attention(q, keys, values, scale=self.scale, mask=mask)


class MLP(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.fc1 = Dense(config.hidden_size, config.intermediate_size)
        self.fc2 = Dense(config.intermediate_size, config.hidden_size)
        self.gelu = config.activation == "gelu"

    def __call__(self, x: mx.array, fast: bool = False) -> mx.array:
        h = self.fc1(x)
        return self.fc2(gelu(h, fast) if self.gelu else silu(h))


def norm_layer(config: TransformerConfig) -> nn.Module:
    if config.norm == "rms_norm":
        return nn.RMSNorm(config.hidden_size, eps=config.norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps)


class TransformerLayer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        d = config.hidden_size
        self.attn_norm = norm_layer(config)
        self.attn = Attention(config)
        self.mlp_norm = norm_layer(config)
        self.mlp = MLP(config)
        if config.layer_scale is not None:
            self.attn_scale = mx.full((d,), config.layer_scale)
            self.mlp_scale = mx.full((d,), config.layer_scale)

    def __call__(self, x, keys, values, pos, mask, schedule: Schedule, table=None):
        h, keys, values = self.attn(self.attn_norm(x), keys, values, pos, mask, schedule, table)
        x = x + (self.attn_scale * h if "attn_scale" in self else h)
        h = self.mlp(self.mlp_norm(x), schedule.fast_math)
        x = x + (self.mlp_scale * h if "mlp_scale" in self else h)
        return x, keys, values


def window_mask(pos: mx.array, steps: int, context: int) -> mx.array:
    """(B, 1, steps, context + steps) bool: in row b, query i (position pos[b] + i) may see key j in the window.

    Keys are the ``context`` cached steps (positions pos - context ...) then the new steps. A key is
    visible if it is not in the future, at most ``context`` steps back, and not before the stream start.
    """
    pos = pos[:, None, None, None]
    q_pos = pos + mx.arange(steps)[:, None]
    k_pos = pos - context + mx.arange(context + steps)[None, :]
    delta = q_pos - k_pos
    return (delta >= 0) & (delta <= context) & (k_pos >= 0)


class Transformer(nn.Module):
    """(B, L, d) -> (B, L, d); a final norm where the config has one (JODIO; Mimi has none)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.context = config.window - 1
        self.layers = [TransformerLayer(config) for _ in range(config.num_layers)]
        if config.final_norm:
            self.norm = norm_layer(config)
        self._heads = config.num_heads
        self._head_dim = config.head_dim
        self._rope = config.rope
        self._rope_theta = config.rope_theta

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> dict:
        shape = (batch_size, self._heads, self.context, self._head_dim)
        return {
            "pos": mx.zeros((batch_size,), dtype=mx.int32),  # per row: a row's stream can restart alone
            "keys": [mx.zeros(shape, dtype=dtype) for _ in self.layers],
            "values": [mx.zeros(shape, dtype=dtype) for _ in self.layers],
        }

    def __call__(self, x: mx.array, state: dict, schedule: Schedule) -> tuple[mx.array, dict]:
        pos = state["pos"]
        mask = window_mask(pos, x.shape[1], self.context)
        table = None
        if self._rope and schedule.shared_rope:
            table = rope_table(pos, x.shape[1], self._head_dim, self._rope_theta)
        new_keys, new_values = [], []
        for layer, k, v in zip(self.layers, state["keys"], state["values"], strict=True):
            x, k, v = layer(x, k, v, pos, mask, schedule, table)
            new_keys.append(k)
            new_values.append(v)
        if "norm" in self:
            x = self.norm(x)
        return x, {"pos": pos + x.shape[1], "keys": new_keys, "values": new_values}
