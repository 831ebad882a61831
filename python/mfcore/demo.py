"""The README's demo: the whole pretraining journey on a tiny embedded default.

Grows with the project. Each stage calls the same library functions the commands use.
"""
import sys


def main() -> int:
    import mfcore

    print(f"mfcore {mfcore.__version__}, C++ core {mfcore.core_version()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
