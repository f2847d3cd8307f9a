#!/usr/bin/env python3
"""Live keyword spotting from the microphone, an audio file, or raw PCM on stdin.

Needs a KWS artifact (``speechkit export CHECKPOINT kws.onnx``; ``speechkit quickstart`` makes
one). Runs on numpy and onnxruntime only (no torch). Prints one JSON line per detection,
``{"time": seconds, "keyword": str, "score": float}``, and a live level/score line on stderr when
it is a terminal. Thresholds come from ``kws.thresholds.json`` next to the model when
``speechkit calibrate`` wrote one.

Examples::

    python demo/kws_demo.py --model kws.onnx --input mic
    python demo/kws_demo.py --model kws.onnx --input stream.wav --threshold yes=0.8,no=0.7
    sox in.wav -t raw -r 16000 -e signed -b 16 -c 1 - | python demo/kws_demo.py --model kws.onnx --input -

The same from Python::

    from speechkit.runtime import KeywordDetector
    from speechkit.runtime.audio import iter_audio_file

    detector = KeywordDetector("kws.onnx")
    for block, rate in iter_audio_file("stream.wav"):   # or speechkit.runtime.mic.iter_microphone()
        for detection in detector.accept_waveform(block, rate):
            print(detection)
"""

import argparse
import sys

from speechkit.errors import SpeechkitError
from speechkit.runtime.demo import add_input_arguments
from speechkit.runtime.kws_demo import add_detector_arguments, run_kws_demo


def get_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_detector_arguments(parser)  # --model, --threshold, --hop-ms, --smoothing, --refractory, --vad
    add_input_arguments(parser)  # --input mic|FILE|-, --rate/--channels (stdin), --device (mic)
    return parser.parse_args()


def main() -> int:
    try:
        return run_kws_demo(get_args())  # KeywordDetector over the input's blocks
    except SpeechkitError as exc:  # bad model file, unreadable audio, no microphone: one line
        print(f"kws_demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
