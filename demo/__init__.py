"""The Gradio demo: layout and callbacks over the ``lama`` package (no model code here)."""
