#!/usr/bin/env python
"""Compute the constant prompt embedding with T5 (transformers) from a local directory.

  python scripts/encode_prompt.py --t5 T5_DIR --out prompt.safetensors [--prompt "a person talking"]
         [--max-length 128]

T5_DIR holds a T5 encoder and its tokenizer (e.g. the ``text_encoder/`` and ``tokenizer/`` of a diffusers
LTX-Video directory: pass ``--t5 LTX_DIR/text_encoder --tokenizer LTX_DIR/tokenizer``). As LTX-Video's
pipeline does, the prompt is padded to ``--max-length`` tokens; the file holds ``prompt_embeds`` [L, C]
(float32) and ``prompt_attention_mask`` [L] (int64), the names read_jax and diffusers use. Nothing is
downloaded: a missing directory, config, safetensors weights, tokenizer or PyTorch is one error line
and exit code 2. ``--input-ids 3,14,1`` skips the tokenizer (ids already tokenised, EOS included).
Logic: read_jax/data/prompt.py.
"""

import sys

from read_jax import cli
from read_jax.data import prompt


def main(argv=None) -> int:
  p = cli.parser(__doc__)
  p.add_argument("--t5", required=True, help="local T5 encoder directory (transformers layout)")
  p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: --t5)")
  p.add_argument("--out", required=True, help="output prompt.safetensors (written atomically)")
  p.add_argument("--prompt", default=prompt.DEFAULT_PROMPT, help="the constant prompt")
  p.add_argument("--max-length", type=int, default=128, help="tokens, padded (LTX-Video's 128)")
  p.add_argument("--input-ids", default=None, help="comma-separated token ids instead of --prompt (no tokenizer)")
  args = p.parse_args(argv)

  ids = prompt.parse_ids(args.input_ids) if args.input_ids else None
  prompt.encode_prompt(args.t5, args.out, args.prompt, tokenizer_dir=args.tokenizer, max_length=args.max_length,
                       input_ids=ids)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
