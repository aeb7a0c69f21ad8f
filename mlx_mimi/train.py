"""Training the 9-codebook variant's heads in MLX as seed 003 writes it: distillation to teacher features (and,
optionally, WavLM features), EMA codebooks, AdamW with a learning rate per head, gradient accumulation.

The forward pass is the seed's ``CausalBridgeQuantizer`` (vector_quantize_pytorch's straight-through estimators):
the content head quantizes the latent (a 512-d codebook, no projection, by default), the prosody head
``latent - stop_gradient(q_c)``, the acoustic RVQ ``latent - (q_c + q_p)``. The encoder, transformers and decoder
never train here (their latents are inputs). Per step:

- Loss A (the seed's): ``MSE(proj_qwen(q_c), teacher)``, the teacher repeated to 12.5 Hz by token durations (the
  seed's ``repeat_interleave``).
- Loss B (commented out in the seed; on when a batch carries ``wavlm`` (B, F, wavlm_dim) targets):
  ``wavlm_weight * MSE(proj_wavlm(q_c + q_p), wavlm)``.
- ``commitment_weight`` x the heads' commitment losses as vector_quantize_pytorch computes them. The seed discards
  them (``q_c, idx_c, _ = ...``), so the default is 0; its library's own weight is 1.

Learning rates (the seed: "1e-4 for Heads 0/1; 1e-5 for pre-trained Heads 2-8"): ``content_lr`` and ``prosody_lr``
1e-4, ``acoustic_lr`` 1e-5, each for that head's projections (the content head has none unless it was built with
``content_projection``); ``bridge_lr`` 1e-4 for ``proj_qwen``/``proj_wavlm``, which are new like heads 0/1. AdamW,
betas (0.8, 0.99), weight decay 0.01 (torch's default). ``heads`` names the heads that train (default: all three).
As torch's AdamW skips a parameter without a gradient, a group no loss of the step reaches neither moves nor decays.

Codebooks of trained heads update as vector_quantize_pytorch's EMA k-means does (decay 0.8, its default;
Laplace-smoothed cluster sizes; the buffers start as the library starts them: sizes 1, sums = the entries), plus
dead-code replacement: an entry whose EMA cluster size falls under ``dead_code_threshold`` (2, Mimi's own setting;
the library's default 0 disables it, and a fresh codebook then keeps the handful of entries the first batches hit)
is replaced by a random input of the step.

Gradient accumulation (``accumulate=N``, "Required" in the seed: long sequences at 12.5 Hz): N micro-batches per
optimizer step. Their gradients are averaged and their EMA statistics (per-entry counts and sums, additive) summed,
and the codebooks update once per optimizer step, from the codebooks every micro-batch searched: N micro-batches of
batch 1 equal one step of batch N (tests/test_variant.py), EMA included.

Checkpoints: ``checkpoint_dir/step-NNNNNN/`` holds the model in mlx-mimi's converted layout (``mlx_mimi.load``
opens it) and ``training.safetensors`` (the bridges, optimizer and EMA state, step, RNG key); ``latest`` names
the newest complete one and is replaced atomically after the folder is written, so a crash never leaves a half
checkpoint as ``latest``. ``train_heads(..., checkpoint_dir=d)`` resumes from ``d/latest``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_map, tree_unflatten

from .atomic import atomic_write
from .convert import write_converted
from .errors import MimiError
from .layers.quantizer import nearest_code
from .load import load_model
from .model import STAGE_NAMES, Mimi
from .variant import cluster_sums, half_sq_norms

LAPLACE_EPS = 1e-5  # vector_quantize_pytorch's Codebook eps
HEADS = STAGE_NAMES  # content (head 0), prosody (head 1), acoustic (heads 2-8)


@dataclass
class TrainSettings:
    steps: int
    content_lr: float = 1e-4
    prosody_lr: float = 1e-4
    acoustic_lr: float = 1e-5
    bridge_lr: float = 1e-4
    heads: tuple[str, ...] = HEADS
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01  # torch.optim.AdamW's default
    accumulate: int = 1
    distill_dim: int = 1536  # the seed's qwen_dim
    wavlm_dim: int = 1024  # the seed's wavlm_dim
    wavlm_weight: float = 1.0
    commitment_weight: float = 0.0  # the seed discards the heads' commitment losses
    decay: float = 0.8
    dead_code_threshold: float = 2.0
    seed: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.heads, str):  # "content,prosody", as the CLI writes it
            self.heads = tuple(h.strip() for h in self.heads.split(",") if h.strip())
        try:
            self.heads, self.betas = tuple(self.heads), tuple(self.betas)
        except TypeError:
            raise MimiError("heads must be head names and betas two numbers") from None
        unknown = [h for h in self.heads if h not in HEADS]
        if unknown or not self.heads or len(set(self.heads)) != len(self.heads):
            raise MimiError(f"heads must be among {', '.join(HEADS)}, got {self.heads!r}")
        for name in ("steps", "accumulate", "distill_dim", "wavlm_dim", "checkpoint_every", "keep_checkpoints", "seed"):
            value, low = getattr(self, name), 0 if name in ("steps", "seed") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise MimiError(f"{name} must be an int >= {low}, got {value!r}")
        for name in ("content_lr", "prosody_lr", "acoustic_lr", "bridge_lr"):
            if not _number(getattr(self, name)) or getattr(self, name) <= 0:
                raise MimiError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("wavlm_weight", "commitment_weight", "dead_code_threshold", "weight_decay"):
            if not _number(getattr(self, name)) or getattr(self, name) < 0:
                raise MimiError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if not _number(self.decay) or not 0 < self.decay < 1:
            raise MimiError(f"decay must be in (0, 1), got {self.decay!r}")
        if len(self.betas) != 2 or not all(_number(b) and 0 <= b < 1 for b in self.betas):
            raise MimiError(f"betas must be two numbers in [0, 1), got {self.betas!r}")

    def lr(self, head: str) -> float:
        return getattr(self, f"{head}_lr")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class StepLog:
    step: int
    loss: float
    distill: float  # loss A
    wavlm: float  # loss B, unweighted (0 without wavlm targets)
    commitment: float  # unweighted
    codes_used: int  # distinct content codes in this step's batches
    alive: int  # content entries whose EMA cluster size is >= 1 (0 when the content head does not train)
    replaced: int  # content entries replaced as dead in this step
    extra: dict = field(default_factory=dict)


@dataclass
class Batch:
    """One micro-batch: latent (B, F, 512), teacher (B, F, distill_dim) at the frame rate, wavlm or None."""

    latent: mx.array
    teacher: mx.array
    wavlm: mx.array | None = None


def align_teacher(teacher: np.ndarray, durations: np.ndarray | None, frames: int) -> np.ndarray:
    """(B, tokens, D) teacher features and (B, tokens) frame counts -> (B, frames, D), as the seed's
    ``repeat_interleave``. Without durations the teacher must already be at the frame rate."""
    teacher = np.asarray(teacher, dtype=np.float32)
    if teacher.ndim != 3:
        raise MimiError(f"teacher features must be (batch, tokens, dim), got shape {teacher.shape}")
    if not np.isfinite(teacher).all():
        raise MimiError("teacher features hold NaN or infinite values")
    if durations is None:
        aligned = teacher
    else:
        durations = np.asarray(durations)
        if durations.shape != teacher.shape[:2] or not np.issubdtype(durations.dtype, np.integer):
            raise MimiError(f"durations must be integers of shape {teacher.shape[:2]}, got {durations.shape}")
        if (durations < 0).any():
            raise MimiError("durations must be >= 0")
        sums = durations.sum(axis=1)
        if (sums != frames).any():
            raise MimiError(f"durations sum to {int(sums[sums != frames][0])} frames, the audio has {frames}")
        aligned = np.stack([np.repeat(t, d, axis=0) for t, d in zip(teacher, durations, strict=True)])
    if aligned.shape[1] != frames:
        raise MimiError(f"the teacher covers {aligned.shape[1]} frames, the audio has {frames}")
    return aligned


def _linear_init(key: mx.array, out_dim: int, in_dim: int) -> dict[str, mx.array]:
    """PyTorch nn.Linear's default init: weight and bias uniform in +-1/sqrt(in_dim)."""
    k_w, k_b = mx.random.split(key)
    bound = 1 / math.sqrt(in_dim)
    return {
        "weight": mx.random.uniform(-bound, bound, (out_dim, in_dim), key=k_w),
        "bias": mx.random.uniform(-bound, bound, (out_dim,), key=k_b),
    }


def _straight_through(x: mx.array, entry: mx.array) -> mx.array:
    """vector_quantize_pytorch's straight-through estimator: the entry's value, the input's gradient."""
    return x + mx.stop_gradient(entry - x)


class HeadTrainer:
    """State of one training run: trainable parameters per learning rate, optimizers, EMA buffers, RNG, step."""

    def __init__(self, model: Mimi, settings: TrainSettings):
        config = model.config
        if config.quantizer_topology != "chain" or len(config.chain_stages) != len(HEADS):
            raise MimiError("train_heads needs the 9-codebook variant (mimi variant nine-codebooks)")
        if config.quantization is not None:
            raise MimiError("train a float model (quantize it afterwards)")
        self.model, self.settings = model, settings
        self.quantizer = model.quantizer
        self.stages = dict(zip(HEADS, self.quantizer.stages, strict=True))
        keys = mx.random.split(mx.random.key(settings.seed), 3)
        dim = config.hidden_size
        # the seed's proj_qwen and proj_wavlm: training's own, saved with its checkpoints
        self.bridges = {
            "qwen": _linear_init(keys[0], settings.distill_dim, dim),
            "wavlm": _linear_init(keys[1], settings.wavlm_dim, dim),
        }
        self.params = self.collect_params()
        adam = {"betas": list(settings.betas), "weight_decay": settings.weight_decay, "bias_correction": True}
        self.optimizers = {group: optim.AdamW(self._group_lr(group), **adam) for group in self.params}
        self.ema = {}
        for head in settings.heads:
            books = self.stages[head].codebooks
            self.ema[head] = {"cluster_size": mx.ones(books.shape[:2]), "embed_avg": mx.array(books)}
        self.key = keys[2]
        self.step = 0

    def _group_lr(self, group: str) -> float:
        return self.settings.bridge_lr if group.startswith("bridge_") else self.settings.lr(group)

    def collect_params(self) -> dict:
        """The trainable arrays by optimizer group: each trained head's projections (where it has them) and the
        two bridges, each its own group (an unused bridge is then never decayed)."""
        out = {f"bridge_{name}": dict(p) for name, p in self.bridges.items()}
        for head in self.settings.heads:
            stage = self.stages[head]
            if "input_proj" in stage:
                out[head] = {"input_proj": stage.input_proj, "output_proj": stage.output_proj}
        return out

    # -- one micro-batch ----------------------------------------------------------------------------------
    def _project(self, params: dict, head: str, x: mx.array, which: str) -> mx.array:
        stage = self.stages[head]
        if "input_proj" not in stage:
            return x
        w = params[head][which] if head in params else stage[which]
        return x @ w.T

    def _head(self, params: dict, head: str, x: mx.array, searched: list) -> tuple[mx.array, mx.array]:
        """One head over its input (B, F, 512): (its straight-through output in the latent space, its commitment
        loss). Records (head, level, searched inputs, codes) for the EMA update of a trained head."""
        stage = self.stages[head]
        residual = self._project(params, head, x, "input_proj")
        total, commitment = None, mx.array(0.0)
        for level in range(stage.codebooks.shape[0]):
            book = stage.codebooks[level]
            index = nearest_code(mx.stop_gradient(residual), book, stage.half_sq_norms[level])
            entry = book[index]
            if head in self.settings.heads:
                commitment = commitment + ((residual - entry) ** 2).mean()
                searched.append((head, level, mx.stop_gradient(residual), index))
            quantized = _straight_through(residual, entry)
            total = quantized if total is None else total + quantized
            residual = residual - mx.stop_gradient(quantized)
        return self._project(params, head, total, "output_proj"), commitment

    def _forward(self, params: dict, batch: Batch, searched: list):
        """The seed's forward and losses (the module docstring): (loss, (distill, wavlm, commitment))."""
        x = batch.latent
        q_c, commitment = self._head(params, "content", x, searched)
        need_prosody = batch.wavlm is not None or {"prosody", "acoustic"} & set(self.settings.heads)
        q_p = None
        if need_prosody:
            q_p, more = self._head(params, "prosody", x - mx.stop_gradient(q_c), searched)
            commitment = commitment + more
        if "acoustic" in self.settings.heads:
            _, more = self._head(params, "acoustic", x - (q_c + q_p), searched)
            commitment = commitment + more
        qwen = params["bridge_qwen"]
        distill = ((q_c @ qwen["weight"].T + qwen["bias"] - batch.teacher) ** 2).mean()
        wavlm = mx.array(0.0)
        if batch.wavlm is not None:
            proj = params["bridge_wavlm"]
            wavlm = (((q_c + q_p) @ proj["weight"].T + proj["bias"] - batch.wavlm) ** 2).mean()
        s = self.settings
        loss = distill + s.wavlm_weight * wavlm + s.commitment_weight * commitment
        return loss, (distill, wavlm, commitment)

    # -- one optimizer step over its micro-batches ------------------------------------------------------------
    def train_step(self, batches: list[Batch]) -> StepLog:
        """One optimizer step over ``batches`` (the accumulated micro-batches, equal shapes): averaged gradients,
        summed EMA statistics. Raises MimiError before anything changes where a loss is not finite."""
        total_grads, parts_sum, stats, content_codes = None, np.zeros(4), {}, []
        with_wavlm = False
        for batch in batches:
            searched: list = []

            def loss_fn(params, batch=batch, searched=searched):
                searched.clear()
                loss, parts = self._forward(params, batch, searched)
                return loss, parts

            (loss, parts), grads = mx.value_and_grad(loss_fn, argnums=0)(self.params)
            values = [loss.item(), *(p.item() for p in parts)]
            if not all(math.isfinite(v) for v in values):  # before any weight, optimizer or EMA state changes
                raise MimiError(
                    f"step {self.step + 1}: the loss is {values[0]} (distillation {values[1]}, wavlm {values[2]}, "
                    f"commitment {values[3]}); stopped before updating or saving anything: check the teacher "
                    "features, latents and learning rates"
                )
            parts_sum += values
            with_wavlm |= batch.wavlm is not None
            total_grads = grads if total_grads is None else tree_map(mx.add, total_grads, grads)
            for head, level, inputs, index in searched:
                flat, codes = inputs.reshape(-1, inputs.shape[-1]), index.reshape(-1)
                counts, sums = cluster_sums(flat, codes, self.stages[head].codebooks.shape[1])
                entry = stats.setdefault((head, level), [0, 0, []])
                entry[0], entry[1] = entry[0] + counts, entry[1] + sums
                entry[2].append(flat)
                if head == "content" and level == 0:
                    content_codes.append(codes)
            mx.eval(total_grads, *(v[:2] for v in stats.values()))
        grads = tree_map(lambda g: g / len(batches), total_grads)
        for group in self._reached(with_wavlm):
            self.params[group] = self.optimizers[group].apply_gradients(grads[group], self.params[group])
        self._write_back()
        replaced = self._ema_update(stats)
        mx.eval(self.params, self.ema, self.quantizer.parameters())
        self.step += 1
        used = int(np.unique(np.array(mx.concatenate(content_codes))).size) if content_codes else 0
        alive = int((self.ema["content"]["cluster_size"] >= 1).sum().item()) if "content" in self.ema else 0
        mean = parts_sum / len(batches)
        return StepLog(self.step, *(float(v) for v in mean), used, alive, replaced.get("content", 0))

    def _reached(self, with_wavlm: bool) -> list[str]:
        """The optimizer groups some loss of this step reaches. torch's AdamW skips a parameter without a gradient,
        so a head no loss reaches neither moves nor decays: the prosody head without loss B or commitment, the
        acoustic heads without commitment, the WavLM bridge without WavLM targets."""
        commit = self.settings.commitment_weight > 0
        reached = {"bridge_qwen", "content", "prosody" if with_wavlm or commit else "", "acoustic" if commit else ""}
        if with_wavlm:
            reached.add("bridge_wavlm")
        return [group for group in self.optimizers if group in reached]

    def _write_back(self) -> None:
        for name in self.bridges:
            self.bridges[name] = dict(self.params[f"bridge_{name}"])
        for head in self.settings.heads:
            if head in self.params:
                stage = self.stages[head]
                stage.input_proj, stage.output_proj = self.params[head]["input_proj"], self.params[head]["output_proj"]

    def _ema_update(self, stats: dict) -> dict[str, int]:
        """vector_quantize_pytorch's EMA k-means step on a whole optimizer step's statistics, then dead-code
        replacement; returns replaced counts per head."""
        s = self.settings
        replaced: dict[str, int] = {}
        for (head, level), (counts, sums, inputs) in stats.items():
            stage = self.stages[head]
            buffers = self.ema[head]
            size = stage.codebooks.shape[1]
            flat = mx.concatenate(inputs) if len(inputs) > 1 else inputs[0]
            cluster_size = buffers["cluster_size"][level] * s.decay + counts * (1 - s.decay)
            embed_avg = buffers["embed_avg"][level] * s.decay + sums * (1 - s.decay)
            n = cluster_size.sum()
            smoothed = (cluster_size + LAPLACE_EPS) / (n + size * LAPLACE_EPS) * n
            book = embed_avg / smoothed[:, None]
            if s.dead_code_threshold > 0:
                # the k-th dead entry takes the k-th of a random permutation of the step's inputs; with more
                # dead entries than inputs the rest wait for later steps (as the library does: no duplicates)
                slot = mx.cumsum((cluster_size < s.dead_code_threshold).astype(mx.int32)) - 1
                dead = (cluster_size < s.dead_code_threshold) & (slot < flat.shape[0])
                count = int(dead.sum().item())
                if count:
                    self.key, sub = mx.random.split(self.key)
                    picks = mx.random.permutation(flat.shape[0], key=sub)
                    sample = flat[picks[mx.clip(slot, 0, flat.shape[0] - 1)]]
                    book = mx.where(dead[:, None], sample, book)
                    cluster_size = mx.where(dead, s.dead_code_threshold, cluster_size)
                    embed_avg = mx.where(dead[:, None], sample * s.dead_code_threshold, embed_avg)
                    replaced[head] = replaced.get(head, 0) + count
            buffers["cluster_size"] = _set_row(buffers["cluster_size"], level, cluster_size)
            buffers["embed_avg"] = _set_row(buffers["embed_avg"], level, embed_avg)
            stage.codebooks = _set_row(stage.codebooks, level, book)
            stage.half_sq_norms = _set_row(stage.half_sq_norms, level, half_sq_norms(book))
        return replaced

    # -- checkpoints ------------------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, mx.array]:
        out = {f"bridge.{k}": v for k, v in tree_flatten(self.bridges)}
        out.update({f"ema.{k}": v for k, v in tree_flatten(self.ema)})
        for group, opt in self.optimizers.items():
            out.update({f"optimizer.{group}.{k}": v for k, v in tree_flatten(opt.state)})
        out["rng_key"] = self.key
        return out

    def load_state(self, arrays: dict[str, mx.array]) -> None:
        bridges = tree_unflatten([(k[len("bridge.") :], v) for k, v in arrays.items() if k.startswith("bridge.")])
        for name in self.bridges:
            if name not in bridges:
                raise MimiError(f"the checkpoint has no {name} bridge (written by an earlier mlx-mimi?)")
            if bridges[name]["weight"].shape != self.bridges[name]["weight"].shape:
                raise MimiError(
                    f"the checkpoint's {name} bridge is {tuple(bridges[name]['weight'].shape)}, the settings ask "
                    f"for {tuple(self.bridges[name]['weight'].shape)} (distill_dim / wavlm_dim)"
                )
            self.bridges[name] = bridges[name]
        ema = tree_unflatten([(k[4:], v) for k, v in arrays.items() if k.startswith("ema.")])
        self.ema = {head: ema[head] for head in self.settings.heads if head in ema} | {
            head: self.ema[head] for head in self.ema if head not in ema
        }
        for group, opt in self.optimizers.items():
            prefix = f"optimizer.{group}."
            items = [(k[len(prefix) :], v) for k, v in arrays.items() if k.startswith(prefix)]
            if items:
                opt.state = tree_unflatten(items)
        self.key = arrays["rng_key"]
        self.params = self.collect_params()

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"step-{self.step:06d}"
        staging = folder / f".staging-step-{self.step:06d}"
        shutil.rmtree(staging, ignore_errors=True)
        write_converted(self.model, staging)
        meta = {"step": str(self.step), "settings": json.dumps(asdict(self.settings))}
        atomic_write(
            staging / "training.safetensors",
            lambda tmp: mx.save_safetensors(tmp, self.state_arrays(), metadata=meta),
        )
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        atomic_write(folder / "latest", lambda tmp: Path(tmp).write_text(final.name + "\n"))
        for old in sorted(folder.glob("step-*"))[: -self.settings.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final


def _set_row(array: mx.array, row: int, value: mx.array) -> mx.array:
    out = mx.array(array)
    out[row] = value
    return out


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete checkpoint folder named by ``folder/latest``, or None."""
    pointer = Path(folder) / "latest"
    if not pointer.is_file():
        return None
    path = Path(folder) / pointer.read_text().strip()
    if not (path / "training.safetensors").is_file():
        raise MimiError(f"{pointer} names {path.name}, which is not a complete checkpoint")
    return path


def _batch(model: Mimi, batch, settings: TrainSettings) -> Batch:
    if not isinstance(batch, dict):
        raise MimiError(
            "each batch must be a dict with 'latent' or 'pcm', 'teacher' and optionally 'durations', 'wavlm'"
        )
    if ("latent" in batch) == ("pcm" in batch):
        raise MimiError("a batch needs exactly one of 'latent' (B, F, 512) and 'pcm' (B, T) audio at 24 kHz")
    if "teacher" not in batch:
        raise MimiError("a batch needs 'teacher' features (B, tokens, dim)")
    latent = mx.array(batch["latent"]) if "latent" in batch else model.encode_latent(batch["pcm"])
    latent = latent.astype(mx.float32)
    if latent.ndim != 3 or latent.shape[-1] != model.config.hidden_size:
        raise MimiError(f"latent must be (B, F, {model.config.hidden_size}), got {tuple(latent.shape)}")
    if not mx.all(mx.isfinite(latent)).item():
        raise MimiError("the batch's latent holds NaN or infinite values")
    b, frames = latent.shape[:2]
    teacher = align_teacher(batch["teacher"], batch.get("durations"), frames)
    if teacher.shape[0] != b or teacher.shape[-1] != settings.distill_dim:
        raise MimiError(
            f"teacher features must be (B={b}, ..., {settings.distill_dim}) (distill_dim), got {teacher.shape}"
        )
    wavlm = None
    if batch.get("wavlm") is not None:
        wavlm = np.asarray(batch["wavlm"], dtype=np.float32)
        if wavlm.shape != (b, frames, settings.wavlm_dim):
            raise MimiError(
                f"wavlm targets must be (B={b}, F={frames}, {settings.wavlm_dim}) at the frame rate (wavlm_dim), "
                f"got {wavlm.shape}"
            )
        if not np.isfinite(wavlm).all():
            raise MimiError("wavlm targets hold NaN or infinite values")
        wavlm = mx.array(wavlm)
    return Batch(mx.stop_gradient(latent), mx.array(teacher), wavlm)


def train_heads(
    model: Mimi,
    batches: Iterable[dict],
    *,
    steps: int,
    checkpoint_dir: str | Path | None = None,
    log: Callable[[StepLog], None] | None = None,
    **settings,
) -> list[StepLog]:
    """Train the variant's heads in place for ``steps`` optimizer steps (see the module docstring); returns the log.

    ``batches`` yields dicts: ``latent`` (B, F, 512) quantizer inputs (``model.encode_latent``) or ``pcm`` (B, T)
    audio, ``teacher`` (B, tokens, distill_dim) features, ``durations`` (B, tokens) frames per token (omit when the
    teacher is already at 12.5 Hz), and optionally ``wavlm`` (B, F, wavlm_dim) targets (loss B). Each optimizer
    step takes ``accumulate`` of them. ``settings``: the fields of ``TrainSettings`` (``content_lr``,
    ``prosody_lr``, ``acoustic_lr``, ``bridge_lr``, ``heads``, ``accumulate``, ...). With ``checkpoint_dir`` the
    run saves every ``checkpoint_every`` steps and at the end, and resumes from the latest checkpoint there (its
    weights, bridges, optimizer and EMA state, step); ``steps`` counts the total, so a resumed run does the rest.
    """
    known = {f for f in TrainSettings.__dataclass_fields__ if f != "steps"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise MimiError(f"train_heads has no setting {', '.join(map(repr, unknown))} (see TrainSettings)")
    trainer = HeadTrainer(model, TrainSettings(steps=steps, **settings))
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None and (resume := latest_checkpoint(folder)) is not None:
        _resume(trainer, resume)
    history: list[StepLog] = []
    iterator = iter(batches)
    while trainer.step < steps:
        micro = []
        for _ in range(trainer.settings.accumulate):
            try:
                micro.append(_batch(model, next(iterator), trainer.settings))
            except StopIteration:
                raise MimiError(f"the batches ran out after {trainer.step} of {steps} steps") from None
        shapes = {(tuple(m.latent.shape), m.wavlm is None) for m in micro}
        if len(shapes) > 1:
            raise MimiError(f"the micro-batches of one step must have equal shapes and targets, got {sorted(shapes)}")
        entry = trainer.train_step(micro)
        history.append(entry)
        if log is not None:
            log(entry)
        if folder is not None and (trainer.step % trainer.settings.checkpoint_every == 0 or trainer.step == steps):
            trainer.save(folder)
    return history


def npz_batches(model: Mimi, folder: Path, batch_size: int, seed: int = 0):
    """Endless batches from a folder of .npz clips (see ``mimi train-heads --help``): each clip's latent and
    aligned teacher, cut into windows of the shortest clip's length, drawn at random (seeded)."""
    files = sorted(Path(folder).glob("*.npz"))
    if not files:
        raise MimiError(f"{folder}: no .npz clips")
    clips = [_npz_clip(model, path) for path in files]
    if len({wavlm is None for _, _, wavlm in clips}) > 1:
        raise MimiError(f"{folder}: some clips have 'wavlm' targets and some do not: give them to all or none")
    window = min(latent.shape[0] for latent, _, _ in clips)
    rng = np.random.default_rng(seed)
    while True:
        picks = rng.integers(len(clips), size=batch_size)
        rows: dict[str, list] = {"latent": [], "teacher": [], "wavlm": []}
        for i in picks:
            start = int(rng.integers(clips[i][0].shape[0] - window + 1))
            for name, array in zip(rows, clips[i], strict=True):
                if array is not None:
                    rows[name].append(array[start : start + window])
        yield {name: np.stack(arrays) for name, arrays in rows.items() if arrays}


def _npz_clip(model: Mimi, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One .npz clip -> (latent (F, 512), teacher aligned to F, wavlm (F, dim) or None); any problem is a MimiError
    naming the file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "teacher" not in data or ("audio" in data) == ("latent" in data):
                raise MimiError("needs 'teacher' and exactly one of 'audio' and 'latent'")
            if "audio" in data:
                latent = np.array(model.encode_latent(data["audio"])[0])
            else:
                latent = np.asarray(data["latent"], dtype=np.float32)
                if latent.ndim != 2 or latent.shape[1] != model.config.hidden_size:
                    raise MimiError(f"latent must be (frames, {model.config.hidden_size}), got {latent.shape}")
                if not np.isfinite(latent).all():
                    raise MimiError("the latent holds NaN or infinite values")
            durations = data["durations"][None] if "durations" in data else None
            teacher = align_teacher(data["teacher"][None], durations, latent.shape[0])[0]
            wavlm = np.asarray(data["wavlm"], dtype=np.float32) if "wavlm" in data else None
            if wavlm is not None and (wavlm.ndim != 2 or wavlm.shape[0] != latent.shape[0]):
                raise MimiError(f"wavlm must be (frames={latent.shape[0]}, dim), got {wavlm.shape}")
            if wavlm is not None and not np.isfinite(wavlm).all():
                raise MimiError("wavlm targets hold NaN or infinite values")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # MimiError is a ValueError
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MimiError(f"{path}: {message}") from exc
    return latent.astype(np.float32), teacher, wavlm


def _resume(trainer: HeadTrainer, checkpoint: Path) -> None:
    saved = load_model(str(checkpoint))
    if saved.config != trainer.model.config:
        raise MimiError(f"{checkpoint} holds another model configuration than the one being trained")
    trainer.model.update(saved.parameters())
    arrays, meta = mx.load(str(checkpoint / "training.safetensors"), return_metadata=True)
    trainer.load_state(arrays)  # the bridges, optimizers, EMA, RNG; the loaded weights as parameters
    trainer.step = int(meta["step"])
