"""Thin shim so tools that still call setup.py work; everything lives in pyproject.toml."""
from setuptools import setup

setup()
