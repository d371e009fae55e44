"""Hugging Face Spaces entry point: loads the model once, warms it up, and serves the demo.

    python app.py [--model SOURCE] [--host 127.0.0.1] [--port 7860] [--max-megapixels 16]

``LAMA_MODEL`` sets the default model; without weights the demo starts with OpenCV's Telea method
and a notice saying where it looked. Analytics stay off unless GRADIO_ANALYTICS_ENABLED is set.
"""

from __future__ import annotations

import argparse
import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="LaMa inpainting demo")
    p.add_argument("--model", default=None, help="any lama.load_model source (default: $LAMA_MODEL or big-lama)")
    p.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")
    p.add_argument("--dtype", default=os.environ.get("LAMA_DEMO_DTYPE", "auto"),
                   help="auto (bfloat16 on CPUs with native bf16, float16 on CUDA, else float32), float32, bfloat16 "
                        "or float16")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--max-megapixels", type=float, default=None, help="largest photo accepted (default 16)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from demo.backend import Backend, Settings
    from demo.ui import build_demo, launch_kwargs

    settings = Settings(model=args.model, device=args.device, dtype=args.dtype)
    if args.max_megapixels:
        settings.max_megapixels = args.max_megapixels
    backend = Backend(settings)
    logging.getLogger("lama.demo").info("warm-up inference: %.2f s", backend.warm_up())
    demo = build_demo(backend)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=64)
    demo.launch(server_name=args.host, server_port=args.port, **launch_kwargs(settings))


if __name__ == "__main__":
    main()
