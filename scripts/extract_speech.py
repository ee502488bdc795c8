#!/usr/bin/env python
"""Audio files → Whisper-tiny features → ArrayRecord shards for SpeechAE training.

  python scripts/extract_speech.py AUDIO_DIR_OR_FILES... --whisper WHISPER_DIR --out data/speech

WHISPER_DIR is a Hugging Face Whisper checkpoint directory (config.json + model.safetensors).
Writes OUT/train-*.array_record and OUT/val-*.array_record (the configs' data globs) and
OUT/skipped.txt, the files that could not be used and why.
"""

import argparse
import sys


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("inputs", nargs="+", help="audio files and/or directories (searched recursively)")
  parser.add_argument("--whisper", required=True, help="Hugging Face Whisper checkpoint directory")
  parser.add_argument("--out", required=True, help="output directory for the shards")
  parser.add_argument("--val_fraction", type=float, default=0.05, help="share of files held out (by path hash)")
  parser.add_argument("--min_frames", type=int, default=121, help="skip clips shorter than this (video frames)")
  parser.add_argument("--examples_per_shard", type=int, default=256)
  args = parser.parse_args(argv)

  from read_jax.convert.whisper import load_whisper_encoder
  from read_jax.data import speech
  from read_jax.models.whisper import speech_features

  paths = speech.list_audio(args.inputs)
  if not paths:
    parser.error(f"no audio files found in {args.inputs}")
  encoder, params = load_whisper_encoder(args.whisper)
  out = speech.extract_speech(paths, args.out, lambda wave: speech_features(wave, encoder, params),
                              val_fraction=args.val_fraction, min_frames=args.min_frames,
                              examples_per_shard=args.examples_per_shard)
  print(f"{out['train']} train + {out['val']} val clips written to {args.out}; {len(out['skipped'])} skipped")
  for path, reason in out["skipped"]:
    print(f"  skipped {path}: {reason}", file=sys.stderr)


if __name__ == "__main__":
  main()
