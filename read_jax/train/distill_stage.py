"""Few-step students of the A2V-DiT: guidance distillation, then progressive step distillation.

``config.stage = "distill"`` (configs/distill.py); the targets are :mod:`read_jax.ans.distill`, the method and
its references ``docs/distillation.md``. The data are stage 2's clips (``latents`` + ``speech``, as
``a2v_stage.py``). Params are ``{"student": …, "teacher": …, "speech_ae": …}``; only the student trains.
The teacher (A2V-DiT and SpeechAE) is read from ``config.init_checkpoint``, a read_jax checkpoint
directory (the bundled demo, ``scripts/convert.py import-run`` of a stage-2 run, or an earlier round's
student), by :meth:`DistillStage.init_from_checkpoint`; a fresh student is that teacher plus the
guidance embedding, whose zero last layer makes it compute the teacher's conditional branch exactly.

  config.distill.mode = "guidance"     teacher: Split CFG (3 rows); student: one row with (α, β) as input;
                                       per-frame timesteps from the ANS forward process
  config.distill.mode = "progressive"  teacher: a guidance-distilled student at 2n steps; student: n steps
                                       (``config.distill.student_steps``); one student step per example
  config.distill.pattern = "causal"    with a causal model (``config.model.causal``): the steps of the KV-cached
                                       window (read_jax.ans.causal), the last frame after a clean context
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from read_jax import ans
from read_jax.ans import distill
from read_jax.ans.guidance import guided_velocity
from read_jax.convert import checkpoint_dir, native
from read_jax.convert.prompt import load_text_embedding
from read_jax.errors import CheckpointError, ConfigError
from read_jax.models import a2v_dit
from read_jax.models.speech_ae import SpeechAE
from read_jax.nn.dtypes import DTYPES
from read_jax.train.a2v_stage import clip_batch_spec
from read_jax.train.stage import as_float32, train_val_datasets

MODES = ("guidance", "progressive")


class DistillStage:
  """Distillation (``config.stage = "distill"``); see the module docstring."""

  # The loop refuses to start without it (there is no teacher to distil otherwise).
  needs_init_checkpoint = ("config.init_checkpoint: the teacher, a read_jax checkpoint directory with a2v_dit/ and "
                           "speech_ae/ (e.g. assets/demo, or an earlier round's student)")

  def __init__(self, config):
    self.config = config
    d = config.distill
    if d.mode not in MODES:
      raise ConfigError(f"config.distill.mode={d.mode!r} is not one of {MODES}")
    if d.mode == "progressive" and not (isinstance(d.student_steps, int) and d.student_steps >= 1):
      raise ConfigError(f"config.distill.student_steps={d.student_steps!r}: need a positive integer")
    for name in ("alpha", "beta"):
      r = tuple(d[name])
      if len(r) != 2 or r[0] > r[1]:
        raise ConfigError(f"config.distill.{name}={list(r)}: need [low, high] with low <= high")
    m, s = dict(config.model), config.speech_ae
    if s.latent_dim != m["audio_dim"] or s.latent_tokens != m["audio_tokens"]:
      raise ConfigError(f"config.speech_ae (latent_tokens={s.latent_tokens}, latent_dim={s.latent_dim}) must "
                        f"match config.model (audio_tokens={m['audio_tokens']}, audio_dim={m['audio_dim']})")
    self.mode = d.mode
    self.pattern = d.get("pattern", "clip")  # absent in configs saved before the key
    if self.pattern not in distill.PATTERNS:
      raise ConfigError(f"config.distill.pattern={self.pattern!r} is not one of {distill.PATTERNS}")
    if self.pattern == "causal" and not (d.mode == "progressive" and config.model.causal):
      raise ConfigError("config.distill.pattern='causal' distils the cached window's steps: a progressive round of "
                        "a causal model (config.model.causal=True; configs/distill.py:demo,causal)")
    # The teacher of the guidance round has CFG branches; a progressive round's teacher is a student.
    self.teacher_is_student = d.mode == "progressive"
    self.init_uses_fresh_params = not self.teacher_is_student  # the guidance round's new embedding, as initialised
    self.student = a2v_dit.build_model({**m, "guidance_embeds": True})
    self.teacher = a2v_dit.build_model({**m, "guidance_embeds": self.teacher_is_student})
    self.speech_ae = SpeechAE(**s, dtype=DTYPES[m["dtype"]], param_dtype=DTYPES[m["param_dtype"]])
    self.text, self.text_mask = load_text_embedding(config.text.path, m["caption_channels"])
    a = config.ans
    self.ans = ans.ANSConfig(mu=a.mu, sigma=a.sigma, p_sync=a.p_sync, p_drop_identity=0.0, p_drop_audio=0.0)

  # -- Stage protocol -------------------------------------------------------------------------------------

  def batch_spec(self):
    return clip_batch_spec(self.config)  # stage 2's clips

  def init(self, key, batch_spec):
    k_student, k_teacher, k_sae = jax.random.split(key, 3)
    lat, sp = batch_spec["latents"], batch_spec["speech"]
    x = jnp.zeros((1,) + lat.shape[1:], lat.dtype)
    speech = jnp.zeros((1,) + sp.shape[1:], sp.dtype)
    c = jax.eval_shape(lambda: self.speech_ae.init_with_output(k_sae, speech)[0][0])
    args = (x, jnp.zeros(x.shape[:2]), jnp.zeros((1,) + c.shape[1:], c.dtype), self.text, self.text_mask)
    g = jnp.zeros((1, 2), jnp.float32)
    return {"student": self.student.init(k_student, *args, guidance=g)["params"],
            "teacher": self.teacher.init(k_teacher, *args, guidance=g if self.teacher_is_student else None)["params"],
            "speech_ae": self.speech_ae.init(k_sae, speech)["params"]}

  def loss_fn(self, params, batch, key):
    latents, speech = batch["latents"], batch["speech"]  # [B, 1+f, h, w, C], [B, F, Hw, DA]
    d = self.config.distill
    c = jax.lax.stop_gradient(self.speech_ae.apply({"params": params["speech_ae"]}, speech, method=SpeechAE.encode))
    teacher_params = jax.lax.stop_gradient(params["teacher"])
    k_g, k_ex = jax.random.split(key)
    guidance = distill.sample_guidance(k_g, latents.shape[0], tuple(d.alpha), tuple(d.beta))

    def student(x, t, g):
      return self.student.apply({"params": params["student"]}, x, t, c, self.text, self.text_mask, guidance=g)

    if self.mode == "guidance":
      ex = ans.training_example(k_ex, latents, c, self.ans)
      teacher = lambda xb, tb, sb: self.teacher.apply({"params": teacher_params}, xb, tb, sb, self.text,  # noqa: E731
                                                      self.text_mask)
      target = jax.lax.stop_gradient(guided_velocity(teacher, "split", None, ex["x"], ex["t"], c, guidance))
      v = student(ex["x"], ex["t"], guidance)
      loss = ans.flow_matching_loss(v, target, ex["loss_mask"])
      t_mean = jnp.sum(ex["t"] * ex["loss_mask"]) / jnp.maximum(jnp.sum(ex["loss_mask"]), 1.0)
      return loss, {"t_mean": t_mean, "sync_fraction": jnp.mean(ex["is_sync"].astype(jnp.float32))}

    ex = distill.progressive_example(k_ex, latents, d.student_steps, shift=d.shift, p_sync=self.ans.p_sync,
                                     pattern=self.pattern)
    teacher = lambda x, t, s, g: self.teacher.apply({"params": teacher_params}, x, t, s, self.text,  # noqa: E731
                                                    self.text_mask, guidance=g)
    target = jax.lax.stop_gradient(distill.progressive_target(teacher, ex, c, guidance))
    v = student(ex["x"], ex["t"], guidance)
    loss = ans.flow_matching_loss(v, target, ex["owned"])
    return loss, {"t_mean": jnp.mean(ex["t_a"]), "sync_fraction": jnp.mean(ex["is_sync"].astype(jnp.float32))}

  def trainable(self, params):
    return {"student": jax.tree.map(lambda _: True, params["student"]),
            "teacher": jax.tree.map(lambda _: False, params["teacher"]),
            "speech_ae": jax.tree.map(lambda _: False, params["speech_ae"])}

  def datasets(self, process_index, process_count):
    return train_val_datasets(self.config.data, as_float32, process_index, process_count)

  # -- Teacher loading (the loop calls it once, on a fresh run, instead of restoring config.init_checkpoint) --

  def init_from_checkpoint(self, path: str, fresh) -> dict:
    """``{"student", "teacher", "speech_ae"}`` from the teacher directory ``path``; ``fresh`` is the stage's
    initialised params (the new guidance embedding comes from it, its last layer zero)."""
    path = os.path.abspath(os.path.expanduser(path))
    if not checkpoint_dir.is_checkpoint_dir(path):
      raise CheckpointError(f"config.init_checkpoint={path}: not a read_jax checkpoint directory (the teacher: "
                            "a2v_dit/ and speech_ae/, e.g. assets/demo)")
    for part in ("a2v_dit", "speech_ae"):
      if not os.path.isdir(os.path.join(path, part)):
        raise CheckpointError(f"config.init_checkpoint={path}: no {part}/ (the teacher needs a2v_dit/ and speech_ae/)")
    teacher_config = native.read_config(os.path.join(path, "a2v_dit"), "a2v_dit")
    if bool(teacher_config.get("guidance_embeds", False)) != self.teacher_is_student:
      want = ("a guidance-distilled student (distill mode 'guidance' first)" if self.teacher_is_student
              else "a CFG teacher (no guidance embedding)")
      raise CheckpointError(f"config.init_checkpoint={path}: config.distill.mode={self.mode!r} needs {want} as "
                            f"its teacher; a2v_dit/config.json has guidance_embeds={teacher_config.get('guidance_embeds', False)}")
    _, teacher = native.load_module(os.path.join(path, "a2v_dit"), "a2v_dit", fresh["teacher"])
    _, sae = native.load_module(os.path.join(path, "speech_ae"), "speech_ae", fresh["speech_ae"])
    cast = lambda tree, like: jax.tree.map(lambda a, s: np.asarray(a, s.dtype), tree, like)  # noqa: E731
    teacher = cast(teacher, fresh["teacher"])
    student = dict(teacher)
    if not self.teacher_is_student:  # the fresh embedding as initialised (stays on its devices)
      student["guidance_embedder"] = fresh["student"]["guidance_embedder"]
    return {"student": student, "teacher": teacher, "speech_ae": cast(sae, fresh["speech_ae"])}

  def pipeline_settings(self) -> dict:
    """What a student's ``pipeline.json`` says (``read_jax.train.export``): one pass, and its step count."""
    d = self.config.distill
    if self.mode == "guidance":
      return {"cfg": "distilled", "distilled_steps": []}
    return {"cfg": "distilled", "steps": int(d.student_steps), "distilled_steps": [int(d.student_steps)],
            "shift": float(d.shift)}
