"""Quantized checkpoints: MLX affine kernels on every weight matrix that allows it, a converted folder that loads
quantized with no flags, clear errors for mismatches, streaming on quantized models, and measured fidelity
floors (benchmarks/quantization.py prints the full table for any model)."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
from contract import assert_contract

import mlx_mimi
from mlx_mimi import MimiError, WeightsError
from mlx_mimi.compare import agreement, chains_of
from mlx_mimi.convert import convert
from mlx_mimi.quantize import DEFAULT_KEEP_FLOAT, quantizable_layers

FRAME = 1920


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    return float(10 * np.log10((ref**2).sum() / max(((ref - x) ** 2).sum(), 1e-30)))


@pytest.fixture(scope="module")
def pcm(speech_long):
    return speech_long[: 10 * 24_000]


@pytest.fixture(scope="module")
def float_codes(model, pcm):
    return np.array(model.encode(pcm)), np.array(model.encode_latent(pcm))


@pytest.fixture(scope="module")
def q8_folder(model_folder, tmp_path_factory):
    return convert(model_folder, tmp_path_factory.mktemp("q8"), quantize=8, group_size=64)


def test_converted_folder_loads_quantized_without_flags(q8_folder, model, tmp_path):
    q = mlx_mimi.load(q8_folder)
    config = json.loads((q8_folder / "config.json").read_text())
    assert config["quantization"]["bits"] == 8 and config["quantization"]["group_size"] == 64
    modules = dict(q.named_modules())
    quantized = q.config.quantization["modules"]
    assert quantized and all(modules[name].quantized for name in quantized)
    # what stays float: codebooks and projections (the search), the SEANets (the default), norms, LayerScale
    assert q.quantizer.semantic.codebooks.dtype == mx.float32 and q.quantizer.acoustic.input_proj.dtype == mx.float32
    assert not any(name.split(".")[0] in DEFAULT_KEEP_FLOAT for name in quantized)  # the SEANets
    assert "encoder_transformer.layers.0.mlp.fc1" in quantized and "downsample" in quantized
    assert q.encoder_transformer.layers[0].attn_norm.weight.dtype == mx.float32
    assert q.encoder_transformer.layers[0].mlp.fc1.weight.dtype == mx.uint32
    from mlx_mimi.convert import write_converted

    float_size = (write_converted(model, tmp_path / "float") / "model.safetensors").stat().st_size
    assert (q8_folder / "model.safetensors").stat().st_size < 0.7 * float_size


def test_everything_quantizable_is_quantized_when_asked(model):
    """keep_float=(): every weight matrix whose input width the group size divides, and nothing else."""
    layers = quantizable_layers(model, 32)
    assert "encoder.init_conv" not in layers  # 1 input channel (im2col): too small to matter, never quantized
    assert "decoder.final_conv" in layers or model.decoder.final_conv.weight.shape[-1] % 32
    assert not any(name.startswith("quantizer") for name in layers)
    layers128 = quantizable_layers(model, 128)
    assert "encoder.stages.0.residuals.0.conv2" not in layers128  # 32 inputs: no group of 128
    assert "encoder.stages.0.residuals.0.conv2" in layers


@pytest.mark.parametrize(
    "bits, group, keep, min_semantic, min_acoustic, min_decode_snr",
    [
        # Floors from measurements on these random weights (benchmarks/quantization.py prints the full table):
        # q8 g64, SEANets float: semantic 0.95-0.97, acoustic 2-8 ~0.86-0.91, decode SNR ~57 dB. Random weights flip
        # more codes than a trained model would; the floors leave ~10 points / 10 dB of margin for other speech.
        (8, 64, DEFAULT_KEEP_FLOAT, 0.85, 0.80, 45.0),
        # q8 g64, everything quantized: semantic 0.89-0.92, acoustic 2-8 ~0.80, decode SNR ~34 dB.
        (8, 64, (), 0.80, 0.65, 27.0),
        # q4 g64, SEANets float: semantic ~0.55-0.68, acoustic 2-8 ~0.26, decode SNR ~32 dB: 4 bits of random
        # weights lose most codes; the floors only check that it still tracks the float model.
        (4, 64, DEFAULT_KEEP_FLOAT, 0.35, 0.12, 25.0),
    ],
)
def test_fidelity_floors(
    model, model_folder, pcm, float_codes, tmp_path, bits, group, keep, min_semantic, min_acoustic, min_decode_snr
):
    """The floors the README states, per codebook group: semantic (codebook 1) and acoustic 2-8."""
    codes, latent = float_codes
    q = mlx_mimi.load(convert(model_folder, tmp_path / "q", quantize=bits, group_size=group, keep_float=keep))
    ours = np.array(q.encode(pcm, 8))
    result = agreement(ours, codes[:, :8], latent, chains_of(model))
    decode_snr = snr_db(np.array(model.decode(codes[:, :8])), np.array(q.decode(codes[:, :8])))
    print(f"q{bits} g{group} keep {keep}: {result.groups}, decode SNR {decode_snr:.1f} dB")
    assert result.groups["semantic (1)"] >= min_semantic
    assert result.groups["acoustic 2-8"] >= min_acoustic
    assert decode_snr >= min_decode_snr


def test_quantize_on_load_equals_the_converted_folder(model_folder, q8_folder, pcm):
    on_load = mlx_mimi.load(model_folder, quantize=8, group_size=64)
    converted = mlx_mimi.load(q8_folder)
    np.testing.assert_array_equal(np.array(on_load.encode(pcm, 8)), np.array(converted.encode(pcm, 8)))
    assert on_load.config.quantization == converted.config.quantization


def test_streaming_on_a_quantized_model(q8_folder, pcm):
    q = mlx_mimi.load(q8_folder)
    offline = np.array(q.encode(pcm, 8))
    enc = q.stream_encoder(num_codebooks=8)
    parts = [np.array(enc.step(pcm[i : i + 3000])) for i in range(0, len(pcm), 3000)]
    streamed = np.concatenate([*parts, np.array(enc.flush())], axis=-1)
    assert_contract(q, pcm, streamed, offline, "q8: stream vs offline")
    dec = q.stream_decoder()
    audio = np.concatenate([np.array(dec.step(offline[:, :, i : i + 4])) for i in range(0, 40, 4)], axis=-1)
    assert np.abs(audio - np.array(q.decode(offline[:, :, :40]))).max() <= 1e-5


def test_mismatches_are_one_clear_error(q8_folder, tmp_path):
    """A quantized file whose config says float, the reverse, and another group size: each names the tensor."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(q8_folder / "model.safetensors"), "numpy") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    config = json.loads(meta["config"])

    def write(name, cfg, arrays):
        (tmp_path / name).mkdir()
        save_file(arrays, str(tmp_path / name / "model.safetensors"), metadata={**meta, "config": json.dumps(cfg)})
        return tmp_path / name

    as_float = write("as_float", {**config, "quantization": None}, tensors)
    with pytest.raises(WeightsError, match=r"\.scales'?: the file holds this layer quantized, the config has it float"):
        mlx_mimi.load(as_float)
    q = config["quantization"]
    more = sorted(set(quantizable_layers(mlx_mimi.load(q8_folder), 64, ())) - set(q["modules"]))
    claims_more = write("claims_more", {**config, "quantization": {**q, "modules": q["modules"] + more[:1]}}, tensors)
    with pytest.raises(WeightsError, match=f"{more[0]}.weight is float in the file, but the config quantizes it"):
        mlx_mimi.load(claims_more)
    other_group = write("other_group", {**config, "quantization": {**q, "group_size": 32}}, tensors)
    with pytest.raises(WeightsError, match="quantized with group size 64, not the config's 32"):
        mlx_mimi.load(other_group)
    bad_bits = write("bad_bits", {**config, "quantization": {**q, "bits": 7}}, tensors)
    with pytest.raises(mlx_mimi.ConfigError, match="bits must be one of"):
        mlx_mimi.load(bad_bits)


def test_quantize_arguments(model_folder):
    with pytest.raises(MimiError, match="quantize must be one of"):
        mlx_mimi.load(model_folder, quantize=7)
    with pytest.raises(MimiError, match="group_size must be one of"):
        mlx_mimi.load(model_folder, quantize=8, group_size=48)
    with pytest.raises(MimiError, match="keep_float names no layer: encoder.nope"):
        mlx_mimi.load(model_folder, quantize=8, keep_float=("encoder.nope",))
    with pytest.raises(MimiError, match="keep_float must be layer names"):
        mlx_mimi.load(model_folder, quantize=8, keep_float=3)
    with pytest.raises(MimiError, match="already quantized"):
        from mlx_mimi.quantize import quantize_model

        quantize_model(mlx_mimi.load(model_folder, quantize=8), 4)


def test_keep_float_spellings(model_folder):
    """keep_float: None is the default (the SEANets float), "none" or () quantizes every quantizable layer, and a
    comma-separated string names layers as a list does."""

    def quantized(keep):
        return set(mlx_mimi.load(model_folder, quantize=8, keep_float=keep).config.quantization["modules"])

    default = quantized(None)
    assert default and not any(name.startswith(("encoder.", "decoder.")) for name in default)
    everything = quantized("none")
    assert everything == quantized(()) and default < everything
    assert any(name.startswith("encoder.") for name in everything)
    assert quantized("encoder,decoder") == default == quantized(["encoder", "decoder"])


def test_halves_of_a_quantized_model(model_folder, converted_folder, tmp_path, pcm):
    """`convert --quantize 4 --encoder-only` (the README's example) loads; a converted folder loads encoder-only."""
    folder = convert(model_folder, tmp_path / "q4-enc", quantize=4, decoder=False)
    encoder = mlx_mimi.load(folder)
    assert encoder.config.has_decoder is False
    assert not any(m.startswith("decoder") for m in encoder.config.quantization["modules"])
    assert np.array(encoder.encode(pcm[:24_000])).shape[1] == 32
    q8 = convert(model_folder, tmp_path / "q8", quantize=8)
    for source in (converted_folder, q8):
        half = mlx_mimi.load(source, decoder=False)
        np.testing.assert_array_equal(
            np.array(half.encode(pcm[:48_000])), np.array(mlx_mimi.load(source).encode(pcm[:48_000]))
        )
        with pytest.raises(MimiError, match="without its decoder"):
            half.decode(np.zeros((1, 8, 2), np.int64))
