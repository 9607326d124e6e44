from setuptools import setup

# cffi_modules is a setup() keyword only; everything else is in pyproject.toml.
setup(cffi_modules=["native/build.py:ffibuilder"])
