"""FID: the Fréchet distance against closed forms and pytorch-fid; FID's Inception against pytorch-fid's."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from scipy import linalg

from read_jax.errors import CheckpointError
from read_jax.eval import frechet
from read_jax.eval.frechet import feature_stats, frechet_distance, frechet_from_features
from read_jax.eval.inception import (FEATURES, FIDInceptionV3, inception_params_from_torch, load_inception,
                                     resize_bilinear, torch_state_shapes)
from read_jax.files import write_safetensors


def _features(seed, n, d):
  """Correlated, non-centred features [n, d]."""
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d) + rng.normal(size=d)


def test_identical_stats_are_at_distance_zero():
  mu, sigma = feature_stats(_features(0, 50, 7))
  assert abs(frechet_distance(mu, sigma, mu, sigma)) <= 1e-8


def test_diagonal_gaussians_match_the_closed_form():
  rng = np.random.default_rng(1)
  mu1, mu2 = rng.normal(size=13), rng.normal(size=13)
  a, b = rng.uniform(0.1, 2.0, 13), rng.uniform(0.1, 2.0, 13)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  assert abs(got - expected) <= 1e-8 * expected


@pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")  # pytorch-fid's sqrtm call
def test_matches_pytorch_fid_on_random_features():
  fid_score = pytest.importorskip("pytorch_fid.fid_score")
  a, b = _features(2, 200, 64), 1.3 * _features(3, 200, 64) + 0.2
  (mu1, s1), (mu2, s2) = feature_stats(a), feature_stats(b)
  np.testing.assert_allclose(s1, np.cov(a, rowvar=False), rtol=1e-12)
  expected = fid_score.calculate_frechet_distance(mu1, s1, mu2, s2)
  assert abs(frechet_from_features(a, b) - expected) <= 1e-6 * abs(expected)


@pytest.mark.parametrize("n, m", [(9, 23), (40, 17)])
def test_fewer_vectors_than_dimensions_use_the_exact_low_rank_trace(n, m, monkeypatch):
  """min(N, M) < D: the closed form through the N × M cross products equals sqrtm of the D × D product (which
  the low-rank path never forms), and its own features give 0; the SVD is what runs, not sqrtm."""
  d = 31
  a, b = _features(6, n, d), 0.7 * _features(7, m, d) + 0.3
  (mu1, s1), (mu2, s2) = feature_stats(a), feature_stats(b)
  root = linalg.sqrtm(s1 @ s2)
  expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root).real
  small = a if n < m else b
  assert abs(frechet_from_features(small, small)) <= 1e-9 * np.trace(np.cov(small, rowvar=False))
  monkeypatch.setattr(frechet.linalg, "sqrtm", lambda m: pytest.fail("the D × D root was formed"))
  assert abs(frechet_from_features(a, b) - expected) <= 1e-6 * abs(expected)
  swapped = frechet_from_features(b, a)
  assert swapped == pytest.approx(frechet_from_features(a, b), rel=1e-12)


def test_singular_product_is_retried_with_eps_on_the_diagonals(monkeypatch):
  """pytorch-fid's fallback: a non-finite root → the root of (Σ₁ + εI)(Σ₂ + εI), traces unchanged."""
  (mu1, s1), (mu2, s2) = feature_stats(_features(4, 30, 5)), feature_stats(_features(5, 30, 5))
  calls, real_sqrtm = [], linalg.sqrtm

  def sqrtm(m):
    calls.append(m)
    return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)
  monkeypatch.setattr(frechet.linalg, "sqrtm", sqrtm)
  with pytest.warns(UserWarning, match="singular"):
    got = frechet_distance(mu1, s1, mu2, s2, eps=1e-2)
  offset = 1e-2 * np.eye(5)
  root = real_sqrtm((s1 + offset) @ (s2 + offset)).real
  expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root)
  assert len(calls) == 2 and abs(got - expected) <= 1e-10 * abs(expected)


def test_errors_are_clear():
  with pytest.raises(ValueError, match="imaginary component of 1"):
    frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))  # not PSD: √−1
  with pytest.raises(ValueError, match="at least 2 feature vectors, got 1"):
    feature_stats(np.zeros((1, 4)))
  with pytest.raises(ValueError, match=r"\[N, D\]"):
    feature_stats(np.zeros(4))
  with pytest.raises(ValueError, match=r"same D, got \(10, 4\) and \(10, 5\)"):
    frechet_from_features(np.zeros((10, 4)), np.zeros((10, 5)))
  with pytest.raises(ValueError, match=r"\[3, 3\]"):
    frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))


@pytest.mark.parametrize("size", [(299, 299), (17, 11)])  # up, and down (where antialiasing would differ)
def test_resize_matches_torch_interpolate(size):
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(6).random((1, 37, 53, 3), dtype=np.float32)
  ref = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=size, mode="bilinear",
                                        align_corners=False).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(np.asarray(resize_bilinear(jnp.asarray(x), size)), ref, rtol=0, atol=1e-5)


def test_load_inception_reads_safetensors(tmp_path):
  """Every tensor lands in its Flax place (conv weights [O, I, kh, kw] → [kh, kw, I, O]); a missing one is named."""
  rng = np.random.default_rng(7)
  shapes = torch_state_shapes()
  state = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
  write_safetensors(str(tmp_path / "fid.safetensors"), state)
  variables = load_inception(str(tmp_path / "fid.safetensors"))
  w = state["Mixed_7c.branch3x3_2a.conv.weight"]  # (1, 3) kernel: a swapped kh/kw would show
  np.testing.assert_array_equal(variables["params"]["Mixed_7c"]["branch3x3_2a"]["conv"]["kernel"],
                                w.transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables["batch_stats"]["Mixed_5b"]["branch_pool"]["bn"]["var"],
                                state["Mixed_5b.branch_pool.bn.running_var"])
  del state["Mixed_6a.branch3x3.bn.running_mean"]
  with pytest.raises(CheckpointError, match="Mixed_6a.branch3x3.bn.running_mean"):
    inception_params_from_torch(state)


@pytest.mark.slow
def test_inception_matches_pytorch_fid(monkeypatch):
  """pytorch-fid's InceptionV3([3]) with random weights vs FIDInceptionV3 on 2 uint8 images of 64×80.

  Nothing is downloaded: pytorch-fid's weight download returns the model's own random state dict. Convs
  get a He init (signal reaches pool3 instead of fading), BatchNorm random affine and running statistics.
  Float32, matmul precision "highest" (tests/conftest.py): measured max |Δ| 1.3e-5 on features of max 40,
  i.e. 3.3e-7 of the largest feature; the test allows 1e-4 of it. Pooling the padding into the A/C/E means
  (count_include_pad=True) gives 3.9e-2, an average pool in Mixed_7c 0.27: both fail.
  """
  torch = pytest.importorskip("torch")
  pid = pytest.importorskip("pytorch_fid.inception")
  # pytorch-fid builds torchvision's Inception3, swaps in the FID blocks, then loads the downloaded weights
  # into it: keep the model it builds and hand it its own random state dict in place of the download.
  built, inception_v3 = [], pid._inception_v3

  def build(*args, **kwargs):
    built.append(inception_v3(*args, **kwargs))
    return built[-1]
  monkeypatch.setattr(pid, "_inception_v3", build)
  monkeypatch.setattr(pid, "load_state_dict_from_url", lambda *args, **kwargs: built[-1].state_dict())
  torch.manual_seed(0)
  ref = pid.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
  with torch.no_grad():
    for m in ref.modules():
      if isinstance(m, torch.nn.Conv2d):
        torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
      elif isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0, 0.1)
        m.running_mean.normal_(0, 0.1)
        m.running_var.uniform_(0.5, 1.5)

  images = np.random.default_rng(8).integers(0, 256, (2, 64, 80, 3), dtype=np.uint8)
  images[1] //= 3  # darker, lower contrast: pool3 averages over 8×8 places, two noise images look alike
  with torch.no_grad():
    (expected,) = ref(torch.from_numpy(images.astype(np.float32) / 255).permute(0, 3, 1, 2))
  expected = expected.reshape(2, FEATURES).numpy()
  variables = inception_params_from_torch(ref.state_dict())
  got = np.asarray(jax.jit(FIDInceptionV3().apply)(variables, jnp.asarray(images)))

  assert got.shape == (2, FEATURES) and got.dtype == np.float32
  scale = np.abs(expected).max()
  err = np.abs(got - expected).max()
  assert err <= 1e-4 * scale, f"max |Δ| {err:.2g} on features of max {scale:.2g}"
  # The features depend on the image (measured 7.1 apart): a network reduced to its BatchNorm shifts
  # would pass the check above.
  assert np.abs(expected[0] - expected[1]).max() > 0.05 * scale
