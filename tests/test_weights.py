"""Loading every layout, the converter, low-precision dtypes, and precise errors for bad checkpoints."""

from __future__ import annotations

import json
import time

import mlx.core as mx
import numpy as np
import pytest

import mlx_mimi
from mlx_mimi import ConfigError, MimiError, ModelNotFoundError
from mlx_mimi.checkpoint import detect_layout
from mlx_mimi.convert import convert
from mlx_mimi.errors import WeightsError

FRAME = 1920


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    return float(10 * np.log10((ref**2).sum() / max(((ref - x) ** 2).sum(), 1e-30)))


@pytest.fixture(scope="module")
def converted(converted_folder):
    return converted_folder


def test_layouts_are_detected(hf_reference, original_folder, converted):
    assert mlx_mimi.load(hf_reference[1]).source["layout"] == "hf"
    assert mlx_mimi.load(original_folder).source["layout"] == "original"
    assert mlx_mimi.load(converted).source["layout"] == "mlx-mimi"
    with pytest.raises(WeightsError, match="unrecognised checkpoint"):
        detect_layout(["foo.weight"])


def test_converted_layout_matches(model, converted, speech_long):
    loaded = mlx_mimi.load(converted)
    meta = mx.load(str(converted / "model.safetensors"), return_metadata=True)[1]
    assert meta["format"] == "mlx-mimi" and json.loads(meta["config"])["num_quantizers"] == 32
    names = set(mx.load(str(converted / "model.safetensors")))
    assert "quantizer.semantic.half_sq_norms" in names and "quantizer.acoustic.codebooks" in names
    assert mx.load(str(converted / "model.safetensors"))["quantizer.acoustic.input_proj"].ndim == 2
    pcm = speech_long[: 60 * FRAME + 11]
    codes = np.array(model.encode(pcm))
    np.testing.assert_array_equal(np.array(loaded.encode(pcm)), codes)
    np.testing.assert_array_equal(np.array(loaded.decode(codes)), np.array(model.decode(codes)))


def test_converted_loads_faster_than_raw(hf_reference, converted):
    """A sanity bound only (the measured figures live in benchmarks/): no per-tensor work on load."""

    def best(path):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            mlx_mimi.load(path)
            times.append(time.perf_counter() - start)
        return min(times)

    assert best(converted) < best(hf_reference[1])


def test_encoder_only_and_decoder_only(tmp_path, original_folder, model, speech_long):
    enc = mlx_mimi.load(convert(original_folder, tmp_path / "enc", decoder=False))
    dec = mlx_mimi.load(convert(original_folder, tmp_path / "dec", encoder=False))
    pcm = speech_long[: 20 * FRAME]
    codes = np.array(enc.encode(pcm))
    np.testing.assert_array_equal(codes, np.array(model.encode(pcm)))
    np.testing.assert_allclose(np.array(dec.decode(codes)), np.array(model.decode(codes)), atol=1e-5)
    with pytest.raises(mlx_mimi.MimiError, match="without its decoder"):
        enc.decode(codes)
    with pytest.raises(mlx_mimi.MimiError, match="without its encoder"):
        dec.encode(pcm)
    assert (tmp_path / "enc" / "model.safetensors").stat().st_size < (
        tmp_path / "dec" / "model.safetensors"
    ).stat().st_size * 1.5


@pytest.mark.parametrize(
    "dtype, min_semantic, min_first8, min_snr",
    [
        # bfloat16 keeps 8 mantissa bits (~4e-3 relative error per op, compounded over ~40 layers): latents
        # move by ~1e-2 relative and every code whose distance gap is below that flips. Random weights
        # separate codes less than a trained model. Measured here: semantic 85-97%, codebooks 1-8 ~86%,
        # decode SNR ~37 dB from the same codes; the floors leave ~10 points of margin for other speech.
        ("bfloat16", 0.75, 0.70, 30.0),
        # float16 keeps 11 bits (8x finer): measured semantic 96-99.7%, codebooks 1-8 97-99%, SNR 55 dB.
        # With 80 frames one semantic flip is 1.25 points: the floor leaves room for a few.
        ("float16", 0.90, 0.88, 45.0),
    ],
)
def test_low_precision_agreement(hf_reference, model, speech_long, tmp_path, dtype, min_semantic, min_first8, min_snr):
    low = mlx_mimi.load(convert(hf_reference[1], tmp_path / dtype, dtype=dtype))
    assert low.dtype == getattr(mx, dtype)
    assert low.quantizer.semantic.codebooks.dtype == mx.float32  # the search stays float32
    pcm = speech_long[: 80 * FRAME]
    ref = np.array(model.encode(pcm, num_codebooks=8))
    ours = np.array(low.encode(pcm, num_codebooks=8))
    semantic, first8 = float((ours[:, 0] == ref[:, 0]).mean()), float((ours == ref).mean())
    audio = np.array(low.decode(ref))
    snr = snr_db(np.array(model.decode(ref)), audio)
    print(f"{dtype}: semantic {semantic:.3f}, codebooks 1-8 {first8:.3f}, decode SNR {snr:.1f} dB")
    assert np.isfinite(audio).all()
    assert semantic >= min_semantic and first8 >= min_first8 and snr >= min_snr


# -- bad checkpoints ---------------------------------------------------------------------------------------
def _rewrite(src, dst, edit):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(src / "model.safetensors"))
    edit(tensors)
    dst.mkdir()
    save_file(tensors, str(dst / "model.safetensors"))
    (dst / "config.json").write_text((src / "config.json").read_text())
    return dst


def test_missing_unexpected_and_misshaped_tensors(hf_reference, tmp_path):
    src = hf_reference[1]
    name = "encoder_transformer.layers.3.mlp.fc1.weight"
    missing = _rewrite(src, tmp_path / "missing", lambda t: t.pop(name))
    with pytest.raises(WeightsError, match=f"missing tensor '{name}'"):
        mlx_mimi.load(missing)
    extra = _rewrite(
        src, tmp_path / "extra", lambda t: t.__setitem__("encoder.layers.99.conv.weight", np.zeros(3, np.float32))
    )
    with pytest.raises(WeightsError, match="unexpected tensor 'encoder.layers.99.conv.weight'"):
        mlx_mimi.load(extra)
    bad = "decoder.layers.0.conv.weight"
    shaped = _rewrite(src, tmp_path / "shaped", lambda t: t.__setitem__(bad, t[bad][:, :, :5].copy()))
    with pytest.raises(WeightsError, match="decoder.init_conv.weight.*shape"):
        mlx_mimi.load(shaped)


def test_weight_norm_is_folded(hf_reference, model, tmp_path, speech_long):
    """A checkpoint saved with weight norm (weight_g / weight_v) loads to the same model."""
    key = "encoder.layers.3.conv.weight"

    def to_weight_norm(t):
        w = t.pop(key)
        norm = np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(1)).reshape(-1, 1, 1)
        t[key[: -len("weight")] + "weight_g"] = norm.astype(np.float32)
        t[key[: -len("weight")] + "weight_v"] = (w / norm * 3.0).astype(np.float32)

    folded = mlx_mimi.load(_rewrite(hf_reference[1], tmp_path / "wn", to_weight_norm))
    pcm = speech_long[: 10 * FRAME]
    np.testing.assert_array_equal(np.array(folded.encode(pcm)), np.array(model.encode(pcm)))


def test_unreadable_files(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="cannot read"):
        mlx_mimi.load(bad)
    with pytest.raises(ModelNotFoundError):
        mlx_mimi.load(tmp_path / "nowhere" / "x.safetensors")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("upsampling_ratios", "abc", "'upsampling_ratios' has the wrong type"),
        ("upsampling_ratios", [0, 6, 5, 4], "'upsampling_ratios' must be positive"),
        ("hidden_size", "512", "'hidden_size' has the wrong type"),
        ("num_quantizers", 1.5, "'num_quantizers' has the wrong type"),
        ("sliding_window", 0, "'sliding_window' must be >= 1"),
        ("num_attention_heads", 7, "not divisible"),
    ],
)
def test_malformed_config_is_one_clear_error(model_folder, tmp_path, field, value, message):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    folder = tmp_path / "bad"
    folder.mkdir()
    config = json.loads((model_folder / "config.json").read_text())
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    with safe_open(str(model_folder / "model.safetensors"), "numpy") as f:
        metadata = f.metadata() or {}
        if "config" not in metadata:  # a Hugging Face folder: its config.json is the config
            (folder / "model.safetensors").symlink_to((model_folder / "model.safetensors").resolve())
        else:  # a converted file embeds its config
            metadata["config"] = json.dumps(config)
            save_file({k: f.get_tensor(k) for k in f.keys()}, str(folder / "model.safetensors"), metadata=metadata)
    with pytest.raises(ConfigError, match=message) as info:
        mlx_mimi.load(folder)
    assert "\n" not in str(info.value)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable JSON config"):
        mlx_mimi.load(folder)


def test_load_arguments(model_folder):
    for bad in (None, "", 3):
        with pytest.raises(ModelNotFoundError):
            mlx_mimi.load(bad)
    for dtype in (mx.int32, "int8", "float64", 32):
        with pytest.raises(MimiError, match="dtype must be one of"):
            mlx_mimi.load(model_folder, dtype=dtype)


def test_convert_refuses_to_overwrite_its_source(converted, tmp_path):
    before = (converted / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(MimiError, match="would overwrite its source"):
        convert(converted, converted)
    with pytest.raises(MimiError, match="would overwrite its source"):
        convert(converted / "model.safetensors", converted)
    assert (converted / "model.safetensors").stat().st_mtime_ns == before


def test_format_version_1_still_loads(converted, tmp_path, speech_long, model):
    """Folders converted by mlx-mimi 0.1 (format 1: conv weights in MLX conv order) load to the same model."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from mlx_mimi.config import MimiConfig
    from mlx_mimi.layout import _seanet_modules

    with safe_open(str(converted / "model.safetensors"), "numpy") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    config = MimiConfig.from_dict(json.loads(metadata["config"]))
    for ours, (_, kind, stride) in _seanet_modules(config, "hf").items():
        w = tensors[ours + ".weight"]
        if kind == "conv" and stride > 1:  # (2 out, S in) -> (out, 2S, in)
            n = w.shape[0] // 2
            tensors[ours + ".weight"] = w.reshape(2, n, stride, -1).transpose(1, 0, 2, 3).reshape(n, 2 * stride, -1)
        elif kind == "conv":  # (K out, in) -> (out, K, in)
            k = {"init_conv": 7, "final_conv": 3, "conv1": 3}.get(ours.split(".")[-1], 1)
            tensors[ours + ".weight"] = w.reshape(k, -1, w.shape[1]).transpose(1, 0, 2)
        elif kind == "convtr":  # (K out, in) -> (K, out, in)
            tensors[ours + ".weight"] = w.reshape(2 * stride, -1, w.shape[1])
    (tmp_path / "v1").mkdir()
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}  # save_file ignores strides
    save_file(tensors, str(tmp_path / "v1" / "model.safetensors"), metadata={**metadata, "format_version": "1"})
    old = mlx_mimi.load(tmp_path / "v1")
    pcm = speech_long[: 20 * FRAME + 3]
    np.testing.assert_array_equal(np.array(old.encode(pcm)), np.array(model.encode(pcm)))
    bad = dict(metadata, format_version="99")
    save_file(tensors, str(tmp_path / "v1" / "model.safetensors"), metadata=bad)
    with pytest.raises(WeightsError, match="newer than this mlx-mimi reads"):
        mlx_mimi.load(tmp_path / "v1")
