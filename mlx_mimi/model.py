"""The Mimi model: offline encode/decode (chunked, bounded memory) and the stream factories."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .config import MimiConfig
from .layers.conv import CausalConv1d, DepthwiseUpsample
from .layers.quantizer import SplitResidualVQ
from .layers.seanet import SEANetDecoder, SEANetEncoder, run_on_two_streams
from .layers.transformer import Transformer

# Offline input is processed in chunks of this many frames (2.6 s): long files run in bounded memory, each
# chunk's graph is evaluated once, and activations stay cache-sized (on the CPU backend an elementwise pass
# is ~5x faster in cache than from memory; measured best between 16 and 64 frames).
DEFAULT_CHUNK_FRAMES = 32


class MimiError(ValueError):
    """Bad input to the model: wrong shape, dtype, values or configuration."""


def check_samples(arr: np.ndarray | mx.array) -> None:
    """Raise MimiError unless the audio is floating point with only finite samples (shape not checked)."""
    if isinstance(arr, mx.array):
        if not mx.issubdtype(arr.dtype, mx.floating):
            raise MimiError(f"audio must be floating point in [-1, 1], got dtype {arr.dtype}")
        finite = mx.all(mx.isfinite(arr)).item()
    else:
        if not np.issubdtype(arr.dtype, np.floating):
            raise MimiError(f"audio must be floating point in [-1, 1], got dtype {arr.dtype}")
        finite = np.isfinite(arr).all()
    if not finite:
        raise MimiError("audio contains NaN or infinite samples")


class Mimi(nn.Module):
    def __init__(self, config: MimiConfig, dtype: mx.Dtype = mx.float32):
        super().__init__()
        self.config = config
        self.dtype = dtype
        stride = config.downsample_stride
        d = config.hidden_size
        if config.has_encoder:
            self.encoder = SEANetEncoder(config)
            self.encoder_transformer = Transformer(config)
            self.downsample = CausalConv1d(d, d, 2 * stride, stride=stride, bias=False, pad_mode="replicate")
            # The second-stream half of an offline SEANet pass starts this early (layers.seanet.run_on_two_streams):
            # the encoder's receptive field rounded up to whole frames, so every kept output is exact.
            field = self.encoder.receptive_field
            self.encoder_halo = -(-field // config.frame_size) * config.frame_size
        self.quantizer = SplitResidualVQ(config)
        if config.has_decoder:
            self.upsample = DepthwiseUpsample(d, stride)
            self.decoder_transformer = Transformer(config)
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

    def encode_chunk(
        self, pcm: mx.array, state: dict, num_codebooks: int, final: bool = False
    ) -> tuple[mx.array, dict]:
        """pcm (B, T, 1) -> codes (B, F, K) uint32. T is a multiple of the frame size unless ``final``."""
        x, seanet = run_on_two_streams(
            self.encoder,
            pcm.astype(self.dtype),
            state["seanet"],
            self.encoder_halo,
            self.frame_size,
            1 / self.config.hop_length,
            final=final,
        )
        fresh = state["transformer"]["pos"] == 0
        x, transformer = self.encoder_transformer(x, state["transformer"])
        x, down = self.downsample(x, state["downsample"], fresh=fresh, final=final)
        codes = self.quantizer.encode(x, num_codebooks)
        return codes, {"seanet": seanet, "transformer": transformer, "downsample": down}

    def decode_chunk(self, codes: mx.array, state: dict) -> tuple[mx.array, dict]:
        """codes (B, F, K) -> pcm (B, F * frame_size, 1) in the model dtype."""
        latent = self.quantizer.decode(codes).astype(self.dtype)
        x, up = self.upsample(latent, state["upsample"])
        x, transformer = self.decoder_transformer(x, state["transformer"])
        # (no two-stream split here: measured slower end to end for the decoder on the CPU backend)
        pcm, seanet = self.decoder(x, state["seanet"])
        return pcm, {"upsample": up, "transformer": transformer, "seanet": seanet}

    # -- offline API ------------------------------------------------------------------------------------
    def encode(self, pcm: Any, num_codebooks: int | None = None, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> mx.array:
        """Audio at 24 kHz, (T,), (B, T) or (B, 1, T) float -> codes (B, K, ceil(T / 1920)) int32."""
        self._need("encoder")
        k = self.check_num_codebooks(num_codebooks)
        pcm = self.check_audio(pcm)
        b, t = pcm.shape[0], pcm.shape[1]
        step = max(1, int(chunk_frames)) * self.frame_size
        state = self.encoder_state(b)
        out = []
        for start in range(0, t, step):
            final = start + step >= t
            codes, state = self.encode_chunk(pcm[:, start : start + step], state, k, final=final)
            mx.eval(codes, state)
            out.append(codes)
        codes = mx.concatenate(out, axis=1) if len(out) > 1 else out[0]
        return codes.transpose(0, 2, 1).astype(mx.int32)

    def decode(self, codes: Any, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> mx.array:
        """Codes (B, K, F) int -> float32 audio (B, 1, F * 1920)."""
        self._need("decoder")
        codes = self.check_codes(codes)  # (B, F, K)
        b, f = codes.shape[0], codes.shape[1]
        step = max(1, int(chunk_frames))
        state = self.decoder_state(b)
        out = []
        for start in range(0, f, step):
            pcm, state = self.decode_chunk(codes[:, start : start + step], state)
            pcm = pcm.astype(mx.float32)
            mx.eval(pcm, state)
            out.append(pcm)
        pcm = mx.concatenate(out, axis=1) if len(out) > 1 else out[0]
        return pcm.reshape(b, 1, -1)

    # -- streaming API ----------------------------------------------------------------------------------
    def stream_encoder(self, batch_size: int = 1, num_codebooks: int | None = None):
        from .streaming import StreamEncoder

        return StreamEncoder(self, batch_size, self.check_num_codebooks(num_codebooks))

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
                raise MimiError(f"audio of shape {tuple(arr.shape)} is not mono: expected (B, 1, T)")
            shape = (shape[0], shape[2])
        elif len(shape) != 2:
            raise MimiError(f"audio must have shape (T,), (B, T) or (B, 1, T), got {tuple(arr.shape)}")
        if shape[0] == 0 or shape[1] == 0:
            raise MimiError(f"audio is empty (shape {tuple(arr.shape)})")
        if isinstance(arr, np.ndarray):
            arr = mx.array(arr.astype(np.float32, copy=False))
        return arr.reshape(shape[0], shape[1], 1)

    def check_codes(self, codes: Any, allow_empty: bool = False) -> mx.array:
        """(B, K, F) integer codes -> (B, F, K) uint32; raises MimiError on anything else."""
        arr = codes if isinstance(codes, mx.array) else np.asarray(codes)
        is_int = (
            mx.issubdtype(arr.dtype, mx.integer) if isinstance(arr, mx.array) else np.issubdtype(arr.dtype, np.integer)
        )
        if not is_int:
            raise MimiError(f"codes must be integers, got dtype {arr.dtype}")
        if arr.ndim != 3:
            raise MimiError(f"codes must have shape (B, K, F), got {tuple(arr.shape)}")
        b, k, f = arr.shape
        if not self.config.num_semantic_quantizers <= k <= self.num_codebooks:
            raise MimiError(
                f"codes have {k} codebooks; this model decodes "
                f"{self.config.num_semantic_quantizers} to {self.num_codebooks}"
            )
        if b == 0 or (f == 0 and not allow_empty):
            raise MimiError(f"codes are empty (shape {tuple(arr.shape)})")
        size = self.config.codebook_size
        if isinstance(arr, np.ndarray):
            if f and (arr.min() < 0 or arr.max() >= size):
                raise MimiError(f"codes out of range: values must be in [0, {size}), got [{arr.min()}, {arr.max()}]")
            arr = mx.array(arr.astype(np.int64))
        elif f:
            low, high = mx.min(arr).item(), mx.max(arr).item()
            if low < 0 or high >= size:
                raise MimiError(f"codes out of range: values must be in [0, {size}), got [{low}, {high}]")
        return arr.transpose(0, 2, 1).astype(mx.uint32)
