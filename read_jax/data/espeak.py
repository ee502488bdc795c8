"""Real speech for the synthetic talking faces: espeak-ng in many languages and voices.

espeak-ng (Debian ``espeak-ng``) is a formant synthesiser with real phonology: each language reads text by its
own rules, and its voice variants (``m1`` … ``f5``, ``klatt`` …) change the larynx, the formants and the timing.
A clip's speech is a few phrases of pseudo-words — syllables spelt in the language's own letters, so the words
sound like that language without any corpus — read at a random rate and pitch, with pauses between phrases.
Everything follows from the clip's seed (espeak-ng is deterministic for a given input).

Held-out speech keeps whole voices and whole languages out of training (:data:`POOLS`):

  * ``train``          the training languages × the training variants (train and val seeds);
  * ``unseen``         languages and variants that training never used (the held-out test);
  * ``seen-language``  a training language (``en-us``) in the held-out variants only.

Held-out clips get longer pauses (0.5–2 s) so that silence can be measured (``read_jax.eval.demo``).
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess

import numpy as np
import soundfile
import soxr

from read_jax.constants import SAMPLE_RATE
from read_jax.errors import InputError

ESPEAK = "espeak-ng"

# Syllable inventories per language: onsets and nuclei spelt the way that language writes them.
_LATIN_VOWELS = ("a", "e", "i", "o", "u")
_ONSETS = {
    "en-us": ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "w", "sh", "ch", "th", "st", ""),
    "de": ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "w", "sch", "z", "pf", "kr", ""),
    "es": ("b", "d", "f", "g", "j", "l", "m", "n", "p", "r", "s", "t", "ll", "ch", "pr", "tr", ""),
    "it": ("b", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "z", "gl", "sc", "tr", ""),
    "pt": ("b", "d", "f", "g", "j", "l", "m", "n", "p", "r", "s", "t", "v", "lh", "nh", "ch", ""),
    "nl": ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "sch", "z", ""),
    "pl": ("b", "d", "g", "k", "l", "m", "n", "p", "r", "s", "t", "w", "sz", "cz", "rz", "ch", ""),
    "sv": ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "sj", "st", ""),
    "fr-fr": ("b", "d", "f", "g", "j", "l", "m", "n", "p", "r", "s", "t", "v", "ch", "gr", "tr", ""),
    "fi": ("h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", ""),
    "ru": ("б", "в", "г", "д", "ж", "з", "к", "л", "м", "н", "п", "р", "с", "т", "ш", "ч", ""),
}
_NUCLEI = {
    "de": _LATIN_VOWELS + ("ei", "au", "ä", "ö", "ü"),
    "nl": _LATIN_VOWELS + ("oe", "ij", "aa"),
    "pt": _LATIN_VOWELS + ("ão", "ei"),
    "fr-fr": _LATIN_VOWELS + ("ou", "on", "ai", "eu"),
    "fi": _LATIN_VOWELS + ("ä", "ö", "y", "aa"),
    "sv": _LATIN_VOWELS + ("å", "ä", "ö"),
    "pl": _LATIN_VOWELS + ("y", "ę", "ą"),
    "ru": ("а", "е", "и", "о", "у", "ы", "я"),
}
_CODAS = ("", "", "", "n", "s", "r", "l", "t", "m")
_CODAS_RU = ("", "", "", "н", "с", "р", "л", "т", "м")

TRAIN_LANGUAGES = ("en-us", "de", "es", "it", "pt", "nl", "pl", "sv")
HELD_OUT_LANGUAGES = ("fr-fr", "fi", "ru")  # never in training
TRAIN_VARIANTS = ("", "m1", "m2", "m3", "m5", "m6", "f1", "f2", "f4", "klatt", "klatt3")
HELD_OUT_VARIANTS = ("m4", "m7", "f3", "f5", "klatt2")  # never in training
SEEN_LANGUAGE = "en-us"

POOLS = {
    "train": (TRAIN_LANGUAGES, TRAIN_VARIANTS),
    "unseen": (HELD_OUT_LANGUAGES, HELD_OUT_VARIANTS),
    "seen-language": ((SEEN_LANGUAGE,), HELD_OUT_VARIANTS),
}
PAUSES = {"train": (0.15, 1.2), "unseen": (0.5, 2.0), "seen-language": (0.5, 2.0)}  # seconds between phrases


@dataclasses.dataclass(frozen=True)
class Voice:
  """One espeak-ng reading: ``language+variant`` at ``rate`` words per minute and ``pitch`` (0–99)."""
  language: str
  variant: str
  rate: int
  pitch: int

  @property
  def name(self) -> str:
    return self.language + (f"+{self.variant}" if self.variant else "")


def available() -> bool:
  return shutil.which(ESPEAK) is not None


def check_available() -> None:
  if not available():
    raise InputError(f"--speech espeak: the {ESPEAK} program is not installed (Debian: apt-get install espeak-ng)")


def check_pool(pool: str) -> str:
  if pool not in POOLS:
    raise InputError(f"--voices {pool!r}: not one of {sorted(POOLS)}")
  return pool


def pick_voice(rng: np.random.Generator, pool: str, f0: float) -> Voice:
  """A voice of ``pool``; its pitch follows the speaker's mean pitch ``f0`` (Hz, 90–250) loosely."""
  languages, variants = POOLS[check_pool(pool)]
  pitch = int(np.clip(20 + 55 * (f0 - 90) / 160 + rng.normal(0, 6), 5, 95))
  return Voice(language=str(rng.choice(languages)), variant=str(rng.choice(variants)),
               rate=int(rng.integers(120, 200)), pitch=pitch)


def _word(rng, language: str) -> str:
  onsets = _ONSETS[language]
  nuclei = _NUCLEI.get(language, _LATIN_VOWELS)
  codas = _CODAS_RU if language == "ru" else _CODAS
  return "".join(onsets[rng.integers(len(onsets))] + nuclei[rng.integers(len(nuclei))] + codas[rng.integers(len(codas))]
                 for _ in range(rng.integers(1, 4)))


def _phrase(rng, language: str) -> str:
  return " ".join(_word(rng, language) for _ in range(rng.integers(2, 7)))


def synthesize(text: str, voice: Voice) -> np.ndarray:
  """espeak-ng's reading of ``text`` (SSML allowed), float64 [samples] at 16 kHz."""
  check_available()
  cmd = [ESPEAK, "-m", "-v", voice.name, "-s", str(voice.rate), "-p", str(voice.pitch), "--stdout", text]
  result = subprocess.run(cmd, capture_output=True, check=False)
  if result.returncode or not result.stdout:
    raise InputError(f"{ESPEAK} -v {voice.name}: failed ({result.stderr.decode(errors='replace').strip()[:200]})")
  wave, sr = soundfile.read(io.BytesIO(result.stdout), dtype="float64")
  if wave.ndim > 1:
    wave = wave.mean(axis=1)
  return soxr.resample(wave, sr, SAMPLE_RATE, quality="HQ")


def speech(rng: np.random.Generator, num_samples: int, voice: Voice, pool: str) -> np.ndarray:
  """``num_samples`` of speech in ``voice``: phrases with pauses (:data:`PAUSES`), a short silence first,
  trimmed to length (padded with silence if espeak-ng read faster than planned), peak 0.35–0.7, float64."""
  lo, hi = PAUSES[check_pool(pool)]
  seconds = num_samples / SAMPLE_RATE
  # Enough phrases for the clip at this rate (words of ~2 syllables at `rate` wpm), and then some.
  words_needed = seconds * voice.rate / 60 * 1.6 + 4
  parts, words = [], 0
  while words < words_needed:
    phrase = _phrase(rng, voice.language)
    words += len(phrase.split())
    parts.append(phrase)
    parts.append(f'<break time="{int(1000 * rng.uniform(lo, hi))}ms"/>')
  lead = int(rng.uniform(0.05, 0.4) * SAMPLE_RATE)
  wave = synthesize("<speak>" + " ".join(parts) + "</speak>", voice)
  out = np.zeros(num_samples)
  n = min(num_samples - lead, len(wave))
  out[lead:lead + n] = wave[:n]
  out += 0.002 * rng.normal(0, 1, num_samples)  # room noise floor, as the formant speech has
  return out / (np.abs(out).max() + 1e-12) * rng.uniform(0.35, 0.7)

