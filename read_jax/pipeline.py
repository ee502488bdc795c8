"""Generation: one portrait + a speech recording → a lip-synced talking-head video (docs/design.md §3.9).

  pipe = ReadPipeline.from_pretrained("assets/demo")
  frames = pipe.generate("face.png", "speech.wav")             # uint8 [F, H, W, 3], F = 25 × seconds
  for frames in pipe.stream("face.png", "speech.wav"): ...     # clip by clip, first clip first
  pipe.write_video("face.png", "speech.wav", "out.mp4")        # streamed to disk, speech muxed in

A read_jax checkpoint directory holds:

  pipeline.json        generation settings (fps, clip length, steps, CFG, ...; :class:`PipelineConfig`)
  vae/                 the LTX-Video VAE, diffusers layout (config.json + diffusion_pytorch_model.safetensors)
  speech_encoder/      the speech encoder in its kind's layout (Whisper: transformers, config.json +
                       model.safetensors; :mod:`read_jax.convert.speech_encoders`); older checkpoints: whisper/
  speech_ae/, a2v_dit/ read_jax modules (config.json + model.safetensors, :mod:`read_jax.convert.native`)
  prompt.safetensors   the constant T5 prompt embedding (pipeline.json ``text_conditioning``: without one the
                       model has no text attention; a checkpoint that expects one warns when it is missing)

Data flow: the reference image is face-cropped and encoded to z_R; the audio is resampled to 16 kHz,
encoded by the speech encoder (Whisper) into per-frame windows S [F, 10, D], padded with silence to whole clips and
compressed by the SpeechAE into C [N, 2, dA]; the ANS sampler generates the latent clips one after
another (:func:`read_jax.ans.sampling.stream_clips`), each decoded by the VAE as soon as it is done.
Every stage has fixed shapes per clip, so a longer audio runs the same compiled programs more often.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import time
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from read_jax import audio as audio_lib
from read_jax import media
from read_jax import speech as speech_lib
from read_jax.ans import causal, rolling, sampling, solvers
from read_jax.ans.guidance import CFG_MODES, guidance_scales
from read_jax.convert import checkpoint_dir, native
from read_jax.constants import FRAMES_PER_LATENT
from read_jax.convert.prompt import load_text_embedding
from read_jax.convert.speech_encoders import init_speech_encoder, load_speech_encoder, part_path, save_speech_encoder
from read_jax.convert.vae import export_vae, load_vae
from read_jax.errors import ConfigError
from read_jax.files import CheckpointError, read_json, write_json, write_safetensors
from read_jax.models import a2v_dit
from read_jax.models.speech_ae import SpeechAE
from read_jax.models.vae import (AutoencoderKLLTXVideo, DecodeState, compression_ratios, stream_decode_apply,
                                 stream_decode_init, stream_decode_step, stream_lookahead)

PIPELINE_CONFIG = "pipeline.json"
PROMPT_FILE = checkpoint_dir.PROMPT_FILE


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Generation settings stored with a checkpoint (``pipeline.json``); per-call arguments override them."""

  fps: int = 25  # video frame rate (Whisper's 50 Hz gives 2 frames per video frame at 25)
  resolution: int = 512  # square frame size in pixels (a multiple of the VAE's 32)
  clip_frames: int = 16  # f, latent frames per clip (121 video frames: the training length)
  steps: int = 8  # solver steps per clip (paper C.4: 8 denoiser passes with Euler)
  cfg: str = "split"  # "split" (Eq. 17), "joint" (Eq. 16), "none", or "distilled" (a guidance-distilled student)
  solver: str = "euler"  # read_jax.ans.solvers.SOLVERS: "euler" (Algorithm 1), "heun" (2nd order, 2 passes a step)
  alpha: float | None = None  # reference / joint guidance scale (None: paper default 2)
  beta: float | None = None  # speech guidance scale for split CFG (None: paper default 6)
  shift: float = 1.0  # timestep shift of the schedule (1 = linear)
  decode_timestep: float = 0.0  # timestep-conditioned VAE decoders only (LTX 0.9.1+)
  decode_noise_scale: float | None = None  # idem; None = decode_timestep
  # Whether the model was trained with the text prompt: without prompt.safetensors such a checkpoint
  # warns (text attention is then off); the demo model has no text conditioning by design (False: no warning).
  text_conditioning: bool = True
  # Crop the reference around the detected face, as the training data was cropped (scripts/preprocess.py);
  # False: take the largest centred square as it is (models trained on whole frames, e.g. the demo model).
  face_crop: bool = True
  # Which audio Whisper sees per frame (read_jax.speech): "whole" 30 s windows (what the demo was trained on),
  # "live" (4 s windows ending 140 ms after each latent frame: computable as the audio streams) or "live:<seconds>".
  speech_window: str = "whole"
  # A step-distilled student (docs/distillation.md): the step counts it was distilled for, the only ones it
  # samples with; empty: any (the teacher, and a guidance-only student).
  distilled_steps: tuple = ()
  # How latent frames are sampled (docs/serving.md, "Clip mode and the rolling window"): "clip", the ANS clips of
  # clip_frames (Algorithm 1), or "rolling", a window of clip_frames advancing one latent frame at a time with
  # noisy_frames of them noisy (read_jax.ans.rolling: a frame comes out noisy_frames − 1 latent frames after its
  # audio, not a clip after; the model must be trained for it, ANSConfig.p_rolling). ``mode`` is for generation
  # from files, ``live_mode`` for live sessions; decode_context: latent frames each rolling frame is decoded with
  # (0: clip_frames).
  mode: str = "clip"
  live_mode: str = "clip"
  noisy_frames: int = 2
  decode_context: int = 0

  def __post_init__(self):
    object.__setattr__(self, "distilled_steps", tuple(int(n) for n in self.distilled_steps))
    for name, allowed in (("mode", rolling.MODES), ("live_mode", rolling.MODES), ("cfg", CFG_MODES),
                          ("solver", tuple(solvers.SOLVERS))):
      if getattr(self, name) not in allowed:
        raise CheckpointError(f"{PIPELINE_CONFIG}: {name}: must be one of {allowed}, got {getattr(self, name)!r}")
    try:
      speech_lib.window_policy(self.speech_window)  # a bad value fails when pipeline.json loads
    except ValueError as e:
      raise CheckpointError(f"{PIPELINE_CONFIG}: speech_window: {e}") from None

  @classmethod
  def from_dict(cls, d: dict) -> "PipelineConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise CheckpointError(f"{PIPELINE_CONFIG}: unknown settings {unknown} (known: {sorted(known)})")
    return cls(**d)


def check_sampling(student: bool, distilled_steps: tuple, steps, cfg: str) -> None:
  """Refuse the settings a checkpoint cannot sample with: CFG branches on a guidance-distilled student, the
  "distilled" mode on a teacher, a step count a step-distilled student was not distilled for."""
  if student and cfg != "distilled":
    raise ConfigError("this checkpoint's A2V-DiT is a guidance-distilled student (one pass with (α, β) as inputs, "
                      "no CFG branches): its mode is 'distilled' (its pipeline.json's default)", arg="cfg", value=cfg)
  if cfg == "distilled" and not student:
    raise ConfigError("this checkpoint's A2V-DiT has no guidance embedding (it is not a distilled student: "
                      "docs/distillation.md); use 'split', 'joint' or 'none'", arg="cfg", value=cfg)
  if distilled_steps and steps not in distilled_steps:
    raise ConfigError(f"this checkpoint was distilled to {' or '.join(map(str, distilled_steps))} step(s) and samples "
                      "with no other count", arg="steps", value=steps)


def check_checkpoint_sampling(path: str, steps: int | None = None, cfg: str | None = None,
                              noisy: int | None = None) -> None:
  """:func:`check_sampling` for a checkpoint directory from its JSON files alone (before any weight loads):
  the per-call ``steps`` / ``cfg`` where given, the checkpoint's own settings otherwise; a rolling window's
  ``noisy`` frames where given."""
  config_path = os.path.join(path, PIPELINE_CONFIG)
  settings = PipelineConfig.from_dict(read_json(config_path)) if os.path.isfile(config_path) else PipelineConfig()
  dit_config = native.read_config(os.path.join(path, "a2v_dit"), "a2v_dit")
  steps = settings.steps if steps is None else steps
  check_sampling(bool(dit_config.get("guidance_embeds", False)), settings.distilled_steps, steps,
                 settings.cfg if cfg is None else cfg)
  if noisy is not None:
    rolling.check_noisy(steps, noisy, settings.clip_frames)


@dataclasses.dataclass
class Timings:
  """Wall seconds per stage of the last generation (filled as it runs)."""

  speech_encoder: float = 0.0
  speech_ae: float = 0.0
  reference: float = 0.0
  denoise: float = 0.0
  vae_decode: float = 0.0
  write: float = 0.0
  video_seconds: float = 0.0

  @property
  def total(self) -> float:
    return self.speech_encoder + self.speech_ae + self.reference + self.denoise + self.vae_decode + self.write


class ReadPipeline:
  """The whole READ generator. Build it with :meth:`from_pretrained` or from modules and params."""

  def __init__(self, *, vae, vae_variables, speech_encoder: speech_lib.SpeechEncoder, speech_ae, speech_ae_params,
               dit, dit_params, text=None, text_mask=None, config: PipelineConfig = PipelineConfig()):
    self.vae, self.vae_variables = vae, vae_variables
    self.speech_encoder = speech_encoder
    self.speech_ae, self.speech_ae_params = speech_ae, speech_ae_params
    self.dit, self.dit_params = dit, dit_params
    if text is None:
      text, text_mask = _prompt(None, dit.caption_channels, config)
    self.text, self.text_mask = jnp.asarray(text), jnp.asarray(text_mask, bool)
    self.config = config
    self.timings = Timings()
    ks, kt = self._vae_ratios()
    if config.resolution % ks:
      raise ValueError(f"{PIPELINE_CONFIG}: resolution {config.resolution} is not a multiple of the VAE's {ks}")
    if kt != FRAMES_PER_LATENT:
      raise ValueError(f"the VAE compresses time {kt}×; the SpeechAE and sampler assume {FRAMES_PER_LATENT}×")
    self._denoise = a2v_dit.Denoiser(dit)  # a value: programs compiled for one pipeline serve every equal one
    self._silence = {}  # (policy, samples) → (speech stream fed that silence, its rows): live_speech_features

  def _vae_ratios(self):
    return compression_ratios(self.vae.config)

  def _decode_settings(self) -> dict:
    return dict(timestep=self.config.decode_timestep, noise_scale=self.config.decode_noise_scale)

  def _decode_pixels(self, z, key):
    """Pixels [B, 1 + 8(t − 1), H, W, 3] of normalised latents z [B, t, h, w, C] (``vae.decode_latents``)."""
    return _decode(self.vae, self.vae_variables, z, key, **self._decode_settings())

  # ------------------------------------------------------------------------------------------
  # Loading and saving

  @classmethod
  def from_pretrained(cls, path: str, *, dtype=jnp.float32) -> "ReadPipeline":
    """Load a read_jax checkpoint directory (layout in the module docstring)."""
    if not os.path.isdir(path):
      raise CheckpointError(f"{path}: no such checkpoint directory")
    checkpoint_dir.check_complete(path)  # every part there, and their widths fit together
    config_path = os.path.join(path, PIPELINE_CONFIG)
    settings = PipelineConfig()
    if os.path.isfile(config_path):
      settings = PipelineConfig.from_dict(read_json(config_path))
    vae, vae_variables = load_vae(os.path.join(path, "vae"), dtype=dtype)
    speech_encoder = load_speech_encoder(part_path(path), dtype=dtype)
    sae_config, sae_params = native.load_module(os.path.join(path, "speech_ae"), "speech_ae")
    speech_ae = SpeechAE(**sae_config, dtype=dtype)
    dit_config, dit_params = native.load_module(os.path.join(path, "a2v_dit"), "a2v_dit")
    dit = a2v_dit.build_model({**dit_config, "dtype": jnp.dtype(dtype).name})
    prompt = os.path.join(path, PROMPT_FILE)
    text, mask = _prompt(prompt if os.path.isfile(prompt) else None, dit.caption_channels, settings)
    as_jnp = lambda tree: jax.tree.map(jnp.asarray, tree)
    return cls(vae=vae, vae_variables=vae_variables, speech_encoder=speech_encoder, speech_ae=speech_ae,
               speech_ae_params=as_jnp(sae_params), dit=dit, dit_params=as_jnp(dit_params), text=text,
               text_mask=mask, config=settings)

  @classmethod
  def from_config(cls, key, config) -> "ReadPipeline":
    """Fresh weights from one config with sections ``vae``, ``speech_encoder``, ``speech_ae``, ``dit`` and
    ``pipeline`` (configs/demo.py)."""
    return cls.from_configs(key, vae=config.vae, speech_encoder=config.speech_encoder,
                            speech_ae=dict(config.speech_ae), dit=dict(config.dit),
                            config=PipelineConfig(**config.pipeline))

  @classmethod
  def from_configs(cls, key, *, vae, speech_encoder, speech_ae, dit, text=None, text_mask=None,
                   config: PipelineConfig = PipelineConfig()) -> "ReadPipeline":
    """A pipeline with freshly initialised weights, from ConfigDicts/dicts of each part:
    ``vae`` (configs/vae_ltx.py), ``speech_encoder`` (a ``kind`` and its fields: configs/whisper.py),
    ``speech_ae`` (SpeechAE fields) and ``dit`` (A2VDiT fields). For tests, benchmarks and the start of demo
    training."""
    # Jitted inits with the "rbg" PRNG: XLA compiles the VAE's init several times faster than with threefry.
    seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
    k_vae, k_speech, k_sae, k_dit = jax.random.split(jax.random.key(seed, impl="rbg"), 4)
    vae_module = AutoencoderKLLTXVideo.from_config(vae)
    ks, _ = compression_ratios(vae_module.config)
    vae_variables = _init(vae_module, k_vae, ((1, 1, ks, ks, vae_module.config.in_channels),))
    encoder = init_speech_encoder(k_speech, speech_encoder)
    sae = SpeechAE(**speech_ae)
    sae_params = _init(sae, k_sae, ((1, 1, sae.window, sae.feature_dim),))["params"]
    dit_module = a2v_dit.build_model(dit)
    if text is None:
      text, text_mask = _prompt(None, dit_module.caption_channels, config)
    dit_params = a2v_dit.init_params(dit_module, k_dit)  # unboxed: plain arrays for inference
    return cls(vae=vae_module, vae_variables=vae_variables, speech_encoder=encoder, speech_ae=sae,
               speech_ae_params=sae_params, dit=dit_module, dit_params=dit_params, text=text, text_mask=text_mask,
               config=config)

  def save_pretrained(self, path: str) -> None:
    """Write this pipeline as a read_jax checkpoint directory."""
    os.makedirs(path, exist_ok=True)
    write_json(os.path.join(path, PIPELINE_CONFIG), dataclasses.asdict(self.config))
    export_vae(self.vae, self.vae_variables, os.path.join(path, "vae"))
    save_speech_encoder(self.speech_encoder, os.path.join(path, checkpoint_dir.SPEECH_ENCODER))
    sae_fields = {f: getattr(self.speech_ae, f) for f in ("feature_dim", "window", "hidden_dim", "latent_tokens",
                                                         "latent_dim", "kernel_size")}
    native.save_module(os.path.join(path, "speech_ae"), "speech_ae", sae_fields, self.speech_ae_params)
    dit_fields = {f.name: getattr(self.dit, f.name) for f in dataclasses.fields(self.dit)
                  if f.name not in ("parent", "name", "dtype", "param_dtype")}
    native.save_module(os.path.join(path, "a2v_dit"), "a2v_dit", dit_fields, self.dit_params)
    if bool(jnp.any(self.text_mask)):
      write_safetensors(os.path.join(path, PROMPT_FILE),
                        {"prompt_embeds": np.asarray(self.text, np.float32)[0],
                         "prompt_attention_mask": np.asarray(self.text_mask, np.int64)[0]})

  # ------------------------------------------------------------------------------------------
  # Inputs

  def reference_latent(self, image) -> jax.Array:
    """z_R [h, w, C] of a reference image (path or array; any size or mode: face-cropped, resized)."""
    t0 = time.perf_counter()
    z = self.encode_reference(image)
    self.timings.reference += _block(z, t0)
    return z

  def encode_reference(self, image) -> jax.Array:
    """:meth:`reference_latent` without touching ``self.timings`` (a live session keeps its own)."""
    return _encode_image(self.vae, self.vae_variables, jnp.asarray(self._reference_pixels(image))[None, None])[0, 0]

  def _reference_pixels(self, image) -> np.ndarray:
    detector = {} if self.config.face_crop else {"detector": None}  # {}: the default face detector
    return media.load_reference_image(image, self.config.resolution, **detector)  # [S, S, 3] in [-1, 1]

  def pre_roll_latents(self, image) -> np.ndarray:
    """The rolling window's pre-roll [f − 1, h, w, C]: the latents of the portrait held still for 1 + 8(f − 2)
    video frames (``read_jax.ans.rolling``)."""
    pixels = jnp.asarray(self._reference_pixels(image))
    still = jnp.broadcast_to(pixels, (rolling.pre_roll_frames(self.config.clip_frames),) + pixels.shape)
    return np.asarray(_encode_image(self.vae, self.vae_variables, still[None])[0], np.float32)

  def live_speech_features(self, policy, silence_samples: int = 0) -> tuple[speech_lib.LiveSpeechFeatures, np.ndarray]:
    """A live speech stream (:class:`speech.LiveSpeechFeatures`) of this pipeline's encoder under ``policy``, already
    fed ``silence_samples`` of silence, and the rows [n, 10, D] that silence gave. Every rolling and causal session
    starts with the same silence (its pre-roll's), so those Whisper windows are computed once per pipeline, policy
    and length, and each session gets its own copy of the stream."""
    features = speech_lib.LiveSpeechFeatures(self.speech_encoder, policy)
    key = (features.policy, int(silence_samples))
    if key not in self._silence:
      rows = features.feed(np.zeros(int(silence_samples), np.float32))
      self._silence[key] = (features.copy(), rows)
    primed, rows = self._silence[key]
    return primed.copy(self.speech_encoder), rows.copy()

  def rolling_settings(self, noisy: int | None = None, decode_context: int | None = None) -> tuple[int, int]:
    """(noisy frames W, decode context D) of the rolling mode, the config's where None."""
    c = self.config
    noisy = c.noisy_frames if noisy is None else noisy
    decode_context = (c.decode_context or c.clip_frames) if decode_context is None else decode_context
    return noisy, decode_context

  def encode_video(self, frames) -> np.ndarray:
    """Normalised latents [1 + k, h, w, C] of uint8 frames [1 + 8k, H, W, 3] at the model's resolution (the
    VAE's posterior mode, the latents the A2V-DiT learns from; latent 0 is frame 0). The frame count is
    checked by the VAE (``check_video_shape``)."""
    frames = np.asarray(frames)
    res = self.config.resolution
    if frames.ndim != 4 or frames.shape[1:] != (res, res, 3) or frames.dtype != np.uint8:
      raise ValueError(f"encode_video: need uint8 frames [1 + 8k, {res}, {res}, 3], got {frames.dtype} {frames.shape}")
    x = jnp.asarray(frames, jnp.float32) / 127.5 - 1
    return np.asarray(_encode_image(self.vae, self.vae_variables, x[None])[0])

  def speech_features(self, wave: np.ndarray, num_latents: int) -> jax.Array:
    """S [1 + 8(num_latents − 1), Hw, DA]: one Whisper window per video frame of ``num_latents`` latent
    frames, from 16 kHz audio padded with silence to that length, under ``config.speech_window``."""
    fps = self.config.fps
    num_video = 1 + FRAMES_PER_LATENT * (num_latents - 1)
    samples = int(np.ceil(num_video * audio_lib.SAMPLE_RATE / fps))
    padded = np.pad(wave, (0, max(0, samples - wave.shape[0])))
    t0 = time.perf_counter()
    s = speech_lib.speech_features(padded, self.speech_encoder, fps=fps, num_frames=num_video,
                                   policy=self.config.speech_window)
    self.timings.speech_encoder += _block(s, t0)
    return s

  def encode_speech(self, s) -> jax.Array:
    """The SpeechAE encoder: speech features S [B, F, Hw, DA] → speech latents C [B, f, hw, dA]."""
    return _encode_speech(self.speech_ae, self.speech_ae_params, s)

  def speech_latents(self, wave: np.ndarray, num_latents: int) -> jax.Array:
    """C [num_latents, hw, dA] from 16 kHz audio, padded with silence to ``num_latents`` latent frames."""
    s = self.speech_features(wave, num_latents)
    t0 = time.perf_counter()
    c = self.encode_speech(jnp.asarray(s)[None])[0]
    self.timings.speech_ae += _block(c, t0)
    return c

  def velocity(self, z, t, speech) -> jax.Array:
    """The A2V-DiT's prediction v [1+f, h, w, C] for one clip z [1+f, h, w, C] (z_R first) at per-frame
    timesteps t [1+f], with speech latents [f, S, D] (``speech_latents``), no CFG branches (a distilled student:
    its one pass at the checkpoint's (α, β))."""
    args = [self.denoiser_params(), jnp.asarray(z)[None], jnp.asarray(t, jnp.float32)[None],
            jnp.asarray(speech)[None]]
    if self.dit.guidance_embeds:
      args.append(guidance_scales("distilled", self.config.alpha, self.config.beta)[None])
    return _velocity(self._denoise, *args)[0]

  # ------------------------------------------------------------------------------------------
  # Generation

  def sample_latents(self, image, audio, *, mode: str | None = "clip", noisy=None, decode_context=None,
                     **kwargs) -> np.ndarray:
    """The latents Z(0) [N, h, w, C] that :meth:`stream` decodes, sampled but not decoded (normalised, z_R not
    included); keywords as :meth:`stream` but ``progress``. Clip mode: latent 0 is video frame 0, latent k ≥ 1
    frames 8k − 7 … 8k. ``mode`` "rolling" or "causal": the window's latents as they turn clean, latent k the
    video frames 8k … 8k + 7; they continue :meth:`pre_roll_latents` (the still portrait a live stream starts
    from)."""
    if mode in ("rolling", "causal"):
      kw = {k: kwargs.pop(k) for k in ("steps", "cfg", "alpha", "beta", "solver") if k in kwargs}
      seed = kwargs.pop("seed", 0)
      if kwargs:
        raise TypeError(f"sample_latents(mode={mode!r}): unexpected {sorted(kwargs)}")
      noisy, _ = self.rolling_settings(1 if mode == "causal" else noisy, decode_context)
      latents, _, _, _ = self._window_latents(image, audio, self.sampler(**kw), seed=seed, noisy=noisy,
                                              cached=mode == "causal")
      return np.stack([np.asarray(out.latent) for _, _, out in latents])
    if mode not in (None, "clip"):
      raise ConfigError(f"must be one of {rolling.MODES}", arg="mode", value=mode)
    clips, total, num_video, _ = self._latent_clips(image, audio, **kwargs)
    # Clip j > 0 starts with clip j−1's last latent: keep it once.
    out = np.concatenate([np.asarray(clip if j == 0 else clip[1:]) for j, clip in zip(range(total), clips)])
    return out[:sampling.latent_frames_for_video(num_video)]

  def _latent_clips(self, image, audio, *, steps=None, cfg=None, alpha=None, beta=None, solver=None, seed=0,
                    motion_prior=True):
    """(iterator of latent clips [f, h, w, C], number of clips, number of video frames, key) for stream."""
    c = self.config
    sampler = self.sampler(steps=steps, cfg=cfg, alpha=alpha, beta=beta, solver=solver)
    self.timings = Timings()
    wave = self._load_wave(audio)
    num_video = audio_lib.num_video_frames(wave.shape[0], c.fps)
    self.timings.video_seconds = num_video / c.fps
    num_latents = sampling.latent_frames_for_video(num_video)  # rounds up; the video is trimmed to F
    n_pad = sampling.padded_frames(num_latents, c.clip_frames)
    z_ref = self.reference_latent(image)
    speech = self.speech_latents(wave, n_pad)
    key = jax.random.key(seed)
    total = sampling.num_clips(num_latents, c.clip_frames)
    clips = sampling.stream_clips(self._denoise, sampler, key, z_ref, speech, num_latents, c.clip_frames,
                                  params=self.denoiser_params(), motion_prior=motion_prior)
    return clips, total, num_video, key

  def sampler(self, *, steps: int | None = None, cfg: str | None = None, alpha: float | None = None,
              beta: float | None = None, solver: str | None = None) -> solvers.Sampler:
    """The :class:`~read_jax.ans.solvers.Sampler` of these settings, the config's where None; the checkpoint's
    limits checked (:func:`check_sampling`)."""
    c = self.config
    steps, cfg = (c.steps if steps is None else steps), (c.cfg if cfg is None else cfg)
    check_sampling(self.dit.guidance_embeds, c.distilled_steps, steps, cfg)
    return solvers.Sampler.create(steps=steps, cfg=cfg, alpha=c.alpha if alpha is None else alpha,
                                  beta=c.beta if beta is None else beta, shift=c.shift,
                                  solver=c.solver if solver is None else solver)

  @property
  def denoiser(self) -> a2v_dit.Denoiser:
    """The A2V-DiT as the samplers' ``denoise(params, x, t, speech)``: a value, equal for equal models, so the
    samplers' programs compiled for it serve every pipeline and session of its config."""
    return self._denoise

  def denoiser_params(self):
    """What :attr:`denoiser` takes as ``params``: the A2V-DiT's weights and the constant prompt's per-block text
    K/V (projected once per generation, not once per step)."""
    return self.dit_params, _encode_text(self.dit, self.dit_params, self.text, self.text_mask)

  def decode_frames(self, latents, key) -> np.ndarray:
    """uint8 video frames [1 + 8(T − 1), H, W, 3] of normalised latents [T, h, w, C]; ``key`` draws the decode
    noise of a timestep-conditioned VAE (:func:`decode_key` of the generation's key)."""
    return _to_uint8(self._decode_pixels(jnp.asarray(latents)[None], key)[0])

  def decode_frames_batch(self, latents, keys) -> np.ndarray:
    """:meth:`decode_frames` of several sessions' latents [B, T, h, w, C] in one call, one key per row (one
    compiled program per batch size B)."""
    frames = _decode_each(self.vae, self.vae_variables, jnp.asarray(latents), jnp.stack(keys),
                          **self._decode_settings())
    return _to_uint8(frames)

  @property
  def streams_decode(self) -> bool:
    """Whether the VAE's decoder is causal, so latents decode as a stream, one latent frame (or clip) at a time
    with a carried :class:`~read_jax.models.vae.DecodeState`, exactly as the whole video would (docs/design.md §3.10).
    A non-causal decoder would hold back its future receptive field (``stream_lookahead``): live sessions and
    clips decode windows instead."""
    return stream_lookahead(self.vae.config) == 0

  def decode_stream(self, key) -> DecodeState:
    """The decode state of a new stream (one video); ``key`` draws its decode noise (timestep-conditioned VAEs)."""
    c = self.config
    h = c.resolution // self._vae_ratios()[0]
    return stream_decode_init(self.vae, 1, h, h, decode_timestep=c.decode_timestep,
                              decode_noise_scale=c.decode_noise_scale, key=key)

  def decode_stream_step(self, state: DecodeState, latents) -> tuple[DecodeState, np.ndarray]:
    """The stream's next latents [n, h, w, C] → (state, their uint8 frames [1 + 8(n − 1) for the stream's first,
    8n after, H, W, 3])."""
    state, frames = stream_decode_step(self.vae, self.vae_variables, state, jnp.asarray(latents)[None])
    return state, _to_uint8(frames[0])

  def decode_stream_batch(self, states: list[DecodeState], latents) -> list[tuple[DecodeState, np.ndarray]]:
    """:meth:`decode_stream_step` of several streams past their first step in one call: latents [B, n, h, w, C],
    one state per row (one compiled program per batch size B; each row as it decodes alone)."""
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    out, frames = _stream_next_each(self.vae, self.vae_variables, stacked, jnp.asarray(latents)[:, None])
    pixels = _to_uint8(frames[:, 0])
    return [(jax.tree.map(lambda x, b=b: x[b], out), pixels[b]) for b in range(len(states))]

  def decode_clip(self, clip, key, j: int, stream: DecodeState | None = None):
    """uint8 frames of latent clip ``j`` [f, h, w, C] sampled with ``key``: [1 + 8(f−1)] for clip 0, [8(f−1)] after.

    With ``stream`` (a causal decoder, :meth:`start_decode`) the clip's new latents continue the video's stream and
    ``(stream, frames)`` is returned: the frames of decoding the whole video. Without, the clip decodes alone
    (clip j > 0 decodes its shared first latent as a lone first frame, which belongs to clip j−1).
    """
    if stream is not None:
      return self.decode_stream_step(stream, clip if j == 0 else clip[1:])
    frames = self.decode_frames(clip, decode_key(key, j))
    return frames if j == 0 else frames[1:]

  def start_decode(self, key, pre_roll=None) -> DecodeState | None:
    """A video's decode stream when the decoder streams (:attr:`streams_decode`), else None: its state, primed with
    ``pre_roll`` latents [n, h, w, C] (the rolling window's still portrait; their frames are not shown)."""
    if not self.streams_decode:
      return None
    stream = self.decode_stream(decode_key(key, 0))
    if pre_roll is not None:  # its frames are not shown: they stay on the device, unconverted
      stream, _ = stream_decode_step(self.vae, self.vae_variables, stream, jnp.asarray(pre_roll)[None])
    return stream

  def with_config(self, **changes) -> "ReadPipeline":
    """A shallow copy with ``changes`` to its :class:`PipelineConfig` (the weights and compiled programs shared):
    ``pipe.with_config(speech_window="live", steps=4)``."""
    other = copy.copy(self)
    other.config = dataclasses.replace(self.config, **changes)
    other.timings = Timings()
    return other

  def on_device(self, device) -> "ReadPipeline":
    """A shallow copy whose weights live on ``device`` (the serving engine's one pipeline per device); the
    jitted programs are shared, so each device compiles each shape once."""
    other = copy.copy(self)
    put = functools.partial(jax.device_put, device=device)
    other.vae_variables, other.speech_encoder = put(self.vae_variables), self.speech_encoder.on_device(device)
    other.speech_ae_params, other.dit_params = put(self.speech_ae_params), put(self.dit_params)
    other.text, other.text_mask = put(self.text), put(self.text_mask)
    other.timings = Timings()
    return other

  def stream(self, image, audio, *, steps: int | None = None, cfg: str | None = None, alpha: float | None = None,
             beta: float | None = None, solver: str | None = None, seed: int = 0,
             progress: Callable[[int, int], None] | None = None, motion_prior: bool = True, mode: str | None = None,
             noisy: int | None = None, decode_context: int | None = None) -> Iterator[np.ndarray]:
    """Yield uint8 frames [n, H, W, 3] clip by clip (the first clip's frames before the rest is computed).

    ``audio``: a path librosa reads, or a 16 kHz mono float array. The frames together are exactly
    F = floor(25 · seconds) frames, the audio's length. ``progress(done, total)`` is called per clip.
    ``steps``/``cfg``/``alpha``/``beta``/``solver``: the sampler (:meth:`sampler`), the config's where None.
    ``motion_prior=False``: clips sampled independently (the ablation of ANS; see ``sampling.stream_clips``).
    ``mode``: "clip" or "rolling" (the config's when None); rolling yields 8 frames per latent frame, with
    ``noisy`` noisy frames in the window and ``decode_context`` latents decoded together (``read_jax.ans.rolling``);
    "causal" too, through the KV-cached window of a causal model (``read_jax.ans.causal``: one noisy frame).
    """
    mode = self.config.mode if mode is None else mode
    if mode not in rolling.MODES:
      raise ConfigError(f"must be one of {rolling.MODES}", arg="mode", value=mode)
    if mode in ("rolling", "causal"):
      if not motion_prior:
        raise ValueError("motion_prior=False is the clip mode's ablation; the rolling window always has one")
      sampler = self.sampler(steps=steps, cfg=cfg, alpha=alpha, beta=beta, solver=solver)
      yield from self._stream_rolling(image, audio, sampler, seed=seed, progress=progress, noisy=noisy,
                                      decode_context=decode_context, cached=mode == "causal")
      return
    clips, total, num_video, key = self._latent_clips(image, audio, steps=steps, cfg=cfg, alpha=alpha, beta=beta,
                                                      solver=solver, seed=seed, motion_prior=motion_prior)
    emitted, stream = 0, self.start_decode(key)
    for j in range(total):
      t0 = time.perf_counter()
      clip = next(clips)  # [f, h, w, C]; frame 0 of clip j > 0 is clip j−1's last frame
      self.timings.denoise += _block(clip, t0)
      t0 = time.perf_counter()
      if stream is not None:
        stream, frames = self.decode_clip(clip, key, j, stream)
      else:
        frames = self.decode_clip(clip, key, j)
      self.timings.vae_decode += time.perf_counter() - t0
      frames = frames[:num_video - emitted]
      emitted += frames.shape[0]
      if progress is not None:
        progress(j + 1, total)
      if frames.shape[0]:
        yield frames

  def _stream_rolling(self, image, audio, sampler: solvers.Sampler, *, seed, progress, noisy, decode_context,
                      cached: bool = False):
    """The rolling window offline (``read_jax.ans.rolling``): the live session's frames from a whole waveform;
    ``cached``: the causal window instead (``read_jax.ans.causal``), same stream, one noisy frame."""
    noisy, decode_context = self.rolling_settings(1 if cached else noisy, decode_context)
    latents, pre, num_video, key = self._window_latents(image, audio, sampler, seed=seed, noisy=noisy, cached=cached)
    stream = self.start_decode(key, pre)  # a causal decoder: one stream; else windows of decode_context latents
    history = rolling.DecodeHistory(pre, decode_context)
    emitted = 0
    for i, total, out in latents:
      t0 = time.perf_counter()
      if stream is not None:
        stream, frames = self.decode_stream_step(stream, np.asarray(out.latent)[None])
      else:
        frames = self.decode_frames(history.window(out.latent), decode_key(key, out.q))[-FRAMES_PER_LATENT:]
      frames = frames[:num_video - emitted]
      self.timings.vae_decode += time.perf_counter() - t0
      emitted += frames.shape[0]
      if progress is not None:
        progress(i + 1, total)
      if frames.shape[0]:
        yield frames

  def _window_latents(self, image, audio, sampler: solvers.Sampler, *, seed, noisy, cached):
    """(iterator of (i, total, Emitted) per clean latent frame, pre-roll latents, video frames, key): the rolling
    or causal window of :meth:`_stream_rolling` before any decode; the denoiser's time goes to ``timings``."""
    c = self.config
    if cached:
      causal.check_causal(sampler, self.dit)
    else:
      rolling.check_noisy(sampler.steps, noisy, c.clip_frames)
    self.timings = Timings()
    wave = self._load_wave(audio)
    num_video = audio_lib.num_video_frames(wave.shape[0], c.fps)
    self.timings.video_seconds = num_video / c.fps
    f = c.clip_frames
    n = rolling.stream_latents(num_video, f, noisy)
    pre_samples = rolling.pre_roll_frames(f) * audio_lib.SAMPLE_RATE // c.fps
    speech = np.asarray(self.speech_latents(np.concatenate([np.zeros(pre_samples, np.float32), wave]), n))
    z_ref = self.reference_latent(image)
    pre = self.pre_roll_latents(image)
    key = jax.random.key(seed)
    if cached:
      window = causal.CausalWindow(self._denoise, sampler, self.denoiser_params(), z_ref, pre, speech[:f - 1], key)
    else:
      window = rolling.RollingSampler(self._denoise, sampler, self.denoiser_params(), z_ref, pre, speech[:f - 1],
                                      key, noisy=noisy)

    def latents():
      total = n - (f - 1)
      for i, q in enumerate(range(f - 1, n)):
        t0 = time.perf_counter()
        out = window.push(speech[q])
        if out is not None:
          self.timings.denoise += _block(out.latent, t0)
          yield i, total, out
    return latents(), pre, num_video, key

  def _load_wave(self, audio) -> np.ndarray:
    wave = audio_lib.load_audio(audio) if isinstance(audio, (str, os.PathLike)) else audio_lib.check_wave(
        np.asarray(audio, np.float32), "audio")
    if audio_lib.num_video_frames(wave.shape[0], self.config.fps) < 1:
      raise audio_lib.AudioError(f"audio {audio if isinstance(audio, str) else '(array)'}: {wave.shape[0]} samples is "
                                 f"shorter than one video frame ({audio_lib.SAMPLE_RATE // self.config.fps} samples)")
    return wave

  def generate(self, image, audio, **kwargs) -> np.ndarray:
    """All frames at once, uint8 [F, H, W, 3]; keyword arguments as :meth:`stream`."""
    return np.concatenate(list(self.stream(image, audio, **kwargs)))

  def write_video(self, image, audio_path: str, out_path: str, **kwargs) -> Timings:
    """Generate and stream into ``out_path`` (mp4 with the speech muxed in, written atomically)."""
    wave = audio_lib.load_audio(audio_path)
    with media.VideoWriter(out_path, fps=self.config.fps, audio=(wave, audio_lib.SAMPLE_RATE)) as writer:
      for frames in self.stream(image, wave, **kwargs):
        t0 = time.perf_counter()
        writer.write(frames)
        self.timings.write += time.perf_counter() - t0
    return self.timings


def _prompt(path: str | None, caption_channels: int, config: PipelineConfig):
  """The constant prompt (text, mask): ``path``'s, or none — silently where the checkpoint has no text
  conditioning by design (``config.text_conditioning``), with :func:`load_text_embedding`'s warning otherwise."""
  if path is None and not config.text_conditioning:
    return a2v_dit.null_text(caption_channels)
  return load_text_embedding(path, caption_channels)


def decode_key(key, index: int):
  """The decode noise's key of latent clip / stream latent ``index`` of a generation with ``key``."""
  return jax.random.fold_in(key, 1_000_000 + index)


def _to_uint8(frames) -> np.ndarray:
  return np.asarray(jnp.round((jnp.clip(frames, -1, 1) + 1) * 127.5).astype(jnp.uint8))


# The pipeline's programs, jitted once per module config (flax modules hash by value): a second pipeline of the
# same config, or one copied to another device, compiles nothing.


@functools.partial(jax.jit, static_argnames=("module", "shapes"))
def _init(module, key, shapes):
  """``module.init`` on zeros of ``shapes``."""
  return module.init(key, *(jnp.zeros(shape) for shape in shapes))


@functools.partial(jax.jit, static_argnames=("denoise",))
def _velocity(denoise, params, x, t, speech, guidance=None):
  return denoise(params, x, t, speech, guidance)


@functools.partial(jax.jit, static_argnames=("dit",))
def _encode_text(dit, params, text, mask):
  return dit.apply({"params": params}, text, mask, method=a2v_dit.A2VDiT.encode_text)


@functools.partial(jax.jit, static_argnames=("speech_ae",))
def _encode_speech(speech_ae, params, s):
  return speech_ae.apply({"params": params}, s, method=SpeechAE.encode)


@functools.partial(jax.jit, static_argnames=("vae",))
def _encode_image(vae, variables, x):
  return vae.apply(variables, vae.apply(variables, x, method=vae.encode).mode(), method=vae.normalize_latents)


@functools.partial(jax.jit, static_argnames=("vae", "timestep", "noise_scale"))
def _decode(vae, variables, z, key, *, timestep, noise_scale):
  return vae.apply(variables, z, timestep, noise_scale, key=key, method=vae.decode_latents)


@functools.partial(jax.jit, static_argnames=("vae",))
def _stream_next_each(vae, variables, states, z):
  """``stream_decode_apply`` of a stack of streams past their first step (each state and z with a leading axis)."""
  return jax.vmap(lambda state, zz: stream_decode_apply(variables, state, zz, module=vae, stream="next"))(states, z)


@functools.partial(jax.jit, static_argnames=("vae", "timestep", "noise_scale"))
def _decode_each(vae, variables, z, keys, *, timestep, noise_scale):
  """One clip per key, batched (the serving engine): each element draws its decode noise from its own key."""
  one = lambda z, key: vae.apply(variables, z[None], timestep, noise_scale, key=key,  # noqa: E731
                                 method=vae.decode_latents)[0]
  return jax.vmap(one)(z, keys)


def _block(x, t0: float) -> float:
  jax.block_until_ready(x)
  return time.perf_counter() - t0
