"""A model bundle, checked from end to end before any audio touches it.

`Bundle.load` reads bundle.json, verifies every listed file's size and SHA-256, parses
tokens.txt, opens the three ONNX graphs with ONNX Runtime and checks that their inputs,
outputs and sherpa-onnx metadata agree with bundle.json. Anything wrong is a
`BundleError` that names the file and the disagreement, so a corrupt download or a
mismatched export fails at load time with a sentence, not mid-stream with a shape error.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import onnxruntime as ort

from framegate.engine.errors import BundleError
from framegate.engine.features import SAMPLE_RATE, FbankConfig

SUPPORTED_FORMAT_VERSION = 1
SUPPORTED_MODEL_TYPES = ("lstm_transducer", "convrnnt", "gated_transformer", "sts")
# The graphs of each model type's encoder; every type adds decoder.onnx and joiner.onnx.
ENCODER_FILES = {
    "lstm_transducer": ("encoder.onnx",),
    "convrnnt": ("frontend.onnx", "global_cnn.onnx", "encoder_rest.onnx"),
    "gated_transformer": ("frontend.onnx", "gated_weights.onnx", "encoder_dense.onnx"),
    "sts": ("encoder.onnx",),
}
ONNX_FILES = ("encoder.onnx", "decoder.onnx", "joiner.onnx")  # the baseline's (sherpa-onnx runs these)


def onnx_files(model_type: str) -> tuple[str, ...]:
    return (*ENCODER_FILES[model_type], "decoder.onnx", "joiner.onnx")
BLANK_PIECE = "<blk>"
UNK_PIECE = "<unk>"


@dataclass(frozen=True)
class EncoderSpec:
    """Window geometry and state sizes of the streaming encoder (bundle.json "encoder")."""

    window_frames: int
    chunk_frames: int
    lookahead_frames: int
    subsampling: int
    pad_value: float
    num_layers: int
    d_model: int
    rnn_hidden_size: int
    joiner_dim: int


@dataclass(frozen=True)
class DecoderSpec:
    """The stateless decoder's context and vocabulary (bundle.json "decoder")."""

    context_size: int
    vocab_size: int
    blank_id: int


def _section(manifest: dict, key: str) -> dict:
    value = manifest.get(key)
    if not isinstance(value, dict):
        raise BundleError(f"bundle.json: '{key}' must be an object, found {value!r}")
    return value


def _spec(cls: type, section: dict, where: str):
    """Build a spec dataclass from a bundle.json section, naming any missing or mistyped field."""
    values = {}
    for f in fields(cls):
        if f.name not in section:
            raise BundleError(f"bundle.json: '{where}.{f.name}' is missing")
        value = section[f.name]
        if f.type == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        if not ok:
            raise BundleError(f"bundle.json: '{where}.{f.name}' must be a {f.type}, found {value!r}")
        values[f.name] = value
    return cls(**values)


def _check_encoder_geometry(enc: EncoderSpec) -> None:
    if enc.subsampling != 4:
        raise BundleError(f"bundle.json: encoder.subsampling is {enc.subsampling}; this engine supports 4")
    if enc.chunk_frames < 1 or enc.chunk_frames % enc.subsampling:
        raise BundleError(f"bundle.json: encoder.chunk_frames {enc.chunk_frames} must be a positive "
                          f"multiple of the subsampling {enc.subsampling}")
    if enc.window_frames != enc.chunk_frames + enc.lookahead_frames:
        raise BundleError(f"bundle.json: encoder.window_frames {enc.window_frames} != chunk_frames "
                          f"{enc.chunk_frames} + lookahead_frames {enc.lookahead_frames}")


def _read_tokens(path: Path) -> list[str]:
    """tokens.txt as a list indexed by id; ids must be 0..n-1 in order."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise BundleError(f"{path.name}: not UTF-8 text") from None
    tokens: list[str] = []
    for number, line in enumerate((ln for ln in lines if ln.strip()), start=1):
        piece, _, index = line.rstrip().rpartition(" ")
        if not piece or not index.isdigit() or int(index) != len(tokens):
            raise BundleError(f"{path.name}: line {number} {line!r} is not '<piece> {len(tokens)}'")
        tokens.append(piece)
    return tokens


def _manifest_object(directory: Path, kind: str = "bundle") -> dict:
    """`directory`/bundle.json as a dict; missing, not JSON or not an object is a BundleError.

    `kind` names the directory in the message ("bundle", "embedding bundle")."""
    file = directory / "bundle.json"
    if not file.is_file():
        raise BundleError(f"{kind} '{directory}': bundle.json is missing")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"bundle.json is not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise BundleError("bundle.json must hold a JSON object")
    return manifest


def file_record(path: Path) -> dict[str, int | str]:
    """bundle.json's "files" entry: the engine refuses a file whose size or SHA-256 differs."""
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _verified_file(directory: Path, name: str, record: object, kind: str = "bundle") -> bytes:
    """The bytes of `directory`/`name` once they match bundle.json's `files.name` record (size, SHA-256)."""
    if not isinstance(record, dict) or not {"sha256", "bytes"} <= record.keys():
        raise BundleError(f"bundle.json: files.{name} needs 'sha256' and 'bytes'")
    file_path = directory / name
    if not file_path.is_file():
        raise BundleError(f"{kind} '{directory}': {name} is missing")
    data = file_path.read_bytes()
    if len(data) != record["bytes"]:
        raise BundleError(f"{name}: {len(data)} bytes, bundle.json records {record['bytes']} "
                          f"(truncated or replaced)")
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise BundleError(f"{name}: checksum mismatch (SHA-256 differs from bundle.json); "
                          f"the file is corrupt or was edited")
    return data


def _session(name: str, data: bytes, num_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises several unrelated types for a corrupt graph
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BundleError(f"{name}: ONNX Runtime cannot load it ({first_line})") from None


def _check_io(name: str, kind: str, actual: list, expected: list[tuple[str, list[int | None]]]) -> None:
    """Compare a graph's inputs or outputs (by position) with the dims bundle.json implies.

    None in `expected` marks a dynamic axis (batch, time), which may have any name.
    """
    if len(actual) != len(expected):
        raise BundleError(f"{name}: has {len(actual)} {kind}s, expected {len(expected)} "
                          f"({', '.join(e[0] for e in expected)})")
    for arg, (label, dims) in zip(actual, expected):
        shape = arg.shape
        if len(shape) != len(dims):
            raise BundleError(f"{name}: {kind} '{arg.name}' ({label}) has rank {len(shape)}, expected {len(dims)}")
        for axis, (got, want) in enumerate(zip(shape, dims)):
            if want is not None and got != want:
                raise BundleError(f"{name}: {kind} '{arg.name}' ({label}) has dim {axis} = {got}, "
                                  f"but bundle.json implies {want}")


def _check_metadata(name: str, session: ort.InferenceSession, expected: dict[str, str | int]) -> None:
    found = session.get_modelmeta().custom_metadata_map
    for key, want in expected.items():
        if key not in found:
            raise BundleError(f"{name}: metadata '{key}' is missing (sherpa-onnx needs it)")
        if found[key] != str(want):
            raise BundleError(f"{name}: metadata {key}={found[key]} disagrees with bundle.json ({want})")


class Bundle:
    """A validated bundle: specs from bundle.json, the token table and three ORT sessions.

    Sessions are shared by every stream of a recognizer; they hold no per-stream state.
    """

    def __init__(self, path: Path, features: FbankConfig, encoder: EncoderSpec, decoder: DecoderSpec,
                 tokens: list[str], model_card: dict, sessions: dict[str, ort.InferenceSession],
                 model_type: str = "lstm_transducer", manifest: dict | None = None) -> None:
        self.path = path
        self.model_type = model_type
        self.manifest = dict(manifest or {})  # the whole bundle.json, for model-type specific sections
        self.sessions = sessions
        self.features = features
        self.encoder = encoder
        self.decoder = decoder
        self.tokens = tokens
        self.unk_id = tokens.index(UNK_PIECE) if UNK_PIECE in tokens else None
        self.model_card = model_card
        self.encoder_session = sessions.get("encoder.onnx")  # the LSTM transducer's single encoder graph
        self.decoder_session = sessions["decoder.onnx"]
        self.joiner_session = sessions["joiner.onnx"]

    @classmethod
    def load(cls, path: str | Path, num_threads: int = 1) -> Bundle:
        """Validate the bundle directory at `path` and open its graphs with `num_threads`
        intra-op threads each (inter-op parallelism stays 1: the graphs run one at a time)."""
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
        path = Path(path)
        if not path.is_dir():
            raise BundleError(f"bundle '{path}': no such directory")
        manifest = cls._read_manifest(path)
        features = cls._features(manifest)
        encoder = _spec(EncoderSpec, _section(manifest, "encoder"), "encoder")
        decoder = _spec(DecoderSpec, _section(manifest, "decoder"), "decoder")
        _check_encoder_geometry(encoder)
        model_type = manifest["model_type"]
        cls._check_states(manifest, encoder, model_type)
        contents = cls._verified_files(path, manifest, model_type)
        tokens = _read_tokens(path / "tokens.txt")
        if len(tokens) != decoder.vocab_size:
            raise BundleError(f"tokens.txt has {len(tokens)} tokens but bundle.json's decoder.vocab_size "
                              f"is {decoder.vocab_size}")
        if decoder.blank_id >= len(tokens) or tokens[decoder.blank_id] != BLANK_PIECE:
            raise BundleError(f"tokens.txt: id {decoder.blank_id} (decoder.blank_id) must be {BLANK_PIECE}")
        sessions = {name: _session(name, contents[name], num_threads) for name in onnx_files(model_type)}
        _ENCODER_CHECKS[model_type](sessions, features, encoder, manifest)
        cls._check_graphs(sessions, features, encoder, decoder)
        model_card = manifest.get("model_card", {})
        if not isinstance(model_card, dict):
            raise BundleError(f"bundle.json: 'model_card' must be an object, found {model_card!r}")
        return cls(path, features, encoder, decoder, tokens, model_card, sessions, model_type, manifest)

    @staticmethod
    def _read_manifest(path: Path) -> dict:
        manifest = _manifest_object(path)
        version = manifest.get("format_version")
        if version is None:
            raise BundleError(f"bundle.json has no format_version; this engine supports version "
                              f"{SUPPORTED_FORMAT_VERSION}")
        if version != SUPPORTED_FORMAT_VERSION:
            raise BundleError(f"bundle.json has format_version {version!r}; this engine supports version "
                              f"{SUPPORTED_FORMAT_VERSION}")
        model_type = manifest.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise BundleError(f"bundle.json: unknown model_type {model_type!r} (supported: "
                              f"{', '.join(SUPPORTED_MODEL_TYPES)})")
        if manifest.get("sample_rate") != SAMPLE_RATE:
            raise BundleError(f"bundle.json: sample_rate {manifest.get('sample_rate')!r}; the engine's "
                              f"features run at {SAMPLE_RATE}")
        return manifest

    @staticmethod
    def _features(manifest: dict) -> FbankConfig:
        section = _section(manifest, "features")
        try:
            config = FbankConfig(**section)
        except TypeError as e:
            raise BundleError(f"bundle.json: 'features' does not describe an FbankConfig ({e})") from None
        try:
            config.validate()
        except ValueError as e:
            raise BundleError(f"bundle.json: features: {e}") from None
        return config

    @staticmethod
    def _check_states(manifest: dict, enc: EncoderSpec, model_type: str) -> None:
        expected = [{"name": "h", "shape": [enc.num_layers, 1, enc.d_model]},
                    {"name": "c", "shape": [enc.num_layers, 1, enc.rnn_hidden_size]}]
        if model_type == "convrnnt":
            section = _section(manifest, "encoder")
            cache = [section.get("local_layers"), 1, section.get("local_cache_frames"), section.get("local_channels")]
            expected.insert(0, {"name": "local_cache", "shape": cache})
        if model_type == "gated_transformer":
            expected = _gated_states(_section(manifest, "encoder"), _section(manifest, "gating"))
        if model_type == "sts":
            expected = _sts_states(_section(manifest, "encoder"), enc)
        if manifest.get("states") != expected:
            raise BundleError(f"bundle.json: 'states' is {manifest.get('states')!r}, but the encoder "
                              f"section implies {expected}")

    @staticmethod
    def _verified_files(path: Path, manifest: dict, model_type: str) -> dict[str, bytes]:
        """Every listed file's bytes, after checking presence, size and SHA-256."""
        records = _section(manifest, "files")
        for name in (*onnx_files(model_type), "tokens.txt"):
            if name not in records:
                raise BundleError(f"bundle.json: 'files' does not list {name}")
        return {name: _verified_file(path, name, record) for name, record in records.items()}

    @staticmethod
    def _check_graphs(sessions: dict[str, ort.InferenceSession], features: FbankConfig,
                      enc: EncoderSpec, dec: DecoderSpec) -> None:
        decoder = sessions["decoder.onnx"]
        _check_io("decoder.onnx", "input", decoder.get_inputs(), [("y", [None, dec.context_size])])
        if decoder.get_inputs()[0].type != "tensor(int64)":
            raise BundleError(f"decoder.onnx: input y is {decoder.get_inputs()[0].type}, expected tensor(int64)")
        _check_io("decoder.onnx", "output", decoder.get_outputs(), [("decoder_out", [None, enc.joiner_dim])])
        _check_metadata("decoder.onnx", decoder, {"vocab_size": dec.vocab_size, "context_size": dec.context_size})
        joiner = sessions["joiner.onnx"]
        _check_io("joiner.onnx", "input", joiner.get_inputs(),
                  [("encoder_out", [None, enc.joiner_dim]), ("decoder_out", [None, enc.joiner_dim])])
        _check_io("joiner.onnx", "output", joiner.get_outputs(), [("logits", [None, dec.vocab_size])])


def _check_lstm_encoder(sessions: dict[str, ort.InferenceSession], features: FbankConfig, enc: EncoderSpec,
                        manifest: dict) -> None:
    encoder = sessions["encoder.onnx"]
    h_dims = [enc.num_layers, None, enc.d_model]
    c_dims = [enc.num_layers, None, enc.rnn_hidden_size]
    _check_io("encoder.onnx", "input", encoder.get_inputs(),
              [("x", [None, None, features.num_bins]), ("h", h_dims), ("c", c_dims)])
    _check_io("encoder.onnx", "output", encoder.get_outputs(),
              [("encoder_out", [None, None, enc.joiner_dim]), ("new_h", h_dims), ("new_c", c_dims)])
    _check_metadata("encoder.onnx", encoder,
                    {"model_type": "lstm", "num_encoder_layers": enc.num_layers, "T": enc.window_frames,
                     "decode_chunk_len": enc.chunk_frames, "d_model": enc.d_model,
                     "rnn_hidden_size": enc.rnn_hidden_size})


def _check_convrnnt_encoder(sessions: dict[str, ort.InferenceSession], features: FbankConfig, enc: EncoderSpec,
                            manifest: dict) -> None:
    """frontend.onnx -> (C++ global CNN) -> encoder_rest.onnx; global_cnn.onnx holds the kernel's
    weights as outputs named and shaped as bundle.json's global_cnn.tensors list them."""
    section = _section(manifest, "encoder")
    sizes = {}
    for key in ("local_channels", "local_width", "local_layers", "local_cache_frames", "global_channels"):
        value = section.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BundleError(f"bundle.json: 'encoder.{key}' must be a positive int, found {value!r}")
        sizes[key] = value
    cache_dims = [sizes["local_layers"], None, sizes["local_cache_frames"], sizes["local_channels"]]
    frontend = sessions["frontend.onnx"]
    _check_io("frontend.onnx", "input", frontend.get_inputs(),
              [("x", [None, None, features.num_bins]), ("local_cache", cache_dims)])
    _check_io("frontend.onnx", "output", frontend.get_outputs(),
              [("local", [None, None, sizes["local_width"]]), ("global_in", [None, None, sizes["global_channels"]]),
               ("new_local_cache", cache_dims)])
    rest = sessions["encoder_rest.onnx"]
    h_dims = [enc.num_layers, None, enc.d_model]
    c_dims = [enc.num_layers, None, enc.rnn_hidden_size]
    _check_io("encoder_rest.onnx", "input", rest.get_inputs(),
              [("local", [None, None, sizes["local_width"]]),
               ("global_out", [None, None, sizes["global_channels"]]), ("h", h_dims), ("c", c_dims)])
    _check_io("encoder_rest.onnx", "output", rest.get_outputs(),
              [("encoder_out", [None, None, enc.joiner_dim]), ("new_h", h_dims), ("new_c", c_dims)])
    gcnn = _section(manifest, "global_cnn")
    if gcnn.get("channels") != sizes["global_channels"]:
        raise BundleError(f"bundle.json: global_cnn.channels {gcnn.get('channels')!r} != encoder.global_channels "
                          f"{sizes['global_channels']}")
    records = gcnn.get("tensors")
    if not isinstance(records, list) or not all(isinstance(r, dict) and {"name", "shape"} <= r.keys()
                                                for r in records):
        raise BundleError("bundle.json: global_cnn.tensors must list objects with 'name' and 'shape'")
    outputs = {o.name: o.shape for o in sessions["global_cnn.onnx"].get_outputs()}
    for record in records:
        if record["name"] not in outputs:
            raise BundleError(f"global_cnn.onnx: has no tensor '{record['name']}' that bundle.json lists")
        if list(outputs[record["name"]]) != list(record["shape"]):
            raise BundleError(f"global_cnn.onnx: tensor '{record['name']}' has shape {outputs[record['name']]}, "
                              f"bundle.json records {record['shape']}")


GATING_RULES = ("full-skip",)
GATED_ARBITRATORS = ("none", "feature", "block")


def _gated_states(encoder: dict, gating: dict) -> list[dict]:
    """The C++ state of a gated encoder: per layer a key/value ring, the arbitrator's history."""
    ring = [encoder.get("num_layers"), 2, _plus(encoder.get("left_context"), encoder.get("max_rows")),
            encoder.get("d_model")]
    kernel = gating.get("arbitrator_kernel")
    return [{"name": "key_value_ring", "shape": ring},
            {"name": "arbitrator_history", "shape": [kernel - 1 if isinstance(kernel, int) else None,
                                                     encoder.get("d_model")]}]


def _plus(a, b):
    return a + b if isinstance(a, int) and isinstance(b, int) else None


def _check_gated_encoder(sessions: dict[str, ort.InferenceSession], features: FbankConfig, enc: EncoderSpec,
                         manifest: dict) -> None:
    """frontend.onnx -> (C++ gated blocks) ; gated_weights.onnx holds the kernel's weights as outputs
    named and shaped as bundle.json's gating.tensors list them; encoder_dense.onnx is the dense
    streaming encoder ONNX Runtime runs as a reference."""
    section = _section(manifest, "encoder")
    sizes = {}
    for key in ("num_heads", "ff_dim", "left_context", "max_rows"):
        value = section.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "left_context" else 1):
            raise BundleError(f"bundle.json: 'encoder.{key}' must be a non-negative int, found {value!r}")
        sizes[key] = value
    gating = _section(manifest, "gating")
    if gating.get("rule") not in GATING_RULES:
        raise BundleError(f"bundle.json: gating.rule {gating.get('rule')!r}; this engine runs {GATING_RULES}")
    if gating.get("arbitrator") not in GATED_ARBITRATORS:
        raise BundleError(f"bundle.json: gating.arbitrator {gating.get('arbitrator')!r} is not one of "
                          f"{GATED_ARBITRATORS}")
    for key in ("arbitrator_kernel", "arbitrator_hidden", "mac_denominator_per_frame"):
        value = gating.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BundleError(f"bundle.json: 'gating.{key}' must be a positive int, found {value!r}")
    threshold = gating.get("default_threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise BundleError(f"bundle.json: gating.default_threshold must be in [0, 1], found {threshold!r}")
    _check_io("frontend.onnx", "input", sessions["frontend.onnx"].get_inputs(), [("x", [None, None, features.num_bins])])
    _check_io("frontend.onnx", "output", sessions["frontend.onnx"].get_outputs(), [("frames", [None, None, enc.d_model])])
    cache = [enc.num_layers, None, sizes["left_context"], enc.d_model]
    mask = [None, sizes["left_context"]]
    dense = sessions["encoder_dense.onnx"]
    _check_io("encoder_dense.onnx", "input", dense.get_inputs(),
              [("x", [None, enc.window_frames, features.num_bins]), ("k_cache", cache), ("v_cache", cache),
               ("cache_mask", mask)])
    _check_io("encoder_dense.onnx", "output", dense.get_outputs(),
              [("encoder_out", [None, enc.chunk_frames // enc.subsampling, enc.joiner_dim]), ("new_k", cache),
               ("new_v", cache), ("new_mask", mask)])
    records = gating.get("tensors")
    if not isinstance(records, list) or not all(isinstance(r, dict) and {"name", "shape"} <= r.keys()
                                                for r in records):
        raise BundleError("bundle.json: gating.tensors must list objects with 'name' and 'shape'")
    outputs = {o.name: o.shape for o in sessions["gated_weights.onnx"].get_outputs()}
    for record in records:
        if record["name"] not in outputs:
            raise BundleError(f"gated_weights.onnx: has no tensor '{record['name']}' that bundle.json lists")
        if list(outputs[record["name"]]) != list(record["shape"]):
            raise BundleError(f"gated_weights.onnx: tensor '{record['name']}' has shape {outputs[record['name']]}, "
                              f"bundle.json records {record['shape']}")


STS_CHANNELS = 2


def _sts_states(section: dict, enc: EncoderSpec) -> list[dict]:
    """Mixture-encoder LSTM state (batch 1) and recognition-encoder state (one row per channel)."""
    lm, lr = section.get("mix_layers"), section.get("rec_layers")
    return [{"name": "mix_h", "shape": [lm, 1, enc.d_model]}, {"name": "mix_c", "shape": [lm, 1, enc.rnn_hidden_size]},
            {"name": "rec_h", "shape": [lr, STS_CHANNELS, enc.d_model]},
            {"name": "rec_c", "shape": [lr, STS_CHANNELS, enc.rnn_hidden_size]}]


def _check_sts_encoder(sessions: dict[str, ort.InferenceSession], features: FbankConfig, enc: EncoderSpec,
                       manifest: dict) -> None:
    """encoder.onnx: (x, mix_h, mix_c, rec_h, rec_c) -> (encoder_out with one row per channel, new states);
    the "sts" section names two channels and the turn pieces."""
    section = _section(manifest, "encoder")
    for key in ("mix_layers", "rec_layers"):
        value = section.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BundleError(f"bundle.json: 'encoder.{key}' must be a positive int, found {value!r}")
    if section["mix_layers"] + section["rec_layers"] != enc.num_layers:
        raise BundleError(f"bundle.json: encoder.num_layers {enc.num_layers} != mix_layers + rec_layers")
    sts = _section(manifest, "sts")
    if sts.get("channels") != STS_CHANNELS:
        raise BundleError(f"bundle.json: sts.channels is {sts.get('channels')!r}; this engine decodes {STS_CHANNELS}")
    for key in ("sot_piece", "eot_piece"):
        if not isinstance(sts.get(key), str) or not sts[key]:
            raise BundleError(f"bundle.json: 'sts.{key}' must name a token piece, found {sts.get(key)!r}")
    states = [(s["name"], s["shape"]) for s in _sts_states(section, enc)]
    _check_io("encoder.onnx", "input", sessions["encoder.onnx"].get_inputs(),
              [("x", [None, None, features.num_bins]), *states])
    _check_io("encoder.onnx", "output", sessions["encoder.onnx"].get_outputs(),
              [("encoder_out", [None, None, enc.joiner_dim]), *[(f"new_{n}", shape) for n, shape in states]])
    _check_metadata("encoder.onnx", sessions["encoder.onnx"], {"model_type": "sts", "channels": STS_CHANNELS})


_ENCODER_CHECKS = {"lstm_transducer": _check_lstm_encoder, "convrnnt": _check_convrnnt_encoder,
                   "gated_transformer": _check_gated_encoder, "sts": _check_sts_encoder}
