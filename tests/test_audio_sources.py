"""Audio sources (file replay, mic device choice, resampling) and the 88 audio features."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import numpy as np
import pytest

from edge_app.audio.features import AUDIO_DIM, audio_features
from edge_app.audio.sources import (
    AudioDevice,
    AudioSourceError,
    FileAudioSource,
    StreamResampler,
    load_audio,
    resolve_device,
)
from edge_app.clock import MediaClock
from edge_app.messages import SAMPLE_RATE


def test_file_replay_is_contiguous_and_reproducible(shared_data):
    path = shared_data / "diarization" / "sample.wav"
    runs = []
    for _ in range(2):
        src = FileAudioSource(path, MediaClock(realtime=False))
        runs.append([(c.t_start, len(c.samples)) for c in src.chunks(threading.Event())])
    assert runs[0] == runs[1]
    t = 0.0
    for t0, n in runs[0]:
        assert abs(t0 - t) < 1e-9
        t += n / SAMPLE_RATE
    assert abs(t - 30.0) < 0.05
    assert src.stats().seconds == pytest.approx(t)


def test_realtime_replay_is_paced_and_stops_on_event(tmp_path, shared_data):
    path = shared_data / "diarization" / "sample.wav"
    stop = threading.Event()
    src = FileAudioSource(path, MediaClock(realtime=True))
    t0 = time.monotonic()
    got = 0.0
    for chunk in src.chunks(stop):
        got = chunk.t_end
        if got >= 0.5:
            stop.set()
    elapsed = time.monotonic() - t0
    assert 0.45 <= elapsed < 3.0  # the first 0.5 s took about 0.5 s of wall time
    assert got < 1.0  # and it stopped right after the event


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make a video")
def test_audio_track_of_a_video(tmp_path, shared_data):
    wav = shared_data / "diarization" / "sample.wav"
    video = tmp_path / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=gray:s=64x48:r=10",
            "-ss",
            "7",
            "-t",
            "3",
            "-i",
            str(wav),
            "-t",
            "3",
            "-ac",
            "2",
            "-ar",
            "44100",
            "-c:v",
            "mpeg4",
            "-c:a",
            "aac",
            "-shortest",
            str(video),
        ],
        check=True,
    )
    audio = load_audio(video)
    ref = load_audio(wav)[7 * SAMPLE_RATE : 10 * SAMPLE_RATE]
    assert abs(len(audio) / SAMPLE_RATE - 3.0) < 0.1
    n = min(len(audio), len(ref))
    # Same sound after AAC + stereo 44.1 kHz -> mono 16 kHz: the envelopes agree.
    env = lambda x: np.sqrt(np.convolve(x[:n] ** 2, np.ones(800) / 800, "valid"))  # noqa: E731
    lag = np.argmax(np.correlate(env(audio)[::80], env(ref)[::80], "full")) - (
        len(env(ref)[::80]) - 1
    )
    shift = int(lag) * 80
    a = env(audio)[max(0, shift) :][: n - 2000]
    b = env(ref)[max(0, -shift) :][: len(a)]
    assert np.corrcoef(a[: len(b)], b[: len(a)])[0, 1] > 0.9


def test_unreadable_and_missing_files_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wav file at all" * 10)
    for path, words in ((junk, "cannot read"), (tmp_path / "nope.flac", "does not exist")):
        with pytest.raises(AudioSourceError, match=words) as err:
            FileAudioSource(path, MediaClock(realtime=False))
        assert "\n" not in str(err.value) and "fix:" in str(err.value)


def test_no_audio_track_is_a_clear_error(tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    video = tmp_path / "silent.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=gray:s=64x48:r=5",
            "-t",
            "1",
            "-c:v",
            "mpeg4",
            str(video),
        ],
        check=True,
    )
    with pytest.raises(AudioSourceError, match="no audio track"):
        FileAudioSource(video, MediaClock(realtime=False))


DEVICES = [
    AudioDevice(0, "HDA Intel PCH: ALC3246 Analog", 2, 48000.0),
    AudioDevice(3, "USB Audio Device: Mic", 1, 44100.0),
    AudioDevice(5, "USB Audio Device: Mic 2", 1, 44100.0),
]


def test_device_by_index_and_name():
    assert resolve_device(DEVICES, None) is None
    assert resolve_device(DEVICES, 3).index == 3
    assert resolve_device(DEVICES, "3").index == 3
    assert resolve_device(DEVICES, "alc3246").index == 0
    with pytest.raises(AudioSourceError, match="index 7"):
        resolve_device(DEVICES, 7)
    with pytest.raises(AudioSourceError, match="no microphone named"):
        resolve_device(DEVICES, "webcam")
    with pytest.raises(AudioSourceError, match="several"):
        resolve_device(DEVICES, "usb")


def test_mic_without_device_is_one_clear_error():
    pytest.importorskip("pyaudio")
    from edge_app.audio.sources import MicSource, list_input_devices

    if list_input_devices():
        pytest.skip("this machine has a microphone")
    with pytest.raises(AudioSourceError, match="no microphone"):
        MicSource(MediaClock())


@pytest.mark.parametrize("rate", [48000, 44100])
def test_stream_resampler_keeps_pitch_and_length(rate):
    t = np.arange(rate * 2) / rate
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    rs = StreamResampler(rate)
    y = np.concatenate([rs(x[i : i + 1234]) for i in range(0, len(x), 1234)])
    assert abs(len(y) - 2 * SAMPLE_RATE) <= 2
    spec = np.abs(np.fft.rfft(y[4000:20000] * np.hanning(16000)))
    assert abs(np.argmax(spec) * SAMPLE_RATE / 16000 - 440) <= 2


def test_features_shape_and_prosody():
    assert AUDIO_DIM == 88
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * 200 * t) + 0.15 * np.sin(2 * np.pi * 400 * t)
    f = audio_features(tone.astype(np.float32))
    assert f.shape == (88,) and f.dtype == np.float32 and np.all(np.isfinite(f))
    assert abs(f[83] - 12.0) < 0.5  # 200 Hz is 12 semitones above 100 Hz
    assert f[87] > 0.9  # voiced throughout
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
    assert audio_features(noise)[87] < 0.2
    for x in (np.zeros(0, np.float32), np.zeros(100, np.float32), np.zeros(SAMPLE_RATE)):
        g = audio_features(x)
        assert g.shape == (88,) and np.all(np.isfinite(g))
    louder = audio_features((tone * 2).astype(np.float32))
    assert louder[80] > f[80] + 5  # energy in dB follows loudness


# ------------------------------------------------------------------ microphone, on a fake PortAudio
# No machine here has a microphone, so PortAudio is replaced by a fake that calls the callback
# from its own thread like the real one; everything else (queue, counters, resampling, stamps)
# is the real MicSource.


class _FakeStream:
    def __init__(self, pa, rate, frames, callback, flag_every):
        self.pa, self.rate, self.frames, self.callback = pa, rate, frames, callback
        self.flag_every = flag_every
        self._stop = threading.Event()
        self._thread = None

    def start_stream(self):
        def run():
            i = 0
            t = np.arange(self.frames)
            while not self._stop.is_set() and i < self.pa.blocks:
                block = np.sin(2 * np.pi * 440 * (t + i * self.frames) / self.rate)
                flags = 2 if (self.flag_every and i % self.flag_every == 1) else 0  # 2: overflow
                self.callback(block.astype(np.float32).tobytes(), self.frames, {}, flags)
                i += 1
            self.pa.finished.set()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop_stream(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def close(self):
        self.stop_stream()


class _FakePyAudio:
    paFloat32, paContinue, paInputOverflow = 1, 0, 2

    def __init__(self, devices, native_rate=16000, blocks=50, flag_every=0):
        self.devices, self.native_rate, self.blocks = devices, native_rate, blocks
        self.flag_every = flag_every
        self.finished = threading.Event()
        self.opened = []

    # module-level constructor: pyaudio.PyAudio()
    def PyAudio(self):  # noqa: N802 (PyAudio's name)
        return self

    def get_device_count(self):
        return len(self.devices)

    def get_device_info_by_index(self, i):
        d = self.devices[i]
        return {"name": d[0], "maxInputChannels": d[1], "defaultSampleRate": d[2]}

    def open(self, rate, frames_per_buffer, stream_callback, input_device_index, **kw):
        if rate != self.native_rate:
            raise OSError(-9997, "Invalid sample rate")
        if input_device_index is not None and self.devices[input_device_index][0] == "busy":
            raise OSError(-9985, "Device unavailable")
        self.opened.append((rate, input_device_index))
        return _FakeStream(self, rate, frames_per_buffer, stream_callback, self.flag_every)

    def terminate(self):
        pass


def _watchdog(stop: threading.Event, seconds: float = 20.0) -> None:
    """Set ``stop`` after ``seconds`` so a broken source can never hang the suite."""
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True
    timer.start()


@pytest.fixture
def fake_pyaudio(monkeypatch):
    import sys

    def install(**kw):
        fake = _FakePyAudio(**kw)
        monkeypatch.setitem(sys.modules, "pyaudio", fake)
        return fake

    return install


def test_mic_delivers_stamped_chunks_and_counts_driver_overruns(fake_pyaudio):
    from edge_app.audio.sources import MicSource

    fake = fake_pyaudio(devices=[("Built-in Mic", 1, 16000.0)], blocks=40, flag_every=10)
    mic = MicSource(MediaClock(), device="built-in")
    stop = threading.Event()
    _watchdog(stop)
    got = []
    for chunk in mic.chunks(stop):
        got.append(chunk)
        if len(got) == 40:
            stop.set()
    assert fake.finished.wait(2)
    assert [c.index for c in got] == list(range(40))
    assert all(len(c.samples) == 512 and c.samples.dtype == np.float32 for c in got)
    assert all(b.t_start >= a.t_start for a, b in zip(got, got[1:], strict=False))
    st = mic.stats()
    assert st.chunks == 40 and st.overruns == 4 and st.dropped_samples == 0
    mic.close()
    mic.close()  # idempotent


def test_mic_full_queue_drops_newest_and_reports_it(fake_pyaudio):
    from edge_app.audio.sources import MicSource

    fake = fake_pyaudio(devices=[("Mic", 1, 16000.0)], blocks=30)
    mic = MicSource(MediaClock(), queue_s=0.1)  # room for 3 blocks of 32 ms
    stop = threading.Event()
    it = mic.chunks(stop)
    first = next(it)  # starts the stream; then the consumer stalls while 30 blocks arrive
    assert fake.finished.wait(2)
    rest = []
    while not mic._queue.empty():  # drain what was kept, without blocking
        rest.append(next(it))
    stop.set()
    assert list(it) == []  # the generator ends at once on stop
    st = mic.stats()
    kept = 1 + len(rest)
    assert 2 <= kept <= 5  # the first block plus a queue of 3 (timing decides the first)
    assert st.dropped_samples == (30 - kept) * 512
    assert sum(c.dropped_before for c in [first, *rest]) == st.dropped_samples  # in-band too
    assert st.chunks == kept
    mic.close()


def test_mic_at_44k_is_resampled_to_16k(fake_pyaudio):
    from edge_app.audio.sources import MicSource

    fake = fake_pyaudio(devices=[("USB Mic", 1, 44100.0)], native_rate=44100, blocks=60)
    mic = MicSource(MediaClock(), device=0)
    assert fake.opened == [(44100, 0)]
    stop = threading.Event()
    _watchdog(stop)
    out = []
    for chunk in mic.chunks(stop):
        out.append(chunk.samples)
        if len(out) == 60:
            stop.set()
    y = np.concatenate(out)
    assert abs(len(y) - 60 * 1411 * 16000 / 44100) < 30
    spec = np.abs(np.fft.rfft(y[2000:18000] * np.hanning(16000)))
    assert abs(np.argmax(spec) * SAMPLE_RATE / 16000 - 440) <= 2
    mic.close()


def test_busy_mic_is_one_clear_error(fake_pyaudio):
    from edge_app.audio.sources import MicSource

    fake_pyaudio(devices=[("busy", 1, 16000.0)])
    with pytest.raises(AudioSourceError, match="busy") as err:
        MicSource(MediaClock(), device=0)
    assert "fix:" in str(err.value)
