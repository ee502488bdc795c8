"""scripts/preprocess.py / read_jax.data.preprocess: synthetic videos → stage-2 shards, with skips and resume."""

import json
import os

import numpy as np
import pytest

from read_jax import media
from read_jax.data import preprocess, records, synthetic

CLIP = 17  # demo tiny: f = 3 latent frames


def _write_video(path, frames, audio=None):
  import imageio_ffmpeg
  import soundfile

  kwargs = {}
  if audio is not None:
    wav = path + ".wav"
    soundfile.write(wav, audio, 16000, subtype="PCM_16")
    kwargs = dict(audio_path=wav, audio_codec="aac")
  w = imageio_ffmpeg.write_frames(path, frames.shape[2:0:-1], fps=25, codec="libx264", pix_fmt_out="yuv420p",
                                  macro_block_size=2, ffmpeg_log_level="error", **kwargs)
  w.send(None)
  for f in frames:
    w.send(np.ascontiguousarray(f))
  w.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_checkpoint):
  root = tmp_path_factory.mktemp("pre")
  ckpt = str(tiny_checkpoint)
  vids = root / "videos"
  good = [synthetic.write_clip(synthetic.make_clip(s, 3.0, size=128), vids, f"good{s}")[0] for s in (1, 2)]
  short = synthetic.write_clip(synthetic.make_clip(3, 0.4, size=128), vids, "short")[0]
  for p in (good + [short]):  # keep only the mp4s as inputs
    for ext in (".wav", ".json"):
      os.remove(p[:-4] + ext)
  corrupt = str(vids / "corrupt.mp4")
  with open(corrupt, "wb") as fh:
    fh.write(np.random.default_rng(0).bytes(5000))
  silent = str(vids / "silent.mp4")
  _write_video(silent, synthetic.make_clip(4, 1.0, size=128).frames)
  faceless = str(vids / "faceless.mkv")
  rng = np.random.default_rng(1)
  # A flat colour that changes every frame: no face, and every clip's frames differ.
  _write_video(faceless, np.broadcast_to(rng.integers(0, 255, (40, 1, 1, 3), np.uint8), (40, 128, 128, 3)),
               0.1 * rng.standard_normal(40 * 640).astype(np.float32))
  os.remove(faceless + ".wav")
  encoders = preprocess.load_encoders(os.path.join(ckpt, "vae"), os.path.join(ckpt, "speech_encoder"))
  return dict(root=root, vids=str(vids), ckpt=ckpt, good=good, short=short, corrupt=corrupt, silent=silent,
              faceless=faceless, encoders=encoders)


@pytest.mark.slow
def test_preprocess_synthetic(setup):
  if media.haar_detector() is None:
    pytest.skip("OpenCV's Haar cascade is not installed: no face detection")
  out = str(setup["root"] / "out")
  paths = preprocess.list_videos([setup["vids"]])
  assert len(paths) == 6
  encode_video, featurize = setup["encoders"]
  report = preprocess.preprocess(paths, out, encode_video, featurize, clip_frames=CLIP, stride=CLIP,
                                 resolution=64, val_fraction=0.0, progress=False)
  # The Haar cascade finds the drawn faces: both good clips processed with a face crop, 75 frames → 4 clips.
  assert sorted(report["processed"]) == sorted(setup["good"])
  for p in setup["good"]:
    r = report["processed"][p]
    assert r["clips"] == 4 and r["frames"] == 75 and "crop" not in r
    assert all(not (s <= ref < s + CLIP) for s, ref in zip(r["starts"], r["references"]))
  skipped = report["skipped"]
  assert set(skipped) == {setup["short"], setup["corrupt"], setup["silent"], setup["faceless"]}
  assert skipped[setup["short"]].startswith("too short: 10 frames")
  assert skipped[setup["silent"]] == "no audio track"
  assert skipped[setup["faceless"]] == "no face found"
  assert skipped[setup["corrupt"]].startswith("corrupt or not a media file")
  assert json.load(open(os.path.join(out, "report.json"))) == report

  shards = records.expand_paths(os.path.join(out, "train-*.array_record"))
  assert len(shards) == 2 and not os.path.exists(os.path.join(out, ".tmp"))
  ds = records.read_source(shards)
  assert len(ds) == 8
  dim = featurize(np.zeros(16000, np.float32), 25).shape[-1]  # the Whisper width
  for ex in (ds[i] for i in range(len(ds))):
    assert set(ex) == {"latents", "speech"}
    assert ex["latents"].dtype == np.float16 and ex["latents"].shape == (1 + 3, 2, 2, 8)
    assert ex["speech"].dtype == np.float16 and ex["speech"].shape == (CLIP, 10, dim)
    assert np.all(np.isfinite(ex["latents"])) and np.all(np.isfinite(ex["speech"]))
    # The reference latent comes from a frame outside the clip, not the clip's first frame.
    assert np.abs(ex["latents"][0].astype(np.float32) - ex["latents"][1].astype(np.float32)).max() > 1e-3

  # Each record's speech is the whole video's Whisper windows, sliced at the clip's start.
  p = setup["good"][0]
  full = featurize(preprocess.extract_audio(p), 75)  # [75, 10, D]
  own = records.read_source([os.path.join(out, report["processed"][p]["shards"][0])])
  for k, s in enumerate(report["processed"][p]["starts"]):
    np.testing.assert_allclose(own[k]["speech"], full[s:s + CLIP].astype(np.float16))
  # And the latents are the VAE of the cropped frames: clip 0 from the decoded frames directly.
  box = report["processed"][p]["crop_box"]
  frames = [preprocess.crop_frame(f, box, 64) for f, _ in zip(preprocess.iter_frames(p), range(CLIP))]
  np.testing.assert_allclose(own[0]["latents"][1:].astype(np.float32), encode_video(np.stack(frames)),
                             atol=2e-2, rtol=1e-2)

  # A rerun does no new work: no video is decoded and no shard is touched.
  mtimes = {s: os.stat(s).st_mtime_ns for s in shards}
  calls = []
  again = preprocess.preprocess(paths, out, lambda x: calls.append(x), lambda *a: calls.append(a),
                                clip_frames=CLIP, stride=CLIP, resolution=64, val_fraction=0.0, progress=False)
  assert calls == [] and again == report
  assert {s: os.stat(s).st_mtime_ns for s in shards} == mtimes
  with pytest.raises(ValueError, match="clip_frames"):
    preprocess.preprocess(paths, out, encode_video, featurize, clip_frames=9, stride=9, resolution=64)


def test_centre_crop_fallback_and_errors(setup):
  out = str(setup["root"] / "out_center")
  encode_video, featurize = setup["encoders"]
  report = preprocess.preprocess([setup["faceless"]], out, encode_video, featurize, clip_frames=CLIP, stride=20,
                                 resolution=64, no_face="center", progress=False)
  r = report["processed"][setup["faceless"]]
  assert r["crop"] == "no face found: centre crop" and r["crop_box"] == [0, 0, 128, 128]
  assert r["starts"] == [0, 20] and r["clips"] == 2
  # With stride > clip_frames the frames between clips are dropped: clip 1 is frames 20 … 36 exactly.
  frames = [preprocess.crop_frame(f, r["crop_box"], 64) for f in preprocess.iter_frames(setup["faceless"])]
  ex = records.read_source([os.path.join(out, r["shards"][0])])[1]
  np.testing.assert_allclose(ex["latents"][1:].astype(np.float32), encode_video(np.stack(frames[20:20 + CLIP])),
                             atol=2e-2, rtol=1e-2)
  with pytest.raises(ValueError, match="1 \\+ 8k"):
    preprocess.check_clip_frames(120)
  with pytest.raises(ValueError, match="no_face"):
    preprocess.preprocess([], out, encode_video, featurize, clip_frames=CLIP, no_face="maybe")


@pytest.mark.slow
def test_script_cli(setup, tmp_path):
  import subprocess
  import sys

  script = os.path.join(os.path.dirname(__file__), "..", "scripts", "preprocess.py")
  out = str(tmp_path / "o")
  proc = subprocess.run([sys.executable, script, setup["faceless"], setup["short"], "--ckpt", setup["ckpt"],
                         "--out", out, "--clip_frames", "17", "--resolution", "64", "--no_face", "center"],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert "1 videos (2 clips)" in proc.stdout, proc.stdout
  assert proc.stderr.splitlines() == [f"  skipped {setup['short']}: too short: 10 frames at 25 fps (video 10, "
                                      "audio 10) < clip_frames=17"], proc.stderr  # no warnings, no bar off a tty
  # Only unusable videos: one error line, and nothing written.
  proc = subprocess.run([sys.executable, script, setup["short"], "--ckpt", setup["ckpt"], "--out", out + "2",
                         "--clip_frames", "17"], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and proc.stderr.startswith(f"error: {setup['short']}: too short"), proc.stderr
  assert len(proc.stderr.splitlines()) == 1 and not os.path.exists(out + "2")
