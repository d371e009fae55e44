"""Hugging Face Spaces entry point.

The Gradio demo is built in its own issue; until it lands this placeholder says so and exits.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> None:
    print("The LaMa web demo is not built yet. Use the package or the CLI: python -m lama --help")


if __name__ == "__main__":
    main()
