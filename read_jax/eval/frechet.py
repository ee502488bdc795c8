"""The Fréchet distance between two Gaussians fitted to features: FID's formula (Heusel et al. 2017, eq. 6).

  d² = |μ₁ − μ₂|² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)

computed in float64 as pytorch-fid's ``calculate_frechet_distance`` does, so scores are comparable with
published ones: the matrix square root is scipy's ``sqrtm`` of the product; a product too singular for it
(non-finite root) is retried with ``eps`` added to both diagonals; the small imaginary part that rounding
leaves in the root is dropped, a large one (the covariances are not positive semi-definite) is an error.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

_IMAG_TOL = 1e-3  # largest |imaginary part| on the root's diagonal taken for rounding (pytorch-fid's)


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
  """(μ [D], Σ [D, D]) of features [N, D], float64; Σ is the unbiased sample covariance (``np.cov``)."""
  x = np.asarray(features, np.float64)
  if x.ndim != 2:
    raise ValueError(f"feature_stats: features must be [N, D], got shape {x.shape}")
  if x.shape[0] < 2:
    raise ValueError(f"feature_stats: a covariance needs at least 2 feature vectors, got {x.shape[0]}")
  return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
  """d² between N(mu1, sigma1) and N(mu2, sigma2) (means [D], covariances [D, D])."""
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
  d = mu1.shape[0]
  if mu1.shape != (d,) or mu2.shape != (d,):
    raise ValueError(f"frechet_distance: means must both be [D], got {mu1.shape} and {mu2.shape}")
  if sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(f"frechet_distance: covariances must both be [{d}, {d}] like the means, "
                     f"got {sigma1.shape} and {sigma2.shape}")
  covmean = linalg.sqrtm(sigma1 @ sigma2)
  if not np.isfinite(covmean).all():
    warnings.warn(f"frechet_distance: singular product of covariances; adding {eps} to their diagonals",
                  stacklevel=2)
    offset = eps * np.eye(d)
    covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=_IMAG_TOL):
      raise ValueError(f"frechet_distance: the square root of Σ₁Σ₂ has an imaginary component of "
                       f"{np.abs(covmean.imag).max():.3g} (are the covariances positive semi-definite?)")
    covmean = covmean.real
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_from_features(a, b) -> float:
  """d² between the Gaussians fitted to features a [N, D] and b [M, D] (FID when they are pool3 features).

  With fewer vectors than dimensions (min(N, M) < D: a time window, a small test set) both covariances are
  singular, and the trace of the root has an exact closed form that needs no D × D root: with the centred
  features A [N, D] and B [M, D], Σ₁ = AᵀA/(N − 1) and Σ₂ = BᵀB/(M − 1), the non-zero eigenvalues of Σ₁Σ₂ are
  those of (AB ᵀ)(ABᵀ)ᵀ / ((N − 1)(M − 1)), so Tr (Σ₁Σ₂)^½ is the sum of the singular values of ABᵀ over
  √((N − 1)(M − 1)). Exact where sqrtm only approximates a singular product, and an N × M SVD instead of
  a D × D Schur root (2048²: ~6 s each). Otherwise :func:`frechet_distance`, as pytorch-fid computes it.
  """
  a, b = np.asarray(a), np.asarray(b)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    raise ValueError(f"frechet_from_features: features must be [N, D] and [M, D] with the same D, "
                     f"got {a.shape} and {b.shape}")
  (mu1, sigma1), (mu2, sigma2) = feature_stats(a), feature_stats(b)
  if min(a.shape[0], b.shape[0]) >= a.shape[1]:
    return frechet_distance(mu1, sigma1, mu2, sigma2)
  ca, cb = np.asarray(a, np.float64) - mu1, np.asarray(b, np.float64) - mu2
  root_trace = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt((a.shape[0] - 1) * (b.shape[0] - 1))
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * root_trace)
