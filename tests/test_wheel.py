"""The package works installed, not only from a source checkout: a wheel in a fresh virtual environment.

The wheel holds ``read_jax/`` only (no ``configs/``, ``scripts/`` or ``assets/``), so everything the package
needs at run time must live inside it. The new venv reaches the dependencies of the environment the tests run in
(a venv of the user's, or the machine's Python): their site-packages folders, listed in a ``.pth`` file after the
venv's own (``--system-site-packages`` would give the *base* interpreter's instead, which inside a venv lacks
them; nothing is downloaded). Path lines in a ``.pth`` are not scanned for ``.pth`` files of their own, so the
checkout's editable install does not come along, and the test checks that ``read_jax`` is imported from the
wheel, not from the checkout.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo"

SCRIPT = """
import os, sys
import read_jax
from read_jax import ReadPipeline, load_config
venv = os.path.realpath(sys.prefix)
assert os.path.realpath(read_jax.__file__).startswith(venv), (read_jax.__file__, venv)
assert load_config("a2v_dit.py").model.num_layers == 24  # the package's own configs, by name
assert load_config("demo.py:tiny").pipeline.clip_frames == 3
pipe = ReadPipeline.from_pretrained(sys.argv[1])
timings = pipe.write_video(os.path.join(sys.argv[1], "reference.png"), os.path.join(sys.argv[1], "speech.wav"),
                           sys.argv[2])
print("frames", int(round(timings.video_seconds * 25)))
"""


def test_wheel_installs_and_generates(tmp_path):
  # Built from a copy of what the wheel is made of: setuptools writes build/ beside the sources.
  src = tmp_path / "src"
  shutil.copytree(ROOT / "read_jax", src / "read_jax", ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(ROOT / name, src / name)
  dist = tmp_path / "dist"
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                  str(src)], check=True, cwd=tmp_path)
  wheel, = dist.glob("read_jax-*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  assert "read_jax/pipeline.py" in names and "read_jax/configs/demo.py" in names
  assert not [n for n in names if n.startswith(("configs/", "scripts/", "tests/", "assets/"))]

  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  python = venv / "bin" / "python"
  venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
  ours = [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages") and os.path.isdir(p)]
  assert ours, sys.path
  pathlib.Path(venv_site, "_test_environment.pth").write_text("\n".join(ours) + "\n")
  subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
  work = tmp_path / "elsewhere"  # not the checkout: nothing from it is on the path
  work.mkdir()
  (work / "gen.py").write_text(SCRIPT)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  out = subprocess.run([str(python), "gen.py", str(DEMO), str(work / "out.mp4")], cwd=work, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "frames 100" in out.stdout  # the bundled 4 s of speech → 100 frames
  assert (work / "out.mp4").stat().st_size > 1000
