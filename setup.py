"""Packaging shim: the project is described in pyproject.toml."""
from setuptools import setup

setup()
