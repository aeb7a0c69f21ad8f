"""The codec base: offline encode/decode (chunked, bounded memory), batches of clips, input checks, stream
factories and the codebooks fingerprint, written once for every codec.

A codec (Mimi, JODIO) supplies its layers and four state-passing cores; everything else is here:

- ``encoder_state(batch_size)`` and ``latent_chunk(pcm, state, schedule, final[, valid])``: audio (B, T, 1) ->
  the quantizer's input latent (B, F, dim), T a whole number of frames unless ``final`` (the stream's last call).
  A codec whose strided layers must pad each clip of a right-padded batch by its own rule sets ``PADS_PER_CLIP``
  and takes ``valid`` (B,): each clip's samples in the chunk.
- ``decoder_state(batch_size)`` and ``decode_latent_chunk(latent, state, schedule)``: the quantizer's latent
  (B, F, dim) float32 -> audio (B, F * frame_size, 1) (``decode_chunk`` puts the quantizer in front).
- ``quantizer``: ``encode(latent, k)``, ``encode_compiled(latent, k)``, ``decode(codes)``.

Offline and streaming run the same cores: offline over chunks of ``schedule.chunk_frames`` frames, a stream one
frame per unrolled step of a compiled function (streaming.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from . import checks
from .audio import resample
from .config import CodecConfig
from .errors import AudioError, MimiError
from .layers.linear import per_clip_matmuls
from .schedule import Schedule, for_device
from .streaming import StreamDecoder, StreamEncoder

# encode_batch/decode_batch group clips so that padding adds at most this share of computed frames.
PAD_WASTE = 0.25


def _resampled_length(samples: int, rate: int, target: int) -> int:
    """How many samples ``samples`` at ``rate`` become at ``target`` (soxr's whole-clip resampling)."""
    return samples if rate == target else len(resample(np.zeros(samples, np.float32), rate, target))


class Codec(nn.Module):
    """Offline and streaming encode/decode around a codec's cores (see the module docstring).

    ``schedule``: None (the default) follows MLX's default device at each call (schedule.py); a ``Schedule``
    pins one, e.g. to run the GPU schedule on the CPU.
    """

    PADS_PER_CLIP = False
    # the top-level layers of each half (an encoder-only model has none of DECODER_PARTS, and so on)
    ENCODER_PARTS: tuple[str, ...] = ()
    DECODER_PARTS: tuple[str, ...] = ()

    def __init__(self, config: CodecConfig, dtype: mx.Dtype = mx.float32):
        super().__init__()
        self.config = config
        self.dtype = dtype
        self.schedule: Schedule | None = None

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
    def latent_dim(self) -> int:
        """Width of the latent the codebooks quantize (512 for Mimi)."""
        return self.config.quantizer.dim

    @property
    def decoder_delay(self) -> int:
        """Samples a stream decoder's output runs behind ``decode``'s (0 unless the codec says otherwise)."""
        return 0

    @classmethod
    def dropped_prefixes(cls, encoder: bool, decoder: bool) -> tuple[str, ...]:
        """Name prefixes of the parameters a model without its encoder and/or decoder does not have."""
        dropped = () if encoder else tuple(f"{part}." for part in cls.ENCODER_PARTS)
        return dropped + (() if decoder else tuple(f"{part}." for part in cls.DECODER_PARTS))

    def current_schedule(self) -> Schedule:
        return self.schedule if self.schedule is not None else for_device()

    def describe(self) -> list[str]:
        """Lines for ``mimi info``: the architecture, codebooks and anything the user should know."""
        raise NotImplementedError

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

    # -- the cores (subclasses) -------------------------------------------------------------------------
    def encoder_state(self, batch_size: int) -> Any:
        raise NotImplementedError

    def decoder_state(self, batch_size: int) -> Any:
        raise NotImplementedError

    def latent_chunk(self, pcm: mx.array, state: Any, schedule: Schedule, final: bool = False, valid=None):
        raise NotImplementedError

    def decode_latent_chunk(self, latent: mx.array, state: Any, schedule: Schedule) -> tuple[mx.array, Any]:
        raise NotImplementedError

    def decode_chunk(self, codes: mx.array, state: Any, schedule: Schedule) -> tuple[mx.array, Any]:
        """codes (B, F, K) -> audio (B, F * frame_size, 1): the quantizer's latent through ``decode_latent_chunk``."""
        return self.decode_latent_chunk(self.quantizer.decode(codes), state, schedule)

    def encode_chunk(
        self, pcm: mx.array, state: Any, num_codebooks: int, schedule: Schedule, final: bool = False
    ) -> tuple[mx.array, Any]:
        """pcm (B, T, 1) -> codes (B, F, K) uint32. T is a whole number of frames unless ``final``."""
        latent, state = self.latent_chunk(pcm, state, schedule, final=final)
        return self.quantizer.encode(latent, num_codebooks), state

    def finish_decode(self, pcm: mx.array) -> mx.array:
        """Offline audio (B, 1, N) from the stream-aligned decoder output (identity unless the codec differs)."""
        return pcm

    def clip_audio(self, audio: mx.array, frames: int) -> mx.array:
        """One clip's audio from a right-padded batch's ``decode`` row."""
        return audio[: frames * self.frame_size]

    # -- offline API ------------------------------------------------------------------------------------
    def encode(
        self,
        pcm: Any,
        num_codebooks: int | None = None,
        chunk_frames: int | None = None,
        *,
        sample_rate: int | None = None,
        padding_mask: Any = None,
    ) -> mx.array:
        """Audio (T,), (B, T) or (B, 1, T) float -> codes (B, K, ceil(T / 1920)) int32, evaluated before returning.

        ``sample_rate``: the audio's rate, resampled to 24 kHz first (soxr, as the CLI does). ``padding_mask``
        (B, T), as transformers takes it: 1 for each clip's samples, then 0 for its right padding; every clip then
        gets the codes it gets alone, and ``frame_mask(padding_mask)`` says which frames are its own (later frames
        hold its padding's codes). Each clip's codes are those it gets alone (the README's determinism contract):
        the batch runs in passes of whole clips, with per-clip matmul shapes.
        """
        self._need("encoder")
        k = self.check_num_codebooks(num_codebooks)
        pcm, lengths = self._audio_in(pcm, sample_rate, padding_mask)
        schedule = self._offline_schedule(chunk_frames)
        run = lambda clips, ends: self._run_encoder(clips, schedule, self._codes_fn(k), ends)  # noqa: E731
        codes = self._in_passes(pcm, schedule, run, lengths)
        return codes.transpose(0, 2, 1).astype(mx.int32)

    def _audio_in(self, pcm: Any, sample_rate: int | None, padding_mask: Any) -> tuple[mx.array, list[int] | None]:
        """(B, T, 1) audio at the model's rate, and each clip's length where a padding mask gives them. Padding is
        set to zero (a clip alone is padded with zeros); resampled clips keep the resampled T (``frame_mask``'s)."""
        rate = checks.sample_rate(sample_rate, self.sample_rate)
        audio = checks.audio_batch(pcm)
        lengths = None if padding_mask is None else checks.padding_lengths(padding_mask, audio.shape[:2])
        if lengths is not None:
            keep = mx.arange(audio.shape[1])[None, :] < mx.array(lengths)[:, None]
            audio = mx.where(keep[:, :, None], audio, mx.zeros((1,), dtype=audio.dtype))
        if rate == self.sample_rate:
            return audio, lengths
        rows = np.array(audio[:, :, 0])
        clips = [
            resample(row if lengths is None else row[: lengths[i]], rate, self.sample_rate)
            for i, row in enumerate(rows)
        ]
        total = _resampled_length(rows.shape[1], rate, self.sample_rate)
        if min(len(c) for c in clips) == 0:
            raise AudioError(
                f"audio of {min(lengths or [rows.shape[1]])} samples at {rate} Hz is empty at {self.sample_rate} Hz"
            )
        out = np.zeros((len(clips), max(total, *(len(c) for c in clips))), np.float32)
        for i, clip in enumerate(clips):
            out[i, : len(clip)] = clip
        return mx.array(out)[:, :, None], None if lengths is None else [len(c) for c in clips]

    def frame_mask(self, padding_mask: Any, sample_rate: int | None = None) -> mx.array:
        """(B, T) padding mask of audio -> (B, F) bool: the frames of ``encode``'s codes that belong to each clip
        (frame f of a clip of n samples is its own while f < ceil(n / 1920))."""
        mask = np.asarray(padding_mask)
        lengths = checks.padding_lengths(mask, mask.shape)
        rate = checks.sample_rate(sample_rate, self.sample_rate)
        if rate != self.sample_rate:
            lengths = [_resampled_length(n, rate, self.sample_rate) for n in lengths]
        total = max(_resampled_length(mask.shape[1], rate, self.sample_rate), *lengths)
        frames = -(-total // self.frame_size)
        own = -(-np.asarray(lengths) // self.frame_size)
        return mx.array(np.arange(frames)[None, :] < own[:, None])

    def _codes_fn(self, k: int):
        def chunk_codes(x: mx.array, state: Any, schedule: Schedule, final: bool, valid: mx.array | None = None):
            latent, state = self._latent(x, state, schedule, final, valid)
            return self.quantizer.encode_compiled(latent, k), state

        return chunk_codes

    def _latent(self, x, state, schedule: Schedule, final: bool, valid: mx.array | None = None):
        if valid is None or not self.PADS_PER_CLIP:
            return self.latent_chunk(x, state, schedule, final=final)
        return self.latent_chunk(x, state, schedule, final=final, valid=valid)

    def encode_batch(
        self,
        clips: Any,
        num_codebooks: int | None = None,
        chunk_frames: int | None = None,
        *,
        sample_rate: int | None = None,
    ) -> list[mx.array]:
        """Clips of any lengths, a sequence of (T_i,) float arrays -> codes, a list of (K, F_i) int32 with
        F_i = ceil(T_i / 1920) (at 24 kHz), in the order given. ``sample_rate``: the clips' rate (resampled).

        The clips run right-padded in batched passes (similar lengths together, memory bounded), and every
        strided layer pads each clip's partial last frame as the reference pads that clip alone, so each
        clip gets the codes ``encode`` gives it alone (under the README's determinism contract).
        """
        self._need("encoder")
        k = self.check_num_codebooks(num_codebooks)
        schedule = self._offline_schedule(chunk_frames)
        pcms = checks.clip_list(clips)
        rate = checks.sample_rate(sample_rate, self.sample_rate)
        if rate != self.sample_rate:
            pcms = [resample(p, rate, self.sample_rate) for p in pcms]
            empty = next((i for i, p in enumerate(pcms) if not len(p)), None)
            if empty is not None:
                raise AudioError(f"clip {empty}: too short to leave a sample at {self.sample_rate} Hz")
        frames = [-(-len(p) // self.frame_size) for p in pcms]
        out: list[mx.array | None] = [None] * len(pcms)
        for group in self._clip_groups(frames, schedule):
            lengths = [len(pcms[i]) for i in group]
            batch = np.zeros((len(group), max(lengths)), np.float32)
            for row, i in enumerate(group):
                batch[row, : lengths[row]] = pcms[i]
            pcm = mx.array(batch)[:, :, None]
            codes = self._run_encoder(pcm, schedule, self._codes_fn(k), lengths=lengths)
            codes = codes.transpose(0, 2, 1).astype(mx.int32)
            for row, i in enumerate(group):
                out[i] = codes[row, :, : frames[i]]
        return out

    def decode_batch(self, codes: Any, chunk_frames: int | None = None) -> list[mx.array]:
        """A sequence of (K, F_i) integer codes (same K) -> audio, a list of (F_i * 1920,) float32 in the order
        given. Clips run right-padded in batched passes; the decoder is causal, so padding never reaches a
        clip's own frames."""
        self._need("decoder")
        schedule = self._offline_schedule(chunk_frames)
        arrays = checks.clip_codes(codes, *self._codebook_range(), self.config.codebook_size)
        frames = [a.shape[1] for a in arrays]
        out: list[mx.array | None] = [None] * len(arrays)
        for group in self._clip_groups(frames, schedule):
            batch = np.zeros((len(group), arrays[group[0]].shape[0], max(frames[i] for i in group)), np.int64)
            for row, i in enumerate(group):
                batch[row, :, : frames[i]] = arrays[i]
            audio = self._decode(self.check_codes(batch), schedule)
            for row, i in enumerate(group):
                out[i] = self.clip_audio(audio[row, 0], frames[i])
        return out

    @staticmethod
    def _clip_groups(frames: list[int], schedule: Schedule) -> list[list[int]]:
        """Indices of clips in passes of similar lengths (shortest first): at most ``schedule.frames_per_pass``
        padded clip-frames in flight per chunk, and at most PAD_WASTE more frames computed than the clips hold.
        Deterministic for given lengths."""
        order = sorted(range(len(frames)), key=lambda i: (frames[i], i))
        groups: list[list[int]] = []
        total = 0
        for i in order:
            if groups:
                group = groups[-1]
                in_flight = (len(group) + 1) * min(frames[i], schedule.chunk_frames)  # sorted: the longest yet
                padded = (len(group) + 1) * frames[i]
                if in_flight <= schedule.frames_per_pass and padded <= (1 + PAD_WASTE) * (total + frames[i]):
                    group.append(i)
                    total += frames[i]
                    continue
            groups.append([i])
            total = frames[i]
        return groups

    def encode_latent(
        self, pcm: Any, chunk_frames: int | None = None, *, sample_rate: int | None = None, padding_mask: Any = None
    ) -> mx.array:
        """The quantizer's input: (B, ceil(T / 1920), dim) float32, the latent every code is searched from."""
        self._need("encoder")
        pcm, lengths = self._audio_in(pcm, sample_rate, padding_mask)
        schedule = self._offline_schedule(chunk_frames)

        def latent_fn(x, state, sch, final, valid=None):
            return self._latent(x, state, sch, final, valid)

        run = lambda clips, ends: self._run_encoder(clips, schedule, latent_fn, ends)  # noqa: E731
        return self._in_passes(pcm, schedule, run, lengths).astype(mx.float32)

    def quantize(self, latent: Any, num_codebooks: int | None = None) -> mx.array:
        """A latent (B, F, dim) (``encode_latent``'s, or one a model predicted) -> codes (B, K, F) int32: the
        nearest codebook entries, as ``encode`` searches them. Evaluated."""
        k = self.check_num_codebooks(num_codebooks)
        latent = self._check_latent(latent)
        with per_clip_matmuls():  # a latent batched with others gets the codes it gets alone
            codes = self.quantizer.encode_compiled(latent, k).transpose(0, 2, 1).astype(mx.int32)
        mx.eval(codes)
        return codes

    def dequantize(self, codes: Any) -> mx.array:
        """Codes (B, K, F) -> the latent (B, F, dim) float32 they stand for (the sum of the codebooks' entries
        through the output projections): ``decode_latent(dequantize(c))`` is ``decode(c)``. Evaluated."""
        codes = self.check_codes(codes)
        with per_clip_matmuls():
            latent = self.quantizer.decode(codes)
        mx.eval(latent)
        return latent

    def decode_latent(self, latent: Any, chunk_frames: int | None = None, *, length: int | None = None) -> mx.array:
        """A latent (B, F, dim) (unquantized, or ``dequantize``'s) -> float32 audio (B, 1, F * 1920), or its first
        ``length`` samples. Evaluated."""
        self._need("decoder")
        latent = self._check_latent(latent)
        out = self._decode_latent(latent, self._offline_schedule(chunk_frames))
        return self._trim(out, length)

    def _check_latent(self, latent: Any) -> mx.array:
        return checks.latent(latent, self.latent_dim)

    def _run_encoder(self, pcm: mx.array, schedule: Schedule, fn, lengths: list[int] | None = None) -> mx.array:
        """pcm (B, T, 1) through ``fn(x, state, schedule, final[, valid])`` chunk by chunk, from a fresh state.

        ``lengths``: each clip's own length in a right-padded batch (None: all are T long).
        """
        t = pcm.shape[1]
        step = schedule.chunk_frames * self.frame_size
        state = self.encoder_state(pcm.shape[0])
        ends = None if lengths is None or min(lengths) == t else np.asarray(lengths)
        out = []
        with per_clip_matmuls():
            for start in range(0, t, step):
                final = start + step >= t
                inside = None if ends is None else np.clip(ends - start, 0, step)
                x = pcm[:, start : start + step]
                if inside is None or not ((inside > 0) & (inside < min(step, t - start))).any():
                    y, state = fn(x, state, schedule, final)  # no clip ends inside this chunk
                else:
                    y, state = fn(x, state, schedule, final, mx.array(inside.astype(np.int32)))
                mx.eval(y, state)
                out.append(y)
        return mx.concatenate(out, axis=1) if len(out) > 1 else out[0]

    def decode(
        self, codes: Any, chunk_frames: int | None = None, *, length: int | None = None, padding_mask: Any = None
    ) -> mx.array:
        """Codes (B, K, F) int -> float32 audio (B, 1, F * 1920), evaluated before returning. ``length``: keep the
        first ``length`` samples (a clip's own length); ``padding_mask`` (B, T), as transformers takes it: keep the
        mask's T samples."""
        self._need("decoder")
        out = self._decode(self.check_codes(codes), self._offline_schedule(chunk_frames))
        if padding_mask is not None:
            if length is not None:
                raise MimiError("give length or padding_mask, not both")
            mask = np.asarray(padding_mask)
            checks.padding_lengths(mask, (out.shape[0], mask.shape[-1] if mask.ndim == 2 else -1))
            length = min(mask.shape[-1], out.shape[-1])
        return self._trim(out, length)

    def _trim(self, audio: mx.array, length: Any) -> mx.array:
        if length is None:
            return audio
        n = checks.positive_int(length, "length")
        if n > audio.shape[-1]:
            raise MimiError(f"length {n} is longer than the {audio.shape[-1]} samples these frames decode to")
        return audio[..., :n]

    def _decode(self, codes: mx.array, schedule: Schedule) -> mx.array:
        """Checked codes (B, F, K) -> audio (B, 1, F * frame_size)."""
        with per_clip_matmuls():  # the output projections too: batched clips decode as they do alone
            latent = self.quantizer.decode(codes)
        return self._decode_latent(latent, schedule)

    def _decode_latent(self, latent: mx.array, schedule: Schedule) -> mx.array:
        chunk = schedule.chunk_frames

        def run(clips: mx.array, _ends=None) -> mx.array:
            state = self.decoder_state(clips.shape[0])
            out = []
            with per_clip_matmuls():
                for start in range(0, clips.shape[1], chunk):
                    pcm, state = self.decode_latent_chunk(clips[:, start : start + chunk], state, schedule)
                    pcm = pcm.astype(mx.float32)
                    mx.eval(pcm, state)
                    out.append(pcm)
            return mx.concatenate(out, axis=1) if len(out) > 1 else out[0]

        pcm = self._in_passes(latent, schedule, run)
        return self.finish_decode(pcm.reshape(latent.shape[0], 1, -1))

    @staticmethod
    def _in_passes(batch: mx.array, schedule: Schedule, run, lengths: list[int] | None = None) -> mx.array:
        """``run(clips, their lengths)`` over groups of whole clips, at most max(frames_per_pass, chunk) clip-frames
        per chunk: bounded memory for any batch size."""
        chunk = schedule.chunk_frames
        group = max(1, max(schedule.frames_per_pass, chunk) // chunk)
        if batch.shape[0] <= group:
            return run(batch, lengths)
        parts = [
            run(batch[i : i + group], None if lengths is None else lengths[i : i + group])
            for i in range(0, batch.shape[0], group)
        ]
        return mx.concatenate(parts, axis=0)

    def _offline_schedule(self, chunk_frames: Any) -> Schedule:
        schedule = self.current_schedule()
        if chunk_frames is None:
            return schedule
        return dataclasses.replace(schedule, chunk_frames=checks.positive_int(chunk_frames, "chunk_frames"))

    # -- streaming API ----------------------------------------------------------------------------------
    def stream_encoder(
        self,
        batch_size: int = 1,
        num_codebooks: int | None = None,
        *,
        latent: bool = False,
        sample_rate: int | None = None,
    ) -> StreamEncoder:
        """A stream of ``batch_size`` rows: audio in, codes (or, ``latent``, the latent) out (streaming.py)."""
        return StreamEncoder(self, batch_size, num_codebooks, latent=latent, sample_rate=sample_rate)

    def stream_decoder(self, batch_size: int = 1, *, latent: bool = False) -> StreamDecoder:
        """A stream of ``batch_size`` rows: codes (or, ``latent``, latents) in, audio out (streaming.py)."""
        return StreamDecoder(self, batch_size, latent=latent)

    # -- input checks -----------------------------------------------------------------------------------
    def _need(self, half: str) -> None:
        if not hasattr(self, half):
            what = "encode" if half == "encoder" else "decode"
            raise MimiError(f"this model was loaded without its {half} and cannot {what}")

    def _codebook_range(self) -> tuple[int, int]:
        return self.config.num_semantic_quantizers, self.num_codebooks

    def check_num_codebooks(self, num_codebooks: int | None) -> int:
        return checks.num_codebooks(num_codebooks, *self._codebook_range())

    def check_codes(self, codes: Any, allow_empty: bool = False, validate_values: bool = True) -> mx.array:
        """(B, K, F) integer codes -> (B, F, K) uint32; raises CodesError on anything else."""
        low, high = self._codebook_range()
        return checks.codes_array(codes, low, high, self.config.codebook_size, allow_empty, validate_values)
