"""``mlsan-live diarize FILE --rttm OUT``: who spoke when in a recording (online, as live).

Runs the live run's audio stages with the live run's defaults over the file in order
(segmentation-3.0 speech detection -> CAM++ windows -> online diarizer -> overlap turns,
optionally faster-whisper), writes NIST RTTM that any scorer reads, and optionally a JSON report
(segments, turns, transcripts, speakers). With ``--gallery`` the speakers of earlier runs are
recognised (threshold + margin, see diarizer.py) and the gallery is updated (``--name
spk2=Alice`` names one, ``--forget NAME`` removes one). ``--legacy`` runs the previous pipeline
(Silero, resemblyzer) for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlsan.errors import UserFacingError
from mlsan.whisper_encoder import ENCODER_HELP, ENCODERS

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
    parser.add_argument(
        "--forget",
        action="append",
        default=[],
        metavar="ID|NAME",
        help="remove a person from the --gallery before the run (repeatable)",
    )
    g = parser.add_argument_group("tuning (defaults = the live run's)")
    g.add_argument(
        "--legacy",
        action="store_true",
        help="the previous pipeline (Silero VAD, resemblyzer, no overlap turns) for comparison",
    )
    g.add_argument("--vad-threshold", type=float, default=None, help=f"default {vad.threshold}")
    g.add_argument("--min-silence", type=float, default=vad.min_silence_s, metavar="S")
    g.add_argument("--min-speech", type=float, default=vad.min_speech_s, metavar="S")
    g.add_argument("--pad", type=float, default=None, metavar="S", help=f"default {vad.pad_s}")
    g.add_argument(
        "--max-segment",
        type=float,
        default=vad.max_segment_s,
        metavar="S",
        help="cut longer speech here (default %(default)s s, as the live run's --max-segment)",
    )
    g.add_argument(
        "--window",
        type=float,
        default=None,
        metavar="S",
        help=f"voice window (default {voice.window_s})",
    )
    g.add_argument("--hop", type=float, default=None, metavar="S", help=f"default {voice.hop_s}")
    g.add_argument(
        "--new-threshold",
        type=float,
        default=None,
        help=f"similarity below which a new speaker is enrolled (default {dia.new_threshold})",
    )
    g.add_argument(
        "--cluster-threshold",
        type=float,
        default=None,
        help="similarity at which voice windows are grouped as one person "
        f"(default {dia.cluster_threshold})",
    )
    g.add_argument(
        "--no-overlap", action="store_true", help="do not add turns for overlapped speech"
    )
    g.add_argument(
        "--lookahead",
        type=float,
        default=None,
        metavar="S",
        help="right context before a frame's speech score (default 0 s; 0.25 is 0.25 s later "
        "and AMI DER 32.7 %% vs 33.5 %%, sample 13.0 %% vs 10.5 %%)",
    )
    m = parser.add_argument_group("models")
    m.add_argument("--asr-model", metavar="PATH|SIZE", help="faster-whisper model dir or size")
    m.add_argument(
        "--segmentation-model", metavar="PATH", help="segmentation-3.0 .onnx (speech detection)"
    )
    m.add_argument("--speaker-model", metavar="PATH", help="CAM++ .onnx (speaker embedding)")
    m.add_argument("--vad-model", metavar="PATH", help="Silero VAD v6 .onnx (--legacy)")
    m.add_argument("--voice-model", metavar="PATH", help="resemblyzer pretrained.pt (--legacy)")
    m.add_argument("--asr-threads", type=int, default=2)
    m.add_argument(
        "--asr-encoder",
        choices=ENCODERS,
        default="auto",
        help=ENCODER_HELP,
    )


def _options(args: argparse.Namespace):
    from dataclasses import replace

    from edge_app.audio.asr import AsrOptions
    from edge_app.audio.offline import LEGACY, AudioPipelineOptions

    base = LEGACY if args.legacy else AudioPipelineOptions()

    def pick(value, default):
        return default if value is None else value

    return replace(
        base,
        vad=replace(
            base.vad,
            threshold=pick(args.vad_threshold, base.vad.threshold),
            neg_threshold=None if args.vad_threshold is not None else base.vad.neg_threshold,
            min_silence_s=args.min_silence,
            min_speech_s=args.min_speech,
            pad_s=pick(args.pad, base.vad.pad_s),
            max_segment_s=args.max_segment,
        ),
        voice=replace(
            base.voice,
            window_s=pick(args.window, base.voice.window_s),
            hop_s=pick(args.hop, base.voice.hop_s),
        ),
        diarizer=replace(
            base.diarizer,
            new_threshold=pick(args.new_threshold, base.diarizer.new_threshold),
            cluster_threshold=pick(args.cluster_threshold, base.diarizer.cluster_threshold),
        ),
        overlap=replace(base.overlap, enabled=base.overlap.enabled and not args.no_overlap),
        segmentation=replace(
            base.segmentation, lookahead_s=pick(args.lookahead, base.segmentation.lookahead_s)
        ),
        asr=AsrOptions(
            model=args.asr_model, cpu_threads=args.asr_threads, encoder=args.asr_encoder
        ),
        vad_model=args.vad_model if args.legacy else args.segmentation_model,
        voice_model=args.voice_model if args.legacy else args.speaker_model,
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
    if args.forget and not args.gallery:
        raise UserFacingError("--forget needs --gallery PATH (the people are kept there)")
    options = _options(args)
    stages = AudioStages.load(options, transcribe=args.transcribe)
    gallery = None
    if args.gallery:
        gallery = SpeakerGallery(args.gallery, model_id=stages.embedder.model_id)
        for who in args.forget:
            removed = gallery.forget(who)
            print(f"forgot {', '.join(removed)} ({who}) in {gallery.path}", file=sys.stderr)
    result = process_file(args.file, stages, gallery=gallery, realtime=args.realtime)
    for sid, name in names:
        result.diarizer.rename(sid, name)
    if gallery is not None:
        result.diarizer.save()
    uri = args.uri or Path(args.file).stem
    if args.rttm:
        write_rttm(result.all_turns, uri, args.rttm)
    if args.json:
        names_by_id = {s.speaker_id: s.name for s in result.diarizer.speakers()}
        overlap_ids = {id(t) for t in result.overlaps}
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
                    "overlap": id(t) in overlap_ids,  # a second voice (speakers.py)
                }
                for t in result.all_turns
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
