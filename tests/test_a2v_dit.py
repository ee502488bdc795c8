"""A2V-DiT: parity with diffusers' LTX transformer, Eq. 10 frame locality, text K/V cache, param count."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from read_jax.config import load_config
from read_jax.convert import load_text_embedding
from read_jax.convert.ltx_transformer import params_from_state_dict, split_audio
from read_jax.models import a2v_dit as dit

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

# Tiny, with D = 2·12 = 24 so RoPE has 4 frequencies (interior ones included) and 0 unrotated channels.
OVERRIDES = ("config.model.head_dim=12", "config.model.cross_attention_dim=24")


def tiny_model(**changes):
  cfg = load_config("a2v_dit:tiny", OVERRIDES)
  return dit.build_model(dict(cfg.model, **changes))


def reference_model(model, seed=0):
  """diffusers' LTX transformer with the model's settings and every parameter randomised."""
  torch.manual_seed(seed)
  ref = diffusers.LTXVideoTransformer3DModel(
    in_channels=model.in_channels, out_channels=model.out_channels, num_attention_heads=model.num_heads,
    attention_head_dim=model.head_dim, cross_attention_dim=model.cross_attention_dim,
    num_layers=model.num_layers, caption_channels=model.caption_channels).eval()
  with torch.no_grad():
    for p in ref.parameters():  # norms start at 1 and biases at 0: randomise so a mix-up shows
      p.add_(0.2 * torch.randn_like(p))
  return ref


def inputs(model, b=2, frames=4, height=3, width=5, text_len=6, seed=1):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((b, frames, height, width, model.in_channels)).astype(np.float32)
  t = np.stack([np.r_[0.0, rng.uniform(0.05, 1, frames - 1)] for _ in range(b)]).astype(np.float32)
  speech = rng.standard_normal((b, frames - 1, model.audio_tokens, model.audio_dim)).astype(np.float32)
  text = rng.standard_normal((b, text_len, model.caption_channels)).astype(np.float32)
  mask = np.ones((b, text_len), bool)
  mask[0, 4:] = False  # padding in the first prompt
  return x, t, speech, text, mask


def reference_forward(ref, x, t, text, mask):
  b, frames, height, width, c = x.shape
  per_token = np.repeat(t * 1000.0, height * width, axis=1)  # diffusers takes one timestep per token
  with torch.no_grad():
    out = ref(hidden_states=torch.from_numpy(x.reshape(b, -1, c)), encoder_hidden_states=torch.from_numpy(text),
              timestep=torch.from_numpy(per_token), encoder_attention_mask=torch.from_numpy(mask.astype(np.float32)),
              num_frames=frames, height=height, width=width, rope_interpolation_scale=(8 / 25, 32, 32),
              return_dict=False)[0]
  return out.numpy().reshape(b, frames, height, width, -1)


def random_params(model, seed=0):
  """Random params of the model's shapes in numpy (no jitted init to compile); audio attention nonzero."""
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(lambda s: (rng.standard_normal(s.shape) * 0.3).astype(np.float32),
                                dit.param_shapes(model))


@pytest.fixture(scope="module")
def tiny():
  """One tiny model, its diffusers twin, its params and one jitted apply shared by the tests."""
  model = tiny_model()
  ref = reference_model(model)
  return model, ref, params_from_state_dict(state_dict(ref), model), jax.jit(model.apply)


def state_dict(ref):
  return {k: v.detach().numpy() for k, v in ref.state_dict().items()}


def rel_err(a, b):
  return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


@pytest.mark.slow
def test_parity_with_diffusers_ltx(tiny):
  model, ref, params, apply = tiny
  assert not np.any(params["transformer_blocks"]["audio_attn"]["to_out_0"]["kernel"])
  x, t, speech, text, mask = inputs(model)
  assert len(set(t[0])) == t.shape[1]  # every frame its own timestep
  want = reference_forward(ref, x, t, text, mask)
  got = apply({"params": params}, x, t, speech, text, mask)
  assert got.shape == x.shape[:4] + (model.out_channels,)
  assert rel_err(got, want) < 1e-5, rel_err(got, want)
  # Same with the prompt K/V computed once beforehand (speech=None is covered by the locality test).
  kv = jax.jit(lambda p, *a: model.apply(p, *a, method=dit.A2VDiT.encode_text))({"params": params}, text, mask)
  assert kv.k.shape == (model.num_layers, 2, 6, model.dim)
  assert rel_err(apply({"params": params}, x, t, speech, kv), want) < 1e-5
  # The padding matters (so the mask really is applied): unmasking changes the output.
  assert rel_err(apply({"params": params}, x, t, speech, text, np.ones_like(mask)), want) > 1e-3


def _with_random_audio(params, key):
  blocks = dict(params["transformer_blocks"])
  audio = blocks["audio_attn"]
  keys = iter(jax.random.split(key, 64))
  blocks["audio_attn"] = jax.tree_util.tree_map(lambda a: a + 0.5 * jax.random.normal(next(keys), a.shape), audio)
  return dict(params, transformer_blocks=blocks)


def test_audio_attention_is_frame_local():
  # One block: after the audio attention only the (per-token) FFN runs, so Eq. 10's locality is exact
  # at the output: frame k ≥ 1 depends on C_k only, the reference frame on no C.
  model = tiny_model(num_layers=1)
  params = random_params(model)
  x, t, speech, text, mask = inputs(model, b=1)
  apply = jax.jit(model.apply)
  base = np.asarray(apply({"params": params}, x, t, speech, text, mask))
  assert np.abs(base - np.asarray(apply({"params": params}, x, t, None, text, mask))).max() > 1e-3
  f = speech.shape[1]
  for j in range(f):  # perturb C_j (latent frame j + 1)
    s2 = speech.copy()
    s2[:, j] += 1.0
    out = np.asarray(apply({"params": params}, x, t, s2, text, mask))
    diff = np.abs(out - base).max(axis=(0, 2, 3, 4))  # per frame
    assert diff[j + 1] > 1e-3, diff
    np.testing.assert_array_equal(np.delete(diff, j + 1), 0.0)


def test_no_prompt_fallback_is_a_zero_text_update(tiny):
  model, _, params, apply = tiny
  params = _with_random_audio(params, jax.random.key(1))
  x, t, speech, text, mask = inputs(model)
  with pytest.warns(UserWarning, match="no prompt embedding"):
    null_text, null_mask = load_text_embedding("", model.caption_channels)
  null_text, null_mask = np.broadcast_to(null_text, (2, 6, null_text.shape[-1])), np.zeros((2, 6), bool)
  got = apply({"params": params}, x, t, speech, null_text, null_mask)
  assert np.all(np.isfinite(got))
  # Reference: any prompt, with every block's text attention output (bias included) zeroed.
  blocks = dict(params["transformer_blocks"])
  blocks["attn2"] = dict(blocks["attn2"], to_out_0=jax.tree_util.tree_map(jnp.zeros_like, blocks["attn2"]["to_out_0"]))
  want = apply({"params": dict(params, transformer_blocks=blocks)}, x, t, speech, text, mask)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_remat_policy_is_applied_by_name():
  # Tracing only (no compile): the gradient of a model with a remat policy contains a remat of the
  # scanned block carrying that policy; "none" contains none. (Remat's numerics are JAX's own guarantee.)
  model = tiny_model(num_layers=1)
  params = dit.param_shapes(model)
  x, t, speech, text, mask = inputs(model, b=1, frames=2, height=2, width=3)

  def grad_jaxpr(policy):
    m = model.clone(remat=policy)
    loss = lambda p: jnp.sum(jnp.square(m.apply({"params": p}, x, t, speech, text, mask)))  # noqa: E731
    return str(jax.make_jaxpr(jax.grad(loss))(params))

  assert "remat" not in grad_jaxpr("none")
  assert "nothing_saveable" in grad_jaxpr("full")
  jaxpr = grad_jaxpr("save_qkv")
  assert "SaveOnlyTheseNames" in jaxpr and all(f"'{n}'" in jaxpr for n in ("query", "key", "value"))


def _param_axes(model) -> dict:
  """Logical axis names of every param (``nn.get_partition_spec`` of the boxed shapes)."""
  boxed = jax.eval_shape(lambda k: model.init(k, *dit.dummy_inputs(model), **dit.dummy_kwargs(model)),
                         jax.random.key(0))["params"]
  return nn.get_partition_spec(boxed)


def test_logical_axes_on_every_param():
  is_spec = lambda a: isinstance(a, jax.sharding.PartitionSpec)  # noqa: E731
  axes = jax.tree_util.tree_leaves(_param_axes(tiny_model()), is_leaf=is_spec)
  assert axes and all(isinstance(a, jax.sharding.PartitionSpec) and len(a) > 0 for a in axes)
  blocks = _param_axes(tiny_model())["transformer_blocks"]
  assert tuple(blocks["attn1"]["to_q"]["kernel"]) == ("layers", "embed", "heads")
  assert tuple(blocks["audio_attn"]["to_k"]["kernel"]) == ("layers", "audio", "heads")


def test_bad_inputs_are_named():
  model = tiny_model()
  params = dit.param_shapes(model)  # shapes suffice: the checks run at trace time
  x, t, speech, text, mask = inputs(model)
  check = lambda m, *a: jax.eval_shape(m.apply, {"params": params}, *a)  # noqa: E731
  with pytest.raises(ValueError, match="per-frame"):
    check(model, x, t[:, :2], speech, text, mask)
  with pytest.raises(ValueError, match="speech"):
    check(model, x, t, speech[:, :1], text, mask)
  with pytest.raises(ValueError, match="channels"):
    check(model, x[..., :3], t, speech, text, mask)
  with pytest.raises(ValueError, match="remat"):
    check(model.clone(remat="sometimes"), x, t, speech, text, mask)


def audio_param_count(dim, audio_dim, layers):
  """The documented extra parameters: to_q D²+D, to_k/to_v A·D+D, to_out D²+D, norm_q/norm_k D, per block."""
  return layers * (2 * dim * dim + 2 * audio_dim * dim + 6 * dim)


def test_full_size_param_count_is_ltx_plus_audio():
  model = dit.build_model(load_config("a2v_dit").model)
  shapes = dit.param_shapes(model)  # jax.eval_shape: nothing allocated
  ours = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes))
  ltx, audio = split_audio(shapes)
  with torch.device("meta"):
    ref = diffusers.LTXVideoTransformer3DModel(num_layers=24, num_attention_heads=32, attention_head_dim=64,
                                               in_channels=128, out_channels=128, cross_attention_dim=2048,
                                               caption_channels=4096)
  ref_count = sum(p.numel() for p in ref.parameters())
  assert sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(ltx)) == ref_count
  assert ours == ref_count + audio_param_count(2048, 2048, 24)
  assert audio_param_count(2048, 2048, 24) == 402_948_096


@pytest.mark.slow
def test_sharded_by_logical_axis_rules(tiny):
  # The logical names map to a (data, model) mesh of the 8 fake CPU devices through rules alone.
  model, _, params, apply = tiny
  x, t, speech, text, mask = inputs(model)
  want = apply({"params": params}, x, t, speech, text, mask)
  mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  rules = (("batch", "data"), ("heads", "model"), ("mlp", "model"), ("adaln", "model"))
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    shardings = nn.logical_to_mesh_sharding(_param_axes(model), mesh, rules)
    sharded = jax.device_put(params, shardings)
    assert sharded["transformer_blocks"]["ff"]["net_0"]["proj"]["kernel"].sharding.spec == jax.P(None, None, "model")
    got = jax.jit(model.apply)({"params": sharded}, x, t, speech, text, mask)
  assert rel_err(got, want) < 1e-5
