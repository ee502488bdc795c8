"""ANS reverse sampler (Algorithm 1, Eq. 16–17): loop orders agree, a literal reference agrees, no recompiles; the
sampler core's solvers (Euler, Heun) and the Sampler value."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from read_jax.ans import sampling, solvers
from read_jax.ans.guidance import DEFAULT_GUIDANCE
from read_jax.ans.solvers import Sampler

sys.path.insert(0, os.path.dirname(__file__))
import _ans_reference as reference  # noqa: E402

H, W, C, S, D = 3, 5, 4, 2, 6  # odd sizes so a swapped axis cannot pass
F = 4  # latent frames per clip in tests


def make_denoiser(seed=0, f=F):
  """A fixed random map mixing frames (incl. z_R), t and speech, with a nonlinearity; written in jnp.

  ``calls`` counts traces (the Python body runs once per trace), ``batches`` records B per trace.
  """
  rng = np.random.default_rng(seed)
  mix = jnp.asarray(rng.normal(size=(1 + f, 1 + f)) / (1 + f), jnp.float32)  # frame mixing
  chan = jnp.asarray(rng.normal(size=(C, C)) / C, jnp.float32)
  tproj = jnp.asarray(rng.normal(size=(1 + f, C)), jnp.float32)
  sproj = jnp.asarray(rng.normal(size=(S * D, C)) / 3, jnp.float32)
  calls, batches = [], []

  def denoise(x, t, speech):  # [B, 1+f, h, w, C], [B, 1+f], [B, f, S, D]
    calls.append(1)
    batches.append(x.shape[0])
    y = jnp.einsum("uv,bvhwc,cd->buhwd", mix, x, chan)
    y = y + jnp.tanh(x) * (1.0 + t[:, :, None, None, None])
    y = y + (t[:, :, None] * tproj[None])[:, :, None, None, :]
    sp = speech.reshape(speech.shape[:2] + (S * D,)) @ sproj  # [B, f, C]
    sp = jnp.concatenate([jnp.zeros_like(sp[:, :1]), sp], axis=1)  # no speech on the z_R slot
    return y + sp[:, :, None, None, :]

  denoise.calls, denoise.batches = calls, batches
  return denoise


DENOISE = make_denoiser()  # shared, so tests reuse one compiled per-clip program


def inputs(num_frames, seed=1):
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  z_ref = jax.random.normal(k1, (H, W, C))
  speech = jax.random.normal(k2, (num_frames, S, D))
  return k3, z_ref, speech


def reference_algorithm1(denoise, key, z_ref, speech, n_frames, f, schedule, cfg, alpha, beta):
  """Algorithm 1 written out literally in numpy, one denoiser call per CFG branch."""
  z_ref, speech = np.asarray(z_ref), np.asarray(speech)
  k = max(1, -(-(n_frames - 1) // (f - 1)))
  n_pad = 1 + k * (f - 1)
  speech = np.concatenate([speech, np.zeros((n_pad - n_frames, S, D), np.float32)])
  noise = [np.asarray(jax.random.normal(jax.random.fold_in(key, j), (f, H, W, C))) for j in range(k)]
  z = np.concatenate([noise[0]] + [n[1:] for n in noise[1:]])  # Z(T_1) = ε

  denoise = jax.jit(denoise)

  def model(x, t, zr, c):
    xin = np.concatenate([zr[None], x])[None]
    return np.asarray(denoise(jnp.asarray(xin), jnp.asarray(t)[None], jnp.asarray(c)[None]))[0, 1:]

  for i in range(len(schedule) - 1):
    ti, tn = float(schedule[i]), float(schedule[i + 1])
    for j in range(k):
      lo = j * (f - 1)
      x = z[lo:lo + f].copy()  # for j > 0, x[0] is clip j−1's last frame, already at T_{i+1}
      t = np.array([0.0, ti] + [ti] * (f - 1) if j == 0 else [0.0, tn] + [ti] * (f - 1), np.float32)
      c = speech[lo:lo + f]
      full = model(x, t, z_ref, c)
      empty = model(x, t, np.zeros_like(z_ref), np.zeros_like(c))
      if cfg == "none":
        v = full
      elif cfg == "joint":
        v = (1 - alpha) * empty + alpha * full
      else:
        v = (1 - alpha - beta) * empty + alpha * model(x, t, z_ref, np.zeros_like(c)) + beta * full
      new = x + (tn - ti) * v
      if j == 0:
        z[lo:lo + f] = new
      else:
        z[lo + 1:lo + f] = new[1:]  # the motion frame belongs to clip j−1
  return z[:n_frames]


@pytest.mark.slow
@pytest.mark.parametrize("n_frames", [4, 7, 14])  # 1, 2 and 5 clips (14 pads the last clip)
def test_orders_agree(n_frames):
  denoise = DENOISE
  key, z_ref, speech = inputs(n_frames)
  sampler = Sampler.create(steps=2, cfg="split")
  outs = {o: np.asarray(reference.sample(denoise, sampler, key, z_ref, speech, n_frames, F, order=o))
          for o in reference.ORDERS}
  assert sampling.num_clips(n_frames, F) == {4: 1, 7: 2, 14: 5}[n_frames]
  for o, z in outs.items():
    assert z.shape == (n_frames, H, W, C), o
    assert np.all(np.isfinite(z)), o
  # Same per-frame arithmetic in every order: bitwise identical on CPU.
  np.testing.assert_array_equal(outs["clips_outer"], outs["steps_outer"])
  np.testing.assert_array_equal(outs["stream"], outs["clips_outer"])
  # The shared frames really matter: a different key changes the result.
  other = reference.sample(denoise, sampler, jax.random.fold_in(key, 99), z_ref, speech, n_frames, F)
  assert np.abs(np.asarray(other) - outs["stream"]).max() > 1e-2


@pytest.mark.parametrize("cfg,alpha,beta", [("split", 2.0, 6.0), ("joint", 2.0, None), ("none", None, None)])
def test_matches_literal_algorithm1(cfg, alpha, beta):
  denoise = make_denoiser(seed=3)
  n_frames = 9  # 3 clips of 4 with one-frame overlaps: 0-3, 3-6, 6-9 (frame 9 is padding)
  key, z_ref, speech = inputs(n_frames, seed=4)
  schedule = solvers.timesteps(3, shift=2.0)
  a, b = DEFAULT_GUIDANCE[cfg]
  ref = reference_algorithm1(denoise, key, z_ref, speech, n_frames, F, schedule, cfg, a, b)
  # The stream order only: test_orders_agree shows the other orders give bitwise the same latents.
  sampler = Sampler.create(shift=2.0, steps=3, cfg=cfg, alpha=alpha, beta=beta)
  out = reference.sample(denoise, sampler, key, z_ref, speech, n_frames, F)
  np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-5)


def test_cfg_branches_stacked_on_batch():
  for cfg, b in (("split", 3), ("joint", 2), ("none", 1)):
    denoise = make_denoiser()
    key, z_ref, speech = inputs(4)
    reference.sample(denoise, Sampler.create(steps=2, cfg=cfg), key, z_ref, speech, 4, F)
    assert denoise.batches == [b], (cfg, denoise.batches)  # one forward pass per step, B branches


def test_guidance_scales_change_output():
  denoise = make_denoiser()
  key, z_ref, speech = inputs(4)
  out = [reference.sample(denoise, Sampler.create(steps=2, cfg="split", beta=beta), key, z_ref, speech, 4, F)
         for beta in (6.0, 1.0)]
  assert np.abs(np.asarray(out[0] - out[1])).max() > 1e-3
  assert len(denoise.calls) == 1  # the scales are arguments of the compiled program, not constants in it


def test_no_recompilation_across_lengths():
  """3 s, 13 s, 40 s of 25 fps audio in one process: the denoiser is traced (and compiled) once."""
  denoise = make_denoiser(seed=5)
  before = sampling.run_clip._cache_size()
  for seconds in (3, 13, 40):
    video_frames = seconds * 25
    n = sampling.latent_frames_for_video(video_frames)
    assert 1 + 8 * (n - 1) - video_frames in range(0, 8)  # decoded video covers the audio; trim ≤ 7 frames
    key, z_ref, speech = inputs(n, seed=seconds)
    pieces = list(sampling.stream(denoise, Sampler.create(steps=2), key, z_ref, speech, n, F))
    assert len(pieces) == sampling.num_clips(n, F)
    assert [p.shape[0] for p in pieces[:2]] == [F, F - 1]
    assert sum(p.shape[0] for p in pieces) == n
  assert len(denoise.calls) == 1
  assert sampling.run_clip._cache_size() == before + 1


def test_stream_is_causal_and_first_clip_ready():
  """Clip 0 depends only on its own speech: later audio cannot change what was already streamed."""
  denoise = DENOISE
  key, z_ref, speech = inputs(10)
  sampler = Sampler.create(steps=2)
  first = next(sampling.stream_clips(denoise, sampler, key, z_ref, speech, 10, F))
  changed = speech.at[F:].set(0.0)
  full = reference.sample(denoise, sampler, key, z_ref, changed, 10, F)
  np.testing.assert_array_equal(np.asarray(full[:F]), np.asarray(first))
  assert np.abs(np.asarray(full[F:] - reference.sample(denoise, sampler, key, z_ref, speech, 10, F)[F:])).max() > 1e-3


def test_params_passed_as_argument():
  base = DENOISE
  denoise = lambda params, x, t, s: base(x, t, s) * params["scale"]
  key, z_ref, speech = inputs(4)
  sampler = Sampler.create(steps=2)
  a = reference.sample(denoise, sampler, key, z_ref, speech, 4, F, params={"scale": jnp.float32(1.0)})
  b = reference.sample(base, sampler, key, z_ref, speech, 4, F)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_schedule_and_clip_arithmetic():
  t = solvers.timesteps()
  assert t.shape == (9,) and t[0] == 1 and t[-1] == 0  # 8 steps → 9 points → 8 denoiser calls per clip
  np.testing.assert_allclose(t, np.linspace(1, 0, 9), atol=1e-7)
  ts = solvers.timesteps(8, shift=3.0)
  assert ts[0] == 1 and ts[-1] == 0 and np.all(np.diff(ts) < 0) and np.all(ts[1:-1] > t[1:-1])
  np.testing.assert_array_equal(solvers.timesteps(schedule=[1.0, 0.3, 0.0]), np.float32([1, 0.3, 0]))
  for bad in ([1.0, 0.5], [0.9, 0.0], [1.0, 0.5, 0.6, 0.0], [[1.0, 0.0]]):
    with pytest.raises(ValueError, match="schedule"):
      solvers.timesteps(schedule=bad)
  assert [sampling.num_clips(n, 16) for n in (1, 2, 16, 17, 31, 32)] == [1, 1, 1, 2, 2, 3]
  assert sampling.padded_frames(17, 16) == 31
  assert [sampling.latent_frames_for_video(v) for v in (1, 2, 9, 10, 121)] == [1, 2, 2, 3, 16]


def test_bad_arguments():
  denoise = DENOISE
  key, z_ref, speech = inputs(4)
  sampler = Sampler.create(steps=2)
  with pytest.raises(ValueError, match="cfg"):
    Sampler.create(cfg="both")
  with pytest.raises(ValueError, match="solver"):
    Sampler.create(solver="rk9")
  with pytest.raises(ValueError, match="steps"):
    Sampler.create(steps=0)
  with pytest.raises(ValueError, match="speech"):
    next(sampling.stream(denoise, sampler, key, z_ref, speech, 9, F))
  with pytest.raises(ValueError, match="clip_frames"):
    next(sampling.stream(denoise, sampler, key, z_ref, speech, 4, 1))


def test_without_motion_prior_each_clip_is_an_independent_clip0():
  """The ablation (plain clip concatenation): clip j is what clip 0 would be with clip j's noise and speech."""
  key, z_ref, speech = inputs(10)  # 3 clips of F = 4
  sampler = Sampler.create(steps=2)
  clips = list(sampling.stream_clips(DENOISE, sampler, key, z_ref, speech, 10, F, motion_prior=False))
  ans_clips = list(sampling.stream_clips(DENOISE, sampler, key, z_ref, speech, 10, F))
  np.testing.assert_array_equal(np.asarray(clips[0]), np.asarray(ans_clips[0]))
  for j in (1, 2):
    lo = j * (F - 1)
    noise = jax.random.normal(jax.random.fold_in(key, j), (F, H, W, C))
    carry = sampling.first_carry((H, W, C), 2)
    want = sampling.run_clip(DENOISE, sampler, None, sampling.ClipInputs(carry, noise, z_ref, speech[lo:lo + F]))[1]
    np.testing.assert_allclose(np.asarray(clips[j]), np.asarray(want), rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(clips[j][0]) - np.asarray(ans_clips[j][0])).max() > 1e-3  # no shared motion frame


# ---------------------------------------------------------------------------------------------
# Solvers


def _ode_error(solver, steps, n_frames=7, reference_steps=64):
  """Max |latents| error of ``solver`` at ``steps`` against Euler at ``reference_steps`` (the converged ODE)."""
  denoise = make_denoiser(seed=7)
  key, z_ref, speech = inputs(n_frames, seed=8)
  ref = reference.sample(denoise, Sampler.create(steps=reference_steps, cfg="none"), key, z_ref, speech, n_frames, F)
  out = reference.sample(denoise, Sampler.create(steps=steps, cfg="none", solver=solver), key, z_ref, speech,
                         n_frames, F)
  return float(np.abs(np.asarray(out) - np.asarray(ref)).max())


@pytest.mark.parametrize("steps", [2, 4, 8])
def test_heun_is_closer_to_the_converged_ode_than_euler(steps):
  """The same ANS clips (motion frames included, 2 clips) at n steps: Heun (2nd order) lands nearer a 64-step Euler
  reference than Euler does, and by a margin that grows with n (its error falls as n⁻², Euler's as n⁻¹)."""
  euler, heun = _ode_error("euler", steps), _ode_error("heun", steps)
  assert heun < euler / 2, (steps, euler, heun)
  if steps == 8:
    assert heun < euler / 4, (euler, heun)


def test_heun_takes_two_passes_a_step_and_leaves_still_frames_bitwise():
  """Heun's second evaluation is at the step's end; a frame whose time does not move (the motion frame, z_R's
  slot) is returned bitwise, whatever the velocity there."""
  calls = []

  def velocity(x, t):
    calls.append(t)
    return jnp.cos(x) + t[:, None, None, None]

  x = jax.random.normal(jax.random.key(0), (3, H, W, C))
  t, t_next = jnp.asarray([0.5, 0.75, 0.75]), jnp.asarray([0.5, 0.5, 0.5])
  out = solvers.heun(velocity, x, t, t_next)
  assert len(calls) == 2 and np.array_equal(np.asarray(calls[1]), np.asarray(t_next))
  np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(x[0]))
  v1 = velocity(x, t)
  x1 = x + (t_next - t)[:, None, None, None] * v1
  want = x + (t_next - t)[:, None, None, None] * 0.5 * (v1 + velocity(x1, t_next))
  np.testing.assert_allclose(np.asarray(out[1:]), np.asarray(want[1:]), rtol=1e-6)
  assert Sampler.create(steps=4, solver="heun").passes == 8 and Sampler.create(steps=4).passes == 4


def test_sampler_is_a_pytree_of_its_arrays():
  """The schedule and the scales are leaves (jit arguments), the mode and the solver static (in the tree's
  structure): another α or shift reuses a compiled program, another mode or solver does not."""
  a, b = Sampler.create(steps=3, alpha=1.0), Sampler.create(steps=3, alpha=5.0, shift=2.0)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  assert jax.tree.structure(a) != jax.tree.structure(Sampler.create(steps=3, solver="heun"))
  assert jax.tree.structure(a) != jax.tree.structure(Sampler.create(steps=3, cfg="joint"))
  leaves = jax.tree.leaves(b)
  assert len(leaves) == 2 and leaves[1].tolist() == [5.0, 6.0] and a.steps == 3
