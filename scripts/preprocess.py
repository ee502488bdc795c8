#!/usr/bin/env python
"""Videos → stage-2 training shards (latents with the reference first + Whisper windows).

  python scripts/preprocess.py VIDEO_DIRS_OR_FILES... --ckpt CKPT_DIR --out data/stage2
  python scripts/preprocess.py videos/ --vae VAE_DIR --speech-encoder WHISPER_DIR --out data/stage2 \
      --clip_frames 121 --stride 121 --resolution 512

CKPT_DIR is a read_jax checkpoint directory (its vae/ and whisper/ are used); --vae / --whisper
name any read_jax-loadable VAE and Whisper directories instead (and override --ckpt). Inputs may be
quoted globs ('videos/*.mp4'). Writes OUT/{train,val}-*.array_record (one shard per video, split by a
hash of its path) and OUT/report.json (processed videos with their clips, skipped ones with the reason,
printed too). A rerun skips every video the report lists; an interrupted run leaves no partial shard.
A missing input, a bad option or an unusable --out is one error line and exit code 2 before any model
loads; so is a run where no video gives a clip (nothing is written then). Logic: read_jax/data/preprocess.py.
"""

import sys

from read_jax import cli
from read_jax.data import preprocess


def main(argv=None) -> int:
  p = cli.parser(__doc__)
  p.add_argument("inputs", nargs="+", help="video files, directories (searched recursively) or quoted globs")
  p.add_argument("--out", required=True, help="output directory for the shards and report.json")
  p.add_argument("--ckpt", help="read_jax checkpoint directory (uses its vae/ and speech_encoder/)")
  p.add_argument("--vae", help="VAE directory (diffusers layout) or LTX-Video .safetensors")
  p.add_argument("--speech-encoder", "--whisper", dest="speech_encoder",
                 help="speech encoder directory (a transformers or CTranslate2 Whisper, or a checkpoint's "
                      "speech_encoder/)")
  p.add_argument("--clip_frames", type=int, default=121, help="video frames per clip, 1 + 8k")
  p.add_argument("--stride", type=int, default=None, help="frames between clip starts (default: clip_frames)")
  p.add_argument("--resolution", type=int, default=512, help="side of the square face crop, pixels")
  p.add_argument("--val_fraction", type=float, default=0.05, help="share of videos held out (by path hash)")
  p.add_argument("--no_face", choices=("skip", "center"), default="skip",
                 help="a video where no face is found: skip it, or use the centre crop")
  p.add_argument("--no_detector", action="store_true", help="no face detection: always the centre crop")
  p.add_argument("--detect_every", type=int, default=5, help="run the face detector on every N-th frame")
  p.add_argument("--retry_skipped", action="store_true", help="retry videos the report lists as skipped")
  p.add_argument("--speech_window", default="whole",
                 help="feature window policy: whole (30 s windows) or live (4 s windows, 140 ms look-ahead; "
                      "live:<seconds> for another length); generate with the same (pipeline.json speech_window)")
  args = p.parse_args(argv)

  report = preprocess.preprocess_videos(
      args.inputs, args.out, ckpt=args.ckpt, vae=args.vae, speech_encoder=args.speech_encoder, clip_frames=args.clip_frames,
      stride=args.stride, resolution=args.resolution, val_fraction=args.val_fraction, no_face=args.no_face,
      no_detector=args.no_detector, detect_every=args.detect_every, retry_skipped=args.retry_skipped,
      speech_window=args.speech_window)
  clips = sum(v["clips"] for v in report["processed"].values())
  print(f"{len(report['processed'])} videos ({clips} clips) in {args.out}; {len(report['skipped'])} skipped")
  for path, reason in report["skipped"].items():
    print(f"  skipped {path}: {reason}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  cli.exit(cli.run(main))
