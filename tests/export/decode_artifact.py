"""Decode a wav with the streaming ASR artifact alone (contract 7): the metadata says everything.

Only numpy, onnxruntime, kaldi-native-fbank and soundfile; no speechkit. Greedy CTC.

Usage: python decode_artifact.py asr.onnx utterance.wav   (mono, at the model's sample rate)
"""

import json
import sys

import kaldi_native_fbank as knf
import numpy as np
import onnxruntime as ort
import soundfile as sf


def fbank_options(spec: dict) -> knf.FbankOptions:
    opts = knf.FbankOptions()
    for key, value in spec.items():  # nested frame_opts / mel_opts, as FbankOptions.as_dict()
        if isinstance(value, dict):
            for sub_key, sub_value in value.items():
                setattr(getattr(opts, key), sub_key, sub_value)
        else:
            setattr(opts, key, value)
    return opts


def chunk_windows(num_frames: int, chunk: int, shift: int, subsampling: int) -> list[tuple[int, int]]:
    """Feature windows [start, end) of the encoder calls; a last window needs chunk-shift+subsampling frames."""
    starts = range(0, max(num_frames - (chunk - shift + subsampling) + 1, 0), shift)
    return [(start, min(start + chunk, num_frames)) for start in starts]


def transcribe(model_path: str, wav_path: str) -> str:
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["speechkit.task"] == "asr-ctc-streaming", meta["speechkit.task"]
    tokens = json.loads(meta["tokens"])
    chunk, shift = int(meta["chunk_frames"]), int(meta["shift_frames"])
    states = [np.zeros(shape, np.float32) for shape in json.loads(meta["state_shapes"])]
    audio, rate = sf.read(wav_path, dtype="float32")
    assert audio.ndim == 1 and rate == int(meta["sample_rate"]), (audio.shape, rate)
    fbank = knf.OnlineFbank(fbank_options(json.loads(meta["feature"])))
    fbank.accept_waveform(rate, audio)
    fbank.input_finished()
    feats = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)]).astype(np.float32)
    best = []  # most likely unit per 40 ms frame, over the whole stream
    for start, end in chunk_windows(len(feats), chunk, shift, int(meta["subsampling"])):
        feeds = {"features": feats[None, start:end]}
        feeds.update({f"cache_{i}": state for i, state in enumerate(states)})
        log_probs, *states = session.run(None, feeds)
        best += log_probs[0].argmax(axis=1).tolist()
    ids = [t for i, t in enumerate(best) if t != 0 and (i == 0 or t != best[i - 1])]  # CTC collapse
    pieces = [tokens[i] for i in ids if not (tokens[i].startswith("<") and tokens[i].endswith(">"))]
    return " ".join("".join(pieces).replace("\u2581", " ").split())  # "▁" starts a word


if __name__ == "__main__":
    print(transcribe(sys.argv[1], sys.argv[2]))
