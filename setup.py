"""Build steps: the optional C helper, and which root files go into the install.

All metadata lives in setup.cfg, which installs the repository root as the
private directory ``_wshub`` (see the README, "Install"). ``handlers.fanout._send_many``
sends a broadcast's frames without the GIL and on several threads. It is
optional: without a C compiler the install still succeeds and the server writes
through the event loop's transports instead.
"""

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT_MODULES = {"server"}
"""The root's Python files that belong in ``_wshub/`` (not this setup.py)."""


class BuildPy(build_py):
    """Copy only `ROOT_MODULES` from the repository root, which is ``_wshub``'s directory."""

    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        modules = super().find_package_modules(package, package_dir)
        if package != "_wshub":
            return modules
        return [entry for entry in modules if entry[1] in ROOT_MODULES]


setup(
    cmdclass={"build_py": BuildPy},
    ext_modules=[
        Extension(
            "_wshub.handlers.fanout._send_many",
            sources=["handlers/fanout/_send_many.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ],
)
