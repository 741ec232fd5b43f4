"""A real (small) workload plus the faults the harness must survive."""
import ctypes
import os
import random
import signal
import sys
import threading
import time

import numpy as np

from af3core import CaseError, NonFiniteOutput, Runner
from af3core import protocol, worker


class TestRunner(Runner):
    def setup(self):
        s = self.case.settings
        n = self.case.seq_len
        self.a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
        self.index = 0
        self.gpu = None
        if s["cuda_matmul_n"] > 0:
            if self.case.device_type != "cuda":
                raise CaseError("cuda_matmul_n needs --device cuda")
            self.framework = "torch"
            self.gpu = _CudaMatmul(s["cuda_matmul_n"])
        if 0 < s["oom_above"] < n:
            np.ones(1 << 60, dtype=np.uint8)  # a real MemoryError, as a too-large case would raise
        helper_pid = None
        if s["helper"]:
            helper_pid = os.fork()
            if helper_pid == 0:  # the helper: inherits every descriptor, the channel included
                time.sleep(3600)
                os._exit(0)
        if s["linger"]:
            threading.Thread(target=time.sleep, args=(3600,), daemon=False).start()
        if s["fault_pass"] == -1:
            self._fault()
        return {"engine_source_version": "test-1", "env_seen": os.environ.get("AF3_TESTPLUGIN_ENV"),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "helper_pid": helper_pid,
                "notes_seen": self.case.notes,
                # what an engine's "auto" kernels resolved to on this machine (the summary's kernels column)
                "kernels": os.environ.get("AF3_TESTPLUGIN_KERNELS")}

    def compile(self):
        return {**self.step(counting=False), "compile_only_ms": 1.5}

    def step(self, counting=True):
        s = self.case.settings
        if counting:
            self.index += 1
            if self.index - 1 == s["fault_pass"]:
                self._fault()
        extra = {}
        if self.gpu is not None:
            extra["cuda_event_ms"] = self.gpu.run()
        out = self.a @ self.a
        if s["work_ms"] or s["jitter_ms"]:
            time.sleep((s["work_ms"] + s["jitter_ms"] * random.random()) / 1e3)
        if counting and s["fault"] == "nan_time" and self.index - 1 == s["fault_pass"]:
            extra["elapsed_ms"] = float("nan")
        return {"checksum": float(out[0, 0]), **extra}

    def _fault(self):
        fault = self.case.settings["fault"]
        if fault == "raise":
            raise RuntimeError("injected failure")
        if fault == "user_error":
            raise CaseError("this setting cannot run on this device")
        if fault == "segfault":
            ctypes.string_at(0)
        if fault == "exit":
            os._exit(3)
        if fault == "kill_parent":  # under --executor ray: the Ray worker running the case dies
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(30)
        if fault == "hang":
            time.sleep(3600)
        if fault == "oom":
            np.ones(1 << 60, dtype=np.uint8)  # a real MemoryError from the allocator
        if fault == "nonfinite":
            raise NonFiniteOutput("output contains NaN")
        if fault == "bad_frame":
            os.write(worker.CHANNEL_FD, b"\x00\x00\x00\x05garbage-not-msgpack")
            time.sleep(30)
        if fault == "big_frame":
            os.write(worker.CHANNEL_FD, (protocol.MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
            time.sleep(30)
        if fault == "close_channel":
            os.close(worker.CHANNEL_FD)
            time.sleep(3600)
        if fault == "bad_type":  # a well-formed frame whose time is a string
            protocol.write_frame(worker.CHANNEL_FD, _pass_frame(elapsed_ms="fast"))
            time.sleep(30)
        if fault == "nan_frame":  # a pass that claims success with a NaN time; the worker goes on
            protocol.write_frame(worker.CHANNEL_FD, _pass_frame(elapsed_ms=float("nan")))
        if fault == "list_info":  # a list where a map belongs
            protocol.write_frame(worker.CHANNEL_FD, {"type": "setup", "setup_ms": 1.0, "info": [1, 2]})
            time.sleep(30)
        if fault == "unknown_message":
            protocol.write_frame(worker.CHANNEL_FD, {"type": "surprise"})
            time.sleep(30)
        if fault == "log_flood":
            block = b"x" * 1023 + b"\n"
            for _ in range(self.case.settings["flood_mib"] * 1024):
                os.write(1, block)
        if fault == "cpu_oom":  # what torch's CPU allocator raises
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:116] . DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 549755813888 bytes. Error code 12 (Cannot allocate memory)")
        if fault == "stdout_noise":
            print("frameworks print to stdout; the channel must not care", flush=True)
            sys.stdout.write("\x00\x00\x00\x10not a frame\n")
            sys.stdout.flush()


def _pass_frame(**fields):
    frame = {"type": "pass", "pass_index": 99, "warmup": False, "start_ts": time.time(), "elapsed_ms": 1.0,
             "wall_ms": 1.0, "ok": True, "error": "", "error_kind": "", "traceback": "", "extra": {}}
    frame.update(fields)
    return frame


class _CudaMatmul:
    """A fixed CUDA workload (one fp32 n x n matmul, TF32 off), used to compare the harness's timing
    with triton's do_bench on the same work: scripts/harness_overhead.py builds the identical one."""

    def __init__(self, n):
        import torch

        self.torch = torch
        torch.backends.cuda.matmul.allow_tf32 = False
        gen = torch.Generator(device="cuda").manual_seed(0)
        self.a = torch.randn(n, n, device="cuda", generator=gen)
        self.b = torch.randn(n, n, device="cuda", generator=gen)

        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def run(self):
        """Returns the GPU time of the matmul alone, to tell the workload from the harness around it."""
        self.start.record()
        self.torch.mm(self.a, self.b)
        self.end.record()
        self.torch.cuda.synchronize()
        return self.start.elapsed_time(self.end)
