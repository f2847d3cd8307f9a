#!/usr/bin/env python3
"""Live streaming speech recognition from the microphone, an audio file, or raw PCM on stdin.

Needs a streaming ASR artifact (``speechkit export CHECKPOINT asr.onnx --streaming --chunk-ms 320``;
``speechkit quickstart asr`` makes one). Runs on numpy, onnxruntime and kaldi-native-fbank only
(no torch). Prints one JSON line per final result, ``{"time", "text", "final": true, ...}``, and
with ``--partials`` the partial results too; a live line on stderr when it is a terminal.

Examples::

    python demo/asr_demo.py --model asr.onnx --input mic
    python demo/asr_demo.py --model asr.onnx --input recording.wav --partials
    sox in.wav -t raw -r 16000 -e signed -b 16 -c 1 - | python demo/asr_demo.py --model asr.onnx --input -
"""

import argparse
import sys

from speechkit.errors import SpeechkitError
from speechkit.runtime.asr_demo import add_demo_asr_args, run_demo_asr


def get_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_demo_asr_args(parser)  # --model, --input mic|FILE|-, --partials, endpoint rules, ...
    return parser.parse_args()


def main() -> int:
    try:
        return run_demo_asr(get_args())  # StreamingRecognizer over the input's blocks
    except SpeechkitError as exc:  # bad model file, unreadable audio, no microphone: one line
        print(f"asr_demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
