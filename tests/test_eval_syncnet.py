"""SyncNet against syncnet-python 0.2.3: the network on random weights, the MFCC, and the Sync-C / Sync-D protocol.

Every number here comes from random weights: these are parity checks, never metric results.
"""

import numpy as np
import pytest
from scipy.io import wavfile

from read_jax.errors import CheckpointError, InputError
from read_jax.eval import syncnet
from read_jax.eval.syncnet import (SyncNet, load_syncnet, mfcc, sync_from_embeddings, sync_scores,
                                   syncnet_params_from_torch, to_int16_scale, torch_state_shapes)
from read_jax.files import write_safetensors


def _reference_model(seed: int):
  """The reference ``S`` on its default random init, with every BatchNorm's affine and running statistics
  randomised too (mean ~ N(0, 0.1), var ~ U(0.5, 1.5)), in eval mode."""
  torch = pytest.importorskip("torch", reason="the parity tests run the PyTorch reference")
  model_mod = pytest.importorskip("syncnet_python.SyncNetModel", reason="needs PyPI syncnet-python 0.2.3")
  torch.manual_seed(seed)
  model = model_mod.S()
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
        m.running_mean.normal_(0.0, 0.1)
        m.running_var.uniform_(0.5, 1.5)
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0.0, 0.1)
  return model.eval()


def _rel_err(got, want) -> float:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.slow
def test_embeddings_match_the_reference_on_random_weights():
  """Audio and lip embeddings of the reference ``S`` and of :class:`SyncNet` on the same random weights.

  float32 (matmul precision "highest", tests/conftest.py); tolerance 1e-4 of the largest |embedding|.
  Measured: audio 6.1e-7, lips 1.1e-6 (max |difference| / max |reference|).
  """
  torch = pytest.importorskip("torch", reason="the parity tests run the PyTorch reference")
  model = _reference_model(0)
  variables = syncnet_params_from_torch(model.state_dict())
  rng = np.random.default_rng(0)
  mfcc_in = rng.normal(0.0, 10.0, (3, 13, 20)).astype(np.float32)  # batch × coefficient × time
  lips_in = rng.uniform(0.0, 255.0, (2, 5, 224, 224, 3)).astype(np.float32)  # batch × T × H × W × C
  with torch.no_grad():
    want_a = model.forward_aud(torch.from_numpy(mfcc_in[:, None])).numpy()
    want_l = model.forward_lip(torch.from_numpy(lips_in.transpose(0, 4, 1, 2, 3).copy())).numpy()
  got_a, got_l = SyncNet().apply(variables, mfcc_in[..., None], lips_in)
  assert got_a.shape == (3, 1024) and got_l.shape == (2, 1024)
  err_a, err_l = _rel_err(got_a, want_a), _rel_err(got_l, want_l)
  print(f"SyncNet parity: audio {err_a:.2e}, lips {err_l:.2e}")
  assert err_a <= 1e-4 and err_l <= 1e-4


def test_mfcc_matches_python_speech_features():
  """Random int16-valued audio with a silent stretch (the eps paths), an odd length, and a clip shorter than
  one frame; float64 throughout, so the tolerance is 1e-9 relative."""
  psf = pytest.importorskip("python_speech_features", reason="the MFCC parity test needs python_speech_features")
  rng = np.random.default_rng(1)
  audio = rng.integers(-3000, 3000, 16000 + 333).astype(np.int16)
  audio[4000:6000] = 0
  for signal in (audio, audio[:250]):
    want = psf.mfcc(signal, 16000)
    got = mfcc(signal)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_offset_search_matches_calc_pdist():
  """:func:`sync_from_embeddings` against the reference's ``calc_pdist`` and the reductions of ``evaluate``
  on the same random embeddings (N = 23 windows, so the ±15 search runs into the zero padding)."""
  torch = pytest.importorskip("torch", reason="the parity tests run the PyTorch reference")
  instance = pytest.importorskip("syncnet_python.SyncNetInstance", reason="needs PyPI syncnet-python 0.2.3")
  rng = np.random.default_rng(2)
  aud = rng.normal(size=(23, 1024)).astype(np.float32)
  # the lips 3 frames behind the audio: offset +3
  lip = (np.roll(aud, 3, axis=0) + 0.5 * rng.normal(size=aud.shape)).astype(np.float32)
  dists = instance.calc_pdist(torch.from_numpy(lip), torch.from_numpy(aud), vshift=15)
  mdist = torch.mean(torch.stack(dists, 1), 1)
  minval, minidx = torch.min(mdist, 0)
  got = sync_from_embeddings(lip, aud, vshift=15)
  np.testing.assert_allclose(got["mean_dists"], mdist.numpy(), rtol=1e-6)
  assert got["offset"] == int(15 - minidx) == 3
  assert abs(got["min_dist"] - float(minval)) <= 1e-6 * float(minval)
  conf = float(torch.median(mdist) - minval)
  assert abs(got["confidence"] - conf) <= 1e-5 * conf


@pytest.mark.slow
def test_sync_scores_match_the_reference_evaluate(tmp_path, monkeypatch):
  """The whole protocol: the reference ``SyncNetInstance.evaluate`` (cv2.imread of JPEG crops, the 16-bit
  wav, python_speech_features MFCC, windows, ±15 search) against :func:`sync_scores` on the frames it read
  back, 2 s of random video (50 frames) and audio, random weights. Offset equal; min_dist and confidence
  within 1e-4 relative, and the whole curve of 31 mean distances (caught from the reference's
  ``calc_pdist``) within 1e-6. Measured: min_dist 3e-8, confidence 1.6e-5 relative (the confidence is a
  difference of two distances ~300× larger, so float32 rounding of the embeddings shows there), curve 1.6e-7.
  Random weights give a nearly flat curve (its minimum at the edge, −15): numbers for parity only.
  """
  pytest.importorskip("torch", reason="the parity tests run the PyTorch reference")
  cv2 = pytest.importorskip("cv2", reason="the reference reads its frames with OpenCV")
  instance = pytest.importorskip("syncnet_python.SyncNetInstance", reason="needs PyPI syncnet-python 0.2.3")
  model = _reference_model(3)
  rng = np.random.default_rng(3)
  coarse = rng.uniform(0, 255, (50, 28, 28, 3)).astype(np.float32)  # smooth frames: JPEG keeps them close
  for i, frame in enumerate(coarse):
    cv2.imwrite(str(tmp_path / f"{i + 1:06d}.jpg"), cv2.resize(frame, (224, 224)).astype(np.uint8))
  speech = 0.3 * rng.standard_normal(32000) * np.sin(np.linspace(0, 12 * np.pi, 32000)) ** 2
  samples = to_int16_scale(speech).astype(np.int16)
  wavfile.write(str(tmp_path / "audio.wav"), 16000, samples)

  class Opt:
    tmp_dir = str(tmp_path)
    batch_size = 20
    vshift = 15
  caught = []
  real_calc_pdist = instance.calc_pdist

  def calc_pdist(feat1, feat2, vshift):
    caught.append(real_calc_pdist(feat1, feat2, vshift=vshift))
    return caught[-1]
  monkeypatch.setattr(instance, "calc_pdist", calc_pdist)
  offset, conf, min_dist = instance.SyncNetInstance(model, device="cpu").evaluate(Opt())
  want_curve = np.stack([d.numpy() for d in caught[0]], 1).mean(axis=1)  # [31]

  bgr = np.stack([cv2.imread(str(tmp_path / f"{i + 1:06d}.jpg")) for i in range(50)])
  got = sync_scores(syncnet_params_from_torch(model.state_dict()), bgr[..., ::-1],
                    samples.astype(np.float32) / 32768)
  gap = np.sort(got["mean_dists"])[1] - got["min_dist"]
  rel_d, rel_c = abs(got["min_dist"] - min_dist) / min_dist, abs(got["confidence"] - conf) / conf
  print(f"reference offset {offset} min_dist {min_dist:.6f} conf {conf:.6f}; ours {got['offset']} "
        f"{got['min_dist']:.6f} {got['confidence']:.6f}; min_dist rel {rel_d:.1e}, conf rel {rel_c:.1e}, "
        f"curve rel {_rel_err(got['mean_dists'], want_curve):.1e}, gap to the second shift {gap:.2e}")
  assert _rel_err(got["mean_dists"], want_curve) <= 1e-6
  assert got["offset"] == offset
  assert abs(got["min_dist"] - min_dist) <= 1e-4 * min_dist
  assert abs(got["confidence"] - conf) <= 1e-4 * conf


def test_checkpoint_errors_name_the_keys(tmp_path):
  """Missing, unexpected and mis-shaped keys are one CheckpointError naming each; step counters are ignored;
  a safetensors file of a full state dict loads."""
  rng = np.random.default_rng(4)
  state = {k: rng.normal(size=s).astype(np.float32) for k, s in torch_state_shapes().items()}
  assert len(state) == 88 and state["netcnnlip.0.weight"].shape == (96, 3, 5, 7, 7)
  path = str(tmp_path / "syncnet.safetensors")
  write_safetensors(path, {**state, "netcnnaud.1.num_batches_tracked": np.zeros((), np.float32)})
  variables = load_syncnet(path)
  np.testing.assert_array_equal(variables["params"]["lips"]["netcnnlip_0"]["kernel"],
                                state["netcnnlip.0.weight"].transpose(2, 3, 4, 1, 0))
  np.testing.assert_array_equal(variables["batch_stats"]["audio"]["netfcaud_1"]["var"],
                                state["netfcaud.1.running_var"])
  bad = dict(state)
  del bad["netfclip.3.bias"]
  bad["netcnnaud.4.weight"] = np.zeros((192, 64, 3, 5), np.float32)
  bad["extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(CheckpointError, match=r"(?s)missing \(1\): netfclip\.3\.bias.*unexpected \(1\): "
                     r"extra\.weight.*netcnnaud\.4\.weight: checkpoint \(192, 64, 3, 5\) vs model \(192, 64, 3, 3\)"):
    syncnet_params_from_torch(bad)


def test_inputs_are_checked():
  variables = {}  # never reached: the checks come first
  with pytest.raises(InputError, match=r"uint8 \[T, 224, 224, 3\]"):
    sync_scores(variables, np.zeros((10, 112, 112, 3), np.uint8), np.zeros(6400, np.float32))
  with pytest.raises(InputError, match="at least 6 frames"):
    sync_scores(variables, np.zeros((10, 224, 224, 3), np.uint8), np.zeros(3000, np.float32))
  with pytest.raises(InputError, match="two"):
    sync_from_embeddings(np.zeros((4, 8)), np.zeros((5, 8)))
  assert syncnet.VSHIFT == 15 and syncnet.SIZE == 224
