"""edgeconv's board agent: the one program edgeconv runs on a board (docs/boards.md).

SELF-CONTAINED: this file is shipped over the SSH channel and run by the board's Python with no edgeconv installed
there. It imports only the standard library (numpy once arrays or a model are involved) and is written for
Python >= 3.8. The host imports it too, for the array codec (``pack_arrays`` / ``unpack_arrays``): importing it
has no side effect; ``main()`` runs only on the board.

How it starts (``edgeconv.places.ssh``): the host runs one fixed command line, ``PYTHON -c BOOTSTRAP``, and
writes ``<length>\\n`` + this file (zlib-compressed) to its standard input; the bootstrap execs it and calls
``main()``. Everything variable (cache folder, file names, options, arrays) then travels as data over
stdin/stdout, never on a command line.

Protocol (one request, one reply, in order): a message is one JSON line (the header), followed by
``header["size"]`` bytes of payload. Arrays travel as raw bytes: the header lists ``{"name", "dtype", "shape",
"nbytes"}`` per array (numpy dtype strings such as ``"<f4"``; object dtypes are refused) and the payload is
their bytes back to back. A reply is ``{"ok": true, ...}`` or ``{"ok": false, "kind": K, "error": TEXT}`` with K
one of ``missing`` (a module the board lacks), ``load`` (the runtime refused the model), ``run`` (the runtime
failed on inputs), ``busy`` (another run holds the board), ``bad`` (a malformed request).

Operations: ``hello`` (facts; with ``lock``, take the board: one run at a time), ``probe`` (what ``edgeconv
boards check`` shows), ``have`` (which blobs the cache lacks), ``put`` (a blob, checked against its sha256),
``load`` (the runner's board half + the artifact, from the cache), ``infer``, ``time`` (the timing loop runs
here), ``rss``, ``quit``.

The board cache (``~/.cache/edgeconv-board`` unless the board's entry says otherwise)::

    lock              flock(2) held by the running agent for its whole life: released by the kernel when the
                      process ends, whatever the way (a killed agent never leaves a stale lock)
    blobs/<sha256>    artifacts and board halves, content-addressed: a second run sends nothing
    runs/<pid>/       the run's scratch: links named like the artifact's files; removed when the agent ends,
                      when the host disconnects (standard input reaches EOF: Ctrl-C or a dead host), on SIGTERM,
                      SIGHUP, and by the next agent that takes the lock
"""

# ruff: noqa: UP004, UP031, UP036, B905  (runs on the board's Python >= 3.8: no f-string-only idioms, no zip(strict=))

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time

PROTOCOL = 1
MAX_HEADER = 1 << 20
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
PART_RE = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,127}$")
RUNTIMES = (  # (module, distributions whose metadata gives the version, title)
    ("onnxruntime", ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-qnn"), "ONNX Runtime"),
    ("ai_edge_litert", ("ai-edge-litert",), "LiteRT"),
    ("tflite_runtime", ("tflite-runtime",), "TFLite runtime"),
    ("openvino", ("openvino",), "OpenVINO"),
    ("tensorrt", ("tensorrt",), "TensorRT"),
    ("rknnlite", ("rknn-toolkit-lite2",), "RKNN Toolkit Lite2"),
    ("acl", (), "Ascend pyACL (CANN)"),
    ("ais_bench", ("ais_bench", "aclruntime"), "Ascend ais_bench"),
    ("sophon", ("sophon", "sophon-arm"), "Sophon SAIL"),
)
DEVICES = (  # (path, what it shows): device nodes the vendors' drivers create
    ("/dev/rknpu", "Rockchip NPU (rknpu driver)"),
    ("/sys/class/devfreq/fdab0000.npu", "Rockchip RK3588 NPU"),
    ("/etc/nv_tegra_release", "NVIDIA Jetson (L4T)"),
    ("/dev/nvhost-ctrl-gpu", "NVIDIA Jetson GPU"),
    ("/proc/driver/nvidia/version", "NVIDIA GPU driver"),
    ("/dev/davinci0", "Huawei Ascend NPU (davinci0)"),
    ("/dev/bm-sophon0", "Sophgo Sophon TPU (bm-sophon0)"),
    ("/dev/bmdev-ctl", "Sophgo Sophon driver"),
    ("/dev/hailo0", "Hailo NPU"),
    ("/dev/accel/accel0", "compute accelerator (/dev/accel)"),
)


class AgentError(Exception):
    def __init__(self, kind, text):
        Exception.__init__(self, text)
        self.kind = kind


# -- arrays on the wire (the host uses these too) ----------------------------------------------------------------
def pack_arrays(arrays):
    """``{name: array}`` -> (specs, payload bytes)."""
    import numpy as np

    specs, chunks = [], []
    for name, value in arrays.items():
        a = np.ascontiguousarray(value)
        if a.dtype.hasobject:
            raise AgentError("bad", "array %r has dtype object, which cannot be sent" % (name,))
        specs.append({"name": str(name), "dtype": a.dtype.str, "shape": list(a.shape), "nbytes": int(a.nbytes)})
        chunks.append(a.tobytes())
    return specs, b"".join(chunks)


def unpack_arrays(specs, payload):
    """The inverse of ``pack_arrays``; checks every size against the payload."""
    import numpy as np

    out, offset = {}, 0
    for s in specs:
        dtype = np.dtype(str(s["dtype"]))
        shape = tuple(int(d) for d in s["shape"])
        if dtype.hasobject or any(d < 0 for d in shape):
            raise AgentError("bad", "array %r: dtype or shape not allowed" % (s.get("name"),))
        count = 1
        for d in shape:
            count *= d
        nbytes = count * dtype.itemsize
        if nbytes != int(s["nbytes"]) or offset + nbytes > len(payload):
            raise AgentError("bad", "array %r: size does not match the payload" % (s.get("name"),))
        out[str(s["name"])] = np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape)
        offset += nbytes
    if offset != len(payload):
        raise AgentError("bad", "payload has %d bytes the array list does not account for" % (len(payload) - offset))
    return out


# -- facts about this machine -----------------------------------------------------------------------------------
def rss():
    """``peak_rss_bytes`` (VmHWM) and ``rss_bytes`` (VmRSS) of this process."""
    fields = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    fields[key] = int(rest.split()[0]) * 1024
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        fields = {"VmHWM": peak, "VmRSS": peak}
    return {"peak_rss_bytes": fields.get("VmHWM"), "rss_bytes": fields.get("VmRSS")}


def _read(path, limit=4096):
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return None


def _dist_version(names):
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def runtimes():
    """The vendor runtimes this Python can import (found without importing them), with versions."""
    import importlib.util

    found = {}
    for module, dists, title in RUNTIMES:
        try:
            present = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            present = False
        if present:
            found[module] = {"title": title, "version": _dist_version(dists) or "unknown"}
    return found


def probe():
    import platform

    facts = {"python": platform.python_version(), "executable": sys.executable, "pid": os.getpid(),
             "machine": platform.machine(), "kernel": platform.release(), "cpus": os.cpu_count(),
             "numpy": _dist_version(("numpy",)), "runtimes": runtimes()}
    release = _read("/etc/os-release") or ""
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', release, re.M)
    facts["os"] = m.group(1) if m else platform.platform()
    facts["board_model"] = _read("/proc/device-tree/model")
    cpuinfo = _read("/proc/cpuinfo", 1 << 16) or ""
    m = re.search(r"^(?:model name|Hardware|Model|cpu model)\s*:\s*(.+)$", cpuinfo, re.M)
    facts["cpu"] = m.group(1).strip() if m else platform.processor() or None
    meminfo = _read("/proc/meminfo") or ""
    m = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)
    facts["memory_bytes"] = int(m.group(1)) * 1024 if m else None
    facts["accelerators"] = [what for path, what in DEVICES if os.path.exists(path)]
    return facts


# -- the agent --------------------------------------------------------------------------------------------------
class Agent:
    def __init__(self, inp, out):
        import queue

        self.inp, self.out = inp, out
        self.queue = queue.Queue()
        self.cache = None
        self.run_dir = None
        self.lock_file = None
        self.session = None
        self.baseline = None
        self.write_lock = threading.Lock()
        self.cleaned = False
        self.cleanup_lock = threading.RLock()

    # I/O
    def reply(self, header, payload=b""):
        header = dict(header)
        header.setdefault("ok", True)
        header["size"] = len(payload)
        data = json.dumps(header, separators=(",", ":")).encode("utf-8") + b"\n"
        with self.write_lock:  # one write: a reply split in two writes costs a round of scheduling on the way
            self.out.write(data + bytes(payload) if payload else data)
            self.out.flush()

    def read_exact(self, n):
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = self.inp.readinto(view[got:])
            if not k:
                raise EOFError
            got += k
        return buf

    def reader(self):
        """Reads requests for the main thread; at EOF (the host is gone) cleans up and ends the process at once,
        even while the main thread is inside the runtime."""
        try:
            while True:
                line = self.inp.readline(MAX_HEADER)
                if not line:
                    break
                header = json.loads(line.decode("utf-8"))
                size = int(header.get("size", 0))
                if header.get("op") == "put":
                    payload = self.receive_blob(header, size)
                else:
                    payload = self.read_exact(size) if size else bytearray()
                self.queue.put((header, payload))
        except Exception as exc:  # a broken stream: report on stderr, then end like EOF
            sys.stderr.write("edgeconv agent: input stream broken: %s\n" % (exc,))
        self.cleanup()
        os._exit(0)

    def receive_blob(self, header, size):
        """Stream a blob into the cache (hashing as it comes), then rename it to its checked sha256."""
        sha = str(header.get("sha256", ""))
        if self.cache is None or not SHA_RE.match(sha):
            self.read_exact(size)  # keep the stream in step
            return AgentError("bad", "put before hello, or not a sha256: %r" % (sha,))
        tmp = os.path.join(self.cache, "blobs", ".part-%d" % os.getpid())
        digest, left = hashlib.sha256(), size
        with open(tmp, "wb") as f:
            while left:
                chunk = self.inp.read(min(left, 1 << 20))
                if not chunk:
                    raise EOFError
                digest.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        if digest.hexdigest() != sha:
            os.unlink(tmp)
            return AgentError("bad", "blob %s arrived with another sha256 (%s)" % (sha, digest.hexdigest()))
        os.replace(tmp, os.path.join(self.cache, "blobs", sha))
        return None

    def serve(self):
        threading.Thread(target=self.reader, name="edgeconv-agent-reader", daemon=True).start()
        while True:
            header, payload = self.queue.get()
            op = header.get("op")
            reply, data = self.handle(op, header, payload)
            self.reply(reply, data)  # a host gone raises here (broken pipe): main() cleans up
            if op == "quit":
                return

    def handle(self, op, header, payload):
        try:
            handler = getattr(self, "op_" + str(op), None)
            if handler is None:
                raise AgentError("bad", "unknown operation %r" % (op,))
            result = handler(header, payload)
            return result if isinstance(result, tuple) else (result, b"")
        except AgentError as exc:
            return {"ok": False, "kind": exc.kind, "error": str(exc)}, b""
        except ImportError as exc:
            return {"ok": False, "kind": "missing", "error": str(exc), "module": getattr(exc, "name", None)}, b""
        except Exception as exc:
            kind = "load" if op == "load" else "run"
            return {"ok": False, "kind": kind, "error": "%s: %s" % (type(exc).__name__, exc)}, b""

    # operations
    def op_hello(self, header, payload):
        if int(header.get("protocol", 0)) != PROTOCOL:
            raise AgentError("bad", "protocol %r, this agent speaks %d" % (header.get("protocol"), PROTOCOL))
        cache = os.path.abspath(os.path.expanduser(str(header.get("cache") or "~/.cache/edgeconv-board")))
        for sub in ("blobs", "runs"):
            os.makedirs(os.path.join(cache, sub), mode=0o700, exist_ok=True)
        self.cache = cache
        facts = {"protocol": PROTOCOL, "pid": os.getpid(), "executable": sys.executable,
                 "python": "%d.%d.%d" % sys.version_info[:3], "cache": cache}
        if header.get("lock"):
            self.take_lock(float(header.get("lock_wait", 0)))
            self.sweep()
        else:
            facts["lock_holder"] = self.lock_holder()
        return facts

    def take_lock(self, wait):
        import fcntl

        f = open(os.path.join(self.cache, "lock"), "a+")
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    holder = self.lock_holder()
                    f.close()
                    raise AgentError("busy", "another run holds the board (agent pid %s); waited %g s"
                                     % (holder or "unknown", wait)) from None
                time.sleep(0.2)
        f.seek(0)
        f.truncate()
        f.write("%d\n" % os.getpid())
        f.flush()
        self.lock_file = f

    def lock_holder(self):
        text = _read(os.path.join(self.cache, "lock"), 64) if self.cache else None
        return int(text) if text and text.isdigit() else None

    def sweep(self):
        """Under the lock no other run is alive: remove what a killed agent may have left."""
        runs = os.path.join(self.cache, "runs")
        for name in os.listdir(runs):
            shutil.rmtree(os.path.join(runs, name), ignore_errors=True)
        blobs = os.path.join(self.cache, "blobs")
        for name in os.listdir(blobs):
            if name.startswith(".part-"):
                try:
                    os.unlink(os.path.join(blobs, name))
                except OSError:
                    pass

    def op_probe(self, header, payload):
        facts = probe()
        if self.cache:
            facts["lock_holder"] = self.lock_holder()
        return facts

    def op_have(self, header, payload):
        self.need_cache()
        missing = []
        for sha, size in dict(header.get("blobs", {})).items():
            if not SHA_RE.match(str(sha)):
                raise AgentError("bad", "not a sha256: %r" % (sha,))
            path = os.path.join(self.cache, "blobs", sha)
            if not (os.path.isfile(path) and os.path.getsize(path) == int(size)):
                missing.append(sha)
        return {"missing": missing}

    def op_put(self, header, payload):
        if isinstance(payload, AgentError):
            raise payload
        return {"stored": header.get("sha256")}

    def op_load(self, header, payload):
        self.need_cache()
        if self.lock_file is None:
            raise AgentError("bad", "load without holding the board's lock")
        import numpy  # noqa: F401  (a board without numpy fails here, as a missing module)

        half = self.import_half(str(header.get("half", "")))
        for module in getattr(half, "MODULES", ()):
            __import__(module)  # the runtime's own memory is in the baseline, not in the model's cost
        self.baseline = rss()["rss_bytes"]
        self.close_session()
        self.run_dir = os.path.join(self.cache, "runs", str(os.getpid()))
        shutil.rmtree(self.run_dir, ignore_errors=True)
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        for rel, sha in dict(header.get("files", {})).items():
            self.link(str(rel), str(sha))
        rel = str(header.get("main", ""))
        main = os.path.join(self.run_dir, *self.parts(rel)) if rel else self.run_dir  # "": the folder is the model
        self.session = half.load(main, dict(header.get("options") or {}))
        info = dict(getattr(self.session, "info", {}) or {})
        return {"info": info, "pid": os.getpid(), "executable": sys.executable, "rss": self.memory()}

    def import_half(self, sha):
        import importlib.machinery
        import importlib.util

        if not SHA_RE.match(sha):
            raise AgentError("bad", "board half is not named by a sha256")
        path = os.path.join(self.cache, "blobs", sha)
        name = "edgeconv_board_half_" + sha[:16]
        loader = importlib.machinery.SourceFileLoader(name, path)
        spec = importlib.util.spec_from_loader(name, loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        return module

    def parts(self, rel):
        parts = rel.split("/")
        if not parts or not all(PART_RE.match(p) for p in parts):
            raise AgentError("bad", "file name not allowed: %r" % (rel,))
        return parts

    def link(self, rel, sha):
        if not SHA_RE.match(sha):
            raise AgentError("bad", "not a sha256: %r" % (sha,))
        dest = os.path.join(self.run_dir, *self.parts(rel))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        blob = os.path.join(self.cache, "blobs", sha)
        try:
            os.symlink(blob, dest)
        except OSError:  # a file system without symlinks
            shutil.copyfile(blob, dest)

    def need_cache(self):
        if self.cache is None:
            raise AgentError("bad", "hello first")

    def need_session(self):
        if self.session is None:
            raise AgentError("bad", "no model is loaded")
        return self.session

    def op_infer(self, header, payload):
        session = self.need_session()
        outputs = session.infer(unpack_arrays(header.get("arrays", []), payload))
        specs, data = pack_arrays(outputs)
        return {"arrays": specs}, data

    def op_time(self, header, payload):
        """The timing loop of ``edgeconv.verification.bench.latency``, run here: no network in the timed section."""
        from time import perf_counter

        session = self.need_session()
        feed = unpack_arrays(header.get("arrays", []), payload)
        runs, warmup = max(1, int(header.get("runs", 50))), max(0, int(header.get("warmup", 5)))
        max_seconds = float(header.get("max_seconds", 10.0))
        for _ in range(warmup):
            session.infer(feed)
        times = []
        deadline = perf_counter() + max_seconds
        infer, append = session.infer, times.append
        for _ in range(runs):
            t0 = perf_counter()
            infer(feed)
            t1 = perf_counter()
            append((t1 - t0) * 1000.0)
            if t1 > deadline and len(times) >= 5:
                break
        return {"times_ms": times, "rss": self.memory(), "pid": os.getpid(), "executable": sys.executable}

    def memory(self):
        now = rss()
        peak = now["peak_rss_bytes"]
        base = self.baseline
        return {"peak_rss_bytes": peak, "baseline_rss_bytes": base,
                "model_rss_bytes": max(0, peak - base) if peak is not None and base is not None else None}

    def op_rss(self, header, payload):
        return self.memory()

    def op_quit(self, header, payload):
        self.close_session()
        return {"bye": True}

    # cleanup
    def close_session(self):
        session, self.session = self.session, None
        if session is not None and hasattr(session, "close"):
            try:
                session.close()
            except Exception:
                pass

    def cleanup(self):
        """Remove this run's scratch. Both threads (and a signal) may get here: the second waits for the first,
        so that no ``os._exit`` cuts a removal short."""
        with self.cleanup_lock:
            if self.cleaned:
                return
            if self.run_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            if self.cache:
                try:
                    os.unlink(os.path.join(self.cache, "blobs", ".part-%d" % os.getpid()))
                except OSError:
                    pass
            self.cleaned = True


BOOTSTRAP = ('import sys;sys.path=[p for p in sys.path if p];import zlib;i=sys.stdin.buffer;n=int(i.readline());'
             'g={"__name__":"edgeconv_agent"};exec(compile(zlib.decompress(i.read(n)),"edgeconv_agent.py","exec"),g);'
             'g["main"]()')


def main():
    """Run on the board by BOOTSTRAP. The protocol owns the original stdout; anything else that writes to file
    descriptor 1 (a runtime's banner) lands on stderr, which the host keeps for error messages."""
    import signal

    if sys.version_info < (3, 8):
        sys.stderr.write("edgeconv agent: Python >= 3.8 is needed, this is %s\n" % sys.version.split()[0])
        sys.exit(3)
    sys.dont_write_bytecode = True  # nothing but blobs in the cache
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    agent = Agent(sys.stdin.buffer, out)

    def stop(signum, frame):
        agent.cleanup()
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        os.chdir(os.path.expanduser("~"))
    except OSError:
        pass
    code = 0
    try:
        agent.serve()
    except BaseException as exc:  # the host gone mid-reply (broken pipe), or a bug: never leave the scratch behind
        sys.stderr.write("edgeconv agent: %s: %s\n" % (type(exc).__name__, exc))
        code = 1
    finally:
        agent.cleanup()
        os._exit(code)
