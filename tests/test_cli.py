"""The root ``esr`` command."""

from __future__ import annotations

import subprocess
import sys


def test_help_and_version_do_not_load_torch():
    """``esr --help``/``--version`` and usage errors answer without importing torch (about
    1.4 s of a 1.8 s run); the commands import it when they start working."""
    code = (
        "import sys\n"
        "from esrcli.cli.app import main\n"
        "for argv in (['--version'], ['--help'], ['upscale', '--help'], ['model', 'info', '--help'], ['degrade', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code in (0, None), (argv, exc.code)\n"
        "for argv in (['upscale', 'in.png'], ['upscale', 'in.png', 'out', '--scale', '0'], ['interp', 'a.pth']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 2, (argv, exc.code)\n"
        "print('torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "False"
