"""Build step for the optional C helper; all metadata lives in setup.cfg.

``handlers._fanout`` sends a broadcast's frames without the GIL and on several
threads. It is optional: without a C compiler the install still succeeds and
the server writes through the event loop's transports instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "handlers._fanout",
            sources=["handlers/_fanout.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
