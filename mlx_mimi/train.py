"""Training the 9-codebook variant's heads in MLX: distillation to teacher features, EMA codebooks, AdamW.

What trains (mlx_mimi/variant.py names the stages): by default only what the surgery created, the content
stage's projections and the bridge (AdamW, betas (0.8, 0.99), lr 1e-4, the seed's settings); ``stages=
("content", "prosody")`` etc. also trains a transplanted stage's projections at ``transplanted_lr`` (1e-5).
The encoder, transformers and decoder never train here (their latents are inputs).

Losses, per step: the seed's distillation loss, MSE between ``bridge(content output)`` and the teacher's
features repeated to 12.5 Hz by the given token durations (``np.repeat``, the seed's repeat_interleave), plus
``commitment_weight`` x the commitment loss of every trained codebook (MSE between its input and its chosen
entry, gradient to the input only), as vector_quantize_pytorch computes it (the seed discards it: pass
``commitment_weight=0`` for the seed's exact objective). Gradients pass the codebook lookup straight through.

Codebooks of trained stages update as vector_quantize_pytorch's EMA k-means does (decay 0.8, its default;
Laplace-smoothed cluster sizes; the buffers start as the library starts them: sizes 1, sums = the entries),
plus dead-code replacement: an entry whose EMA cluster size falls under ``dead_code_threshold`` (2, Mimi's own
setting; the library's default 0 disables it) is replaced by a random input of the batch. Without it a fresh
codebook keeps the handful of entries the first batches hit.

Checkpoints: ``checkpoint_dir/step-NNNNNN/`` holds the model in mlx-mimi's converted layout (``mlx_mimi.load``
opens it) and ``training.safetensors`` (optimizer and EMA state, step, RNG key); ``checkpoint_dir/latest``
names the newest complete one and is replaced atomically after the folder is written, so a crash never
leaves a half checkpoint as ``latest``. ``train_heads(..., checkpoint_dir=d)`` resumes from ``d/latest``.
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
from mlx.utils import tree_flatten, tree_unflatten

from .atomic import atomic_write
from .convert import write_converted
from .errors import MimiError
from .layers.quantizer import nearest_code
from .load import load_model
from .model import STAGE_NAMES, Mimi
from .variant import cluster_sums, half_sq_norms

LAPLACE_EPS = 1e-5  # vector_quantize_pytorch's Codebook eps


@dataclass
class TrainSettings:
    steps: int
    lr: float = 1e-4
    transplanted_lr: float = 1e-5
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01  # torch.optim.AdamW's default
    stages: tuple[str, ...] = ("content",)
    commitment_weight: float = 1.0
    decay: float = 0.8
    dead_code_threshold: float = 2.0
    seed: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 2


@dataclass
class StepLog:
    step: int
    loss: float
    distill: float
    commitment: float
    codes_used: int  # distinct content codes in this batch
    alive: int  # content entries whose EMA cluster size is >= 1
    replaced: int  # content entries replaced as dead in this step
    extra: dict = field(default_factory=dict)


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


class HeadTrainer:
    """State of one training run: trainable parameters, optimizers, EMA buffers, RNG, step."""

    def __init__(self, model: Mimi, settings: TrainSettings):
        config = model.config
        if config.quantizer_topology != "chain" or config.distill_dim is None:
            raise MimiError("train_heads needs the 9-codebook variant (mimi variant nine-codebooks)")
        if config.quantization is not None:
            raise MimiError("train a float model (quantize it afterwards)")
        unknown = [s for s in settings.stages if s not in STAGE_NAMES]
        if unknown or not settings.stages:
            raise MimiError(f"stages must be among {', '.join(STAGE_NAMES)}, got {settings.stages!r}")
        if settings.steps < 0 or settings.checkpoint_every < 1 or settings.keep_checkpoints < 1:
            raise MimiError("steps must be >= 0, checkpoint_every and keep_checkpoints >= 1")
        self.model, self.settings = model, settings
        self.trained = [STAGE_NAMES.index(s) for s in settings.stages]
        self.quantizer = model.quantizer
        self.params = self.collect_params()
        adam = {"betas": list(settings.betas), "weight_decay": settings.weight_decay, "bias_correction": True}
        self.optimizers = {
            "new": optim.AdamW(settings.lr, **adam),
            "old": optim.AdamW(settings.transplanted_lr, **adam),
        }
        self.ema = {}
        for i in self.trained:
            books = self.quantizer.stages[i].codebooks
            self.ema[f"stage{i}"] = {"cluster_size": mx.ones(books.shape[:2]), "embed_avg": mx.array(books)}
        self.key = mx.random.key(settings.seed)
        self.step = 0

    def collect_params(self) -> dict:
        """The trainable arrays, grouped by learning rate: "new" (content stage, bridge), "old" (transplanted)."""
        new = {"bridge": {"weight": self.quantizer.bridge.weight, "bias": self.quantizer.bridge.bias}}
        old = {}
        for i in self.trained:
            stage = self.quantizer.stages[i]
            (new if i == 0 else old)[f"stage{i}"] = {"input_proj": stage.input_proj, "output_proj": stage.output_proj}
        return {"new": new, "old": old}

    # -- one step ---------------------------------------------------------------------------------------
    def _stage_params(self, params: dict, i: int) -> dict:
        group = params["new"] if i == 0 else params["old"]
        return group.get(f"stage{i}") or {
            "input_proj": self.quantizer.stages[i].input_proj,
            "output_proj": self.quantizer.stages[i].output_proj,
        }

    def _forward(self, params: dict, latent: mx.array, teacher: mx.array, searched: list):
        """The loss and its parts; appends (stage, level, inputs, codes) of each trained codebook to ``searched``
        for the EMA update. Every stage reads a stop-gradient input: a stage's commitment loss trains its own
        projections only, and the content stage learns from the distillation loss alone."""
        last = max(self.trained)
        total, content, commitment = None, None, mx.array(0.0)
        for i, stage in enumerate(self.quantizer.stages[: last + 1]):
            p = self._stage_params(params, i)
            residual = mx.stop_gradient(latent if total is None else latent - total) @ p["input_proj"].T
            stage_in, chosen = residual, mx.zeros_like(residual)
            for level in range(stage.codebooks.shape[0]):
                book = stage.codebooks[level]
                index = nearest_code(mx.stop_gradient(residual), book, stage.half_sq_norms[level])
                entry = book[index]
                if i in self.trained:
                    commitment = commitment + ((residual - entry) ** 2).mean()
                    searched.append((i, level, mx.stop_gradient(residual), index))
                residual = residual - entry
                chosen = chosen + entry
            out = (stage_in + mx.stop_gradient(chosen - stage_in)) @ p["output_proj"].T  # straight through
            content = out if i == 0 else content
            total = out if total is None else total + out
        bridge = params["new"]["bridge"]
        distill = ((content @ bridge["weight"].T + bridge["bias"] - teacher) ** 2).mean()
        return distill + self.settings.commitment_weight * commitment, distill, commitment

    def train_step(self, latent: mx.array, teacher: mx.array) -> StepLog:
        searched: list = []
        parts: list = []

        def loss_fn(params):
            searched.clear()
            parts.clear()
            loss, distill, commitment = self._forward(params, latent, teacher, searched)
            parts.extend([mx.stop_gradient(distill), mx.stop_gradient(commitment)])
            return loss

        loss, grads = mx.value_and_grad(loss_fn)(self.params)
        if not math.isfinite(loss.item()):  # before any weight, optimizer or EMA state changes
            raise MimiError(
                f"step {self.step + 1}: the loss is {loss.item()} (distillation {parts[0].item()}, commitment "
                f"{parts[1].item()}); stopped before updating or saving anything: check the teacher features, "
                "latents and learning rates"
            )
        self.params = {
            group: self.optimizers[group].apply_gradients(grads[group], self.params[group])
            if self.params[group]
            else {}
            for group in ("new", "old")
        }
        self._write_back()
        replaced = self._ema_update(searched)
        mx.eval(self.params, self.ema, self.quantizer.parameters())
        self.step += 1
        content_codes = [index for i, level, _, index in searched if i == 0 and level == 0]
        used = int(np.unique(np.array(content_codes[0])).size) if content_codes else 0
        alive = int((self.ema["stage0"]["cluster_size"] >= 1).sum().item()) if "stage0" in self.ema else 0
        distill, commitment = parts
        return StepLog(self.step, loss.item(), distill.item(), commitment.item(), used, alive, replaced.get(0, 0))

    def _write_back(self) -> None:
        bridge = self.params["new"]["bridge"]
        self.quantizer.bridge.weight, self.quantizer.bridge.bias = bridge["weight"], bridge["bias"]
        for i in self.trained:
            p = self._stage_params(self.params, i)
            self.quantizer.stages[i].input_proj, self.quantizer.stages[i].output_proj = (
                p["input_proj"],
                p["output_proj"],
            )

    def _ema_update(self, searched) -> dict[int, int]:
        """vector_quantize_pytorch's EMA k-means step, then dead-code replacement; returns replaced counts."""
        s = self.settings
        replaced: dict[int, int] = {}
        for i, level, inputs, index in searched:
            stage = self.quantizer.stages[i]
            buffers = self.ema[f"stage{i}"]
            size = stage.codebooks.shape[1]
            flat, codes = inputs.reshape(-1, inputs.shape[-1]), index.reshape(-1)
            counts, sums = cluster_sums(flat, codes, size)
            cluster_size = buffers["cluster_size"][level] * s.decay + counts * (1 - s.decay)
            embed_avg = buffers["embed_avg"][level] * s.decay + sums * (1 - s.decay)
            n = cluster_size.sum()
            smoothed = (cluster_size + LAPLACE_EPS) / (n + size * LAPLACE_EPS) * n
            book = embed_avg / smoothed[:, None]
            if s.dead_code_threshold > 0:
                # the k-th dead entry takes the k-th of a random permutation of the batch's inputs; with more
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
                    replaced[i] = replaced.get(i, 0) + count
            buffers["cluster_size"] = _set_row(buffers["cluster_size"], level, cluster_size)
            buffers["embed_avg"] = _set_row(buffers["embed_avg"], level, embed_avg)
            stage.codebooks = _set_row(stage.codebooks, level, book)
            stage.half_sq_norms = _set_row(stage.half_sq_norms, level, half_sq_norms(book))
        return replaced

    # -- checkpoints ------------------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, mx.array]:
        out = {f"ema.{k}": v for k, v in tree_flatten(self.ema)}
        for group, opt in self.optimizers.items():
            out.update({f"optimizer.{group}.{k}": v for k, v in tree_flatten(opt.state)})
        out["rng_key"] = self.key
        return out

    def load_state(self, arrays: dict[str, mx.array]) -> None:
        self.ema = tree_unflatten([(k[4:], v) for k, v in arrays.items() if k.startswith("ema.")])
        for group, opt in self.optimizers.items():
            prefix = f"optimizer.{group}."
            items = [(k[len(prefix) :], v) for k, v in arrays.items() if k.startswith(prefix)]
            if items:
                opt.state = tree_unflatten(items)
        self.key = arrays["rng_key"]

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


def _batch_arrays(model: Mimi, batch) -> tuple[mx.array, mx.array]:
    if not isinstance(batch, dict):
        raise MimiError("each batch must be a dict with 'latent' or 'pcm', 'teacher' and optionally 'durations'")
    if ("latent" in batch) == ("pcm" in batch):
        raise MimiError("a batch needs exactly one of 'latent' (B, F, 512) and 'pcm' (B, T) audio at 24 kHz")
    if "teacher" not in batch:
        raise MimiError("a batch needs 'teacher' features (B, tokens, dim)")
    latent = mx.array(batch["latent"]) if "latent" in batch else model.encode_latent(batch["pcm"])
    latent = latent.astype(mx.float32)
    if not mx.all(mx.isfinite(latent)).item():
        raise MimiError("the batch's latent holds NaN or infinite values")
    if latent.ndim != 3 or latent.shape[-1] != model.config.hidden_size:
        raise MimiError(f"latent must be (B, F, {model.config.hidden_size}), got {tuple(latent.shape)}")
    teacher = align_teacher(batch["teacher"], batch.get("durations"), latent.shape[1])
    if teacher.shape[0] != latent.shape[0] or teacher.shape[-1] != model.config.distill_dim:
        raise MimiError(
            f"teacher features must be (B={latent.shape[0]}, ..., {model.config.distill_dim}), got {teacher.shape}"
        )
    return mx.stop_gradient(latent), mx.array(teacher)


def train_heads(
    model: Mimi,
    batches: Iterable[dict],
    *,
    steps: int,
    lr: float = 1e-4,
    checkpoint_dir: str | Path | None = None,
    log: Callable[[StepLog], None] | None = None,
    **settings,
) -> list[StepLog]:
    """Train the variant's heads in place for ``steps`` steps (see the module docstring); returns the log.

    ``batches`` yields dicts: ``latent`` (B, F, 512) quantizer inputs (``model.encode_latent``) or ``pcm``
    (B, T) audio, ``teacher`` (B, tokens, distill_dim) features, and ``durations`` (B, tokens) frames per
    token (omit when the teacher is already at 12.5 Hz). With ``checkpoint_dir`` the run saves every
    ``checkpoint_every`` steps and at the end, and resumes from the latest checkpoint there (its weights,
    optimizer and EMA state, step); ``steps`` counts the total, so a resumed run does the remainder.
    """
    trainer = HeadTrainer(model, TrainSettings(steps=steps, lr=lr, **settings))
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None and (resume := latest_checkpoint(folder)) is not None:
        _resume(trainer, resume)
    history: list[StepLog] = []
    iterator = iter(batches)
    while trainer.step < steps:
        try:
            batch = next(iterator)
        except StopIteration:
            raise MimiError(f"the batches ran out after {trainer.step} of {steps} steps") from None
        entry = trainer.train_step(*_batch_arrays(model, batch))
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
    window = min(latent.shape[0] for latent, _ in clips)
    rng = np.random.default_rng(seed)
    while True:
        picks = rng.integers(len(clips), size=batch_size)
        latents, teachers = [], []
        for i in picks:
            latent, teacher = clips[i]
            start = int(rng.integers(latent.shape[0] - window + 1))
            latents.append(latent[start : start + window])
            teachers.append(teacher[start : start + window])
        yield {"latent": np.stack(latents), "teacher": np.stack(teachers)}


def _npz_clip(model: Mimi, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One .npz clip -> (latent (F, 512), teacher aligned to F); any problem is a MimiError naming the file."""
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
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # MimiError is a ValueError
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MimiError(f"{path}: {message}") from exc
    return latent.astype(np.float32), teacher


def _resume(trainer: HeadTrainer, checkpoint: Path) -> None:
    saved = load_model(str(checkpoint))
    if saved.config != trainer.model.config:
        raise MimiError(f"{checkpoint} holds another model configuration than the one being trained")
    trainer.model.update(saved.parameters())
    arrays, meta = mx.load(str(checkpoint / "training.safetensors"), return_metadata=True)
    trainer.params = trainer.collect_params()  # the loaded weights
    trainer.load_state(arrays)
    trainer.step = int(meta["step"])
