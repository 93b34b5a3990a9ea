"""The Gradio web app served by ``app.py``."""
