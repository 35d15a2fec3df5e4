"""``python tests/toy_cli.py train toy ...``: the lowlabel CLI with the toy methods registered (subprocess tests)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import lowlabel.methods  # noqa: E402
from lowlabel.cli.main import main  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    lowlabel.methods.METHODS["toy"] = "tests.toy_method"
    lowlabel.methods.METHODS["toy_gan"] = "tests.toy_gan"
    sys.exit(main())
