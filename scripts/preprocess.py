#!/usr/bin/env python
"""Videos → stage-2 training shards (latents with the reference first + Whisper windows).

  python scripts/preprocess.py VIDEO_DIRS_OR_FILES... --ckpt CKPT_DIR --out data/stage2
  python scripts/preprocess.py videos/ --vae VAE_DIR --whisper WHISPER_DIR --out data/stage2 \
      --clip_frames 121 --stride 121 --resolution 512

CKPT_DIR is a read_jax checkpoint directory (its vae/ and whisper/ are used); --vae / --whisper
name any read_jax-loadable VAE and Whisper directories instead (and override --ckpt). Writes
OUT/{train,val}-*.array_record (one shard per video, split by a hash of its path) and OUT/report.json
(processed videos with their clips, skipped ones with the reason). A rerun skips every video the
report lists. Logic: read_jax/data/preprocess.py.
"""

import argparse
import os
import sys


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("inputs", nargs="+", help="video files and/or directories (searched recursively)")
  parser.add_argument("--out", required=True, help="output directory for the shards and report.json")
  parser.add_argument("--ckpt", help="read_jax checkpoint directory (uses CKPT/vae and CKPT/whisper)")
  parser.add_argument("--vae", help="VAE directory (diffusers layout) or LTX-Video .safetensors")
  parser.add_argument("--whisper", help="Whisper checkpoint directory (transformers layout)")
  parser.add_argument("--clip_frames", type=int, default=121, help="video frames per clip, 1 + 8k")
  parser.add_argument("--stride", type=int, default=None, help="frames between clip starts (default: clip_frames)")
  parser.add_argument("--resolution", type=int, default=512, help="side of the square face crop, pixels")
  parser.add_argument("--val_fraction", type=float, default=0.05, help="share of videos held out (by path hash)")
  parser.add_argument("--no_face", choices=("skip", "center"), default="skip",
                      help="a video where no face is found: skip it, or use the centre crop")
  parser.add_argument("--no_detector", action="store_true", help="no face detection: always the centre crop")
  parser.add_argument("--detect_every", type=int, default=5, help="run the face detector on every N-th frame")
  parser.add_argument("--retry_skipped", action="store_true", help="retry videos the report lists as skipped")
  args = parser.parse_args(argv)

  vae_path = args.vae or (args.ckpt and os.path.join(args.ckpt, "vae"))
  whisper_path = args.whisper or (args.ckpt and os.path.join(args.ckpt, "whisper"))
  if not vae_path or not whisper_path:
    parser.error("need --ckpt, or both --vae and --whisper")
  if (args.clip_frames - 1) % 8 or args.clip_frames < 1:
    parser.error(f"--clip_frames must be 1 + 8k (e.g. 17, 121), got {args.clip_frames}")
  if args.detect_every < 1:
    parser.error(f"--detect_every must be >= 1, got {args.detect_every}")

  from read_jax.data import preprocess

  paths = preprocess.list_videos(args.inputs)
  if not paths:
    parser.error(f"no video files found in {args.inputs}")
  encode_video, featurize = preprocess.load_encoders(vae_path, whisper_path)
  report = preprocess.preprocess(
      paths, args.out, encode_video, featurize, clip_frames=args.clip_frames,
      stride=args.stride or args.clip_frames, resolution=args.resolution, val_fraction=args.val_fraction,
      detector=None if args.no_detector else "haar", no_face="center" if args.no_detector else args.no_face,
      retry_skipped=args.retry_skipped, detect_every=args.detect_every)
  clips = sum(v["clips"] for v in report["processed"].values())
  print(f"{len(report['processed'])} videos ({clips} clips) in {args.out}; {len(report['skipped'])} skipped")
  for path, reason in report["skipped"].items():
    print(f"  skipped {path}: {reason}", file=sys.stderr)


if __name__ == "__main__":
  main()
