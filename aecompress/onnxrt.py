"""The transforms on ONNX Runtime: a start-up of a fraction of a second, where torch takes one or two.

``OnnxTransforms`` builds the model's analysis, synthesis and hyper-analysis as ONNX
graphs from its weights and runs them with ONNX Runtime.  The graphs are written here
in ONNX's protobuf encoding (a few message types, ``_Proto``), so neither torch nor the
``onnx`` package is needed.  Two rewrites keep the arithmetic fast and equal to torch's
to within float32 rounding:

- each 5×5 stride-2 transposed convolution of the synthesis becomes a 3×3 convolution
  producing the four output phases, then DepthToSpace (ONNX Runtime's ConvTranspose
  took 1.4× as long on CPU);
- GDN's γ entries below ``GAMMA_FLOOR`` are zero in the graphs: trained γ reaches
  subnormals, and with them the synthesis took 7× as long.  Subnormal results are also
  flushed to zero (``session.set_denormal_as_zero``), as the command line does for torch,
  but ONNX Runtime sets that mode once per process, on the thread that builds the first
  InferenceSession (and on its own pool threads), where it would stay set (numpy and
  every library in the process would then lose subnormals).  So the graphs are built and
  run on a thread of their own; the floor keeps a second model in the same process as
  fast as the first (3–4× slower without it).

Pixels then match the torch engine's to within one level (the promise across machines,
docs/FORMAT.md); the symbols a file decodes to never depend on the engine.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from .cpu import usable_cores
from .entropy import write_varint

if TYPE_CHECKING:
    from .modelfile import LoadedModel

OPSET = 17
IR_VERSION = 8  # readable by every ONNX Runtime since 1.10
FLOAT = 1  # TensorProto.FLOAT, TypeProto.Tensor.elem_type
# GDN's γ entries below this are zero in the graphs.  Trained γ has many entries far below it
# (down to subnormals, where x86 multiplies ~100× slower): next to β ≥ 1e-6 and with |x| < 2^20,
# such a term is under 2^-24 of the sum, so dropping them leaves float32 results as they were.
GAMMA_FLOOR = 1e-20
_INT, _STRING, _INTS = 2, 3, 7  # AttributeProto.type


def available() -> bool:
    """Whether ONNX Runtime can be imported here."""
    try:
        import onnxruntime  # noqa: F401
    except Exception:  # not installed, or a broken install: the torch engine serves
        return False
    return True


class _Proto:
    """Protobuf wire format, just what ONNX's messages need: varints, strings, nested messages."""

    @staticmethod
    def varint(value: int) -> bytes:
        """Protobuf's varint is unsigned LEB128; a negative int64 is ten bytes of two's complement."""
        return write_varint(value & ((1 << 64) - 1))

    @classmethod
    def field(cls, number: int, value: int | str | bytes) -> bytes:
        """One field: an integer (varint) or a string, bytes or nested message (length-delimited)."""
        if isinstance(value, int):
            return cls.varint(number << 3) + cls.varint(value)
        data = value.encode() if isinstance(value, str) else value
        return cls.varint(number << 3 | 2) + cls.varint(len(data)) + data

    @classmethod
    def fields(cls, *pairs: tuple[int, int | str | bytes]) -> bytes:
        return b"".join(cls.field(n, v) for n, v in pairs)


def _attribute(name: str, value: int | str | list[int]) -> bytes:
    if isinstance(value, int):
        return _Proto.fields((1, name), (20, _INT), (3, value))
    if isinstance(value, str):
        return _Proto.fields((1, name), (20, _STRING), (4, value.encode()))
    return _Proto.fields((1, name), (20, _INTS), *((8, v) for v in value))


def _node(op: str, inputs: list[str], outputs: list[str], **attributes: int | str | list[int]) -> bytes:
    fields = [*((1, i) for i in inputs), *((2, o) for o in outputs), (4, op)]
    fields += [(5, _attribute(k, v)) for k, v in attributes.items()]
    return _Proto.fields(*fields)


def _tensor(name: str, array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, "<f4")
    return _Proto.fields(*((1, d) for d in array.shape), (2, FLOAT), (8, name), (9, array.tobytes()))


def _value_info(name: str, channels: int) -> bytes:
    """A float tensor (1, channels, H, W) with H and W free."""
    dims = [_Proto.fields((1, 1)), _Proto.fields((1, channels)), _Proto.fields((2, "H")), _Proto.fields((2, "W"))]
    shape = _Proto.fields(*((1, d) for d in dims))
    tensor_type = _Proto.fields((1, FLOAT), (2, shape))
    return _Proto.fields((1, name), (2, _Proto.fields((1, tensor_type))))


class _Graph:
    """Nodes and initializers of one graph, added layer by layer; ``model`` serializes it."""

    def __init__(self, weights: dict[str, np.ndarray], channels_in: int) -> None:
        self.weights = weights
        self.nodes: list[bytes] = []
        self.initializers: list[bytes] = []
        self.channels_in = channels_in
        self.last = "x"
        self.count = 0

    def _name(self) -> str:
        self.count += 1
        return f"t{self.count}"

    def constant(self, array: np.ndarray) -> str:
        name = self._name()
        self.initializers.append(_tensor(name, array))
        return name

    def add(self, op: str, *inputs: str, **attributes: int | str | list[int]) -> str:
        out = self._name()
        self.nodes.append(_node(op, [self.last, *inputs], [out], **attributes))
        self.last = out
        return out

    def conv(self, prefix: str, stride: int) -> None:
        w, b = self.weights[f"{prefix}.weight"], self.weights[f"{prefix}.bias"]
        k = w.shape[-1]
        self.add("Conv", self.constant(w), self.constant(b), kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)

    def deconv(self, prefix: str) -> None:
        """A 5×5 stride-2 transposed convolution (padding 2, output padding 1) as four phases of a 3×3 one."""
        w, b = self.weights[f"{prefix}.weight"], self.weights[f"{prefix}.bias"]
        self.add("Conv", self.constant(_phase_weights(w)), self.constant(np.repeat(b, 4)), kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        self.add("DepthToSpace", blocksize=2, mode="CRD")

    def gdn(self, prefix: str, inverse: bool) -> None:
        """x / (β + γ·|x|), or x · (β + γ·|x|): ``model.GDN`` with its β and γ computed as torch does, in float32."""
        beta = np.square(self.weights[f"{prefix}.beta_raw"]) + np.float32(1e-6)
        gamma = np.square(self.weights[f"{prefix}.gamma_raw"])[:, :, None, None]
        gamma[gamma < GAMMA_FLOOR] = 0  # see GAMMA_FLOOR
        x = self.last
        self.add("Abs")
        norm = self.add("Conv", self.constant(gamma), self.constant(beta), kernel_shape=[1, 1])
        self.nodes.append(_node("Mul" if inverse else "Div", [x, norm], [out := self._name()]))
        self.last = out

    def model(self, name: str, channels_out: int) -> bytes:
        graph = _Proto.fields(
            *((1, n) for n in self.nodes),
            (2, name),
            *((5, t) for t in self.initializers),
            (11, _value_info("x", self.channels_in)),
            (12, _value_info(self.last, channels_out)),
        )
        opset = _Proto.fields((1, ""), (2, OPSET))
        return _Proto.fields((1, IR_VERSION), (2, "aecompress"), (7, graph), (8, opset))


def _phase_weights(w: np.ndarray) -> np.ndarray:
    """(Cin, Cout, 5, 5) transposed-convolution weights → (4·Cout, Cin, 3, 3): output phase (a, b) at channel 4c + 2a + b.

    Output row 2i + a takes input rows i + d (d = −1, 0, 1) through tap a + 2 − 2d.
    """
    cin, cout = w.shape[:2]
    out = np.zeros((cout, 2, 2, cin, 3, 3), np.float32)
    for a in range(2):
        for dy in range(3):
            k = a + 4 - 2 * dy
            for b in range(2):
                for dx in range(3):
                    m = b + 4 - 2 * dx
                    if 0 <= k < 5 and 0 <= m < 5:
                        out[:, a, b, :, dy, dx] = w[:, :, k, m].T
    return out.reshape(4 * cout, cin, 3, 3)


def analysis_graph(weights: dict[str, np.ndarray], N: int, M: int) -> bytes:
    g = _Graph(weights, 3)
    for i in range(7):
        g.conv(f"g_a.{i}", 2) if i % 2 == 0 else g.gdn(f"g_a.{i}", inverse=False)
    return g.model("analysis", M)


def synthesis_graph(weights: dict[str, np.ndarray], N: int, M: int) -> bytes:
    g = _Graph(weights, M)
    for i in range(7):
        g.deconv(f"g_s.{i}") if i % 2 == 0 else g.gdn(f"g_s.{i}", inverse=True)
    return g.model("synthesis", 3)


def hyper_analysis_graph(weights: dict[str, np.ndarray], M: int, Nz: int) -> bytes:
    g = _Graph(weights, M)
    g.conv("h_a.0", 1)
    g.add("Relu")
    g.conv("h_a.2", 2)
    g.add("Relu")
    g.conv("h_a.4", 2)
    return g.model("hyper_analysis", Nz)


_arena_lock = threading.Lock()
_arena_shared = False


def _share_one_arena(onnxruntime) -> None:
    """Register, once per process, the CPU arena that InferenceSessions with ``use_env_allocators`` share."""
    global _arena_shared
    with _arena_lock:
        if not _arena_shared:
            memory = onnxruntime.OrtMemoryInfo("Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, onnxruntime.OrtMemType.DEFAULT)
            onnxruntime.create_and_register_allocator(memory, onnxruntime.OrtArenaCfg(0, -1, -1, -1))
            _arena_shared = True


class OnnxTransforms:
    """The model's transforms on ONNX Runtime (float32), each graph built and loaded on first use."""

    def __init__(self, model: LoadedModel, threads: int | None = None) -> None:
        self.model = model
        self.threads = threads
        self._sessions: dict[str, object] = {}
        self._runner: ThreadPoolExecutor | None = None  # the one thread that builds and runs the graphs (started on first use)

    def _session(self, name: str):
        if name not in self._sessions:
            import onnxruntime

            from .modelfile import ModelFileError

            preset, weights = self.model.preset, self.model.weights
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads or usable_cores()
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.set_denormal_as_zero", "1")
            options.log_severity_level = 3
            # Threads that spin between runs took the cores numpy needs for the coding: 12 Kodak encodes 4.9 → 4.1 s.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            # Planned memory per input shape grew to 720 MB over a 24 MP photo's tiles (several shapes);
            # without it 470 MB, and 10% faster.
            options.enable_mem_pattern = False
            # One arena for all the graphs: a 24 MP encode peaked at 820 MB with an arena per graph, 490 MB so.
            options.add_session_config_entry("session.use_env_allocators", "1")
            _share_one_arena(onnxruntime)
            try:
                graph = {
                    "analysis": lambda: analysis_graph(weights, preset.N, preset.M),
                    "synthesis": lambda: synthesis_graph(weights, preset.N, preset.M),
                    "hyper_analysis": lambda: hyper_analysis_graph(weights, preset.M, preset.Nz),
                }[name]()
                self._sessions[name] = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
            except (KeyError, ValueError, RuntimeError) as exc:  # weights that do not fit the architecture
                raise ModelFileError(f"{self.model.path}: model file is inconsistent ({str(exc).splitlines()[0][:120]})") from None
        return self._sessions[name]

    def _start(self) -> ThreadPoolExecutor:
        if self._runner is None:
            self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aecompress-onnx")
        return self._runner

    def _run(self, name: str, x: np.ndarray) -> np.ndarray:
        return self._start().submit(self._run_here, name, np.ascontiguousarray(x, np.float32)).result()

    def _run_here(self, name: str, x: np.ndarray, options=None) -> np.ndarray:
        """On the runner thread: InferenceSessions are made and run there (the flush-to-zero mode stays with that thread)."""
        return self._session(name).run(None, {"x": x}, options)[0]

    def release(self) -> None:
        """Hand the arena's free memory back to the system: a tiny run that shrinks the arena when it ends."""
        import onnxruntime

        if not self._sessions:
            return
        options = onnxruntime.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        name = next(iter(self._sessions))  # one already built: the arena is shared
        M = self.model.preset.M
        tiny = {"analysis": (1, 3, 16, 16), "synthesis": (1, M, 1, 1), "hyper_analysis": (1, M, 4, 4)}[name]
        self._start().submit(self._run_here, name, np.zeros(tiny, np.float32), options).result()

    def analysis(self, x: np.ndarray) -> np.ndarray:
        return self._run("analysis", x)

    def synthesis(self, y: np.ndarray) -> np.ndarray:
        return self._run("synthesis", y)

    def hyper_analysis(self, y: np.ndarray) -> np.ndarray:
        return self._run("hyper_analysis", y)
