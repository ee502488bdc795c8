"""The numbers with a meaning that several parts of the system agree on (docs/design.md §2), each with one name.

  SAMPLE_RATE         16 kHz mono: every waveform in the system (the speech encoder's rate)
  FPS                 25 video frames per second (the paper's data; two 50 Hz speech states per frame)
  FRAMES_PER_LATENT   8: LTX-Video's time compression (F = 1 + 8(f − 1) video frames ↔ f latent frames)
  HOP_LENGTH          160 samples (10 ms): Whisper's log-mel hop, 100 mel frames per second
  STATE_SAMPLES       320 samples (20 ms): one speech-encoder state, the 50 Hz grid speech windows lie on
"""

SAMPLE_RATE = 16000
FPS = 25
FRAMES_PER_LATENT = 8
HOP_LENGTH = 160
STATE_SAMPLES = 2 * HOP_LENGTH
