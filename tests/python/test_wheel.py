"""`pip wheel .` yields one wheel carrying both native parts, usable in a fresh venv.

Slow (builds Rust and C++ in an isolated build environment); it is the check
that a user's `pip install .` works, not just our editable dev install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(REPO, "target"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), REPO], env=env)
    wheels = os.listdir(tmp_path / "dist")
    assert len(wheels) == 1 and wheels[0].startswith("mft-") and wheels[0].endswith(".whl")
    wheel = str(tmp_path / "dist" / wheels[0])
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("mft/_native.") and n.endswith(".so") for n in names), names
    assert any(n.startswith("mft/_kernels.") and n.endswith(".so") for n in names), names
    assert "mft/cli/main.py" in names

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    run([py, "-m", "pip", "install", "-q", wheel])  # pulls numpy<2, pyyaml, tqdm; not MindSpore
    help_out = run([str(venv / "bin" / "mft"), "--help"], cwd=tmp_path).stdout
    for command in ("train", "generate", "tokenizer", "data", "weights"):
        assert command in help_out
    probe = (
        "import mft, mft._native, mft._kernels, numpy as np\n"
        "from mft.tokenizer import Tokenizer\n"
        "tok = Tokenizer.train(['In the beginning God created the heaven and the earth.'] * 20, vocab_size=300)\n"
        "ids = tok.encode('In the beginning')\n"
        "assert tok.decode(ids) == 'In the beginning', ids\n"
        "x = np.ones((2, 8), np.float32); w = np.full(8, 2.0, np.float32)\n"
        "y = mft._kernels.rms_norm_forward(x, w, 1e-6)\n"
        "assert np.allclose(y, 2.0, atol=1e-5)\n"
        "print(mft.__file__)\n"
    )
    out = run([py, "-c", probe], cwd=tmp_path).stdout
    assert str(venv) in out  # the installed wheel, not the source tree
