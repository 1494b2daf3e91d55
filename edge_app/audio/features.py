"""Per-utterance prosody/spectral statistics (88 float32): defined once in ``mlsan.prosody``.

Re-exported here for the live app; see that module for the layout. The voice-emotion feature the
model uses is ``mlsan.voice_features`` (pooled Whisper encoder states); these 88 numbers were
measured as a candidate beside it (``bench/bench_voice.py``).
"""

from mlsan.prosody import AUDIO_DIM, N_MELS, audio_features

__all__ = ["AUDIO_DIM", "N_MELS", "audio_features"]
