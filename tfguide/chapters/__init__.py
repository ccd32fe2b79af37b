"""The lessons, one module per chapter; their order and defaults are in `tfguide.registry`.

`python -m tfguide.chapters.NAME ...` loads this package before the chapter
module (and its TensorFlow import), so a bad flag, `--help` and `--text` are
answered here, at once.
"""
import sys

if sys.argv[:1] == ["-m"]:
    from tfguide import cli as _cli

    _cli.check_module_command_line()
