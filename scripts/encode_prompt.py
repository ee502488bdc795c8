#!/usr/bin/env python
"""Compute the constant prompt embedding with T5 (transformers) from a local directory.

  python scripts/encode_prompt.py --t5 T5_DIR --out prompt.safetensors [--prompt "a person talking"]
         [--max-length 128]

T5_DIR holds a T5 encoder and its tokenizer (e.g. the ``text_encoder/`` and ``tokenizer/`` of a diffusers
LTX-Video directory: pass ``--t5 LTX_DIR/text_encoder --tokenizer LTX_DIR/tokenizer``). As LTX-Video's
pipeline does, the prompt is padded to ``--max-length`` tokens; the file holds ``prompt_embeds`` [L, C]
(float32) and ``prompt_attention_mask`` [L] (int64), the names read_jax and diffusers use. Nothing is
downloaded. ``--input-ids 3,14,1`` skips the tokenizer (ids already tokenised, EOS included).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_PROMPT = "A person is talking to the camera, with natural lip movements and facial expressions."


def encode_prompt(t5_dir: str, out_path: str, prompt: str = DEFAULT_PROMPT, *, tokenizer_dir: str | None = None,
                  max_length: int = 128, input_ids=None) -> None:
  """Write ``prompt_embeds`` [max_length, C] and ``prompt_attention_mask`` [max_length] to ``out_path``."""
  import numpy as np
  import torch
  from transformers import T5EncoderModel
  from read_jax.files import write_safetensors
  if not os.path.isdir(t5_dir):
    raise FileNotFoundError(f"--t5 {t5_dir}: no such directory")
  if input_ids is None:
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or t5_dir, local_files_only=True)
    tok = tokenizer(prompt, padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True,
                    return_tensors="pt")
    ids, mask = tok.input_ids, tok.attention_mask
  else:
    ids = list(input_ids)[:max_length]
    mask = torch.tensor([[1] * len(ids) + [0] * (max_length - len(ids))])
    ids = torch.tensor([ids + [0] * (max_length - len(ids))])  # T5's pad id is 0
  model = T5EncoderModel.from_pretrained(t5_dir, local_files_only=True).eval()
  with torch.no_grad():
    embeds = model(input_ids=ids, attention_mask=mask).last_hidden_state  # [1, L, C]
  write_safetensors(out_path, {"prompt_embeds": embeds[0].float().numpy(),
                               "prompt_attention_mask": mask[0].numpy().astype(np.int64)})


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--t5", required=True, help="local T5 encoder directory (transformers layout)")
  p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: --t5)")
  p.add_argument("--out", required=True, help="output prompt.safetensors")
  p.add_argument("--prompt", default=DEFAULT_PROMPT, help="the constant prompt")
  p.add_argument("--max-length", type=int, default=128, help="tokens, padded (LTX-Video's 128)")
  p.add_argument("--input-ids", default=None, help="comma-separated token ids instead of --prompt (no tokenizer)")
  args = p.parse_args(argv)
  ids = None
  if args.input_ids:
    try:
      ids = [int(x) for x in args.input_ids.split(",")]
    except ValueError:
      print(f"error: --input-ids {args.input_ids!r}: expected comma-separated integers", file=sys.stderr)
      return 2
  try:
    encode_prompt(args.t5, args.out, args.prompt, tokenizer_dir=args.tokenizer, max_length=args.max_length,
                  input_ids=ids)
  except (FileNotFoundError, OSError, ValueError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
