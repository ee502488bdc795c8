"""The generic torch ↔ flax key/layout mapping, checked against real torch and flax layers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from read_jax.convert import CheckpointError
from read_jax.convert.torch_layout import flax_to_torch, torch_to_flax

torch = pytest.importorskip("torch")


class TorchBlock(torch.nn.Module):
  def __init__(self):
    super().__init__()
    self.conv = torch.nn.Conv3d(3, 5, (3, 2, 1))
    self.linear_1 = torch.nn.Linear(5, 7)
    self.norm = torch.nn.LayerNorm(7)


class TorchNet(torch.nn.Module):
  def __init__(self, n=2):
    super().__init__()
    self.blocks = torch.nn.ModuleList([TorchBlock() for _ in range(n)])
    self.layers = torch.nn.ModuleList([torch.nn.Linear(7, 7) for _ in range(3)])
    self.table = torch.nn.Parameter(torch.randn(2, 7))


class FlaxBlock(nn.Module):
  @nn.compact
  def __call__(self, x):  # x [B, T, H, W, 3]
    x = nn.Conv(5, (3, 2, 1), padding="VALID", name="conv")(x)
    x = nn.Dense(7, name="linear_1")(x)
    return nn.LayerNorm(epsilon=1e-5, name="norm")(x)


class ScanLayer(nn.Module):
  @nn.compact
  def __call__(self, h, _):
    return nn.Dense(7, name="inner")(h), None


class FlaxNet(nn.Module):
  n: int = 2

  @nn.compact
  def __call__(self, x):
    outs = [FlaxBlock(name=f"blocks_{i}")(x) for i in range(self.n)]
    y = sum(outs)
    scanned = nn.scan(ScanLayer, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)
    y, _ = scanned(name="layers")(y, None)
    table = self.param("table", nn.initializers.zeros, (2, 7))
    return y + table[0]


def _torch_forward(net, x):
  y = sum(b.norm(b.linear_1(b.conv(x).permute(0, 2, 3, 4, 1))) for b in net.blocks)
  for lin in net.layers:
    y = lin(y)
  return y + net.table[0]


def _flax_net():
  return FlaxNet()


def test_round_trip_and_forward_parity():
  torch.manual_seed(0)
  net = TorchNet()
  sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
  # the scanned Dense is named 'inner': torch 'layers.N.weight' plays 'layers.N.inner.weight'
  sd = {k.replace(".weight", ".inner.weight").replace(".bias", ".inner.bias") if k.startswith("layers.") else k: v
        for k, v in sd.items()}
  x = np.random.RandomState(0).randn(2, 3, 5, 4, 3).astype(np.float32)  # torch NCTHW
  model = _flax_net()
  target = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 5, 4, 3, 3)))["params"]
  params = torch_to_flax(sd, target, stacked=["layers"])
  ours = model.apply({"params": params}, jnp.asarray(x.transpose(0, 2, 3, 4, 1)))
  with torch.no_grad():
    ref = _torch_forward(net, torch.from_numpy(x)).numpy()
  np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-5, atol=1e-5)
  back = flax_to_torch(params, stacked=["layers"])
  assert set(back) == set(sd)
  for k in sd:
    assert np.array_equal(back[k], sd[k]), k


def test_mismatches_are_listed_together():
  model = _flax_net()
  target = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 5, 4, 3, 3)))["params"]
  sd = flax_to_torch(jax.tree.map(lambda s: np.zeros(s.shape, np.float32), target), stacked=["layers"])
  del sd["blocks.0.conv.bias"]
  sd["blocks.1.extra.weight"] = np.zeros(3, np.float32)
  sd["table"] = np.zeros((3, 7), np.float32)
  with pytest.raises(CheckpointError) as err:
    torch_to_flax(sd, target, stacked=["layers"], what="toy.safetensors")
  msg = str(err.value)
  assert "toy.safetensors" in msg and "blocks.0.conv.bias" in msg and "blocks.1.extra.weight" in msg
  assert "table" in msg and "mis-shaped" in msg
