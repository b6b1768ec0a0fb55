"""Allow ``python -m esrcli`` (used by ``torchrun -m esrcli train-net cfg.toml``)."""

from esrcli.cli.app import main

if __name__ == "__main__":
    main()
