"""Score a demo model (or a VAE alone) on held-out synthetic speech (scripts/eval_demo.py).

For each clip of the synthetic test split (seeds the training never saw; identities too), the model
animates the clip's identity (a portrait with the mouth closed) with the clip's speech and reports
(read_jax/eval/talking.py, read_jax/eval/probes.py). The speech is the drawn formant speech, or espeak-ng
(``speech="espeak"``) in voices and languages training never used (``voices="unseen"``) or in a training
language in unseen voices (``"seen-language"``); :func:`suite` scores all three.

  lip sync      Pearson r of the generated mouth opening with the clip's true opening (best lag ±1
                frame); control: the same portrait driven by ANOTHER clip's speech, against this clip's
                track (near 0 if the mouth follows the audio); ceiling: the ground-truth video itself
  envelope r    the same r against the speech's RMS envelope (what can be scored on any recording);
                control: the time-reversed envelope
  silence       mean measured mouth opening in pauses of ≥ 0.5 s vs in speech, generated and ground truth
                (with the truth's 95th percentile in pauses: its closed range)
  identity      mean RGB distance (0–255) of the face region's colour to the portrait's; control: the
                distance between the portraits of two different test identities
  boundaries    mean |frame difference| at clip boundaries / within clips, ANS vs the same model with
                the motion prior off (plain clip concatenation, the paper's Fig. 2 ablation); in rolling
                mode (``mode="rolling"``) the boundaries are every latent frame's (each is a block of its own).
                For both modes: the same ratio at every latent-frame boundary ("latent boundaries")
  flicker       mean |second temporal difference| of the frames (0–255) / the ground-truth video's: jitter
                that frame-to-frame motion does not explain (1 = as steady as the truth)
  speech effect how much the A2V-DiT listens: mean |v(speech) − v(another clip's speech)| / mean |v| of
                its prediction for one noised clip at t = 0.9, 0.5, 0.2 (0 at initialisation; the cause
                to check first when lip sync equals the other-audio control)
  speech read-out  what the A2V-DiT hears of the mouth: Pearson r of a linear read-out of each frame's true
                opening from the speech latents (ridge regression from a latent frame's speech tokens to the
                openings of its 8 frames, fitted on training-split clips) — roughly the most a model that is
                linear in its speech input could lip-sync; from the raw Whisper windows: what the SpeechAE
                had to keep (it tells the SpeechAE's share of a lip-sync failure from the A2V-DiT's)
  latent lip sync  lip sync of the sampled latents before the VAE decodes them: Pearson r of a linear
                read-out of the mouth (ridge regression from a latent frame to the mean opening of its 8
                frames, fitted on training-split clips' VAE latents) with the true per-latent-frame
                opening; control: another clip's speech; ceiling: the read-out on the clip's own VAE
                latents. It tells the A2V-DiT's share of a lip-sync failure from the VAE's.

``--cfg/--alpha/--beta/--steps`` sample with other settings than the checkpoint's pipeline.json, e.g. speech-only
guidance ``--cfg split --alpha -7 --beta 8`` (split CFG is (1 − α − β)·v_∅ + α·v_R + β·v_R,C; with
α = 1 − β it is v_R + β·(v_R,C − v_R): no push towards the reference, β times the speech's effect).

``--vae`` scores a VAE's reconstructions of the same clips instead, the check to run before building a
demo model on it: the generated mouth can only move as far as the VAE draws it. It reports PSNR and the
lip-sync r of the reconstruction, next to the r of the true track averaged over each latent frame's 8
frames (what a VAE that keeps one opening per latent frame would score: 0.59 on 4 clips of 8 s): a VAE
for lip sync ≥ 0.6 must score well above that (≥ 0.8).
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np

from read_jax import cli
from read_jax.convert.vae import load_vae
from read_jax.data import espeak, synthetic
from read_jax.eval import probes, talking
from read_jax.files import atomic_path
from read_jax.constants import FRAMES_PER_LATENT
from read_jax.models.vae import to_pixels
from read_jax.pipeline import ReadPipeline

# Keywords of ReadPipeline.generate that eval may override.
SAMPLING_KEYS = ("cfg", "alpha", "beta", "steps", "mode", "noisy", "decode_context")


def _bar(items, progress: bool, desc: str):
  return cli.progress(items, desc=desc, unit="clip") if progress else items


def evaluate(pipe, *, num: int = 8, seconds: float = 8.0, first: int = 100, seed: int = 0, progress=True,
             probe_clips: int = 40, speech: str = "formant", voices: str | None = None, light: bool = False,
             **sample) -> dict:
  """Scores of ``pipe`` over test clips ``first … first + num − 1`` (see the module docstring); the latent
  mouth read-out is fitted on ``probe_clips`` training clips; ``speech``/``voices``: the clips' speech
  (``synthetic.make_clip``); ``light``: lip sync, envelope, silence, colour and ANS boundaries only (no
  probes, no plain-concatenation run; always so in the rolling mode, the probes and the ablation being clip
  mode's); ``sample``: keywords of ``pipe.generate`` (cfg, alpha, beta, steps, mode, ...)."""
  size = pipe.config.resolution
  seeds = list(synthetic.split_seeds("test", num, first))
  clips = [synthetic.make_clip(s, seconds, size, speech=speech, voices=voices) for s in seeds]
  portraits = [synthetic.render_face(c.identity, mouth_open=0.0, size=size) for c in clips]
  rows = []
  t0 = time.perf_counter()
  light = light or sample.get("mode", pipe.config.mode) != "clip"
  if not light:
    probe = probes.latent_mouth_probe(pipe, num=probe_clips)
    # Fitted on clips as long as the test clips: a read-out fitted on 4 s clips scores 0.83 on any 4 s of a test
    # clip but 0.40 on its whole 8 s (the features drift a little over a clip, and the mean removed is the whole
    # clip's).
    speech_probes = {source: probes.speech_mouth_probe(pipe, source, num=probe_clips, seconds=seconds)
                     for source in probes.SPEECH_SOURCES}
  desc = "eval" if speech == "formant" else f"eval {speech} {voices or synthetic.default_voices(seeds[0])}"
  for i, (clip, portrait) in enumerate(_bar(list(zip(clips, portraits)), progress, desc)):
    other = clips[(i + 1) % len(clips)]
    video = pipe.generate(portrait, clip.audio, seed=seed, **sample)
    crossed = pipe.generate(portrait, other.audio, seed=seed, **sample)
    rolling_mode = sample.get("mode", pipe.config.mode) in ("rolling", "causal")  # a block per latent frame
    latent_bounds = talking.latent_boundaries(len(video), first=FRAMES_PER_LATENT if rolling_mode else 1)
    bounds = latent_bounds if rolling_mode else talking.clip_boundaries(len(video), pipe.config.clip_frames)
    envelope = synthetic.audio_envelope(clip.audio, len(video))
    row = {
        "seed": clip.seed,
        "voice": clip.voice,
        "lip_sync": talking.lip_sync_correlation(video, clip.mouth)[0],
        "lip_sync_other_audio": talking.lip_sync_correlation(crossed, clip.mouth)[0],
        "lip_sync_ground_truth": talking.lip_sync_correlation(clip.frames, clip.mouth)[0],
        "envelope_r": talking.lip_sync_correlation(video, envelope)[0],
        "envelope_r_reversed": talking.lip_sync_correlation(video, envelope[::-1])[0],
        "colour_error": talking.face_colour_error(video, portrait),
        "colour_error_other_identity": talking.face_colour_error(portraits[(i + 1) % len(clips)][None], portrait),
        "boundary_ratio_ans": talking.boundary_ratio(video, bounds),
        "boundary_ratio_latent": talking.boundary_ratio(video, latent_bounds),
        "flicker": talking.flicker(video) / max(talking.flicker(clip.frames[:len(video)]), 1e-12),
        **talking.silence_scores(video, clip.frames, clip.mouth),
    }
    rows.append(row)
    if light:
      continue
    plain = pipe.generate(portrait, clip.audio, seed=seed, motion_prior=False, **sample)
    latents = pipe.sample_latents(portrait, clip.audio, seed=seed, **sample)
    latents_crossed = pipe.sample_latents(portrait, other.audio, seed=seed, **sample)
    row.update({
        "lip_sync_plain": talking.lip_sync_correlation(plain, clip.mouth)[0],
        "boundary_ratio_plain": talking.boundary_ratio(plain, bounds),
        "speech_effect": probes.speech_effect(pipe, portrait, clip.audio, other.audio, seed=seed),
        "speech_readout": probes.speech_readout(pipe, speech_probes["latents"], clip.audio, clip.mouth),
        "speech_readout_whisper": probes.speech_readout(pipe, speech_probes["whisper"], clip.audio, clip.mouth,
                                                        "whisper"),
        "latent_lip_sync": probes.latent_lip_sync(pipe, probe, clip.frames, clip.mouth, latents),
        "latent_lip_sync_other_audio": probes.latent_lip_sync(pipe, probe, clip.frames, clip.mouth, latents_crossed),
        "latent_lip_sync_vae": probes.latent_lip_sync(pipe, probe, clip.frames, clip.mouth),
    })
  keys = [k for k in rows[0] if k not in ("seed", "voice")]
  # Silence: pooled over the clips that have a pause (a clip without one has NaN there).
  summary = {k: float(np.nanmean([r[k] for r in rows])) if any(np.isfinite(r[k]) for r in rows) else float("nan")
             for k in keys}
  summary["silence_frames"] = int(sum(r["silence_frames"] for r in rows))
  summary.update(num_clips=len(rows), seconds=seconds, boundaries_per_clip=len(bounds), speech=speech,
                 voices=sorted({r["voice"] for r in rows}), wall_s=time.perf_counter() - t0)
  return {"summary": summary, "clips": rows}


# The held-out sets of the demo's scores (docs/demo.md): name → evaluate() keywords.
SUITE = {
    "synthetic": dict(speech="formant"),
    "espeak_unseen": dict(speech="espeak", voices="unseen", light=True),
    "espeak_seen_language": dict(speech="espeak", voices="seen-language", light=True),
}


def suite(pipe, *, num: int = 8, seconds: float = 8.0, first: int = 100, seed: int = 0, progress=True,
          sets=tuple(SUITE), **sample) -> dict:
  """:func:`evaluate` on each held-out set of :data:`SUITE` (espeak sets only where espeak-ng is installed)."""
  out = {}
  for name in sets:
    kwargs = dict(SUITE[name])
    if kwargs["speech"] == "espeak" and not espeak.available():
      print(f"{name}: skipped (espeak-ng is not installed: apt-get install espeak-ng)")
      continue
    out[name] = evaluate(pipe, num=num, seconds=seconds, first=first, seed=seed, progress=progress,
                         **kwargs, **sample)
  return out


def evaluate_vae(reconstruct, *, num: int = 8, seconds: float = 8.0, first: int = 100, size: int = 64,
                 temporal_ratio: int = FRAMES_PER_LATENT, progress=True) -> dict:
  """Reconstruction scores over test clips ``first … first + num − 1`` (see the module docstring).

  ``reconstruct``: uint8 frames [F, S, S, 3] (F = 1 + 8k) → frames in [−1, 1] of the same shape.
  """
  rows = []
  t0 = time.perf_counter()
  for s in _bar(list(synthetic.split_seeds("test", num, first)), progress, "eval vae"):
    clip = synthetic.make_clip(s, seconds, size)
    n = 1 + temporal_ratio * ((len(clip.frames) - 1) // temporal_ratio)
    frames, mouth = clip.frames[:n], clip.mouth[:n]
    y = np.clip(np.asarray(reconstruct(frames), np.float32), -1, 1)
    mse = float(np.mean((y - (frames.astype(np.float32) / 127.5 - 1)) ** 2))
    # One opening per latent frame: frame 0 alone, then each run of temporal_ratio frames.
    blocks = np.concatenate([mouth[:1]] + [np.full(temporal_ratio, b.mean())
                                           for b in mouth[1:].reshape(-1, temporal_ratio)])
    rows.append({"seed": clip.seed, "psnr": 10 * np.log10(4 / max(mse, 1e-10)),
                 "mouth_r": talking.lip_sync_correlation(y, mouth)[0],
                 "mouth_r_latent_frame_average": talking.pearson(blocks, mouth)})
  keys = [k for k in rows[0] if k != "seed"]
  summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
  summary.update(num_clips=len(rows), frames_per_clip=n, wall_s=time.perf_counter() - t0)
  return {"summary": summary, "clips": rows}


def vae_reconstructor(path):
  """uint8 frames [F, S, S, 3] → the VAE's reconstruction in [−1, 1] (encode, posterior mode, decode)."""
  model, variables = load_vae(path)
  run = jax.jit(model.apply)
  return lambda frames: np.asarray(run(variables, to_pixels(frames[None])))[0]


def report(summary: dict) -> list[str]:
  """The printed lines of :func:`score` for ``evaluate``'s or ``evaluate_vae``'s summary."""
  s = summary
  if "psnr" in s:
    return [f"{s['num_clips']} held-out clips of {s['frames_per_clip']} frames, {s['wall_s']:.0f} s",
            f"reconstruction PSNR {s['psnr']:.2f} dB",
            f"mouth r             {s['mouth_r']:.3f}   (one opening per latent frame: "
            f"{s['mouth_r_latent_frame_average']:.3f}; lip sync ≥ 0.6 needs ≥ 0.8 here)"]
  lines = [f"{s['num_clips']} held-out clips of {s['seconds']:g} s, {s['speech']} speech "
           f"({', '.join(s['voices'][:6])}{', …' if len(s['voices']) > 6 else ''}; {s['boundaries_per_clip']} clip "
           f"boundaries each), {s['wall_s']:.0f} s",
          f"lip sync r          {s['lip_sync']:.3f}   (other clip's audio: {s['lip_sync_other_audio']:.3f}; "
          f"ground-truth video: {s['lip_sync_ground_truth']:.3f}"
          + (f"; without motion prior: {s['lip_sync_plain']:.3f})" if "lip_sync_plain" in s else ")"),
          f"face colour error   {s['colour_error']:.1f} / 255   (between two test identities: "
          f"{s['colour_error_other_identity']:.1f})",
          f"envelope r          {s['envelope_r']:.3f}   (time-reversed envelope: {s['envelope_r_reversed']:.3f})",
          f"mouth in silence    {s['mouth_silence']:.3f}   in speech {s['mouth_speech']:.3f}   (ground truth: "
          f"{s['mouth_silence_truth']:.3f} / {s['mouth_speech_truth']:.3f}, closed range ≤ "
          f"{s['mouth_silence_truth_p95']:.3f}; {s['silence_frames']} pause frames)",
          f"boundary ratio      ANS {s['boundary_ratio_ans']:.3f}"
          + (f"   plain concatenation {s['boundary_ratio_plain']:.3f}" if "boundary_ratio_plain" in s else "")
          + "   (1 = as smooth as within a clip)",
          f"latent boundaries   {s['boundary_ratio_latent']:.3f}   flicker {s['flicker']:.3f}   (1 = as steady as "
          "the ground truth)"]
  if "speech_effect" not in s:
    return lines
  return lines + [
          f"speech effect       {100 * s['speech_effect']:.2f} %   (how much another clip's speech moves the "
          f"A2V-DiT's prediction, |Δv| / |v|)",
          f"speech read-out r   {s['speech_readout']:.3f}   (from the raw Whisper windows: "
          f"{s['speech_readout_whisper']:.3f}; the mouth in what the A2V-DiT hears, read linearly)",
          f"latent lip sync r   {s['latent_lip_sync']:.3f}   (other clip's audio: "
          f"{s['latent_lip_sync_other_audio']:.3f}; the VAE's own latents: {s['latent_lip_sync_vae']:.3f})"]


def score(ckpt: str, *, vae: str = "", num: int = 8, seconds: float = 8.0, first: int = 100, seed: int = 0,
          sample: dict | None = None, json_path: str = "", sets=tuple(SUITE)) -> dict:
  """scripts/eval_demo.py: score the checkpoint ``ckpt`` on the held-out ``sets`` of :data:`SUITE` (or, with
  ``vae``, that VAE's reconstructions), print :func:`report`, write the scores to ``json_path`` (the format of
  assets/demo/eval.json: ``{set: {"summary", "clips"}}``) and return them. ``sample``: the sampling settings to
  override (:data:`SAMPLING_KEYS`), recorded in each summary."""
  if vae:
    scores = evaluate_vae(vae_reconstructor(vae), num=num, seconds=seconds, first=first)
    for line in report(scores["summary"]):
      print(line)
  else:
    sample = dict(sample or {})
    scores = suite(ReadPipeline.from_pretrained(ckpt), num=num, seconds=seconds, first=first, seed=seed, sets=sets,
                   **sample)
    for name, result in scores.items():
      result["summary"]["sampling"] = sample
      print(f"== {name}")
      for line in report(result["summary"]):
        print(line)
  if json_path:
    with atomic_path(json_path) as tmp:
      with open(tmp, "w") as fh:
        json.dump(scores, fh, indent=1)
  return scores
