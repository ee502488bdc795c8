"""Audio front end: file loading, Whisper log-mel parity with transformers, per-video-frame windows."""

import subprocess

import numpy as np
import pytest

import _media_files as files
from read_jax import audio

sf = pytest.importorskip("soundfile")
SR = 16000


def speech_like(seconds, sr=SR, seed=0):
  """A gliding harmonic tone (f0 ≈ 120 Hz, 19 harmonics) under a 4 Hz syllable envelope, plus faint noise."""
  t = np.arange(int(seconds * sr)) / sr
  f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
  phase = 2 * np.pi * np.cumsum(f0) / sr
  tone = sum(np.sin(k * phase) / k for k in range(1, 20))
  envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
  noise = 1e-3 * np.random.default_rng(seed).standard_normal(t.shape)
  return (0.3 * tone * envelope + noise).astype(np.float32)


@pytest.fixture(scope="module")
def extractor():
  transformers = pytest.importorskip("transformers")
  return transformers.WhisperFeatureExtractor()


def reference_log_mel(extractor, wave):
  return extractor(wave, sampling_rate=SR, return_tensors="np")["input_features"][0].T  # [3000, 80]


@pytest.mark.parametrize("kind", ["noise", "speech", "long", "short", "silence"])
def test_log_mel_matches_transformers(extractor, kind):
  rng = np.random.default_rng(1)
  wave = {
    "noise": 0.1 * rng.standard_normal(5 * SR),
    "speech": speech_like(7.3),
    "long": rng.standard_normal(31 * SR + 17),  # truncated to the first 30 s
    "short": 0.5 * rng.standard_normal(401),  # mostly zero padding
    "silence": np.zeros(SR),
  }[kind].astype(np.float32)
  ref = reference_log_mel(extractor, wave)
  ours = audio.log_mel_spectrogram(wave)
  assert ours.shape == (3000, 80) and ours.dtype == np.float32
  assert np.abs(ours - ref).max() <= 1e-4
  if kind != "silence":
    assert ref.std() > 0.05  # a non-trivial comparison


def test_log_mel_batch_rows_are_independent_windows():
  rng = np.random.default_rng(2)
  rows = np.stack([0.1 * rng.standard_normal(3 * SR), speech_like(3.0)])
  batch = audio.log_mel_spectrogram(rows, num_samples=3 * SR)
  assert batch.shape == (2, 300, 80)
  for b in range(2):  # each row clamps at its own maximum
    np.testing.assert_array_equal(batch[b], audio.log_mel_spectrogram(rows[b], num_samples=3 * SR))


@pytest.mark.parametrize("fmt,subtype,ext,tol", [
  ("WAV", "PCM_16", "wav", 1e-4), ("WAV", "FLOAT", "wav", 1e-6), ("FLAC", "PCM_24", "flac", 1e-6),
  ("OGG", "VORBIS", "ogg", None), ("MP3", "MPEG_LAYER_III", "mp3", None)])
def test_load_formats(tmp_path, fmt, subtype, ext, tol):
  wave = speech_like(1.5)
  path = tmp_path / f"a.{ext}"
  try:
    sf.write(path, wave, SR, format=fmt, subtype=subtype)
  except Exception as e:  # libsndfile built without this codec
    pytest.skip(f"soundfile cannot write {fmt}/{subtype}: {e}")
  loaded = audio.load_audio(path)
  assert loaded.dtype == np.float32 and loaded.ndim == 1
  if tol is not None:  # lossless formats: sample for sample
    assert loaded.shape == wave.shape
    assert np.abs(loaded - wave).max() <= tol
  else:  # lossy codecs: same length within a frame's padding, and the same spectrum envelope
    assert abs(loaded.shape[0] - wave.shape[0]) <= 2048
    n = min(loaded.shape[0], wave.shape[0])
    mel_in, mel_out = (audio.log_mel_spectrogram(w[:n], num_samples=n) for w in (wave, loaded))
    assert np.median(np.abs(mel_in - mel_out)) < 0.1


def test_stereo_44k_becomes_16k_mono(tmp_path):
  sr_in, seconds = 44100, 2.0
  t = np.arange(int(sr_in * seconds)) / sr_in
  left = 0.6 * np.sin(2 * np.pi * 440 * t)
  right = 0.2 * np.sin(2 * np.pi * 440 * t)  # mono = mean: amplitude 0.4
  path = tmp_path / "stereo.wav"
  sf.write(path, np.stack([left, right], axis=1).astype(np.float32), sr_in, subtype="FLOAT")
  loaded = audio.load_audio(path)
  assert loaded.dtype == np.float32 and loaded.shape == (int(seconds * SR),)
  t16 = np.arange(loaded.shape[0]) / SR
  expected = 0.4 * np.sin(2 * np.pi * 440 * t16)
  inner = slice(SR // 10, -SR // 10)  # away from the resampler's edge transients
  assert np.abs(loaded[inner] - expected[inner]).max() < 1e-2


def test_silence_is_valid(tmp_path):
  path = tmp_path / "silence.flac"
  sf.write(path, np.zeros(SR // 2, np.float32), SR)
  loaded = audio.load_audio(path)
  assert loaded.shape == (SR // 2,) and not loaded.any()
  mel = audio.log_mel_spectrogram(loaded)
  assert np.isfinite(mel).all()


def test_errors_name_the_file(tmp_path):
  missing = tmp_path / "missing.wav"
  with pytest.raises(audio.AudioError, match="missing.wav: no such file"):
    audio.load_audio(missing)

  empty = tmp_path / "empty.wav"
  sf.write(empty, np.zeros(0, np.float32), SR)
  with pytest.raises(audio.AudioError, match="empty.wav"):
    audio.load_audio(empty)

  zero_bytes = tmp_path / "zero_bytes.flac"
  zero_bytes.write_bytes(b"")
  with pytest.raises(audio.AudioError, match="zero_bytes.flac"):
    audio.load_audio(zero_bytes)

  garbage = tmp_path / "garbage.wav"
  garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
  with pytest.raises(audio.AudioError, match="garbage.wav: cannot read audio"):
    audio.load_audio(garbage)

  all_nan = tmp_path / "all_nan.wav"
  sf.write(all_nan, np.full(800, np.nan, np.float32), SR, subtype="FLOAT")
  with pytest.raises(audio.AudioError, match="all_nan.wav: all samples are NaN"):
    audio.load_audio(all_nan)

  some_nan = tmp_path / "some_nan.wav"
  wave = np.zeros(800, np.float32)
  wave[[3, 500]] = np.nan
  sf.write(some_nan, wave, SR, subtype="FLOAT")
  with pytest.raises(audio.AudioError, match="some_nan.wav: 2 of 800 samples"):
    audio.load_audio(some_nan)

  assert issubclass(audio.AudioError, ValueError)


def test_num_video_frames():
  assert audio.num_video_frames(77440) == 121  # 4.84 s, the paper's clip
  assert audio.num_video_frames(77439) == 120
  assert audio.num_video_frames(0) == 0
  assert audio.num_video_frames(65 * SR) == 1625
  assert audio.num_whisper_frames(65 * SR) == 3250
  assert audio.num_whisper_frames(321) == 2


@pytest.mark.parametrize("num_frames,num_whisper", [(0, 7), (1, 1), (1, 3), (13, 23), (13, 5), (121, 242), (37, 60)])
def test_frame_windows_are_the_clamped_design_windows(num_frames, num_whisper):
  hidden = np.arange(num_whisper, dtype=np.float32)[:, None] * np.array([[1.0, -1.0, 0.5]], np.float32)  # [T_w, 3]
  s = audio.frame_windows(hidden, num_frames)
  assert s.shape == (num_frames, 10, 3)
  for i in range(num_frames):
    for p in range(10):  # docs/design.md §3.2: frame i sees Whisper frames 2i−4 … 2i+5, clamped
      j = min(max(2 * i - 4 + p, 0), num_whisper - 1)
      np.testing.assert_array_equal(s[i, p], hidden[j])


def test_frame_windows_works_on_jax_arrays():
  import jax
  import jax.numpy as jnp
  hidden = jnp.arange(50 * 4, dtype=jnp.float32).reshape(50, 4)
  s = jax.jit(audio.frame_windows, static_argnums=1)(hidden, 25)
  np.testing.assert_array_equal(np.asarray(s), audio.frame_windows(np.asarray(hidden), 25))


def test_click_lands_in_its_video_frame_log_mel_path():
  """A click at τ is loudest at window position 4 of video frame round(25τ), and in no other frame's position 4.

  The 50 Hz grid here is the log-mel frame 2j (what Whisper's stride-2 conv is centred on): sample →
  mel frame (centred STFT) → Whisper frame → window. Any off-by-one in those steps moves the peak.
  """
  seconds = 3.0
  for tau in (0.0, 0.2, 1.0 + 1 / 250, 2.04, 2.96):  # includes both ends, where windows clamp
    wave = 1e-3 * np.random.default_rng(3).standard_normal(int(seconds * SR)).astype(np.float32)
    wave[int(round(tau * SR))] += 1.0
    mel = audio.log_mel_spectrogram(wave, num_samples=None)  # [300, 80]
    energy = mel.mean(-1)[0::2, None]  # [150, 1] at 50 Hz
    s = audio.frame_windows(energy, audio.num_video_frames(wave.size))[..., 0]  # [F, 10]
    i = int(round(25 * tau))
    assert np.argmax(s[:, 4]) == i, tau
    if 0 < i < s.shape[0] - 1:  # one frame earlier / later, the click sits two Whisper frames later / earlier
      assert np.argmax(s[i - 1]) == 6 and np.argmax(s[i + 1]) == 2 and np.argmax(s[i]) == 4


# ---------------------------------------------------------------------------------------------
# Containers and bad files: what scripts/sample.py checks before it loads a model


def test_sound_track_of_a_video_and_other_containers(tmp_path):
  """A video with speech is read as its sound track; a container libsndfile lacks (Matroska) goes through
  ffmpeg and gives the same samples as the WAV it was made from."""
  wave = speech_like(1.2)
  video = files.video(tmp_path / "talk.mp4", frames=30, audio=(wave, SR))  # 1.2 s at 25 fps
  loaded = audio.load_audio(video)
  assert loaded.dtype == np.float32 and abs(loaded.shape[0] - wave.shape[0]) <= 1
  mel_in, mel_out = (audio.log_mel_spectrogram(w[:19000], num_samples=19000) for w in (wave, loaded))
  assert np.median(np.abs(mel_in - mel_out)) < 0.1  # AAC: the same speech, not the same samples
  assert audio.audio_info(video).codec == "aac"

  sr_in = 44100
  t = np.arange(int(0.9 * sr_in)) / sr_in
  stereo = np.stack([0.6 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 700 * t)], 1).astype(np.float32)
  sf.write(tmp_path / "stereo.wav", stereo, sr_in, subtype="FLOAT")
  mka = tmp_path / "stereo.mka"
  subprocess.run([audio.ffmpeg_exe(), "-v", "error", "-i", tmp_path / "stereo.wav", "-c:a", "pcm_f32le", mka], check=True)
  with pytest.raises(Exception):
    sf.info(mka)  # so this really is the ffmpeg path
  np.testing.assert_array_equal(audio.load_audio(mka), audio.load_audio(tmp_path / "stereo.wav"))


def test_no_audio_stream_short_and_nan_files_are_refused_from_the_header(tmp_path):
  mute = files.video(tmp_path / "mute.mp4")
  for read in (audio.audio_info, audio.check_audio_file, audio.load_audio):
    with pytest.raises(audio.AudioError, match=r"mute.mp4: no audio stream \(the file holds video streams only\)"):
      read(mute)
  short = tmp_path / "short.wav"
  sf.write(short, np.zeros(160, np.float32), SR)  # 0.01 s
  with pytest.raises(audio.AudioError, match=r"short.wav: 0.010 s of audio is shorter than one video frame"):
    audio.check_audio_file(short)
  assert audio.load_audio(short).shape == (160,)  # the file itself is fine: too short to animate, that is all
  assert audio.check_audio_file(short, min_seconds=0.005).seconds == pytest.approx(0.01)
  nan = files.nan_wav(tmp_path / "nan.wav")
  with pytest.raises(audio.AudioError, match=r"nan.wav: 2 of 8000 samples are NaN or inf"):
    audio.check_audio_file(nan)
  text = tmp_path / "speech.mp3"
  text.write_text("not audio\n")
  with pytest.raises(audio.AudioError, match=r"speech.mp3: cannot read audio"):
    audio.check_audio_file(text)
  with pytest.raises(audio.AudioError, match=r"speech.mp3: cannot read audio"):
    audio.load_audio(text)


def _status_kb(key):
  with open("/proc/self/status") as fh:
    return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))


def test_memory_stays_near_the_size_of_the_result(tmp_path):
  """3 min of 44.1 kHz stereo (63 MB as float32) becomes 11.5 MB of 16 kHz mono; reading it costs about that
  much, not the decoded input (decoding whole, then downmixing and resampling, cost ~2.5 GB for an hour)."""
  try:
    with open("/proc/self/clear_refs", "w") as fh:
      fh.write("5")  # resets the peak RSS (VmHWM) to the current RSS
  except OSError:
    pytest.skip("no /proc/self/clear_refs to reset the peak RSS")
  sr_in, seconds = 44100, 180
  path = tmp_path / "long.wav"
  with sf.SoundFile(path, "w", sr_in, 2, subtype="PCM_16") as f:
    for start in range(0, seconds, 10):
      t = np.arange(start * sr_in, (start + 10) * sr_in) / sr_in
      f.write(np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)], 1))
  decoded_input = seconds * sr_in * 2 * 4
  with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
  before = _status_kb("VmRSS") * 1024
  wave = audio.load_audio(path)
  added = _status_kb("VmHWM") * 1024 - before
  assert wave.shape == (seconds * SR,)
  assert added < wave.nbytes + 24e6 and added < decoded_input / 2, (added / 1e6, wave.nbytes / 1e6)
