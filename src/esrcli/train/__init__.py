"""Training: the Real-ESRNet / Real-ESRGAN loop, EMA, checkpoints, schedules, distributed set-up.

Entry point: :func:`esrcli.train.loop.train` (``esr train-net`` / ``esr train-gan``). Submodules
are imported explicitly (``from esrcli.train.loop import train``) so that ``import esrcli.train``
stays light.
"""
