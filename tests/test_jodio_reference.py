"""tests/jodio_reference.py: its print() is the dump, its weights count ~386M, its forward passes are causal."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from conftest import require

require("torch")  # a skip where torch is missing, a failure in CI

import torch  # noqa: E402
from jodio_reference import JODIO  # noqa: E402

DUMP = Path(__file__).parent / "data" / "jodio_dump.txt"
TINY = dict(
    channels=16,
    latent_dim=20,
    attention_dim=16,
    encoder_heads=2,
    encoder_layers=2,
    encoder_intermediate=32,
    decoder_width=8,
    decoder_heads=2,
    decoder_layers=1,
    decoder_intermediate=16,
    codebook_size=32,
    window=4,
)
HOP = 1920


def _dump_text() -> str:
    """The dump as ``print(model)`` would give it. The stored file stops one line short: its last line is the
    decoder's closing ``  )`` and the root module's closing ``)`` is missing (a truncated copy), so it is
    put back here, and only there; everything else must match character for character."""
    text = DUMP.read_text().rstrip("\n")
    assert text.splitlines()[-1] == "  )", "the dump's tail changed: revisit _dump_text"
    return text + "\n)"


def _diff(expected: str, actual: str) -> str:
    return "".join(
        difflib.unified_diff(
            expected.splitlines(True), actual.splitlines(True), "jodio_dump.txt", "str(JODIO(repaired=False))"
        )
    )


def _meta(**kwargs) -> JODIO:
    with torch.device("meta"):
        return JODIO(**kwargs)


def test_print_matches_the_dump():
    text = _dump_text()
    actual = str(_meta(repaired=False))
    assert actual == text, "\n" + _diff(text, actual)


def test_repaired_print_differs_only_in_post_vq_proj_and_repair_proj():
    dump = _dump_text().splitlines()
    actual = str(_meta()).splitlines()
    i = dump.index("  (post_vq_proj): Linear(in_features=6, out_features=896, bias=True)")
    expected = (
        dump[:i]
        + [
            "  (post_vq_proj): Linear(in_features=256, out_features=896, bias=True)",
            "  (repair_proj): Linear(in_features=1028, out_features=256, bias=True)",
        ]
        + dump[i + 1 :]
    )
    assert actual == expected, "\n" + _diff("\n".join(expected), "\n".join(actual))


def test_state_dict_names():
    names = set(_meta().state_dict())
    for name in (
        "encoder.input_proj.weight",
        "encoder.conv_blocks.0.layers.0.0.parametrizations.weight.original0",
        "encoder.conv_blocks.3.layers.2.0.parametrizations.weight.original1",
        "encoder.conv_blocks.3.downsample.weight",
        "encoder.final_conv.bias",
        "encoder_transformer.layers.0.attention.q_proj.weight",
        "encoder_transformer.layers.21.feed_forward.linear2.weight",
        "encoder_transformer.layers.0.attention_norm.weight",
        "encoder_transformer.norm.weight",
        "pre_vq_proj.weight",
        "semantic_rvq.quantizers.0.codebook.weight",
        "acoustic_rvq.quantizers.7.codebook.weight",
        "post_vq_proj.weight",
        "repair_proj.bias",
        "decoder_transformer.layers.3.mlp_norm.weight",
        "decoder.initial_upsample.weight",
        "decoder.conv_blocks.0.upsample.weight",
        "decoder.conv_blocks.3.layers.2.0.parametrizations.weight.original0",
        "decoder.final_proj.weight",
    ):
        assert name in names, name


def _tiny(**kwargs) -> JODIO:
    torch.manual_seed(0)
    return JODIO(**TINY, **kwargs).eval()


@pytest.mark.parametrize("input_lookahead", [1, 0])
def test_tiny_shapes_and_causality(input_lookahead):
    torch.set_num_threads(1)
    model = _tiny(input_lookahead=input_lookahead)
    frames, prefix = 6, 3
    torch.manual_seed(1)
    wav = 0.1 * torch.randn(1, 1, frames * HOP)
    with torch.no_grad():
        codes, latent = model.encode(wav)
        assert codes.shape == (1, 10, frames) and codes.dtype == torch.int64
        assert latent.shape == (1, frames, 20)
        assert int(codes.min()) >= 0 and int(codes.max()) < 32
        assert len(set(codes[0, 0].tolist()) | set(codes[0, 5].tolist())) > 1  # not one degenerate code

        # frame j sees samples <= j * HOP + input_lookahead only: a prefix encodes to the same codes
        pre_codes, pre_latent = model.encode(wav[..., : prefix * HOP])
        torch.testing.assert_close(pre_latent, latent[:, :prefix], rtol=1e-5, atol=1e-5)
        assert torch.equal(pre_codes, codes[..., :prefix])
        # ... and a change past the prefix's last seen sample leaves the prefix's latent alone
        changed = wav.clone()
        changed[..., (prefix - 1) * HOP + input_lookahead + 1 :] += 1.0
        torch.testing.assert_close(model.latent(changed)[:, :prefix], latent[:, :prefix], rtol=1e-5, atol=1e-5)
        if input_lookahead:  # the one sample of lookahead is seen
            changed = wav.clone()
            changed[..., (prefix - 1) * HOP + 1] += 1.0
            assert not torch.allclose(model.latent(changed)[:, prefix - 1], latent[:, prefix - 1])

        assert model.encode(wav, num_codebooks=2)[0].shape == (1, 2, frames)
        assert torch.equal(model.encode(wav, num_codebooks=4)[0], codes[:, :4])
        for frames_out in (3, frames):
            out = model.decode(codes[..., :frames_out])
            assert out.shape == (1, 1, frames_out * HOP - 2210)
            assert torch.isfinite(out).all()
        assert model.decode(codes[:, :2]).shape == (1, 1, frames * HOP - 2210)

        with pytest.raises(ValueError):
            model.latent(wav[..., :-1])
        with pytest.raises(ValueError):
            model.encode(wav, num_codebooks=1)


def test_tiny_residual_acoustic_input_and_unrepaired():
    torch.set_num_threads(1)
    wav = 0.1 * torch.randn(1, 1, 3 * HOP)
    with torch.no_grad():
        latent_codes = _tiny(acoustic_input="latent").encode(wav)[0]
        residual_codes = _tiny(acoustic_input="residual").encode(wav)[0]
        assert torch.equal(latent_codes[:, :2], residual_codes[:, :2])
        assert residual_codes.shape == (1, 10, 3)
        plain = _tiny(repaired=False)
        assert plain.encode(wav)[0].shape == (1, 10, 3)
        with pytest.raises(RuntimeError):
            plain.decode(latent_codes)


def test_full_size_parameter_count():
    repaired = sum(p.numel() for p in _meta().parameters())
    printed = sum(p.numel() for p in _meta(repaired=False).parameters())
    print(f"JODIO parameters: repaired {repaired:,}, as printed {printed:,}")
    assert 385e6 < repaired < 387e6
    # the repair: post_vq_proj 6 -> 256 inputs, plus repair_proj 1028 -> 256 with bias
    assert repaired - printed == (256 - 6) * 896 + 1028 * 256 + 256
