"""The audio front of the live pipeline: sources, VAD, transcripts, voices, diarization.

Every stage is a plain stateful object with no threads of its own (the runtime calls it from its
worker threads); only ``MicSource``'s PyAudio callback runs on a foreign thread and it only
enqueues. Modules:

- ``sources``: ``MicSource`` (PyAudio), ``FileAudioSource`` (wav/flac/video via PyAV),
  ``list_input_devices``, ``load_audio``.
- ``vad``: ``SileroVad`` (ONNX, streaming; legacy), ``VadStateMachine`` (hysteresis, cuts),
  ``StreamingVad`` (AudioChunk -> SpeechSegment).
- ``segmentation``: ``SegmentationVad`` (pyannote segmentation-3.0 ONNX on a rolling window:
  speech, overlap and speaker-change per frame; the default frame model of ``StreamingVad``).
- ``speaker``: ``CamppEmbedder`` (CAM++ ONNX, 192-d; the default voice model); ``fbank``: the
  Kaldi fbank it needs; ``campplus`` / ``segmentation_net``: the PyTorch networks, only to
  re-export the shipped ONNX files in ``weights/``.
- ``speakers``: ``SpeakerStage`` (embedder -> diarizer -> overlap turns; live and diarize).
- ``asr``: ``WhisperTranscriber`` (faster-whisper; SpeechSegment -> Transcript).
- ``voice``: ``VoiceEmbedder`` (resemblyzer, legacy; SpeechSegment -> windowed ``VoiceSpan``).
- ``diarizer``: ``OnlineDiarizer`` (VoiceSpans -> SpeakerTurns, enrollment, gallery).
- ``gallery``: ``SpeakerGallery`` (on-disk speakers, atomic writes).
- ``features``: ``audio_features`` (88 float32 per utterance for the emotion model).
- ``offline``: ``process_file`` (the stages chained sequentially over a file; used by
  ``mlsan-live diarize``, the benchmark and the tests).
"""
