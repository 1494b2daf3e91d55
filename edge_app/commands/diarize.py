"""``mlsan-live diarize FILE --rttm OUT``: who spoke when in a recording (online, as live).

Runs the live audio stages over the file in order (Silero VAD -> resemblyzer windows -> online
diarizer, optionally faster-whisper), writes NIST RTTM that any scorer reads, and optionally a
JSON report (segments, turns, transcripts, speakers). With ``--gallery`` the speakers of earlier
runs are recognised and the gallery is updated (``--name spk2=Alice`` names one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlsan.errors import UserFacingError

NAME = "diarize"
HELP = "diarize an audio/video file online (who spoke when) and write RTTM / JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edge_app.audio.diarizer import DiarizerOptions
    from edge_app.audio.vad import VadOptions
    from edge_app.audio.voice import VoiceOptions

    vad, voice, dia = VadOptions(), VoiceOptions(), DiarizerOptions()
    parser.add_argument("file", metavar="FILE", help="wav/flac/mp3 or a video with an audio track")
    parser.add_argument("--rttm", metavar="OUT", help="write speaker turns as RTTM ('-': stdout)")
    parser.add_argument("--json", metavar="OUT", help="write a JSON report ('-': stdout)")
    parser.add_argument("--gallery", metavar="PATH", help="speaker gallery to load and update")
    parser.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="ID=NAME",
        help="name a speaker in the gallery (repeatable), e.g. --name spk1=Alice",
    )
    parser.add_argument("--transcribe", action="store_true", help="also run faster-whisper")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="replay at real-time pace (default: as fast as possible)",
    )
    parser.add_argument("--uri", help="file id in the RTTM (default: the file's stem)")
    g = parser.add_argument_group("tuning")
    g.add_argument("--vad-threshold", type=float, default=vad.threshold)
    g.add_argument("--min-silence", type=float, default=vad.min_silence_s, metavar="S")
    g.add_argument("--min-speech", type=float, default=vad.min_speech_s, metavar="S")
    g.add_argument("--pad", type=float, default=vad.pad_s, metavar="S")
    g.add_argument("--max-segment", type=float, default=vad.max_segment_s, metavar="S")
    g.add_argument(
        "--window", type=float, default=voice.window_s, metavar="S", help="voice embedding window"
    )
    g.add_argument("--hop", type=float, default=voice.hop_s, metavar="S")
    g.add_argument(
        "--new-threshold",
        type=float,
        default=dia.new_threshold,
        help="similarity below which a new speaker is enrolled",
    )
    g.add_argument(
        "--cluster-threshold",
        type=float,
        default=dia.cluster_threshold,
        help="similarity at which voice windows are grouped as one person",
    )
    g.add_argument(
        "--merge-threshold",
        type=float,
        default=dia.merge_threshold,
        help="centroid similarity needed to merge a young speaker into another (split repair)",
    )
    g.add_argument(
        "--enroll-s",
        type=float,
        default=dia.enroll_s,
        metavar="S",
        help="a group of new voice windows with this much speech is always a new speaker",
    )
    m = parser.add_argument_group("models")
    m.add_argument("--asr-model", metavar="PATH|SIZE", help="faster-whisper model dir or size")
    m.add_argument("--vad-model", metavar="PATH", help="Silero VAD v6 .onnx")
    m.add_argument("--voice-model", metavar="PATH", help="resemblyzer pretrained.pt")
    m.add_argument("--asr-threads", type=int, default=2)


def _options(args: argparse.Namespace):
    from dataclasses import replace

    from edge_app.audio.asr import AsrOptions
    from edge_app.audio.diarizer import DiarizerOptions
    from edge_app.audio.offline import AudioPipelineOptions
    from edge_app.audio.vad import VadOptions
    from edge_app.audio.voice import VoiceOptions

    return AudioPipelineOptions(
        vad=VadOptions(
            threshold=args.vad_threshold,
            min_silence_s=args.min_silence,
            min_speech_s=args.min_speech,
            pad_s=args.pad,
            max_segment_s=args.max_segment,
        ),
        voice=VoiceOptions(window_s=args.window, hop_s=args.hop),
        diarizer=replace(
            DiarizerOptions(),
            new_threshold=args.new_threshold,
            cluster_threshold=args.cluster_threshold,
            merge_threshold=args.merge_threshold,
            enroll_s=args.enroll_s,
        ),
        asr=AsrOptions(model=args.asr_model, cpu_threads=args.asr_threads),
        vad_model=args.vad_model,
        voice_model=args.voice_model,
    )


def _write(text: str, out: str) -> None:
    if out == "-":
        sys.stdout.write(text)
    else:
        Path(out).write_text(text)


def run(args: argparse.Namespace) -> int:
    from edge_app.audio.gallery import SpeakerGallery
    from edge_app.audio.offline import AudioStages, process_file, write_rttm

    if not args.rttm and not args.json:
        raise UserFacingError("nothing to write; fix: pass --rttm OUT and/or --json OUT")
    names = []
    for item in args.name:
        sid, sep, name = item.partition("=")
        if not sep or not sid or not name:
            raise UserFacingError(f"--name {item!r} is not ID=NAME; fix: e.g. --name spk1=Alice")
        names.append((sid, name))
    if names and not args.gallery:
        raise UserFacingError("--name needs --gallery PATH (names are kept in the gallery)")
    gallery = SpeakerGallery(args.gallery) if args.gallery else None
    stages = AudioStages.load(_options(args), transcribe=args.transcribe)
    result = process_file(args.file, stages, gallery=gallery, realtime=args.realtime)
    for sid, name in names:
        result.diarizer.rename(sid, name)
    if gallery is not None:
        result.diarizer.save()
    uri = args.uri or Path(args.file).stem
    if args.rttm:
        write_rttm(result.turns, uri, args.rttm)
    if args.json:
        names_by_id = {s.speaker_id: s.name for s in result.diarizer.speakers()}
        report = {
            "file": str(args.file),
            "duration_s": round(result.duration, 3),
            "segments": [
                {
                    "id": s.segment_id,
                    "start": round(s.t_start, 3),
                    "end": round(s.t_end, 3),
                    "truncated": s.truncated,
                }
                for s in result.segments
            ],
            "turns": [
                {
                    "segment_id": t.segment_id,
                    "start": round(t.t_start, 3),
                    "end": round(t.t_end, 3),
                    "speaker": t.speaker_id,
                    "name": names_by_id.get(t.speaker_id),
                    "similarity": round(t.similarity, 3),
                    "new": t.is_new,
                }
                for t in result.turns
            ],
            "transcripts": [
                {
                    "segment_id": tr.segment_id,
                    "start": round(tr.t_start, 3),
                    "end": round(tr.t_end, 3),
                    "text": tr.text,
                    "words": [
                        {
                            "w": w.text,
                            "start": round(w.t_start, 3),
                            "end": round(w.t_end, 3),
                            "p": round(w.probability, 3),
                        }
                        for w in tr.words
                    ],
                }
                for tr in result.transcripts
            ],
            "speakers": [
                {"id": s.speaker_id, "name": s.name, "seconds": round(s.seconds, 2)}
                for s in result.diarizer.speakers()
            ],
        }
        _write(json.dumps(report, indent=1) + "\n", args.json)
    return 0
