"""Build hook for the native part: cffi compiles engine/native at install time."""
from setuptools import setup

setup(cffi_modules=["engine/native/build.py:ffibuilder"])
