"""Embedded model files shipped as package data, listed in ``catalogue.json``.

Read the catalogue with :func:`esrcli.weights.catalogue`; this package holds data only.
"""
