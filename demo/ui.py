"""The Gradio page: upload, paint, remove, compare, download; and the ``/inpaint`` API endpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from . import callbacks as cb
from .backend import Backend, Cancelled

log = logging.getLogger("lama.demo")
EXAMPLES = sorted(str(p) for p in (Path(__file__).parent / "examples").glob("*") if p.suffix in (".png", ".jpg"))
STRATEGY_HELP = ("crop: large photos are filled one crop around each painted region (fast, sharp); "
                 "resize: the whole photo shrunk to 1280 px; original: the whole photo at full size (slow); "
                 "refine: the multi-scale refinement of the fill, per crop on large photos (minutes on a CPU).")
# (label, value): the refine choice refines each crop, the usual case of a small object in a large photo
STRATEGIES = [("crop", "crop"), ("resize", "resize"), ("original", "original"),
              ("refine (slower, sharper on large photos)", "crop+refine")]
API_STRATEGIES = ("crop", "resize", "original", "refine", "crop+refine")


# The run button's name starts no other control's: Gradio's clear buttons are all "Remove Image".
RUN_LABEL = "Inpaint"


def _user_error(e: Exception) -> gr.Error:
    if isinstance(e, cb.UserInputError):
        return gr.Error(str(e))
    log.exception("unexpected error")
    return gr.Error(f"Something went wrong ({type(e).__name__}); the server is fine, please try again.")


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or ""


def build_demo(backend: Backend) -> gr.Blocks:
    settings = backend.settings
    with gr.Blocks(title="LaMa inpainting") as demo:
        gr.Markdown("# LaMa: remove objects from photos\nUpload a photo, paint over what should disappear, "
                    f"press **{RUN_LABEL}**. Model: {backend.name}.")
        gr.Markdown(backend.notice, visible=bool(backend.notice), elem_id="weights-notice")
        photo_state = gr.State(None)
        result_state = gr.State(None)
        with gr.Row():
            with gr.Column():
                photo = gr.Image(label="1 · Upload a photo", type="filepath", image_mode=None,
                                 sources=["upload", "clipboard"], height=260, elem_id="photo")
                editor = gr.ImageMask(label="2 · Paint over what should disappear", type="numpy", layers=False,
                                      format="png", sources=(), transforms=(), elem_id="editor", visible=False,
                                      brush=gr.Brush(default_size=24, colors=["#ff3366"], color_mode="fixed"),
                                      canvas_size=(settings.editor_max_side, settings.editor_max_side))
                with gr.Accordion("Options", open=False):
                    mask_file = gr.Image(label="…or upload a mask instead (white = remove)", type="filepath",
                                         image_mode=None, sources=["upload"], height=160)
                    dilate = gr.Slider(0, 64, value=8, step=1, label="Grow the mask by (pixels)")
                    strategy = gr.Radio(STRATEGIES, value="crop", label="Strategy", info=STRATEGY_HELP)
                with gr.Row():
                    run = gr.Button(RUN_LABEL, variant="primary", elem_id="run")
                    cancel = gr.Button("Cancel", elem_id="cancel")
            with gr.Column():
                slider = gr.ImageSlider(label="Before / after", type="filepath", elem_id="result")
                download = gr.DownloadButton("Download full-resolution PNG", visible=False)
                reuse = gr.Button("Use result as input (remove something else)", visible=False)
                gr.Examples(EXAMPLES, inputs=[photo], label="Example photos")

        # A new photo (or none) makes the last result stale: the result, download and reuse go with it.
        no_result = (None, gr.update(value=None, visible=False), None, gr.update(visible=False))

        def on_photo(path):
            # Cleared: hide the editor (it shows again with the next photo). Gradio's ImageMask does not recover
            # from a None value: it keeps the old photo and shows "processing" for ever.
            if not path:
                return None, gr.update(value=None, visible=False), *no_result
            try:
                p = cb.load_photo(path, settings)
            except Exception as e:
                raise _user_error(e) from e
            if p.note:
                gr.Warning(p.note)
            return p, gr.update(value=p.display, visible=True), *no_result

        def on_run(p, editor_value, mask_path, dilate_px, strat, request: gr.Request,
                   progress=gr.Progress()):  # noqa: B008
            if p is None:
                raise gr.Error("Upload a photo first.")
            progress(0.1, desc="Inpainting…")

            def step(s):
                progress(*cb.refine_status(s))

            try:
                r = cb.inpaint(backend, p, editor_value, mask_path, int(dilate_px), strat, progress=step,
                               session=_session(request))
                path = cb.save_result(r.image)
            except Cancelled as e:
                raise gr.Error(f"Refinement {e}; the photo is unchanged.") from e
            except Exception as e:
                raise _user_error(e) from e
            if r.message:
                gr.Warning(r.message)
            after = cb.save_result(cb.display_copy(r.image, settings.editor_max_side))
            before = cb.save_result(p.display)
            return (before, after), gr.update(value=path, visible=True), r.image, gr.update(visible=True)

        def on_reuse(result):
            if result is None:
                raise gr.Error("Run once first.")
            return cb.save_result(result)

        photo.change(on_photo, [photo], [photo_state, editor, slider, download, result_state, reuse],
                     api_visibility="private")
        running = run.click(on_run, [photo_state, editor, mask_file, dilate, strategy],
                            [slider, download, result_state, reuse], api_visibility="private")

        def on_cancel(request: gr.Request):
            # the worker thread stops at its next refinement step and frees the model for the next person
            if backend.cancel(_session(request)):
                gr.Info("Cancelled.")

        cancel.click(on_cancel, None, None, cancels=[running], api_visibility="private")
        reuse.click(on_reuse, [result_state], [photo], api_visibility="private")

        # The API endpoint: an image and a mask in, the filled image out (see the README).
        with gr.Row(visible=False):
            api_image = gr.Image(type="filepath", image_mode=None)
            api_mask = gr.Image(type="filepath", image_mode=None)
            api_dilate = gr.Number(value=0, precision=0)
            api_strategy = gr.Textbox(value="crop")
            api_out = gr.Image(type="filepath", format="png")

        def api_inpaint(image_path, mask_path, dilate_px=0, strat="crop"):
            try:
                p = cb.load_photo(image_path, settings)
                if not mask_path:
                    raise cb.UserInputError("Send a mask image too (white or opaque = fill).")
                if strat not in API_STRATEGIES:
                    raise cb.UserInputError(f"strategy must be one of {', '.join(API_STRATEGIES)}, not {strat!r}")
                return cb.save_result(cb.inpaint(backend, p, None, mask_path, int(dilate_px or 0), strat).image)
            except Exception as e:
                raise _user_error(e) from e

        gr.Button(visible=False).click(api_inpaint, [api_image, api_mask, api_dilate, api_strategy], [api_out],
                                       api_name="inpaint")
    return demo


def launch_kwargs(settings) -> dict:
    """How app.py and the tests launch the demo."""
    return {"max_file_size": f"{int(settings.max_megapixels * 4 + 20)}mb", "show_error": True}
