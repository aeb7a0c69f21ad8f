"""The Mimi model: offline encode/decode (chunked, bounded memory) and the stream factories."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import math
from collections.abc import Iterator
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from .config import MimiConfig
from .errors import AudioError, CodesError, MimiError
from .layers.conv import CausalConv1d, DepthwiseUpsample
from .layers.linear import per_clip_matmuls
from .layers.quantizer import build_quantizer
from .layers.seanet import SEANetDecoder, SEANetEncoder
from .layers.transformer import Transformer

# Offline input is processed in chunks of frames: long files run in bounded memory and each chunk's graph is
# evaluated once. The chunk is what the transformers see in one call; the SEANets run inside it in tiles
# (below), so the chunk size no longer sets their working set. On a CPU, 128 frames (256 transformer steps):
# its matmuls read each layer's weights once per 256 rows instead of once per 64 (OpenBLAS packs the weight
# again in every call), and the attention runs in query blocks (layers.transformer) so it does no more work than
# in 64-step chunks. Encoder transformer over 512 steps, AMD EPYC, in-process A/B: chunks of 32 frames 460 ms,
# 64: 400, 128: 382 (1.2x), 256: 375; the same bits. A GPU wants fewer, larger dispatches.
# Chosen by the device at each call; ``chunk_frames=`` overrides it.
CPU_CHUNK_FRAMES = 128
GPU_CHUNK_FRAMES = 256
# At most this many clip-frames are in flight in one offline pass: a large batch runs as several passes of
# whole clips. Per-clip matmuls (layers.linear) make the split invisible in the results. On a CPU a clip's
# matmuls gain nothing from company and bigger passes only leave the cache: 16 clips of 1-20 s encoded at
# 9.5x real time with 32 (about one clip-chunk), 8.1x with 64, 6.3x with 256, 9.3x one clip at a time
# (AMD EPYC); a GPU wants the batch.
CPU_FRAMES_PER_PASS = 32
GPU_FRAMES_PER_PASS = 1024
# Within a chunk, the SEANets run in tiles of this many frames (their causal state carries from tile to tile,
# as in streaming, so the result is the same computation row by row). On a CPU a 32-frame chunk's 24 kHz
# activations (8-16 MB each, several live at once) spill out of the caches; 8-frame tiles keep them near L2/L3:
# AMD EPYC, one 32-frame chunk, SEANet decoder 320 -> 207 ms, encoder 251 -> 205 ms (tiles of 16: 207/218,
# of 4: 330/267), outputs bit-identical here. A GPU wants the whole chunk in one dispatch: no tiles.
CPU_SEANET_TILE_FRAMES = 8
# ... but only their high-rate stages: the encoder's last stage(s) and the decoder's first ones have small
# activations and large weights (32 MB for the 512 <-> 1024 strided convs), read once per tile. Those run in
# tiles of ``CPU_LOW_RATE_TILE_FRAMES`` (32 frames: their activations stay ~3 MB in a 128-frame chunk).
# Measured on the AMD EPYC, one 32-frame chunk: see the README's profile.
CPU_WHOLE_CHUNK_STAGES = 2
CPU_LOW_RATE_TILE_FRAMES = 32
# encode_batch/decode_batch group clips so that padding adds at most this share of computed frames.
PAD_WASTE = 0.25
# 2-D input whose second axis is at most this long, and shorter than the first, is (samples, channels).
MAX_CHANNELS_GUESS = 16


def default_chunk_frames() -> int:
    return CPU_CHUNK_FRAMES if mx.default_device() == mx.cpu else GPU_CHUNK_FRAMES


def max_frames_per_pass() -> int:
    return CPU_FRAMES_PER_PASS if mx.default_device() == mx.cpu else GPU_FRAMES_PER_PASS


def seanet_tile_frames(low_rate: bool = False) -> int | None:
    """Frames per SEANet tile on this device (None: the whole chunk); ``low_rate``: for the stages next to the
    transformer (``CPU_WHOLE_CHUNK_STAGES``)."""
    if mx.default_device() != mx.cpu:
        return None
    return CPU_LOW_RATE_TILE_FRAMES if low_rate else CPU_SEANET_TILE_FRAMES


# On a CPU, offline passes evaluate the graph at a few points inside each chunk instead of once: the encoder after
# each SEANet tile, the decoder after its transformer. In-process A/B on the AMD EPYC, 10 s, 12 rounds, against
# one evaluation per 32-frame chunk: encode with 128-frame chunks and these points 1.11-1.15x (one evaluation per
# 128-frame chunk: 1.03-1.04x), decode 1.04-1.14x (evaluating the decoder's tiles too: 1.01-1.03x, so it does
# not). The same bits: an evaluation point changes when work runs, not what it computes. A per-thread flag (as
# ``per_clip_matmuls``) set only around the offline loops: compiled streaming steps never evaluate inside.
_OFFLINE = contextvars.ContextVar("mlx_mimi_offline_pass", default=False)


@contextlib.contextmanager
def offline_pass() -> Iterator[None]:
    """Within this block (in this thread), chunk functions evaluate their graph at their evaluation points, on a
    CPU device (a GPU runs each chunk as one graph: measured only on the CPU, and every sync idles a GPU)."""
    token = _OFFLINE.set(mx.default_device() == mx.cpu)
    try:
        yield
    finally:
        _OFFLINE.reset(token)


def in_tiles(
    layer,
    x: mx.array,
    state,
    steps_per_frame: int,
    final: bool = False,
    valid: mx.array | None = None,
    span: tuple[int, int | None] | None = None,
    low_rate: bool = False,
    eval_each: bool = False,
):
    """``layer(x, state[, final, valid, span])`` (a SEANet, or the layers ``span`` of it) over x (B, T, C) in tiles
    of ``seanet_tile_frames(low_rate)`` frames of ``steps_per_frame`` steps, the state carried from tile to tile.
    ``final`` goes to the last tile; ``valid`` (B,) steps of each clip is split per tile and the layer's valid output
    steps are summed (tiles are whole frames, so each tile's ceil(valid / stride) adds up to the chunk's)."""
    frames = seanet_tile_frames(low_rate)
    size = x.shape[1] if frames is None else frames * steps_per_frame
    starts = list(range(0, x.shape[1], size)) or [0]
    outs, counts = [], []
    for start in starts:
        kw = {} if span is None else {"span": span}
        if final:
            kw["final"] = start == starts[-1]
        if valid is not None:
            kw["valid"] = mx.clip(valid - start, 0, size)
        out = layer(x[:, start : start + size], state, **kw)
        if eval_each:
            mx.eval(out)
        outs.append(out[0])
        state = out[1]
        if valid is not None:
            counts.append(out[2])
    y = mx.concatenate(outs, axis=1) if len(outs) > 1 else outs[0]
    if valid is None:
        return y, state
    return y, state, sum(counts[1:], counts[0])


def check_sample_dtype(dtype) -> None:
    """Raise AudioError unless ``dtype`` (NumPy or MLX) is floating point."""
    floating = mx.issubdtype(dtype, mx.floating) if isinstance(dtype, mx.Dtype) else np.issubdtype(dtype, np.floating)
    if not floating:
        raise AudioError(
            f"audio must be floating point, got dtype {dtype} (integer PCM: pcm.astype(np.float32) / 32768)"
        )


def check_samples(arr: np.ndarray | mx.array) -> None:
    """Raise AudioError unless the audio is floating point with only finite samples (shape not checked).

    Any finite value is accepted: samples beyond [-1, 1] are encoded as given, not clipped, as the references
    (transformers, moshi) encode them."""
    check_sample_dtype(arr.dtype)
    finite = mx.all(mx.isfinite(arr)).item() if isinstance(arr, mx.array) else np.isfinite(arr).all()
    if not finite:
        raise AudioError("audio contains NaN or infinite samples")


class Mimi(nn.Module):
    def __init__(self, config: MimiConfig, dtype: mx.Dtype = mx.float32):
        super().__init__()
        self.config = config
        self.dtype = dtype
        stride = config.downsample_stride
        d = config.hidden_size
        if config.has_encoder:
            self.encoder = SEANetEncoder(config)
            self.encoder_transformer = Transformer(config.transformer)
            self.downsample = CausalConv1d(d, d, 2 * stride, stride=stride, bias=False, pad_mode="replicate")
        self.quantizer = build_quantizer(config)
        if config.has_decoder:
            self.upsample = DepthwiseUpsample(d, stride)
            self.decoder_transformer = Transformer(config.transformer)
            self.decoder = SEANetDecoder(config)

    # -- facts ------------------------------------------------------------------------------------------
    @property
    def frame_size(self) -> int:
        return self.config.frame_size

    @property
    def sample_rate(self) -> int:
        return self.config.sampling_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate_hz

    @property
    def num_codebooks(self) -> int:
        return self.config.num_quantizers

    @property
    def decoder_delay(self) -> int:
        """Samples a stream decoder's output runs behind ``decode``'s (0: Mimi's stream is offline's)."""
        return 0

    def codebooks_fingerprint(self) -> str:
        """16 hex digits naming what a code means: a hash of the quantizer's codebooks and projections (a sample of
        every seventh value, names and shapes included). Every dtype and quantization of one checkpoint shares it
        (the quantizer stays float32); codes decode correctly only with a model of the same fingerprint."""
        digest = hashlib.sha256()
        for name, value in sorted(tree_flatten(self.quantizer.parameters())):
            if name.startswith("bridge."):  # training only: it never changes a code
                continue
            digest.update(f"{name}{tuple(value.shape)}".encode())
            digest.update(np.array(value.astype(mx.float32).reshape(-1)[::7]).tobytes())
        return digest.hexdigest()[:16]

    # -- state-passing cores (shared by offline and streaming) ------------------------------------------
    def encoder_state(self, batch_size: int) -> dict[str, Any]:
        self._need("encoder")
        return {
            "seanet": self.encoder.initial_state(batch_size, self.dtype),
            "transformer": self.encoder_transformer.initial_state(batch_size, self.dtype),
            "downsample": self.downsample.initial_state(batch_size, self.dtype),
        }

    def decoder_state(self, batch_size: int) -> dict[str, Any]:
        self._need("decoder")
        return {
            "upsample": self.upsample.initial_state(batch_size, self.dtype),
            "transformer": self.decoder_transformer.initial_state(batch_size, self.dtype),
            "seanet": self.decoder.initial_state(batch_size, self.dtype),
        }

    def latent_chunk(
        self, pcm: mx.array, state: dict, final: bool = False, valid: mx.array | None = None
    ) -> tuple[mx.array, dict]:
        """pcm (B, T, 1) -> the quantizer's input latent (B, F, hidden). T is a multiple of the frame size
        unless ``final``. ``valid`` (B,) int: samples of each clip of a right-padded batch in this chunk."""
        pcm = pcm.astype(self.dtype)
        tiles = {"low_rate": True, "eval_each": _OFFLINE.get()}
        out = in_tiles(self._encoder_seanet, pcm, state["seanet"], self.frame_size, final, valid, **tiles)
        x, seanet = out[0], out[1]
        valid = out[2] if valid is not None else None
        fresh = state["transformer"]["pos"] == 0
        x, transformer = self.encoder_transformer(x, state["transformer"])
        x, down = self.downsample(x, state["downsample"], fresh=fresh, final=final, valid=valid)
        return x, {"seanet": seanet, "transformer": transformer, "downsample": down}

    def _encoder_seanet(self, pcm: mx.array, state: list, final: bool = False, valid: mx.array | None = None):
        """The SEANet encoder over one low-rate tile: its high-rate stages in their own smaller tiles, then the
        last ``CPU_WHOLE_CHUNK_STAGES`` stages once (depth first: each tile's activations are used while cached)."""
        tail = self.encoder.tail_start(CPU_WHOLE_CHUNK_STAGES)
        out = in_tiles(self.encoder, pcm, state, self.frame_size, final, valid, (0, tail), eval_each=_OFFLINE.get())
        return self.encoder(out[0], out[1], final=final, valid=out[2] if valid is not None else None, span=(tail, None))

    def _decoder_seanet(self, x: mx.array, state: list) -> tuple[mx.array, list]:
        """The SEANet decoder over one low-rate tile: its first ``CPU_WHOLE_CHUNK_STAGES`` stages once, then the
        high-rate stages in their own smaller tiles."""
        head = self.decoder.head_end(CPU_WHOLE_CHUNK_STAGES)
        x, state = self.decoder(x, state, span=(0, head))
        rate = math.prod(self.config.upsampling_ratios[:CPU_WHOLE_CHUNK_STAGES])
        return in_tiles(self.decoder, x, state, self.config.downsample_stride * rate, span=(head, None))

    def encode_chunk(
        self, pcm: mx.array, state: dict, num_codebooks: int, final: bool = False
    ) -> tuple[mx.array, dict]:
        """pcm (B, T, 1) -> codes (B, F, K) uint32. T is a multiple of the frame size unless ``final``."""
        latent, state = self.latent_chunk(pcm, state, final=final)
        return self.quantizer.encode(latent, num_codebooks), state

    def decode_chunk(self, codes: mx.array, state: dict) -> tuple[mx.array, dict]:
        """codes (B, F, K) -> pcm (B, F * frame_size, 1) in the model dtype."""
        latent = self.quantizer.decode(codes).astype(self.dtype)
        x, up = self.upsample(latent, state["upsample"])
        x, transformer = self.decoder_transformer(x, state["transformer"])
        if _OFFLINE.get():
            mx.eval(x, transformer)
        stride = self.config.downsample_stride
        pcm, seanet = in_tiles(self._decoder_seanet, x, state["seanet"], stride, low_rate=True)
        return pcm, {"upsample": up, "transformer": transformer, "seanet": seanet}

    # -- offline API ------------------------------------------------------------------------------------
    def encode(self, pcm: Any, num_codebooks: int | None = None, chunk_frames: int | None = None) -> mx.array:
        """Audio at 24 kHz, (T,), (B, T) or (B, 1, T) float -> codes (B, K, ceil(T / 1920)) int32.

        Evaluated before returning. Each clip's codes are those it gets alone (see the README's determinism
        contract): the batch runs in passes of whole clips, with per-clip matmul shapes.
        """
        self._need("encoder")
        k = self.check_num_codebooks(num_codebooks)
        pcm = self.check_audio(pcm)
        chunk = self._check_chunk_frames(chunk_frames)

        codes = self._in_passes(pcm, chunk, lambda clips: self._run_encoder(clips, chunk, self._codes_fn(k)))
        return codes.transpose(0, 2, 1).astype(mx.int32)

    def _codes_fn(self, k: int):
        def chunk_codes(x: mx.array, state: dict, final: bool, valid: mx.array | None = None):
            latent, state = self.latent_chunk(x, state, final=final, valid=valid)
            return self.quantizer.encode_compiled(latent, k), state

        return chunk_codes

    def encode_batch(
        self, clips: Any, num_codebooks: int | None = None, chunk_frames: int | None = None
    ) -> list[mx.array]:
        """Clips of any lengths, a sequence of (T_i,) float arrays at 24 kHz -> codes, a list of (K, F_i) int32
        with F_i = ceil(T_i / 1920), in the order given.

        The clips run right-padded in batched passes (similar lengths together, memory bounded), and every
        strided layer pads each clip's partial last frame as the reference pads that clip alone, so each
        clip gets the codes ``encode`` gives it alone (under the README's determinism contract).
        """
        self._need("encoder")
        k = self.check_num_codebooks(num_codebooks)
        chunk = self._check_chunk_frames(chunk_frames)
        pcms = self.check_clips(clips)
        frames = [-(-len(p) // self.frame_size) for p in pcms]
        out: list[mx.array | None] = [None] * len(pcms)
        for group in self._clip_groups(frames, chunk):
            lengths = [len(pcms[i]) for i in group]
            batch = np.zeros((len(group), max(lengths)), np.float32)
            for row, i in enumerate(group):
                batch[row, : lengths[row]] = pcms[i]
            pcm = mx.array(batch)[:, :, None]
            codes = self._run_encoder(pcm, chunk, self._codes_fn(k), lengths=lengths)
            codes = codes.transpose(0, 2, 1).astype(mx.int32)
            for row, i in enumerate(group):
                out[i] = codes[row, :, : frames[i]]
        return out

    def decode_batch(self, codes: Any, chunk_frames: int | None = None) -> list[mx.array]:
        """A sequence of (K, F_i) integer codes (same K) -> audio, a list of (F_i * 1920,) float32 in the order
        given. Clips run right-padded in batched passes; the decoder is causal, so padding never reaches a
        clip's own frames."""
        self._need("decoder")
        chunk = self._check_chunk_frames(chunk_frames)
        arrays = self.check_clip_codes(codes)
        frames = [a.shape[1] for a in arrays]
        out: list[mx.array | None] = [None] * len(arrays)
        for group in self._clip_groups(frames, chunk):
            batch = np.zeros((len(group), arrays[group[0]].shape[0], max(frames[i] for i in group)), np.int64)
            for row, i in enumerate(group):
                batch[row, :, : frames[i]] = arrays[i]
            audio = self.decode(batch, chunk_frames=chunk)
            for row, i in enumerate(group):
                out[i] = self._clip_audio(audio[row, 0], frames[i])
        return out

    def _clip_audio(self, audio: mx.array, frames: int) -> mx.array:
        """One clip's audio from a right-padded batch's ``decode`` row."""
        return audio[: frames * self.frame_size]

    @staticmethod
    def _clip_groups(frames: list[int], chunk: int) -> list[list[int]]:
        """Indices of clips in passes of similar lengths (shortest first): at most max_frames_per_pass() padded
        clip-frames in flight per chunk, and at most PAD_WASTE more frames computed than the clips hold.
        Deterministic for given lengths."""
        order = sorted(range(len(frames)), key=lambda i: (frames[i], i))
        groups: list[list[int]] = []
        total = 0
        for i in order:
            if groups:
                group = groups[-1]
                in_flight = (len(group) + 1) * min(frames[i], chunk)  # sorted: frames[i] is the longest yet
                padded = (len(group) + 1) * frames[i]
                if in_flight <= max_frames_per_pass() and padded <= (1 + PAD_WASTE) * (total + frames[i]):
                    group.append(i)
                    total += frames[i]
                    continue
            groups.append([i])
            total = frames[i]
        return groups

    def encode_latent(self, pcm: Any, chunk_frames: int | None = None) -> mx.array:
        """The quantizer's input: (B, ceil(T / 1920), hidden) float32, the latent every code is searched from."""
        self._need("encoder")
        pcm = self.check_audio(pcm)
        chunk = self._check_chunk_frames(chunk_frames)

        def run(clips: mx.array) -> mx.array:
            return self._run_encoder(clips, chunk, lambda x, s, final: self.latent_chunk(x, s, final=final))

        return self._in_passes(pcm, chunk, run).astype(mx.float32)

    def _run_encoder(self, pcm: mx.array, chunk: int, fn, lengths: list[int] | None = None) -> mx.array:
        """pcm (B, T, 1) through ``fn(x, state, final[, valid])`` chunk by chunk, from a fresh state.

        ``lengths``: each clip's own length in a right-padded batch (None: all are T long).
        """
        t = pcm.shape[1]
        step = chunk * self.frame_size
        state = self.encoder_state(pcm.shape[0])
        ends = None if lengths is None or min(lengths) == t else np.asarray(lengths)
        out = []
        with per_clip_matmuls(), offline_pass():
            for start in range(0, t, step):
                final = start + step >= t
                inside = None if ends is None else np.clip(ends - start, 0, step)
                if inside is None or not ((inside > 0) & (inside < min(step, t - start))).any():
                    y, state = fn(pcm[:, start : start + step], state, final)  # no clip ends inside this chunk
                else:
                    y, state = fn(pcm[:, start : start + step], state, final, mx.array(inside.astype(np.int32)))
                mx.eval(y, state)
                out.append(y)
        return mx.concatenate(out, axis=1) if len(out) > 1 else out[0]

    def decode(self, codes: Any, chunk_frames: int | None = None) -> mx.array:
        """Codes (B, K, F) int -> float32 audio (B, 1, F * 1920), evaluated before returning."""
        self._need("decoder")
        codes = self.check_codes(codes)  # (B, F, K)
        chunk = self._check_chunk_frames(chunk_frames)

        def run(clips: mx.array) -> mx.array:
            state = self.decoder_state(clips.shape[0])
            out = []
            with per_clip_matmuls(), offline_pass():
                for start in range(0, clips.shape[1], chunk):
                    pcm, state = self.decode_chunk(clips[:, start : start + chunk], state)
                    pcm = pcm.astype(mx.float32)
                    mx.eval(pcm, state)
                    out.append(pcm)
            return mx.concatenate(out, axis=1) if len(out) > 1 else out[0]

        pcm = self._in_passes(codes, chunk, run)
        return pcm.reshape(codes.shape[0], 1, -1)

    def _in_passes(self, batch: mx.array, chunk: int, run) -> mx.array:
        """``run`` over groups of whole clips, at most max_frames_per_pass() clip-frames per chunk: bounded
        memory for any batch size."""
        group = max(1, max(max_frames_per_pass(), chunk) // chunk)
        if batch.shape[0] <= group:
            return run(batch)
        parts = [run(batch[i : i + group]) for i in range(0, batch.shape[0], group)]
        return mx.concatenate(parts, axis=0)

    @staticmethod
    def _check_chunk_frames(chunk_frames: Any) -> int:
        if chunk_frames is None:
            return default_chunk_frames()
        if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, (int, np.integer)) or chunk_frames < 1:
            raise MimiError(f"chunk_frames must be a positive int, got {chunk_frames!r}")
        return int(chunk_frames)

    # -- streaming API ----------------------------------------------------------------------------------
    def stream_encoder(self, batch_size: int = 1, num_codebooks: int | None = None):
        from .streaming import StreamEncoder

        return StreamEncoder(self, batch_size, num_codebooks)

    def stream_decoder(self, batch_size: int = 1):
        from .streaming import StreamDecoder

        return StreamDecoder(self, batch_size)

    # -- input checks -----------------------------------------------------------------------------------
    def _need(self, half: str) -> None:
        if not hasattr(self, half):
            what = "encode" if half == "encoder" else "decode"
            raise MimiError(f"this model was loaded without its {half} and cannot {what}")

    def check_num_codebooks(self, num_codebooks: int | None) -> int:
        if num_codebooks is None:
            return self.num_codebooks
        if isinstance(num_codebooks, bool) or not isinstance(num_codebooks, (int, np.integer)):
            raise MimiError(f"num_codebooks must be an int, got {type(num_codebooks).__name__}")
        low = self.config.num_semantic_quantizers
        if not low <= num_codebooks <= self.num_codebooks:
            raise MimiError(f"num_codebooks must be in [{low}, {self.num_codebooks}], got {num_codebooks}")
        return int(num_codebooks)

    def check_audio(self, pcm: Any) -> mx.array:
        """-> (B, T, 1) float array; raises MimiError on wrong rank, dtype, emptiness or non-finite values."""
        arr = pcm if isinstance(pcm, mx.array) else np.asarray(pcm)
        check_samples(arr)
        shape = tuple(arr.shape)
        if len(shape) == 1:
            shape = (1, shape[0])
        elif len(shape) == 3:
            if shape[1] != 1:
                raise AudioError(f"audio of shape {tuple(arr.shape)} is not mono: expected (B, 1, T)")
            shape = (shape[0], shape[2])
        elif len(shape) != 2:
            raise AudioError(f"audio must have shape (T,), (B, T) or (B, 1, T), got {tuple(arr.shape)}")
        elif shape[1] <= MAX_CHANNELS_GUESS and shape[0] > shape[1]:
            raise AudioError(
                f"audio of shape {shape} looks like (samples, channels), as soundfile returns it; mlx-mimi takes "
                "(T,) mono samples or (B, T) clips: pass pcm[:, 0] or pcm.mean(axis=1)"
            )
        if shape[0] == 0 or shape[1] == 0:
            raise AudioError(f"audio is empty (shape {tuple(arr.shape)})")
        if isinstance(arr, np.ndarray):
            arr = mx.array(arr.astype(np.float32, copy=False))
        return arr.reshape(shape[0], shape[1], 1)

    def check_clips(self, clips: Any) -> list[np.ndarray]:
        """A sequence of (T,) float clips -> float32 numpy arrays; MimiError naming the first bad clip."""
        if isinstance(clips, (np.ndarray, mx.array)) or not hasattr(clips, "__len__"):
            raise AudioError("clips must be a list of (T,) arrays (for one (B, T) array of equal lengths, use encode)")
        if len(clips) == 0:
            raise AudioError("no clips given")
        out = []
        for i, clip in enumerate(clips):
            arr = np.array(clip.astype(mx.float32)) if isinstance(clip, mx.array) else np.asarray(clip)
            if arr.ndim == 2 and arr.shape[0] == 1:
                arr = arr[0]
            try:
                if arr.ndim != 1:
                    raise AudioError(f"audio must have shape (T,), got {arr.shape}")
                check_samples(arr)
                if arr.size == 0:
                    raise AudioError("audio is empty")
            except MimiError as exc:
                raise type(exc)(f"clip {i}: {exc}") from None
            out.append(arr.astype(np.float32, copy=False))
        return out

    def check_clip_codes(self, codes: Any) -> list[np.ndarray]:
        """A sequence of (K, F_i) integer codes with the same K -> numpy arrays; MimiError naming the bad one."""
        if isinstance(codes, (np.ndarray, mx.array)) or not hasattr(codes, "__len__") or len(codes) == 0:
            raise CodesError("codes must be a non-empty list of (K, F) arrays")
        out = []
        for i, c in enumerate(codes):
            arr = np.array(c) if isinstance(c, mx.array) else np.asarray(c)
            try:
                if arr.ndim != 2:
                    raise CodesError(f"codes must have shape (K, F), got {arr.shape}")
                self.check_codes(arr[None])
                if out and arr.shape[0] != out[0].shape[0]:
                    raise CodesError(f"{arr.shape[0]} codebooks where clip 0 has {out[0].shape[0]}")
            except MimiError as exc:
                raise type(exc)(f"clip {i}: {exc}") from None
            out.append(arr)
        return out

    def check_codes(self, codes: Any, allow_empty: bool = False, validate_values: bool = True) -> mx.array:
        """(B, K, F) integer codes -> (B, F, K) uint32; raises MimiError on anything else.

        ``validate_values=False`` skips the range check of MLX arrays (a host sync); the caller must then
        check in the graph (the stream decoder does).
        """
        arr = codes if isinstance(codes, mx.array) else np.asarray(codes)
        is_int = (
            mx.issubdtype(arr.dtype, mx.integer) if isinstance(arr, mx.array) else np.issubdtype(arr.dtype, np.integer)
        )
        if not is_int:
            raise CodesError(f"codes must be integers, got dtype {arr.dtype}")
        if arr.ndim != 3:
            raise CodesError(f"codes must have shape (B, K, F), got {tuple(arr.shape)}")
        b, k, f = arr.shape
        if not self.config.num_semantic_quantizers <= k <= self.num_codebooks:
            raise CodesError(
                f"codes have {k} codebooks; this model decodes "
                f"{self.config.num_semantic_quantizers} to {self.num_codebooks}"
            )
        if b == 0 or (f == 0 and not allow_empty):
            raise CodesError(f"codes are empty (shape {tuple(arr.shape)})")
        size = self.config.codebook_size
        if isinstance(arr, np.ndarray):
            if f and (arr.min() < 0 or arr.max() >= size):
                raise CodesError(f"codes out of range: values must be in [0, {size}), got [{arr.min()}, {arr.max()}]")
            arr = mx.array(arr.astype(np.int64))
        elif f and validate_values:
            low, high = mx.min(arr).item(), mx.max(arr).item()
            if low < 0 or high >= size:
                raise CodesError(f"codes out of range: values must be in [0, {size}), got [{low}, {high}]")
        return arr.transpose(0, 2, 1).astype(mx.uint32)
