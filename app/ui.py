"""The Gradio page.

Tab "One window": a transcript, a short recording and a face picture (uploaded, or taken
with the browser's microphone and webcam) are analysed as one window by the shipped
fusion model, with each modality's own estimate beside the fused one.
Nothing is stored on the server.
"""

from __future__ import annotations

import argparse

import numpy as np

from models.types import SENTIMENT_CLASSES, Modality, WindowFeatures

NOTICE = (
    "This estimates the sentiment a person *expresses* in words, voice and face. "
    "It is not a diagnosis and says nothing certain about how anyone feels. Nothing you send is stored."
)
MAX_AUDIO_SECONDS = 30.0


class WindowAnalyser:
    """Turns the raw inputs of one window into a result table (used by the UI and tests)."""

    def __init__(self, model=None):
        from models.features.vision import FaceAnalyzer
        from models.runtime import SentimentModel

        self.model = model or SentimentModel.load()
        self.faces = FaceAnalyzer(static=True)

    def features(self, text: str | None, audio, image) -> tuple[WindowFeatures, list[str]]:
        """(features, notes on what was left out and why)."""
        from models.features.audio import SAMPLE_RATE, to_mono_16k

        notes = []
        t = self.model.text_features(text or "")
        if t is None:
            notes.append("text: none given")
        a = None
        if audio is not None:
            rate, samples = audio
            try:
                x = to_mono_16k(samples, rate)
                x = x[-int(MAX_AUDIO_SECONDS * SAMPLE_RATE) :]
                if np.sqrt(np.mean(x**2)) < 1e-3:
                    notes.append("audio: silent, left out")
                else:
                    a = self.model.audio_features(x)
            except ValueError as e:
                notes.append(f"audio: {e}")
        else:
            notes.append("audio: none given")
        v = None
        if image is not None:
            try:
                obs = self.faces(np.asarray(image))
                if obs.has_face:
                    v = self.model.face_features([obs.crop])
                    if obs.n_faces > 1:
                        notes.append(f"vision: {obs.n_faces} faces, the largest is read")
                else:
                    notes.append("vision: no face found")
            except ValueError as e:
                notes.append(f"vision: {e}")
        else:
            notes.append("vision: none given")
        return WindowFeatures(t, a, v), notes

    def __call__(self, text, audio, image):
        feats, notes = self.features(text, audio, image)
        r = self.model.predict(feats)
        rows = []
        for m in (Modality.TEXT, Modality.AUDIO, Modality.VISION):
            e = r.per_modality.get(m)
            if e is None:
                rows.append([m.value, "absent", "", "", ""])
            else:
                top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(e.detail.items(), key=lambda kv: -kv[1])[:3])
                rows.append([m.value, e.label, f"{e.score:+.2f}", f"{e.confidence:.2f}", top])
        summary = (
            f"**{r.label}** (score {r.score:+.2f} on -3..3, confidence {r.confidence:.2f}); "
            f"modalities used: {', '.join(m.value for m in r.used) or 'none, this is the prior'}"
        )
        if notes:
            summary += "  \n" + "; ".join(notes)
        return r.confidences(), summary, rows


def build_demo(analyser: WindowAnalyser | None = None):
    import gradio as gr

    analyser = analyser or WindowAnalyser()
    with gr.Blocks(title="Multimodal sentiment") as demo:
        gr.Markdown("# Multimodal sentiment\n" + NOTICE)
        with gr.Tab("One window"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(label="Transcript", placeholder="what was said")
                    audio = gr.Audio(sources=["microphone", "upload"], type="numpy", label="Speech (up to 30 s)")
                    image = gr.Image(sources=["webcam", "upload"], type="numpy", label="Face")
                    go = gr.Button("Analyse", variant="primary")
                with gr.Column():
                    label = gr.Label(num_top_classes=len(SENTIMENT_CLASSES), label="Fused sentiment")
                    summary = gr.Markdown()
                    table = gr.Dataframe(
                        headers=["modality", "label", "score", "confidence", "top emotions"],
                        label="Each modality alone",
                        interactive=False,
                    )
            go.click(analyser, [text, audio, image], [label, summary, table])
    return demo


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="multimodal sentiment demo")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=7860)
    args = ap.parse_args(argv)
    build_demo().queue().launch(server_name=args.host, server_port=args.port)
