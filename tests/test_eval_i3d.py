"""FVD's I3D against cd-fvd 0.1.1's: the preprocessing, the weight map, and the network on random weights."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from read_jax.errors import CheckpointError
from read_jax.eval.i3d import (CLASSES, FEATURES, SIZE, I3D, i3d_params_from_torch, i3d_preprocess, load_i3d,
                               torch_state_shapes)
from read_jax.files import write_safetensors

_TORCH = "the PyTorch reference (pip install torch)"
_CDFVD = "cd-fvd, the FVD reference (pip install cd-fvd==0.1.1)"


@pytest.mark.parametrize("shape", [(10, 37, 53), (3, 301, 250)])  # up, and down (where antialiasing would differ)
def test_preprocess_matches_cdfvd(shape):
  """cd-fvd's preprocess_i3d on random uint8 frames: measured max |Δ| 3.6e-7 (float32 rounding) on values
  in [−1, 1]; the test allows 2e-6. An antialiased resize misses the 301×250 case by 0.66."""
  torch = pytest.importorskip("torch", reason=_TORCH)
  pytest.importorskip("cdfvd", reason=_CDFVD)
  from cdfvd.third_party.i3d.utils import preprocess_i3d
  frames = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
  ref = preprocess_i3d(frames[None])  # [1, 3, T, 224, 224]
  assert isinstance(ref, torch.Tensor)
  ref = ref[0].permute(1, 2, 3, 0).numpy()  # [T, 224, 224, 3]
  got = np.asarray(i3d_preprocess(frames))
  assert got.shape == (shape[0], SIZE, SIZE, 3) and got.dtype == np.float32
  np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)
  batched = np.asarray(i3d_preprocess(np.stack([frames, frames[::-1]])))  # [B, T, ...] too
  np.testing.assert_array_equal(batched[0], got)
  np.testing.assert_array_equal(batched[1], got[::-1])


def test_load_i3d_reads_safetensors(tmp_path):
  """Every tensor lands in its Flax place (conv weights [O, I, kt, kh, kw] → [kt, kh, kw, I, O]); a missing,
  an unexpected and a mis-shaped tensor are each named."""
  rng = np.random.default_rng(1)
  shapes = torch_state_shapes()
  assert shapes["logits.conv3d.weight"] == (CLASSES, FEATURES, 1, 1, 1)
  assert shapes["Conv3d_1a_7x7.conv3d.weight"] == (64, 3, 7, 7, 7)
  state = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
  state["Mixed_4b.b1b.bn.num_batches_tracked"] = np.zeros((), np.int64)  # PyTorch's counter: ignored
  write_safetensors(str(tmp_path / "i3d.safetensors"), state)
  variables = load_i3d(str(tmp_path / "i3d.safetensors"))
  w = state["Mixed_4b.b1b.conv3d.weight"]  # random 3×3×3: a swapped kernel axis would show
  np.testing.assert_array_equal(variables["params"]["Mixed_4b"]["b1b"]["conv3d"]["kernel"],
                                w.transpose(2, 3, 4, 1, 0))
  np.testing.assert_array_equal(variables["params"]["logits"]["conv3d"]["bias"], state["logits.conv3d.bias"])
  np.testing.assert_array_equal(variables["batch_stats"]["Mixed_5c"]["b3b"]["bn"]["var"],
                                state["Mixed_5c.b3b.bn.running_var"])
  missing = dict(state)
  del missing["Mixed_3c.b2a.bn.running_mean"]
  with pytest.raises(CheckpointError, match=r"missing \(1\): Mixed_3c.b2a.bn.running_mean"):
    i3d_params_from_torch(missing)
  with pytest.raises(CheckpointError, match=r"unexpected \(1\): Mixed_6a.b0.conv3d.weight"):
    i3d_params_from_torch({**state, "Mixed_6a.b0.conv3d.weight": w})
  with pytest.raises(CheckpointError, match=r"mis-shaped \(1\): logits.conv3d.bias: checkpoint \(10,\)"):
    i3d_params_from_torch({**state, "logits.conv3d.bias": np.zeros(10, np.float32)})


def test_too_small_a_video_is_refused():
  video = jax.ShapeDtypeStruct((1, 16, 64, 64, 3), jnp.float32)
  with pytest.raises(ValueError, match=r"H, W in 193…224, T ≥ 9"):
    jax.eval_shape(I3D().init, jax.random.key(0), video)


@pytest.mark.slow
def test_i3d_matches_cdfvd():
  """cd-fvd's InceptionI3d(400) with random weights vs I3D on 2 videos of 10 frames, 200×194, in [−1, 1].

  The reference refuses smaller videos (its [2, 7, 7] average pool needs H, W ≥ 193 and T ≥ 9, so the
  suggested 16×64×64 cannot run); 10×200×194 is even in T, H and W, so the stride-2 layers pad
  asymmetrically, and H ≠ W catches a swapped axis. Nothing is downloaded: the module is built directly.
  Convs get a He init (signal reaches Mixed_5c instead of fading), BatchNorm random affine and running
  statistics (mean ~ N(0, 0.1), var ~ U(0.5, 1.5)). Float32, matmul precision "highest"
  (tests/conftest.py): measured max |Δ| 2.1e-5 on logits of max 36 (5.8e-7 of the largest) and 2.3e-5 on
  features of max 57 (4.0e-7); the test allows 1e-5 of the largest. Putting the odd padding row in front
  instead of at the end gives 7.9 on the logits: it fails. About 25 s on a loaded 2-core CPU.
  """
  torch = pytest.importorskip("torch", reason=_TORCH)
  pytest.importorskip("cdfvd", reason=_CDFVD)
  from cdfvd.third_party.i3d.pytorch_i3d import InceptionI3d
  torch.manual_seed(0)
  ref = InceptionI3d(CLASSES, in_channels=3).eval()  # as cd-fvd's load_i3d_model builds it
  with torch.no_grad():
    for m in ref.modules():
      if isinstance(m, torch.nn.Conv3d):
        torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if m.bias is not None:
          m.bias.normal_(0, 0.1)
      elif isinstance(m, torch.nn.BatchNorm3d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0, 0.1)
        m.running_mean.normal_(0, 0.1)
        m.running_var.uniform_(0.5, 1.5)

  video = np.random.default_rng(2).uniform(-1, 1, (2, 10, 200, 194, 3)).astype(np.float32)
  video[1] *= 0.3  # lower contrast: the two outputs must differ
  with torch.no_grad():
    x = torch.from_numpy(video).permute(0, 4, 1, 2, 3)  # [B, 3, T, H, W]
    expected = {"logits": ref(x).numpy(),  # what cd-fvd's get_i3d_logits collects for FVD
                "features": ref.extract_features(x).flatten(2).mean(2).numpy()}  # [B, 1024, T', 1, 1] → [B, 1024]
  variables = i3d_params_from_torch(ref.state_dict())
  apply = jax.jit(I3D().apply, static_argnames="output")

  for output, width in (("logits", CLASSES), ("features", FEATURES)):
    want = expected[output]
    got = np.asarray(apply(variables, jnp.asarray(video), output=output))
    assert got.shape == want.shape == (2, width) and got.dtype == np.float32
    scale = np.abs(want).max()
    err = np.abs(got - want).max()
    assert err <= 1e-5 * scale, f"{output}: max |Δ| {err:.2g} on values of max {scale:.2g}"
    # The output depends on the video (measured 24 and 37 apart): a network reduced to its biases would
    # pass the check above.
    assert np.abs(want[0] - want[1]).max() > 0.1 * scale
