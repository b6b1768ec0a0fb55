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


def test_sigterm_is_handled_like_ctrl_c():
    """``kill`` (SIGTERM) of the console script unwinds like Ctrl-C: clean-up code in
    ``finally`` blocks runs (a video's ``.part`` removed), "interrupted", exit 130."""
    import signal

    code = (
        "import sys, time\n"
        "from esrcli.cli.app import app, main\n"
        "@app.command('wait-here')\n"
        "def wait_here():\n"
        "    try:\n"
        "        print('ready', flush=True)\n"
        "        time.sleep(60)\n"
        "    finally:\n"
        "        print('cleaned up', flush=True)\n"
        "sys.argv = ['esr', 'wait-here']\n"
        "main()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "cleaned up" in out and "interrupted" in err and "Traceback" not in err
