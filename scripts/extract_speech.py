#!/usr/bin/env python
"""Audio files → Whisper-tiny features → ArrayRecord shards for SpeechAE training.

  python scripts/extract_speech.py AUDIO_DIR_OR_FILES... --speech-encoder WHISPER_DIR --out data/speech

WHISPER_DIR is a Whisper checkpoint directory: Hugging Face (config.json + model.safetensors) or CTranslate2
(model.bin). Inputs may
be quoted globs ('audio/*.flac'). Writes OUT/train-*.array_record and OUT/val-*.array_record (the
configs' data globs), OUT/skipped.txt (the files that could not be used and why, printed too) and
OUT/report.json, from which a rerun resumes; an interrupted run leaves no partial shard. A missing
input, a bad option or an unusable --out is one error line and exit code 2 before Whisper loads; so is
a run where no file is usable (nothing is written then). Logic: read_jax/data/speech.py.
"""

import sys

from read_jax import cli
from read_jax.data import speech


def main(argv=None) -> int:
  p = cli.parser(__doc__)
  p.add_argument("inputs", nargs="+", help="audio files, directories (searched recursively) or quoted globs")
  p.add_argument("--speech-encoder", "--whisper", dest="speech_encoder", required=True,
                 help="speech encoder directory (a Hugging Face or CTranslate2 Whisper, or a checkpoint's "
                      "speech_encoder/)")
  p.add_argument("--out", required=True, help="output directory for the shards")
  p.add_argument("--val_fraction", type=float, default=0.05, help="share of files held out (by path hash)")
  p.add_argument("--min_frames", type=int, default=121, help="skip clips shorter than this (video frames)")
  p.add_argument("--examples_per_shard", type=int, default=256, help="examples per shard file")
  p.add_argument("--retry_skipped", action="store_true", help="retry files the report lists as skipped")
  p.add_argument("--speech_window", default="whole",
                 help="feature window policy: whole (30 s windows), live (4 s windows, 140 ms look-ahead: "
                      "features a live session reproduces) or live:SECONDS")
  args = p.parse_args(argv)

  out = speech.extract_speech_files(args.inputs, args.out, args.speech_encoder, val_fraction=args.val_fraction,
                                    min_frames=args.min_frames, examples_per_shard=args.examples_per_shard,
                                    retry_skipped=args.retry_skipped, speech_window=args.speech_window)
  print(f"{out['written']} clips written to {args.out} ({out['train']} train + {out['val']} val in all); "
        f"{len(out['skipped'])} skipped")
  for path, reason in out["skipped"]:
    print(f"  skipped {path}: {reason}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  cli.exit(cli.run(main))
