"""Test helpers: real speech from espeak-ng, and random-but-realistic Mimi checkpoints in the real layouts.

The checkpoints are built with the references' own constructors (transformers' ``MimiModel`` and
``save_pretrained``; moshi's ``get_mimi`` loading the original-layout file), never with mlx-mimi code.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SR = 24_000
KYUTAI_FILE = "tokenizer-e351c8d8-checkpoint125.safetensors"
TEXT = (
    "The quick brown fox jumps over the lazy dog. Mimi turns speech into a few tokens per frame, "
    "and back into speech again. Streaming codecs must be causal, fast, and exact. "
    "She sells sea shells by the sea shore, while the rain in Spain stays mainly in the plain. "
)


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speech(seconds: float, seed: int = 0, voice: str = "en") -> np.ndarray:
    """At least ``seconds`` of espeak-ng speech at 24 kHz, float32 mono, cut to exactly that length."""
    import soundfile as sf
    import soxr

    rng = np.random.default_rng(seed)
    words = TEXT.split()
    pieces, total = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        while total < seconds * SR:
            text = " ".join(rng.permutation(words)[:30])
            wav = Path(tmp) / f"s{len(pieces)}.wav"
            speed = str(int(rng.integers(130, 190)))
            pitch = str(int(rng.integers(30, 70)))
            subprocess.run(["espeak-ng", "-v", voice, "-s", speed, "-p", pitch, "-w", str(wav), text], check=True)
            pcm, rate = sf.read(str(wav), dtype="float32")
            pcm = soxr.resample(pcm, rate, SR).astype(np.float32)
            pieces.append(pcm)
            total += len(pcm)
    out = np.concatenate(pieces)[: int(seconds * SR)]
    return (0.8 * out / max(1e-6, float(np.abs(out).max()))).astype(np.float32)


# -- random weights in the Hugging Face layout ------------------------------------------------------------
def random_hf_model(calibration_audio: np.ndarray, seed: int = 0, num_hidden_layers: int | None = None):
    """A full-architecture transformers MimiModel with random, non-degenerate weights.

    Transformer weights, norms and LayerScales are widened from the init so attention is peaked and the
    transformer matters; codebooks get random centroids at the scale of the projected latents of real
    speech (both references init them to zeros, which would make every code 0).
    """
    import torch
    from transformers import MimiConfig, MimiModel

    torch.manual_seed(seed)
    kwargs = {} if num_hidden_layers is None else {"num_hidden_layers": num_hidden_layers}
    model = MimiModel(MimiConfig(**kwargs)).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "_transformer." not in name:
                continue
            if name.endswith("layer_scale.scale"):
                p.copy_(torch.rand(p.shape, generator=gen) * 0.5 + 0.1)
            elif "layernorm.weight" in name:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif "layernorm.bias" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * (1.5 / math.sqrt(p.shape[1])))
        audio = torch.from_numpy(calibration_audio)[None, None]
        latents = model.encoder(audio).latents  # (1, 512, F)
        quantizer = model.quantizer
        for rvq in (
            quantizer.semantic_residual_vector_quantizer,
            quantizer.acoustic_residual_vector_quantizer,
        ):
            # Each level's centroids are drawn from a Gaussian fitted to that level's residuals on real
            # speech (where k-means would put them), so residuals shrink level by level as in a real RVQ.
            residual = rvq.input_proj(latents)[0].T.double()  # (F, 256)
            for layer in rvq.layers:
                mean, cov = residual.mean(0), torch.cov(residual.T)
                cov = cov + 0.05 * cov.diagonal().mean() * torch.eye(cov.shape[0], dtype=cov.dtype)
                noise = torch.randn(layer.codebook.embed_sum.shape, generator=gen, dtype=torch.float64)
                embed = mean + noise @ torch.linalg.cholesky(cov).T
                residual = residual - embed[torch.cdist(residual, embed).argmin(-1)]
                usage = torch.rand(layer.codebook.cluster_usage.shape, generator=gen) * 1.5 + 0.5
                layer.codebook.embed_sum.copy_(embed.float() * usage[:, None])
                layer.codebook.cluster_usage.copy_(usage)
                layer.codebook.initialized.fill_(1.0)
                layer.codebook._embed = None
        # Random decoders are loud (|y| ~ 50); scale the last conv so reconstructions are speech-like (~0.3).
        codes = model.encode(audio[..., :48_000]).audio_codes
        peak = float(model.decode(codes).audio_values.abs().max())
        final = model.decoder.decoder_seanet.layers[-1].conv
        final.weight.mul_(0.3 / peak)
        final.bias.mul_(0.3 / peak)
    return model


# -- the same weights in Kyutai's original layout -----------------------------------------------------------
def _rotate_half_to_interleaved(w, num_heads: int):
    out_dim, in_dim = w.shape
    head_dim = out_dim // num_heads
    return w.reshape(num_heads, 2, head_dim // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def hf_to_original_state(hf_model) -> dict:
    """Rename a transformers MimiModel's tensors to the names of Kyutai's real tokenizer file."""
    import torch

    cfg = hf_model.config
    sd = {k: v.detach().clone() for k, v in hf_model.state_dict().items()}
    out = {}
    for side in ("encoder", "decoder"):
        half = hf_model.encoder if side == "encoder" else hf_model.decoder
        seanet = half.encoder_seanet if side == "encoder" else half.decoder_seanet
        for name, tensor in seanet.state_dict().items():
            idx, rest = name.split(".", 2)[1], name.split(".", 2)[2]
            layer = seanet.layers[int(idx)]
            if rest.startswith("block."):
                _, b, conv_rest = rest.split(".", 2)
                out[f"{side}.model.{idx}.block.{b}.conv.{conv_rest}"] = tensor
            elif type(layer).__name__ == "MimiConvTranspose1d":
                out[f"{side}.model.{idx}.convtr.{rest.replace('conv.', 'convtr.', 1)}"] = tensor
            else:
                out[f"{side}.model.{idx}.conv.{rest}"] = tensor
        tr = half.encoder_transformer if side == "encoder" else half.decoder_transformer
        for i, layer in enumerate(tr.layers):
            p = f"{side}_transformer.transformer.layers.{i}."
            att = layer.self_attn
            heads = cfg.num_attention_heads
            q = _rotate_half_to_interleaved(att.q_proj.weight.detach(), heads)
            k = _rotate_half_to_interleaved(att.k_proj.weight.detach(), heads)
            out[p + "self_attn.in_proj_weight"] = torch.cat([q, k, att.v_proj.weight.detach()])
            out[p + "self_attn.out_proj.weight"] = att.o_proj.weight.detach()
            out[p + "norm1.weight"] = layer.input_layernorm.weight.detach()
            out[p + "norm1.bias"] = layer.input_layernorm.bias.detach()
            out[p + "norm2.weight"] = layer.post_attention_layernorm.weight.detach()
            out[p + "norm2.bias"] = layer.post_attention_layernorm.bias.detach()
            out[p + "linear1.weight"] = layer.mlp.fc1.weight.detach()
            out[p + "linear2.weight"] = layer.mlp.fc2.weight.detach()
            out[p + "layer_scale_1.scale"] = layer.self_attn_layer_scale.scale.detach()
            out[p + "layer_scale_2.scale"] = layer.mlp_layer_scale.scale.detach()
    out["downsample.conv.conv.conv.weight"] = hf_model.encoder.downsample.conv.weight.detach()
    out["upsample.convtr.convtr.convtr.weight"] = hf_model.decoder.upsample.conv.weight.detach()
    for hf_name, ours in (("semantic", "rvq_first"), ("acoustic", "rvq_rest")):
        prefix = f"quantizer.{hf_name}_residual_vector_quantizer."
        for key, tensor in sd.items():
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            if rest.startswith("layers."):
                j, _, field = rest.split(".")[1:4]
                field = {"embed_sum": "embedding_sum", "initialized": "_initialized"}.get(field, field)
                out[f"quantizer.{ours}.vq.layers.{j}._codebook.{field}"] = tensor
            else:
                out[f"quantizer.{ours}.{rest}"] = tensor
    return {k: v.contiguous() for k, v in out.items()}


def save_original(hf_model, folder: Path) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / KYUTAI_FILE
    save_file(hf_to_original_state(hf_model), str(path))
    return path


def moshi_model(path: Path, num_codebooks: int = 32):
    """Kyutai's PyTorch Mimi, loaded by moshi's own loader from an original-layout file."""
    from moshi.models import loaders

    model = loaders.get_mimi(str(path), device="cpu", num_codebooks=num_codebooks)
    return model.eval()


def hf_chains(hf_model):
    """The residual chains of a transformers MimiModel's quantizer, for mlx_mimi.compare.agreement (float64)."""
    from mlx_mimi.compare import Chain

    q = hf_model.quantizer
    chains, first = [], 0
    for rvq in (q.semantic_residual_vector_quantizer, q.acoustic_residual_vector_quantizer):
        proj = rvq.input_proj.weight.detach().double().numpy()[..., 0]
        books = [layer.codebook.embed.detach().double().numpy() for layer in rvq.layers]
        chains.append(Chain(first, proj, books))
        first += len(books)
    return chains
