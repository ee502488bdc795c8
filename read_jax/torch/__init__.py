"""PyTorch counterparts of the read_jax modules that have no diffusers/transformers original.

Optional: needs only the ``torch`` extra (and ``diffusers`` for :mod:`read_jax.torch.a2v_dit`). Nothing
else in read_jax imports torch; these modules load the directories written by
``python scripts/convert.py export-torch`` (:func:`read_jax.convert.torch_export.export_torch`):

  SpeechAE.from_exported(torch_dir / "speech_ae")     read_jax.torch.speech_ae
  A2VDiT.from_exported(torch_dir)                     read_jax.torch.a2v_dit (diffusers' LTX transformer + audio)

VAE and Whisper need no module of ours: ``diffusers.AutoencoderKLLTXVideo.from_pretrained(torch_dir / "vae")``
and ``transformers.WhisperModel.from_pretrained(torch_dir / "whisper").encoder``.
"""
