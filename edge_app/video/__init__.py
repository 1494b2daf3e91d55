"""The visual half of the live pipeline.

frames (``sources``) -> faces per frame (``faces``, MediaPipe) -> stable track ids (``tracker``)
-> per-utterance visual features (``visual_features``) and face-to-voice binding (``binding``).
``stage.FaceTrackStage`` glues landmarker + tracker + history into the one object the runtime
calls per frame. Every stage is a plain stateful object with no threads of its own.
"""
