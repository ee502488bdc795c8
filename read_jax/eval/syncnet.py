"""SyncNet (Chung & Zisserman, "Out of time", 2016) and the lip-sync scores it gives: Sync-C and Sync-D.

The same network and protocol as PyPI ``syncnet-python`` 0.2.3 (``SyncNetModel.S`` and
``SyncNetInstance.evaluate``, itself joonson/syncnet_python), so its ``syncnet_v2`` weights load unchanged
and scores are comparable with published LSE-C / LSE-D (= Sync-C / Sync-D) numbers.

  SyncNet().apply(v, mfcc, lips)        MFCC windows float32 [B, 13, 20, 1] and lip windows float32
                                        [B, 5, 224, 224, 3] (BGR, 0–255) → two embeddings [B, 1024]
  syncnet_params_from_torch(sd)         ``S().state_dict()`` → Flax variables
  load_syncnet(path)                    the same from a safetensors file
  mfcc(signal)                          python_speech_features 0.6's ``mfcc`` defaults, in numpy [M, 13]
  sync_scores(v, frames, audio)         face crops uint8 [T, 224, 224, 3] (RGB, 25 fps) and audio float32
                                        [n] (16 kHz) → dict(offset, min_dist, confidence)

The protocol (``evaluate``): 13 MFCCs every 10 ms of the 16-bit audio; window i pairs the 5 video frames
i…i+4 (0.2 s) with the 20 MFCC frames 4i…4i+19; the audio embeddings are padded with ``vshift`` zero
rows at both ends and every lip embedding is compared with the 2·vshift + 1 audio embeddings around it;
the mean distance per shift gives Min dist (its minimum, Sync-D), AV offset (the shift of the minimum)
and Confidence (its median minus its minimum, Sync-C). The reference runs this per face track and reports
the best track (max confidence, min distance); here one call scores one track.

Module and parameter names follow the reference's ``nn.Sequential`` indices (``netcnnaud_0`` is
``netcnnaud.0``), so a key in a PyTorch checkpoint names its Flax parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from read_jax.constants import FPS, SAMPLE_RATE
from read_jax.errors import InputError
from read_jax.files import check_keys, flatten, read_safetensors, unflatten

# The reference extracts the audio with ffmpeg at 16 kHz, mono, pcm_s16le; its windows assume 25 fps (640 audio
# samples, 4 MFCC frames each): the system's SAMPLE_RATE and FPS.
SIZE = 224  # crop height and width: the lip tower's maps reach 1×1 only at this size
WINDOW = 5  # video frames per lip window (0.2 s)
MFCC_PER_FRAME = 4  # MFCC frames per video frame (10 ms steps, 40 ms frames)
MFCC_WINDOW = 20  # MFCC frames per audio window (0.2 s)
NUM_CEPSTRA = 13  # MFCC coefficients
VSHIFT = 15  # the offset search covers −VSHIFT…+VSHIFT video frames (SyncNetPipeline's default)
EMBED = 1024  # embedding width (``num_layers_in_fc_layers``)
_BN_EPS = 1e-5  # torch BatchNorm default, used by every norm of the reference
_PAIRWISE_EPS = 1e-6  # torch.nn.functional.pairwise_distance adds it to the difference before the norm
_BATCH = 20  # windows per network call (the reference's batch_size); batching does not change the scores

# python_speech_features.mfcc defaults (as SyncNetInstance calls it: mfcc(audio, sample_rate)).
_FRAME_LEN = 400  # 25 ms at 16 kHz, rectangular window
_FRAME_STEP = 160  # 10 ms
_NFFT = 512
_NFILT = 26  # triangular mel filters from 0 Hz to Nyquist
_PREEMPH = 0.97
_CEPLIFTER = 22


class _Block(NamedTuple):
  """conv → BatchNorm → ReLU (→ max pool), one row of a reference ``nn.Sequential``."""
  index: int  # the conv's index in the Sequential; its BatchNorm is index + 1
  features: int  # output channels
  kernel: tuple[int, ...]
  strides: tuple[int, ...]
  padding: tuple[int, ...]  # zeros on each side, per spatial axis
  pool: tuple | None = None  # (window, strides, padding) of the max pool after the ReLU; padding is −inf


# netcnnaud on [B, 13, 20, 1] (MFCC × time): 13×20 → 11×9 → 5×4 → 1×1. Its 1×1 stride-1 max pool
# (index 3) is an identity and is left out.
_AUDIO_CNN = (
  _Block(0, 64, (3, 3), (1, 1), (1, 1)),
  _Block(4, 192, (3, 3), (1, 1), (1, 1), ((3, 3), (1, 2), (0, 0))),
  _Block(8, 384, (3, 3), (1, 1), (1, 1)),
  _Block(11, 256, (3, 3), (1, 1), (1, 1)),
  _Block(14, 256, (3, 3), (1, 1), (1, 1), ((3, 3), (2, 2), (0, 0))),
  _Block(18, 512, (5, 4), (1, 1), (0, 0)),
)
# netcnnlip on [B, 5, 224, 224, 3] (time × H × W): 224 → 109 → 54 → 26 → 13 → 6 → 1, 5 frames → 1.
_LIP_CNN = (
  _Block(0, 96, (5, 7, 7), (1, 2, 2), (0, 0, 0), ((1, 3, 3), (1, 2, 2), (0, 0, 0))),
  _Block(4, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1), ((1, 3, 3), (1, 2, 2), (0, 1, 1))),
  _Block(8, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
  _Block(11, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
  _Block(14, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1), ((1, 3, 3), (1, 2, 2), (0, 0, 0))),
  _Block(18, 512, (1, 6, 6), (1, 1, 1), (0, 0, 0)),
)
# Flax leaf (collection, name) ↔ torch leaf name; conv/linear weights are transposed to channel-last.
_LEAVES = {("params", "kernel"): "weight", ("params", "scale"): "weight", ("params", "bias"): "bias",
           ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}


class SyncNetTower(nn.Module):
  """One stream of SyncNet: conv blocks down to a 1×…×1×512 map, then fc 512 → 512 → BN → ReLU → D."""
  cnn: str  # the reference's Sequential name for the conv blocks ("netcnnaud" / "netcnnlip")
  fc: str  # and for the fc head ("netfcaud" / "netfclip")
  blocks: tuple[_Block, ...]  # _AUDIO_CNN or _LIP_CNN
  embed: int = EMBED  # output width
  dtype: Any = jnp.float32  # conv/dense compute dtype (the norms compute in float32)
  param_dtype: Any = jnp.float32  # storage dtype

  def _norm(self, name: str):
    return nn.BatchNorm(use_running_average=True, epsilon=_BN_EPS, dtype=jnp.float32,
                        param_dtype=self.param_dtype, name=name)

  @nn.compact
  def __call__(self, x):
    for b in self.blocks:
      x = nn.Conv(b.features, b.kernel, b.strides, [(p, p) for p in b.padding], dtype=self.dtype,
                  param_dtype=self.param_dtype, name=f"{self.cnn}_{b.index}")(x)
      x = nn.relu(self._norm(f"{self.cnn}_{b.index + 1}")(x))
      if b.pool is not None:
        window, strides, padding = b.pool
        x = nn.max_pool(x, window, strides, [(p, p) for p in padding])
    if math.prod(x.shape[1:-1]) != 1:
      raise ValueError(f"{self.cnn}: the conv maps end {x.shape[1:-1]}, not 1×1: wrong input size")
    x = x.reshape(x.shape[0], -1)  # [B, 512]: the torch view of [B, 512, 1, 1] has the same order
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    x = nn.relu(self._norm(f"{self.fc}_1")(dense(512, f"{self.fc}_0")(x)))
    return dense(self.embed, f"{self.fc}_3")(x).astype(jnp.float32)  # [B, D]


class SyncNet(nn.Module):
  """The audio and the lip towers of the reference ``S``; ``__call__`` runs both (and builds all variables).

  ``embed_audio``: MFCC windows float32 [B, 13, 20, 1] (coefficient × time × 1, as :func:`mfcc` gives them
  transposed) → [B, D]. ``embed_lips``: lip windows float32 [B, 5, 224, 224, 3], 5 consecutive frames,
  channels BGR in [0, 255] unnormalised (the reference reads its crops with ``cv2.imread``) → [B, D].
  """
  embed: int = EMBED  # embedding width
  dtype: Any = jnp.float32  # compute dtype; keep float32 for scores comparable with others'
  param_dtype: Any = jnp.float32  # storage dtype

  def setup(self):
    kw = dict(embed=self.embed, dtype=self.dtype, param_dtype=self.param_dtype)
    self.audio = SyncNetTower("netcnnaud", "netfcaud", _AUDIO_CNN, **kw)
    self.lips = SyncNetTower("netcnnlip", "netfclip", _LIP_CNN, **kw)

  def embed_audio(self, mfcc_windows):
    if mfcc_windows.ndim != 4 or mfcc_windows.shape[1:] != (NUM_CEPSTRA, MFCC_WINDOW, 1):
      raise ValueError(f"SyncNet.embed_audio: expected [B, 13, 20, 1], got {mfcc_windows.shape}")
    return self.audio(mfcc_windows.astype(jnp.float32))

  def embed_lips(self, lip_windows):
    if lip_windows.ndim != 5 or lip_windows.shape[1:] != (WINDOW, SIZE, SIZE, 3):
      raise ValueError(f"SyncNet.embed_lips: expected [B, 5, 224, 224, 3], got {lip_windows.shape}")
    return self.lips(lip_windows.astype(jnp.float32))

  def __call__(self, mfcc_windows, lip_windows):
    return self.embed_audio(mfcc_windows), self.embed_lips(lip_windows)


# ---------------------------------------------------------------------------------------------- weights


def _torch_key(flax_path: str) -> str:
  """"params/audio/netcnnaud_0/kernel" → "netcnnaud.0.weight"."""
  collection, _tower, layer, leaf = flax_path.split("/")
  name, index = layer.rsplit("_", 1)
  return f"{name}.{index}.{_LEAVES[(collection, leaf)]}"


def _flax_shapes() -> dict[str, tuple[int, ...]]:
  """{flax path: shape} of every variable, from an abstract init (nothing is computed)."""
  mfcc_windows = jax.ShapeDtypeStruct((1, NUM_CEPSTRA, MFCC_WINDOW, 1), jnp.float32)
  lip_windows = jax.ShapeDtypeStruct((1, WINDOW, SIZE, SIZE, 3), jnp.float32)
  abstract = jax.eval_shape(SyncNet().init, jax.random.key(0), mfcc_windows, lip_windows)
  return {k: tuple(v.shape) for k, v in flatten(abstract).items()}


def _to_torch_layout(shape: tuple[int, ...]) -> tuple[int, ...]:
  """Flax kernel shape [*spatial, I, O] (or dense [I, O]) → torch's [O, I, *spatial]."""
  return (shape[-1], shape[-2], *shape[:-2]) if len(shape) >= 2 else shape


def torch_state_shapes() -> dict[str, tuple[int, ...]]:
  """{reference key: torch shape} of the tensors a checkpoint must hold (BatchNorm step counters aside)."""
  return {_torch_key(p): _to_torch_layout(s) for p, s in _flax_shapes().items()}


def _numpy(value) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor (torch itself is not imported here)
    value = value.detach().cpu().numpy()
  return np.asarray(value, np.float32)


def syncnet_params_from_torch(state_dict: Mapping) -> dict:
  """Flax variables ``{"params": …, "batch_stats": …}`` of :class:`SyncNet` from the reference's
  ``S().state_dict()`` keys (``netcnnaud.0.weight`` …); values torch tensors or arrays. BatchNorm step
  counters (``num_batches_tracked``) are ignored. A missing, unexpected or mis-shaped tensor is a
  :class:`~read_jax.errors.CheckpointError` listing them (reference names, torch shapes)."""
  got = {k: _numpy(v) for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
  check_keys("SyncNet", got, torch_state_shapes())
  flat = {}
  for path in _flax_shapes():
    value = got[_torch_key(path)]
    if value.ndim >= 2:  # [O, I, *spatial] → [*spatial, I, O]
      value = value.transpose(*range(2, value.ndim), 1, 0)
    flat[path] = jnp.asarray(value)
  return unflatten(flat)


def load_syncnet(path: str) -> dict:
  """:func:`syncnet_params_from_torch` of a safetensors file (only safetensors are read; save the
  reference's ``syncnet_v2.model`` state dict with ``safetensors.torch.save_file`` first)."""
  return syncnet_params_from_torch(read_safetensors(path))


# ---------------------------------------------------------------------------------------------- MFCC


def _mel_filterbank(nfilt: int = _NFILT, nfft: int = _NFFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """[nfilt, nfft // 2 + 1] triangles between mel-spaced FFT bins, python_speech_features'
  ``get_filterbanks`` (HTK mel 2595·log10(1 + f/700), bin edges floored, 0 Hz to Nyquist)."""
  hz2mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)
  mel2hz = lambda mel: 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
  mels = np.linspace(hz2mel(0.0), hz2mel(sample_rate / 2), nfilt + 2)
  edges = np.floor((nfft + 1) * mel2hz(mels) / sample_rate)
  k = np.arange(nfft // 2 + 1, dtype=np.float64)
  lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
  with np.errstate(divide="ignore", invalid="ignore"):  # empty sides (mid == lo) never contribute
    rising = np.where((k >= lo) & (k < mid), (k - lo) / (mid - lo), 0.0)
    falling = np.where((k >= mid) & (k < hi), (hi - k) / (hi - mid), 0.0)
  return rising + falling


def _dct2_ortho(n_in: int, n_out: int) -> np.ndarray:
  """[n_in, n_out] matrix of the orthonormal DCT-II (scipy.fftpack ``dct(type=2, norm='ortho')``)."""
  n = np.arange(n_in)[:, None]
  k = np.arange(n_out)[None, :]
  basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
  basis[:, 0] /= np.sqrt(2.0)
  return basis


def mfcc(signal: np.ndarray) -> np.ndarray:
  """float64 [M, 13] MFCCs of 16 kHz samples, as ``python_speech_features.mfcc(signal, 16000)`` with its
  defaults: pre-emphasis 0.97; 25 ms frames every 10 ms, rectangular, the last zero-padded,
  M = 1 + ⌈(n − 400) / 160⌉ (1 when n ≤ 400); power spectrum |rfft₅₁₂|² / 512; 26 mel filters; log
  (zeros → float64 eps); orthonormal DCT-II, first 13; lifter 1 + 11·sin(πk/22); c₀ replaced by the
  log frame energy. The scale of ``signal`` matters (c₀): the reference feeds int16 sample values."""
  x = np.asarray(signal, np.float64).reshape(-1)
  if x.size == 0:
    raise InputError("mfcc: empty signal")
  x = np.append(x[0], x[1:] - _PREEMPH * x[:-1])
  frames = 1 if x.size <= _FRAME_LEN else 1 + math.ceil((x.size - _FRAME_LEN) / _FRAME_STEP)
  x = np.concatenate([x, np.zeros((frames - 1) * _FRAME_STEP + _FRAME_LEN - x.size)])
  idx = np.arange(_FRAME_LEN)[None, :] + _FRAME_STEP * np.arange(frames)[:, None]
  power = np.abs(np.fft.rfft(x[idx], _NFFT)) ** 2 / _NFFT  # [M, 257]
  eps = np.finfo(np.float64).eps
  energy = power.sum(axis=1)
  energy = np.where(energy == 0, eps, energy)
  bands = power @ _mel_filterbank().T  # [M, 26]
  bands = np.where(bands == 0, eps, bands)
  cep = np.log(bands) @ _dct2_ortho(_NFILT, NUM_CEPSTRA)  # [M, 13]
  cep *= 1.0 + (_CEPLIFTER / 2.0) * np.sin(np.pi * np.arange(NUM_CEPSTRA) / _CEPLIFTER)
  cep[:, 0] = np.log(energy)
  return cep


# ---------------------------------------------------------------------------------------------- protocol


def to_int16_scale(audio: np.ndarray) -> np.ndarray:
  """float [−1, 1] → the int16 sample values (float64) the reference's 16-bit wav holds: ×32768, rounded
  to nearest and clipped, as ffmpeg converts float to pcm_s16le."""
  return np.clip(np.rint(np.asarray(audio, np.float64) * 32768.0), -32768, 32767)


def sync_from_embeddings(lip_embeddings: np.ndarray, audio_embeddings: np.ndarray, vshift: int = VSHIFT
                         ) -> dict:
  """The offset search on embeddings [N, D] of N aligned windows: ``calc_pdist`` and its reductions.

  The audio embeddings get ``vshift`` zero rows at each end; ``dists[i, j] = ‖lip[i] − padded[i + j] + ε‖``
  (torch ``pairwise_distance``, ε = 1e-6) for j = 0…2·vshift; ``mean_dists[j]`` is its mean over i. Then
  min_dist = min, offset = vshift − argmin (first on ties), confidence = median − min (the median of an odd
  count, 2·vshift + 1, is its middle value, as torch.median gives it). A positive offset means the lip
  window i is matched best by the audio window i − offset (the video lags the audio by offset frames).
  """
  lip = np.asarray(lip_embeddings, np.float64)
  aud = np.asarray(audio_embeddings, np.float64)
  if lip.ndim != 2 or lip.shape != aud.shape or lip.shape[0] == 0:
    raise InputError(f"sync_from_embeddings: expected two [N, D], N ≥ 1, got {lip.shape} and {aud.shape}")
  n, width = lip.shape[0], 2 * vshift + 1
  padded = np.pad(aud, ((vshift, vshift), (0, 0)))
  shifted = padded[np.arange(n)[:, None] + np.arange(width)[None, :]]  # [N, 2v + 1, D]
  dists = np.linalg.norm(lip[:, None, :] - shifted + _PAIRWISE_EPS, axis=-1)  # [N, 2v + 1]
  mean_dists = dists.mean(axis=0)
  best = int(np.argmin(mean_dists))
  median = np.sort(mean_dists)[(width - 1) // 2]
  return dict(offset=vshift - best, min_dist=float(mean_dists[best]),
              confidence=float(median - mean_dists[best]), mean_dists=mean_dists)


@jax.jit
def _embed(variables, mfcc_windows, lip_windows):
  return SyncNet().apply(variables, mfcc_windows, lip_windows)


def sync_scores(variables: Mapping, frames: np.ndarray, audio: np.ndarray, vshift: int = VSHIFT) -> dict:
  """Sync-D (``min_dist``), Sync-C (``confidence``) and the AV ``offset`` of one face track.

  ``frames``: uint8 [T, 224, 224, 3], RGB, 25 fps: the face crops as the reference's pipeline makes them
  (S3FD track, box enlarged by crop_scale 0.4, resized to 224×224); they are given to the network as BGR
  0–255 floats, as ``cv2.imread`` gives the reference its frames. ``audio``: float [n] in [−1, 1], 16 kHz
  mono, starting with frame 0; it is quantised to int16 first (the reference reads a 16-bit wav).
  Only min(T, ⌊n / 640⌋) − 5 windows are scored, as the reference does (it stops one window short).
  Returns ``dict(offset: int, min_dist: float, confidence: float, mean_dists: [2·vshift + 1])``.
  """
  frames = np.asarray(frames)
  audio = np.asarray(audio)
  if frames.ndim != 4 or frames.shape[1:] != (SIZE, SIZE, 3) or frames.dtype != np.uint8:
    raise InputError(f"sync_scores: frames must be uint8 [T, 224, 224, 3], got {frames.dtype} {frames.shape}")
  if audio.ndim != 1 or not np.all(np.isfinite(audio)):
    raise InputError(f"sync_scores: audio must be finite float [n], got shape {audio.shape}")
  samples_per_frame = SAMPLE_RATE // FPS
  windows = min(len(frames), len(audio) // samples_per_frame) - WINDOW
  if windows < 1:
    raise InputError(f"sync_scores: need at least {WINDOW + 1} frames of video and audio, got "
                     f"{len(frames)} frames and {len(audio) / SAMPLE_RATE:.3f} s")
  cep = mfcc(to_int16_scale(audio)).T.astype(np.float32)  # [13, M]
  bgr = frames[..., ::-1]
  lips, auds = [], []
  for start in range(0, windows, _BATCH):
    idx = np.arange(start, start + _BATCH).clip(max=windows - 1)  # a full batch: one compiled shape
    lip_in = np.stack([bgr[i:i + WINDOW] for i in idx]).astype(np.float32)  # [B, 5, 224, 224, 3]
    mfcc_in = np.stack([cep[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + MFCC_WINDOW] for i in idx])[..., None]
    a, l = _embed(variables, mfcc_in, lip_in)  # [B, 13, 20, 1] → [B, D] each
    keep = min(_BATCH, windows - start)
    auds.append(np.asarray(a)[:keep])
    lips.append(np.asarray(l)[:keep])
  return sync_from_embeddings(np.concatenate(lips), np.concatenate(auds), vshift)
